//! A sealed backup's place: its store ([`Store`]: a bucket, or the backup claim), the key prefix,
//! the backup's folder below it and the keys; and the I/O of its objects: each object streamed
//! through the seal ([`crate::seal`]) into the store, or out of it through the opening, memory
//! bounded by the seal's segments and the store's chunks whatever the object's size. With
//! encryption off, objects pass in clear and only their digests are taken.

use super::store::Store;
use super::{DestinationError, S3Args};
use crate::job::CommonArgs;
use crate::s3::config::keys;
use crate::s3::{ClientOptions, ObjectMetadata, S3Client};
use crate::seal::{ContentName, Context, KeyRing, Sealer, StreamDigest};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Bytes in flight between the seal and the store (or the store and the opening).
const PIPE_BYTES: usize = 256 << 10;

/// Largest small object (exported object, manifest, step part) read into memory.
pub const MAX_SMALL_OBJECT_BYTES: u64 = 256 << 20;

/// Name of the folder of content objects under the prefix (no namespace starts with `_`).
pub const CONTENT_FOLDER: &str = "_content";

/// The digests of one object written or read: its bytes in the store (`stored`) and its
/// plaintext (equal when not encrypted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transferred {
    /// Of the plaintext.
    pub plaintext: StreamDigest,
    /// Of the bytes stored.
    pub stored: StreamDigest,
}

/// The backup's store, prefix and folder, and the keys (none: not encrypted).
#[derive(Debug)]
pub struct Place {
    /// Where the objects are.
    pub store: Store,
    /// The key prefix of every backup (empty, or without a trailing `/`).
    pub prefix: String,
    /// The backup's folder below the prefix: `<namespace>/<backup>-<uid>` in a bucket, empty on a
    /// claim (which holds one backup, at its root).
    pub folder: String,
    /// The key ring; `None` when the backup is not encrypted (or its keys were not given).
    pub ring: Option<KeyRing>,
}

impl Place {
    /// The place `common` names: the bucket when `--s3-bucket` is given (connected as
    /// [`connect_bucket`] says), else the backup claim's root; the keys from the key Secret's
    /// folder.
    pub fn connect(common: &CommonArgs) -> Result<Self, DestinationError> {
        let args = &common.s3;
        let ring = match &args.encryption_keys {
            Some(folder) => Some(KeyRing::load(&[PathBuf::from(folder)]).map_err(DestinationError::Keys)?),
            None => None,
        };
        if !args.is_set() {
            let store = Store::Claim { root: common.backup_dir.clone() };
            return Ok(Self { store, prefix: String::new(), folder: String::new(), ring });
        }
        let folder = args.s3_backup.clone().ok_or(DestinationError::Argument("--s3-backup"))?;
        let (client, name) = connect_bucket(args)?;
        let prefix = args.s3_prefix.clone().unwrap_or_default().trim_matches('/').to_owned();
        let store = Store::Bucket { client, name };
        Ok(Self { store, prefix, folder: folder.trim_matches('/').to_owned(), ring })
    }

    /// The sealed backup in the local folder `backup` opened by `ring`: a claim's root (copied
    /// out of it), or a backup's folder downloaded from a bucket with its prefix
    /// (`<prefix copy>/<namespace>/<backup>-<uid>`, the content objects in
    /// `<prefix copy>/_content/`).
    pub fn local(backup: &Path, ring: Option<KeyRing>) -> Self {
        let claim = |root: &Path| Store::Claim { root: root.to_owned() };
        let downloaded = backup
            .parent()
            .and_then(Path::parent)
            .filter(|prefix| !backup.join(CONTENT_FOLDER).exists() && prefix.join(CONTENT_FOLDER).is_dir());
        let folder = downloaded.and_then(|prefix| backup.strip_prefix(prefix).ok()?.to_str().map(str::to_owned));
        match (downloaded, folder) {
            (Some(prefix), Some(folder)) => Self { store: claim(prefix), prefix: String::new(), folder, ring },
            _ => Self { store: claim(backup), prefix: String::new(), folder: String::new(), ring },
        }
    }

    /// Whether the store is the backup claim.
    pub fn is_claim(&self) -> bool {
        matches!(self.store, Store::Claim { .. })
    }

