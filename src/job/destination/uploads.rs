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
use tokio::task::JoinSet;

/// Uploads at once, at most (many small files are sent side by side).
const AT_ONCE: usize = 8;

/// Bytes the uploads in flight may hold together ([`super::store::Store::upload_holds`]), at
/// most, besides their pipes.
const HELD_BYTES: u64 = 32 << 20;

/// A content upload that finished, to be checked and recorded.
#[derive(Debug)]
pub struct Finished {
    /// The content object's key below the prefix.
    pub key: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// The plaintext digest the file had when it was named.
    pub named: StreamDigest,
    /// What was read and stored.
    pub stored: Transferred,
}

/// The content uploads in flight.
pub struct Uploads {
    place: Arc<Place>,
    sealer: Option<Arc<Sealer>>,
    backup_uid: Arc<str>,
    tasks: JoinSet<Result<Finished, JobError>>,
    /// Bytes each upload in flight may hold, by content key.
    held: HashMap<String, u64>,
}

impl Uploads {
    /// No uploads yet, into `place`, sealed by `sealer` for the backup `backup_uid`.
    pub fn new(place: Arc<Place>, sealer: Option<Arc<Sealer>>, backup_uid: &str) -> Self {
        Self { place, sealer, backup_uid: backup_uid.into(), tasks: JoinSet::new(), held: HashMap::new() }
    }

    /// Whether content object `key` is being uploaded.
    pub fn holds(&self, key: &str) -> bool {
        self.held.contains_key(key)
    }

    /// Whether any upload is in flight.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether an upload of `size` bytes must wait for one in flight to finish.
    pub fn is_full_for(&self, size: u64) -> bool {
        let held: u64 = self.held.values().sum();
        !self.is_empty() && (self.held.len() >= AT_ONCE || held + self.place.store.upload_holds(size) > HELD_BYTES)
    }

    /// Starts uploading content object `name` (below the prefix: [`Place::content_key`]) from
    /// `file` at `path`, named with `named` bytes.
    pub fn start(&mut self, name: &str, file: std::fs::File, path: PathBuf, named: StreamDigest) {
        let key = Place::content_key(name);
        self.held.insert(key.clone(), self.place.store.upload_holds(named.size));
        let (place, sealer, backup_uid) = (self.place.clone(), self.sealer.clone(), self.backup_uid.clone());
        let content = ContentName::parse(name).ok();
        self.tasks.spawn(async move {
            let context = content_context(content.as_ref(), &backup_uid, &key);
            let input = tokio::fs::File::from_std(file);
            let stored = place.put(sealer.as_deref(), context, &key, input).await?;
            Ok(Finished { key, path, named, stored })
        });
    }

    /// Waits until every upload in flight has ended, whatever its outcome (a failed one aborts
    /// its multipart upload), before the step fails for another reason.
    pub async fn settle(&mut self) {
        while self.tasks.join_next().await.is_some() {}
        self.held.clear();
    }

    /// The next upload to finish; `None` when none is in flight.
    pub async fn next_finished(&mut self) -> Option<Result<Finished, JobError>> {
        let joined = self.tasks.join_next().await?;
        let finished = joined.unwrap_or_else(|join| {
            Err(JobError::io("uploading", std::path::Path::new("a file"), std::io::Error::other(join.to_string())))
        });
        if let Ok(finished) = &finished {
            self.held.remove(&finished.key);
        }
        Some(finished)
    }
}
