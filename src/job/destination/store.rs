//! Where a sealed backup's objects live: an S3 bucket, or a folder on the backup claim. The raw
//! I/O of objects by key (`_content/<name>`, `<folder>/manifest.json`), streamed both ways with
//! bounded memory; everything above it ([`super::place`], [`super::write`], [`super::read`]) is
//! the same for both. On a claim a key is a path under the folder; an object is written to a
//! temporary file (mode 0600), synced and renamed into place, so a reader never sees half of one.

use super::DestinationError;
use crate::s3::{ErrorKind, ObjectMetadata, S3Client, S3Error};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes read or written at once on a claim.
const CHUNK_BYTES: usize = 256 << 10;

/// Suffix of an object being written on a claim (never listed, replaced by the next attempt).
const PARTIAL_SUFFIX: &str = ".partial";

/// An object listed under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// When it was last written, as text that sorts in time order within one store.
    pub modified: String,
}

/// The store of a sealed backup's objects.
#[derive(Debug)]
pub enum Store {
    /// An S3 bucket.
    Bucket {
        /// The client.
        client: S3Client,
        /// The bucket's name.
        name: String,
    },
    /// A folder (the backup claim's root): each key a path below it.
    Claim {
        /// The folder.
        root: PathBuf,
    },
}

impl Store {
    /// Where object `key` is, for messages: `s3://<bucket>/<key>` or the file's path.
    pub fn location(&self, key: &str) -> String {
        match self {
            Self::Bucket { name, .. } => format!("s3://{name}/{key}"),
            Self::Claim { root } => root.join(key).display().to_string(),
        }
    }

    /// Fails unless the store exists and can be reached.
    pub async fn check(&self) -> Result<(), DestinationError> {
        match self {
            Self::Bucket { client, name } => {
                if client.bucket_exists(name).await? {
                    return Ok(());
                }
                Err(S3Error {
                    operation: crate::s3::Operation::HeadBucket,
                    bucket: name.clone(),
                    key: None,
                    kind: ErrorKind::NoSuchBucket,
                }
                .into())
            }
            Self::Claim { root } => match std::fs::metadata(root) {
                Ok(metadata) if metadata.is_dir() => Ok(()),
                Ok(_) => Err(io_error("reading the folder", root, std::io::ErrorKind::NotADirectory.into())),
                Err(source) => Err(io_error("reading the folder", root, source)),
            },
        }
    }

    /// Stores everything `input` yields as `key`, replacing any object of that key; returns the
    /// bytes stored.
    pub async fn upload<R: AsyncRead + Unpin + Send>(
        &self,
        key: &str,
        input: R,
        metadata: &ObjectMetadata,
    ) -> Result<u64, DestinationError> {
        match self {
            Self::Bucket { client, name } => Ok(client.upload(name, key, input, metadata).await?.size),
            Self::Claim { root } => write_file(&root.join(key), input).await,
        }
    }

    /// The most bytes an upload of `size` bytes holds in memory besides its pipe: what a
    /// bucket's client holds ([`S3Client::upload_holds`]); nothing on a claim, whose file is
    /// written as it is read.
    pub fn upload_holds(&self, size: u64) -> u64 {
        match self {
            Self::Bucket { client, .. } => client.upload_holds(size),
            Self::Claim { .. } => 0,
        }
    }

    /// Writes the bytes of `key` into `output`. A missing object fails with an error for which
    /// [`DestinationError::is_missing`] holds; a failed write into `output` with one for which
    /// [`DestinationError::is_sink`] holds.
    pub async fn download<W: AsyncWrite + Unpin + Send>(&self, key: &str, output: W) -> Result<(), DestinationError> {
        match self {
            Self::Bucket { client, name } => {
                client.download(name, key, output).await?;
                Ok(())
            }
            Self::Claim { root } => read_file(&root.join(key), output).await,
        }
    }