    /// The key of `relative` (a key below the prefix).
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() { relative.to_owned() } else { format!("{}/{relative}", self.prefix) }
    }

    /// `path` of the backup's folder, as a key below the prefix.
    pub fn in_folder(&self, path: &str) -> String {
        if self.folder.is_empty() { path.to_owned() } else { format!("{}/{path}", self.folder) }
    }

    /// A content object's key below the prefix.
    pub fn content_key(name: &str) -> String {
        format!("{CONTENT_FOLDER}/{name}")
    }

    /// Where `relative` (below the prefix) is, for messages.
    pub fn location(&self, relative: &str) -> String {
        self.store.location(&self.key(relative))
    }

    /// Where the backup's folder is, for messages (ending in `/`).
    pub fn folder_location(&self) -> String {
        let location = self.location(&self.folder);
        if location.ends_with('/') { location } else { location + "/" }
    }

    /// The error of object `relative` failing to seal or open.
    pub fn seal_error(&self, relative: &str) -> impl FnOnce(crate::seal::SealError) -> DestinationError {
        let object = self.location(relative);
        move |source| DestinationError::Seal { object, source }
    }

    /// Fails unless the store exists and can be reached.
    pub async fn check(&self) -> Result<(), DestinationError> {
        self.store.check().await
    }

    /// Stores everything `input` yields as `relative` (below the prefix), sealed for `context`
    /// by `sealer` (in clear without one).
    pub async fn put<R: AsyncRead + Unpin + Send>(
        &self,
        sealer: Option<&Sealer>,
        context: Context<'_>,
        relative: &str,
        mut input: R,
    ) -> Result<Transferred, DestinationError> {
        let key = self.key(relative);
        let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
        let produce = async {
            let digests = match sealer {
                Some(sealer) => sealer
                    .seal(context, &mut input, &mut writer)
                    .await
                    .map(|sealed| (sealed.plaintext, sealed.ciphertext))
                    .map_err(self.seal_error(relative))?,
                None => {
                    let mut hashing = Hashing::new(&mut writer);
                    tokio::io::copy(&mut input, &mut hashing)
                        .await
                        .map_err(|error| self.seal_error(relative)(crate::seal::SealError::Read(error)))?;
                    let digest = hashing.finish();
                    (digest.clone(), digest)
                }
            };
            writer.shutdown().await.map_err(|error| self.seal_error(relative)(crate::seal::SealError::Write(error)))?;
            drop(writer);
            Ok::<_, DestinationError>(digests)
        };
        // A failed seal ends `produce` first: the upload is dropped (and aborted) before it could
        // take the closed pipe for the end of the object.
        let metadata = ObjectMetadata::default();
        let upload = self.store.upload(&key, reader, &metadata);
        let ((plaintext, stored), uploaded) = tokio::try_join!(produce, upload)?;
        if uploaded != stored.size {
            return Err(DestinationError::Corrupt {
                object: self.store.location(&key),
                reason: format!("{uploaded} bytes were stored of {}", stored.size),
            });
        }
        Ok(Transferred { plaintext, stored })
    }

    /// Stores content from `input` as [`Place::put`] does, and keeps it only when its plaintext
    /// is `named`, the one its name was taken from. Otherwise its source changed since it was
    /// named: the object is deleted, so no backup takes it for its name's content, and `None`
    /// is returned.
    pub async fn put_named<R: AsyncRead + Unpin + Send>(
        &self,
        sealer: Option<&Sealer>,
        context: Context<'_>,
        relative: &str,
        input: R,
        named: &StreamDigest,
    ) -> Result<Option<Transferred>, DestinationError> {
        let stored = self.put(sealer, context, relative, input).await?;
        if stored.plaintext != *named {
            self.store.delete(&self.key(relative)).await?;
            return Ok(None);
        }
        Ok(Some(stored))
    }

    /// Writes the plaintext of `relative` (below the prefix), opened for `context`, into
    /// `output`. What was written must be discarded if this fails.
    pub async fn get<W: AsyncWrite + Unpin + Send>(
        &self,
        context: Context<'_>,
        relative: &str,
        output: &mut W,
    ) -> Result<Transferred, DestinationError> {
        let key = self.key(relative);
        let Some(ring) = &self.ring else {
            let mut hashing = Hashing::new(output);
            self.store.download(&key, &mut hashing).await?;
            let digest = hashing.finish();
            return Ok(Transferred { plaintext: digest.clone(), stored: digest });
        };
        let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
        let download = async {
            let mut writer = writer;
            let result = self.store.download(&key, &mut writer).await;
            drop(writer);
            result
        };
        // The opening owns the pipe's reading end: when it fails (a changed segment), the end
        // goes with it and the download stops at its next write instead of waiting on a full pipe.
        let open = async move {
            let mut reader = reader;
            crate::seal::open(ring, context, &mut reader, output).await
        };
        let (downloaded, opened) = tokio::join!(download, open);
        match (downloaded, opened) {
            (Ok(()), Ok(opened)) => Ok(Transferred { plaintext: opened.plaintext, stored: opened.ciphertext }),
            (Err(sink), Err(error)) if sink.is_sink() => Err(self.seal_error(relative)(error)),
            (Ok(()), Err(error)) => Err(self.seal_error(relative)(error)),
            (Err(error), _) => Err(error),
        }
    }

    /// The plaintext of the small object `relative`, at most [`MAX_SMALL_OBJECT_BYTES`].
    pub async fn get_small(&self, context: Context<'_>, relative: &str) -> Result<Vec<u8>, DestinationError> {
        let mut bytes = Vec::new();
        let transferred = self.get(context, relative, &mut bytes).await?;
        if transferred.plaintext.size > MAX_SMALL_OBJECT_BYTES {
            return Err(DestinationError::Corrupt {
                object: self.location(relative),
                reason: format!("larger than {MAX_SMALL_OBJECT_BYTES} bytes"),
            });
        }
        Ok(bytes)
    }

    /// The bytes stored as `relative` (below the prefix), as they are.
    pub async fn raw(&self, relative: &str) -> Result<Vec<u8>, DestinationError> {
        let mut bytes = Vec::new();
        self.store.download(&self.key(relative), &mut bytes).await?;
        Ok(bytes)
    }

    /// The digests of the bytes stored as `relative`, read without opening them.
    pub async fn stored_digest(&self, relative: &str) -> Result<StreamDigest, DestinationError> {
        let mut hashing = Hashing::new(tokio::io::sink());
        self.store.download(&self.key(relative), &mut hashing).await?;
        Ok(hashing.finish())
    }
}

