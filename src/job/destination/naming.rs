//! Content names of the FileStorage's files, taken ahead: a blocking thread reads the files a
//! backup step will store, in order, and hands each one's content name and plaintext digest over
//! a bounded channel while the step seals and uploads the files before it. Reading and hashing
//! then run on another core than the sealing, and the store is not idle while a file is named.

use crate::job::JobError;
use crate::seal::{ContentNamer, StreamDigest};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Names the thread may have taken before the step asks for them (each a few hundred bytes).
const NAMED_AHEAD: usize = 256;

/// Bytes read at a time while naming.
const READ_BYTES: usize = 256 << 10;

/// A file to be read, and the file it must still be: its device and inode when it was listed.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Its path.
    pub path: PathBuf,
    /// `(device, inode)` when listed.
    pub id: (u64, u64),
}

/// A file's content name and plaintext digest, and when its reading began.
#[derive(Clone, Debug)]
pub struct Named {
    /// The content name (keyed when encrypted, `sha256-<hex>` when not).
    pub name: String,
    /// Size and SHA-256 of what was read.
    pub digest: StreamDigest,
    /// When the reading began.
    pub read_at: SystemTime,
}

/// The names of a list of files, taken in order by a blocking thread ahead of the step.
pub struct NamedAhead {
    names: mpsc::Receiver<Result<Named, JobError>>,
}

impl NamedAhead {
    /// Starts naming `files` in order with copies of `naming`. Dropping this stops the thread
    /// after the file it is reading.
    pub fn start(files: Vec<Listed>, naming: Naming) -> Self {
        let (sender, names) = mpsc::channel(NAMED_AHEAD);
        tokio::task::spawn_blocking(move || {
            for file in files {
                if sender.blocking_send(name_file(&file, naming.clone())).is_err() {
                    break;
                }
            }
        });
        Self { names }
    }

    /// The name of the next file of the list, `file` (for the error if the thread ended first).
    pub async fn next(&mut self, file: &Path) -> Result<Named, JobError> {
        match self.names.recv().await {
            Some(named) => named,
            None => Err(JobError::TaskEnded { what: "naming", path: file.to_owned() }),
        }
    }
}

/// Reads the file `listed` once, on a blocking thread, and names its content with `naming`.
pub async fn name_one(listed: Listed, naming: Naming) -> Result<Named, JobError> {
    let path = listed.path.clone();
    tokio::task::spawn_blocking(move || name_file(&listed, naming))
        .await
        .unwrap_or_else(|_| Err(JobError::TaskEnded { what: "naming", path }))
}

/// Reads the file `listed` once and names its content with `naming`.
fn name_file(listed: &Listed, mut naming: Naming) -> Result<Named, JobError> {
    let read_at = SystemTime::now();
    let mut file = open_listed(listed)?;
    let mut buffer = vec![0u8; READ_BYTES];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => naming.update(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(JobError::io("reading", &listed.path, error)),
        }
    }
    let (name, digest) = naming.finish();
    Ok(Named { name, digest, read_at })
}

/// Opens the file `listed` for reading, never through a link, and checks it is still the file
/// listed.
pub fn open_listed(listed: &Listed) -> Result<std::fs::File, JobError> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(&listed.path)
        .map_err(|error| JobError::io("reading", &listed.path, error))?;
    let stat = rustix::fs::fstat(&file).map_err(JobError::errno("reading", &listed.path))?;
    if (stat.st_dev, stat.st_ino) == listed.id {
        Ok(file)
    } else {
        Err(JobError::Changed { path: listed.path.clone() })
    }
}

/// The content name and plaintext digest of a byte stream, taken as it is written (an
/// `AsyncWrite`, so a download can stream into it).
#[derive(Clone)]
pub struct Naming {
    namer: Option<ContentNamer>,
    hasher: Sha256,
    size: u64,
}

impl Naming {
    /// A namer of content: keyed by `namer` when the backup is encrypted, `sha256-<hex>` without.
    pub fn new(namer: Option<ContentNamer>) -> Self {
        Self { namer, hasher: Sha256::new(), size: 0 }
    }

    /// Takes `bytes` into the digest (and so the name).
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The content name (keyed when encrypted, `sha256-<hex>` when not) and the digest.
    pub fn finish(self) -> (String, StreamDigest) {
        let digest: [u8; 32] = self.hasher.finalize().into();
        let sha256 = crate::job::manifest::hex(&digest);
        let name = match self.namer {
            Some(namer) => namer.name(&digest).as_str().to_owned(),
            None => format!("sha256-{sha256}"),
        };
        (name, StreamDigest { size: self.size, sha256 })
    }
}

impl tokio::io::AsyncWrite for Naming {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.get_mut().update(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(dir: &Path, name: &str, bytes: &[u8]) -> Listed {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let stat = rustix::fs::stat(&path).expect("stat");
        Listed { path, id: (stat.st_dev, stat.st_ino) }
    }

    #[tokio::test]
    async fn names_come_in_the_order_of_the_list_and_a_replaced_file_is_named_changed() {
        let dir = crate::job::scratch("naming-ahead");
        let a = listed(&dir, "a", b"first");
        let b = listed(&dir, "b", b"second");
        let replaced = listed(&dir, "c", b"third");
        std::fs::write(dir.join("d"), b"other").expect("write");
        std::fs::rename(dir.join("d"), &replaced.path).expect("rename");
        let mut ahead = NamedAhead::start(vec![a.clone(), b, replaced.clone(), a], Naming::new(None));
        let first = ahead.next(Path::new("a")).await.expect("a");
        let expected = crate::job::manifest::hex(&Sha256::digest(b"first"));
        assert_eq!(first.name, format!("sha256-{expected}"));
        assert_eq!(first.digest, StreamDigest { size: 5, sha256: expected });
        assert_eq!(ahead.next(Path::new("b")).await.expect("b").digest.size, 6);
        assert!(matches!(ahead.next(&replaced.path).await, Err(JobError::Changed { path }) if path == replaced.path));
        assert_eq!(ahead.next(Path::new("a")).await.expect("a again").name, first.name);
        assert!(ahead.next(Path::new("none")).await.is_err(), "the list is at its end");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