    /// The size of object `key`, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, DestinationError> {
        match self {
            Self::Bucket { client, name } => Ok(client.head_object(name, key).await?.map(|info| info.size)),
            Self::Claim { root } => {
                let path = root.join(key);
                match std::fs::symlink_metadata(&path) {
                    Ok(metadata) if metadata.is_file() => Ok(Some(metadata.len())),
                    Ok(_) => Ok(None),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(io_error("reading", &path, source)),
                }
            }
        }
    }

    /// Every object whose key starts with `prefix` (a folder's key ending in `/`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, DestinationError> {
        match self {
            Self::Bucket { client, name } => Ok(client
                .list_all(name, prefix)
                .await?
                .into_iter()
                .map(|listed| Listed { key: listed.key, modified: listed.last_modified })
                .collect()),
            Self::Claim { root } => {
                let mut listed = Vec::new();
                list_folder(&root.join(prefix), prefix, &mut listed)?;
                listed.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(listed)
            }
        }
    }

    /// Deletes object `key` (nothing when there is none).
    pub async fn delete(&self, key: &str) -> Result<(), DestinationError> {
        match self {
            Self::Bucket { client, name } => Ok(client.delete_object(name, key).await?),
            Self::Claim { root } => {
                let path = root.join(key);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(io_error("deleting", &path, source)),
                }
            }
        }
    }
}

/// A failed file operation on a claim.
fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> DestinationError {
    DestinationError::File { what, path: path.to_owned(), source }
}

/// Writes `input` into a new temporary file beside `path` (mode 0600, its folders 0700), syncs
/// it, renames it to `path` and syncs the folder; returns the bytes written.
async fn write_file<R: AsyncRead + Unpin + Send>(path: &Path, mut input: R) -> Result<u64, DestinationError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|source| io_error("creating the folder", parent, source))?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(PARTIAL_SUFFIX);
    let temporary = path.with_file_name(name);
    // Empty until its mode is 0600: nothing is readable by others at any time.
    let file = std::fs::File::create(&temporary).map_err(|source| io_error("creating", &temporary, source))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|source| io_error("setting the mode of", &temporary, source))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut written = 0u64;
    let copied = async {
        loop {
            let read = input.read(&mut buffer).await.map_err(DestinationError::Input)?;
            if read == 0 {
                break;
            }
            file.write_all(&buffer[..read]).await.map_err(|source| io_error("writing", &temporary, source))?;
            written += read as u64;
        }
        file.sync_all().await.map_err(|source| io_error("syncing", &temporary, source))
    };
    if let Err(error) = copied.await {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::rename(&temporary, path).map_err(|source| io_error("renaming into", path, source))?;
    std::fs::File::open(parent)
        .and_then(|folder| folder.sync_all())
        .map_err(|source| io_error("syncing the folder", parent, source))?;
    Ok(written)
}

/// Writes the bytes of the file at `path` into `output`, chunk by chunk.
async fn read_file<W: AsyncWrite + Unpin + Send>(path: &Path, mut output: W) -> Result<(), DestinationError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => DestinationError::Missing { object: path.display().to_string() },
            _ => io_error("reading", path, source),
        })?;
    let mut file = tokio::fs::File::from_std(file);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = file.read(&mut buffer).await.map_err(|source| io_error("reading", path, source))?;
        if read == 0 {
            break;
        }
        output.write_all(&buffer[..read]).await.map_err(DestinationError::Sink)?;
    }
    output.flush().await.map_err(DestinationError::Sink)
}