/// The context an object at `path` (below the backup's folder, or a content object's key) is
/// sealed for: its content name when it has one (a content object of an encrypted backup), else
/// the backup and `path` (a content object stored in clear is opened by no context).
pub fn content_context<'a>(name: Option<&'a ContentName>, backup_uid: &'a str, path: &'a str) -> Context<'a> {
    match name {
        Some(content) => Context::Content(content),
        None => Context::BackupObject { backup_uid, path },
    }
}

/// Connects to the bucket `args` name: the credentials Secret's keys, overridden by the region,
/// endpoint and addressing given; returns the client and the bucket's name.
fn connect_bucket(args: &S3Args) -> Result<(S3Client, String), DestinationError> {
    let name = args.s3_bucket.clone().ok_or(DestinationError::Argument("--s3-bucket"))?;
    let credentials = args.s3_credentials.as_deref().ok_or(DestinationError::Argument("--s3-credentials"))?;
    let mut values = read_secret_folder(Path::new(credentials))?;
    if let Some(region) = &args.s3_region {
        values.insert(keys::REGION, region.clone());
    }
    if let Some(endpoint) = &args.s3_endpoint {
        values.insert(keys::HOSTNAME, endpoint.clone());
        values.remove(keys::PROTOCOL);
    }
    if let Some(path_style) = args.s3_force_path_style {
        values.insert(keys::PATH_STYLE, path_style.to_string());
    }
    let settings =
        crate::s3::config::from_secret_keys(|key| values.get(key).cloned(), args.s3_allow_http == Some(true))?;
    let mut endpoint = settings.endpoint;
    if let Some(bundle) = &args.s3_ca_bundle {
        let bytes = std::fs::read(bundle).map_err(|error| {
            DestinationError::Config(crate::s3::ConfigError::CaBundle(format!("{bundle}: {}", error.kind())))
        })?;
        endpoint = endpoint.with_ca_bundle(&bytes)?;
    }
    Ok((S3Client::new(endpoint, &settings.credentials, ClientOptions::default())?, name))
}

/// The values of 3scale's S3 Secret keys among the files of the mounted Secret at `folder`.
fn read_secret_folder(folder: &Path) -> Result<BTreeMap<&'static str, String>, DestinationError> {
    let mut values = BTreeMap::new();
    for key in keys::ALL {
        match std::fs::read(folder.join(key)) {
            Ok(bytes) => {
                let value = String::from_utf8(bytes).map_err(|_| crate::s3::ConfigError::NotUtf8 { key })?;
                values.insert(key, value);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(crate::s3::ConfigError::Read { key, reason: error.kind().to_string() }.into());
            }
        }
    }
    Ok(values)
}

/// A writer that takes the size and SHA-256 of what passes through it.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W> Hashing<W> {
    /// Hashes what is written into `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), size: 0 }
    }

    /// Size and SHA-256 of what was written.
    pub fn finish(self) -> StreamDigest {
        StreamDigest { size: self.size, sha256: crate::job::manifest::hex(&self.hasher.finalize()) }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Hashing<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.hasher.update(&buf[..written]);
        this.size += written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
