//! The content uploads of a tree copy in flight: several at once, each its own task (its sealing
//! runs on any core), bounded in number and in the bytes they may hold. While one file's last
//! parts are stored, the next file is already sealed and sent: the store is never idle between
//! files.

use super::place::{Place, Transferred, content_context};
use crate::job::JobError;
use crate::seal::{ContentName, Sealer, StreamDigest};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::{Id, JoinSet};

/// Uploads at once, at most (many small files are sent side by side).
const AT_ONCE: usize = 8;

/// Bytes the uploads in flight may hold together ([`super::store::Store::upload_holds`]), at
/// most, besides their pipes.
const HELD_BYTES: u64 = 32 << 20;

/// A content upload that finished and was kept ([`Place::put_named`]), to be recorded.
#[derive(Debug)]
pub struct Finished {
    /// The content object's key below the prefix.
    pub key: String,
    /// What was read and stored.
    pub stored: Transferred,
}

/// The content uploads in flight.
pub struct Uploads {
    place: Arc<Place>,
    sealer: Option<Arc<Sealer>>,
    backup_uid: Arc<str>,
    tasks: JoinSet<Result<Finished, JobError>>,
    /// Each upload in flight, by task: its content key, its file and the bytes it may hold.
    in_flight: HashMap<Id, (String, PathBuf, u64)>,
}

impl Uploads {
    /// No uploads yet, into `place`, sealed by `sealer` for the backup `backup_uid`.
    pub fn new(place: Arc<Place>, sealer: Option<Arc<Sealer>>, backup_uid: &str) -> Self {
        Self { place, sealer, backup_uid: backup_uid.into(), tasks: JoinSet::new(), in_flight: HashMap::new() }
    }

    /// Whether content object `key` is being uploaded.
    pub fn uploading(&self, key: &str) -> bool {
        self.in_flight.values().any(|(held, _, _)| held == key)
    }

    /// Whether any upload is in flight.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether an upload of a plaintext of `size` bytes must wait for one in flight to finish.
    pub fn is_full_for(&self, size: u64) -> bool {
        let held: u64 = self.in_flight.values().map(|(_, _, bytes)| bytes).sum();
        !self.is_empty() && (self.tasks.len() >= AT_ONCE || held + self.holds(size) > HELD_BYTES)
    }

    /// What the upload of a plaintext of `size` bytes holds: that of its object as stored.
    fn holds(&self, size: u64) -> u64 {
        let stored = if self.sealer.is_some() { crate::seal::sealed_size(size) } else { size };
        self.place.store.upload_holds(stored)
    }

    /// Starts uploading content object `name` (below the prefix: [`Place::content_key`]) from
    /// `file` at `path`, named with `named` bytes.
    pub fn start(&mut self, name: &str, file: std::fs::File, path: PathBuf, named: StreamDigest) {
        let key = Place::content_key(name);
        let holds = self.holds(named.size);
        let (place, sealer, backup_uid) = (self.place.clone(), self.sealer.clone(), self.backup_uid.clone());
        let content = ContentName::parse(name).ok();
        let (task_key, task_path) = (key.clone(), path.clone());
        let task = self.tasks.spawn(async move {
            let context = content_context(content.as_ref(), &backup_uid, &task_key);
            let input = tokio::fs::File::from_std(file);
            match place.put_named(sealer.as_deref(), context, &task_key, input, &named).await? {
                Some(stored) => Ok(Finished { key: task_key, stored }),
                None => Err(JobError::Changed { path: task_path }),
            }
        });
        self.in_flight.insert(task.id(), (key, path, holds));
    }

    /// The next upload to finish; `None` when none is in flight.
    pub async fn next_finished(&mut self) -> Option<Result<Finished, JobError>> {
        let joined = self.tasks.join_next_with_id().await?;
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(join) => join.id(),
        };
        let (_, path, _) = self.in_flight.remove(&id).unwrap_or_default();
        Some(match joined {
            Ok((_, finished)) => finished,
            Err(_) => Err(JobError::TaskEnded { what: "uploading", path }),
        })
    }

    /// Waits until every upload in flight has ended, before the step fails for another reason:
    /// one that failed has aborted its multipart upload; one whose file changed since it was
    /// named has deleted its object ([`Place::put_named`]).
    pub async fn settle(&mut self) {
        while self.next_finished().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn digest(bytes: &[u8]) -> StreamDigest {
        StreamDigest { size: bytes.len() as u64, sha256: crate::job::manifest::hex(&Sha256::digest(bytes)) }
    }

    #[tokio::test]
    async fn settling_deletes_what_a_changed_file_stored_and_keeps_the_rest() {
        let dir = crate::job::scratch("uploads-settle");
        let claim = dir.join("claim");
        let mut uploads = Uploads::new(Arc::new(Place::local(&claim, None)), None, "uid-1");
        let mut start = |name: &str, bytes: &[u8], named: StreamDigest| {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("file");
            let file = std::fs::File::open(&path).expect("open");
            uploads.start(name, file, path, named);
        };
        start("sha256-changed", b"written after it was named", digest(b"what it was named from"));
        start("sha256-kept", b"unchanged", digest(b"unchanged"));
        assert!(uploads.uploading("_content/sha256-changed") && !uploads.is_empty());
        uploads.settle().await;
        assert!(uploads.is_empty() && !uploads.uploading("_content/sha256-changed"));
        assert!(!claim.join("_content/sha256-changed").exists(), "no backup may take it for its name's content");
        assert_eq!(std::fs::read(claim.join("_content/sha256-kept")).expect("kept"), b"unchanged");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