/// Adds every file below `folder` (whose key is `prefix`) to `listed`, but partial ones.
fn list_folder(folder: &Path, prefix: &str, listed: &mut Vec<Listed>) -> Result<(), DestinationError> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(io_error("listing", folder, source)),
    };
    for entry in entries {
        let entry = entry.map_err(|source| io_error("listing", folder, source))?;
        // Keys are UTF-8; anything else on the claim is not an object.
        let Ok(name) = entry.file_name().into_string() else { continue };
        let path = entry.path();
        let metadata = std::fs::symlink_metadata(&path).map_err(|source| io_error("reading", &path, source))?;
        let key = format!("{prefix}{name}");
        if metadata.is_dir() {
            list_folder(&path, &format!("{key}/"), listed)?;
        } else if metadata.is_file() && !name.ends_with(PARTIAL_SUFFIX) {
            let modified = metadata.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let modified = format!("{:020}", modified.map_or(0, |d| d.as_nanos()));
            listed.push(Listed { key, modified });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A store on an empty scratch folder, removed when dropped.
    fn claim(label: &str) -> (Scratch, Store) {
        let dir = std::env::temp_dir().join(format!("abo-store-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let store = Store::Claim { root: dir.clone() };
        (Scratch(dir), store)
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn an_object_is_written_whole_with_mode_0600_and_read_back() {
        let (dir, store) = claim("whole");
        let bytes: Vec<u8> = (0..3 * CHUNK_BYTES + 17).map(|i| (i % 251) as u8).collect();
        let written = store.upload("_content/abc", &bytes[..], &ObjectMetadata::default()).await.expect("upload");
        assert_eq!(written, bytes.len() as u64);
        let path = dir.path().join("_content/abc");
        assert_eq!(std::fs::metadata(&path).expect("object").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("_content")).expect("folder").permissions().mode() & 0o777, 0o700);
        assert!(!dir.path().join("_content/abc.partial").exists(), "no temporary file is left");
        let mut read = Vec::new();
        store.download("_content/abc", &mut read).await.expect("download");
        assert_eq!(read, bytes);
        assert_eq!(store.size("_content/abc").await.expect("size"), Some(bytes.len() as u64));
    }

    #[tokio::test]
    async fn a_failed_input_leaves_the_earlier_object_and_no_temporary_file() {
        let (dir, store) = claim("failed");
        store.upload("ns/b-u/manifest.json", &b"first"[..], &ObjectMetadata::default()).await.expect("upload");
        let failing = tokio_test_reader(b"second, cut");
        let error = store.upload("ns/b-u/manifest.json", failing, &ObjectMetadata::default()).await.expect_err("fails");
        assert!(matches!(error, DestinationError::Input(_)), "{error}");
        assert_eq!(std::fs::read(dir.path().join("ns/b-u/manifest.json")).expect("object"), b"first");
        assert!(!dir.path().join("ns/b-u/manifest.json.partial").exists());
    }

    #[tokio::test]
    async fn a_missing_object_is_missing_and_absent() {
        let (_dir, store) = claim("missing");
        let error = store.download("secrets/x.json", tokio::io::sink()).await.expect_err("missing");
        assert!(error.is_missing(), "{error}");
        assert_eq!(store.size("secrets/x.json").await.expect("size"), None);
        store.delete("secrets/x.json").await.expect("deleting nothing succeeds");
    }

    #[tokio::test]
    async fn listing_walks_below_the_prefix_without_partial_files() {
        let (dir, store) = claim("listing");
        for key in ["parts/copy-files.sealed", "parts/export-objects.sealed", "parts/deep/x", "other/y"] {
            store.upload(key, &b"x"[..], &ObjectMetadata::default()).await.expect("upload");
        }
        std::fs::write(dir.path().join("parts/z.partial"), b"half").expect("partial");
        let keys: Vec<String> = store.list("parts/").await.expect("list").into_iter().map(|l| l.key).collect();
        assert_eq!(keys, ["parts/copy-files.sealed", "parts/deep/x", "parts/export-objects.sealed"]);
        assert!(store.list("absent/").await.expect("list").is_empty());
        store.delete("parts/deep/x").await.expect("delete");
        assert_eq!(store.list("parts/deep/").await.expect("list"), []);
    }

    #[tokio::test]
    async fn a_failing_output_is_a_sink_error() {
        let (_dir, store) = claim("sink");
        store.upload("a", &vec![1u8; 2 * CHUNK_BYTES][..], &ObjectMetadata::default()).await.expect("upload");
        let (writer, reader) = tokio::io::duplex(1024);
        drop(reader);
        let error = store.download("a", writer).await.expect_err("the reader is gone");
        assert!(error.is_sink(), "{error}");
    }

    /// A reader yielding `bytes`, then failing.
    fn tokio_test_reader(bytes: &'static [u8]) -> impl AsyncRead + Unpin + Send {
        let failing = FailingReader;
        AsyncReadExt::chain(bytes, failing)
    }

    struct FailingReader;

    impl AsyncRead for FailingReader {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("the source failed")))
        }
    }
}
