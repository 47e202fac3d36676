//! System FileStorage in S3: `job backup-s3-files` copies every object of the installation's
//! FileStorage bucket into the backup (`system-filestorage-s3/objects/…`, one file per object,
//! streamed with bounded memory) and records each object's key, size, content type, metadata and
//! SHA-256 in `manifest.json` ([`S3Section`]); `job restore-s3-files` writes them back into the
//! bucket the restored installation's Secret names, refusing a bucket that already holds objects
//! unless told to write over them.
//!
//! Both steps read the bucket's location and credentials as 3scale's System does, from the keys of
//! the Secret the APIManager names ([`SECRET_KEYS`]), which their Pod receives as environment
//! variables ([`secret_env`]): the operator never reads the Secret, and its values appear in no
//! argument, message or log.

use super::JobError;
use super::copy::sync_filesystem;
use super::manifest::{FileEntry, Manifest, TreeEntries, hex, now};
use super::report::StepReport;
pub use super::s3_section::{S3Object, S3Section};
use super::tree::remove_tree;
use crate::s3::config::{self, keys};
use crate::s3::{ClientOptions, ConfigError, ObjectMetadata, S3Client, S3Error};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Folder of the copied bucket on the backup claim.
pub const DIR: &str = "system-filestorage-s3";
/// Name of the backup step in the manifest.
pub const STEP: &str = crate::names::BACKUP_S3_FILES;
/// The keys of 3scale's FileStorage S3 Secret a step Pod receives (System reads these; the
/// role ARN only so that an STS-only Secret is refused by name).
pub const SECRET_KEYS: [&str; 8] = [
    keys::ACCESS_KEY_ID,
    keys::SECRET_ACCESS_KEY,
    keys::BUCKET,
    keys::REGION,
    keys::HOSTNAME,
    keys::PROTOCOL,
    keys::PATH_STYLE,
    keys::ROLE_ARN,
];
/// Objects downloaded or uploaded at once (each streams; none is held whole in memory).
const CONCURRENCY: usize = 4;

/// Why an S3 FileStorage step failed. Never holds a Secret value.
#[derive(Debug, thiserror::Error)]
pub enum S3FilesError {
    /// The APIManager names no Secret for its S3 FileStorage.
    #[error(
        "the APIManager's System FileStorage is in S3 but names no Secret \
(spec.system.fileStorage.simpleStorageService.configurationSecretRef)"
    )]
    NoSecret,
    /// The Secret's keys do not describe a usable bucket.
    #[error("System FileStorage S3 Secret {secret}: {source}")]
    Config {
        /// The Secret.
        secret: String,
        /// What is wrong.
        source: ConfigError,
    },
    /// The Secret names no bucket.
    #[error("System FileStorage S3 Secret {secret}: {} is missing", keys::BUCKET)]
    NoBucket {
        /// The Secret.
        secret: String,
    },
    /// The bucket could not be read or written.
    #[error("System FileStorage bucket: {0}")]
    S3(#[from] S3Error),
    /// An object changed while the backup copied it.
    #[error(
        "object {key} of bucket {bucket} changed while it was copied; nothing of it was kept, run the backup again"
    )]
    Changed {
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
    },
    /// The restore's bucket already holds objects.
    #[error(
        "System FileStorage bucket {bucket} (Secret {secret}) already holds objects; nothing was written. Empty it, \
or set spec.overwriteFileStorageObjects: true on the APIManagerRestore to write the backed-up objects over it"
    )]
    NotEmpty {
        /// The bucket.
        bucket: String,
        /// The Secret naming it.
        secret: String,
    },
    /// The backup holds no S3 FileStorage objects to restore.
    #[error("the backup holds no S3 System FileStorage ({} has no systemFileStorageS3)", crate::layout::MANIFEST_FILE)]
    NotInBackup,
    /// An object was stored with another size than backed up.
    #[error("object {key} of bucket {bucket} was stored with {stored} bytes, not the {expected} backed up")]
    Stored {
        /// The bucket.
        bucket: String,
        /// The object.
        key: String,
        /// Size backed up.
        expected: u64,
        /// Size stored.
        stored: u64,
    },
}

/// The environment giving a step Pod the keys of Secret `secret` ([`SECRET_KEYS`], each optional:
/// a key the Secret lacks is reported by the step, by name).
pub fn secret_env(secret: &str) -> Vec<EnvVar> {
    SECRET_KEYS
        .iter()
        .map(|key| EnvVar {
            name: (*key).to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_owned(),
                    key: (*key).to_owned(),
                    optional: Some(true),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
        .collect()
}

/// The file in the backup holding the bytes of object `key`: named by the SHA-256 of the key (any
/// key, whatever its characters or length, makes one safe file name), 256 folders wide.
pub fn object_path(key: &str) -> String {
    let name = hex(&Sha256::digest(key.as_bytes()));
    format!("{DIR}/objects/{}/{name}", &name[..2])
}

/// A client of the bucket Secret `secret` describes, from this process's environment. http is
/// accepted when the Secret asks for it (`AWS_PROTOCOL: http`), as System itself uses it then.
pub fn connect(secret: &str) -> Result<(S3Client, String), S3FilesError> {
    if secret.is_empty() {
        return Err(S3FilesError::NoSecret);
    }
    let config_error = |source| S3FilesError::Config { secret: secret.to_owned(), source };
    let settings = config::from_env(true).map_err(config_error)?;
    let bucket = settings.bucket.ok_or_else(|| S3FilesError::NoBucket { secret: secret.to_owned() })?;
    let client =
        S3Client::new(settings.endpoint, &settings.credentials, ClientOptions::default()).map_err(config_error)?;
    Ok((client, bucket))
}

/// `job backup-s3-files`: copies every object of the bucket into `<backup>/system-filestorage-s3`
/// (through a staging folder that replaces it only when complete) and records them; the backup's
/// `last_step` marks the manifest complete.
pub async fn backup(secret: &str, last_step: bool, root: &Path) -> Result<(), JobError> {
    let started_at = now();
    let mut manifest = Manifest::load(root)?;
    manifest.begin(root)?;
    let (client, bucket) = connect(secret)?;
    let staging = root.join(format!("{DIR}.partial"));
    remove_tree(&staging)?;
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.list_page(&bucket, "", token.as_deref(), 1000).await.map_err(S3FilesError::from)?;
        let downloads = page.objects.into_iter().map(|listed| download(&client, &bucket, listed.key, &staging));
        let copied: Vec<S3Object> =
            futures::stream::iter(downloads).buffer_unordered(CONCURRENCY).try_collect().await?;
        objects.extend(copied);
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    std::fs::create_dir_all(&staging).map_err(|error| JobError::io("creating", &staging, error))?;
    sync_filesystem(&staging)?;
    let destination = root.join(DIR);
    remove_tree(&destination)?;
    std::fs::rename(&staging, &destination)
        .map_err(|error| JobError::io("renaming into place", &destination, error))?;
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let files = objects.iter().map(|o| FileEntry { path: o.path.clone(), size: o.size, sha256: o.sha256.clone() });
    manifest.replace_under(DIR, TreeEntries { files: files.collect(), ..TreeEntries::default() });
    manifest.system_file_storage_s3 = Some(S3Section { bucket, secret: secret.to_owned(), objects });
    manifest.finish_step(STEP, started_at, last_step);
    manifest.save(root)
}

/// Streams object `key` into its file under `staging`, hashing it on the way.
async fn download(client: &S3Client, bucket: &str, key: String, staging: &Path) -> Result<S3Object, JobError> {
    let path = object_path(&key);
    let relative = path.strip_prefix(DIR).unwrap_or(&path).trim_start_matches('/');
    let file_path = staging.join(relative);
    if let Some(parent) = file_path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|error| JobError::io("creating", parent, error))?;
    }
    let file =
        tokio::fs::File::create(&file_path).await.map_err(|error| JobError::io("creating", &file_path, error))?;
    let mut sink = Hashing { inner: tokio::io::BufWriter::with_capacity(64 * 1024, file), hasher: Sha256::new() };
    let info = client.download(bucket, &key, &mut sink).await.map_err(S3FilesError::from)?;
    let sha256 = hex(&sink.hasher.finalize());
    Ok(S3Object {
        key,
        path,
        size: info.size,
        sha256,
        content_type: info.metadata.content_type,
        metadata: info.metadata.user,
    })
}

/// An `AsyncWrite` that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Hashing<W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                this.hasher.update(&buf[..written]);
                Poll::Ready(Ok(written))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `job restore-s3-files`: writes every backed-up object into the bucket Secret `secret` names,
/// with its content type and metadata; refuses a bucket holding any object unless `overwrite`.
/// The backup was checked against its manifest by the verify step before.
pub async fn restore(secret: &str, overwrite: bool, root: &Path) -> Result<StepReport, JobError> {
    let section = Manifest::read(root)?.and_then(|m| m.system_file_storage_s3).ok_or(S3FilesError::NotInBackup)?;
    let (client, bucket) = connect(secret)?;
    refuse_non_empty(&client, &bucket, secret, overwrite).await?;
    let uploads = section.objects.iter().map(|object| upload(&client, &bucket, object, root));
    futures::stream::iter(uploads).buffer_unordered(CONCURRENCY).try_collect::<Vec<()>>().await?;
    let bytes = section.objects.iter().map(|o| o.size).sum();
    Ok(StepReport::RestoreS3Files { bucket, objects: section.objects.len(), bytes })
}

/// Fails with [`S3FilesError::NotEmpty`] when `bucket` (named by Secret `secret`) holds any
/// object, unless `overwrite`.
pub async fn refuse_non_empty(
    client: &S3Client,
    bucket: &str,
    secret: &str,
    overwrite: bool,
) -> Result<(), S3FilesError> {
    if overwrite || client.list_page(bucket, "", None, 1).await?.objects.is_empty() {
        return Ok(());
    }
    Err(S3FilesError::NotEmpty { bucket: bucket.to_owned(), secret: secret.to_owned() })
}

/// Streams the backed-up file of `object` into `bucket` under its key.
async fn upload(client: &S3Client, bucket: &str, object: &S3Object, root: &Path) -> Result<(), JobError> {
    let path: PathBuf = root.join(&object.path);
    let file = tokio::fs::File::open(&path).await.map_err(|error| JobError::io("reading", &path, error))?;
    let metadata = ObjectMetadata { content_type: object.content_type.clone(), user: object.metadata.clone() };
    let reader = tokio::io::BufReader::with_capacity(64 * 1024, file);
    let stored = client.upload(bucket, &object.key, reader, &metadata).await.map_err(S3FilesError::from)?;
    if stored.size != object.size {
        let (bucket, key) = (bucket.to_owned(), object.key.clone());
        return Err(S3FilesError::Stored { bucket, key, expected: object.size, stored: stored.size }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_makes_one_safe_file_name_under_the_folder() {
        let keys = ["logo.png", "../../etc/passwd", "a//b/", "", "ü/ñ", &"x".repeat(1024)];
        let paths: Vec<String> = keys.iter().map(|k| object_path(k)).collect();
        for path in &paths {
            let parts: Vec<&str> = path.split('/').collect();
            assert_eq!(parts[..2], [DIR, "objects"], "{path}");
            assert_eq!(parts.len(), 4, "{path}");
            assert_eq!(parts[3].len(), 64, "{path}");
            assert!(parts[3].starts_with(parts[2]), "{path}");
        }
        let distinct: std::collections::BTreeSet<&String> = paths.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(object_path("logo.png"), object_path("logo.png"));
    }

    #[test]
    fn the_pod_gets_each_of_3scales_keys_from_the_secret_by_reference() {
        let env = secret_env("fs-s3");
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_BUCKET",
                "AWS_REGION",
                "AWS_HOSTNAME",
                "AWS_PROTOCOL",
                "AWS_PATH_STYLE",
                "AWS_ROLE_ARN"
            ]
        );
        for var in &env {
            assert_eq!(var.value, None, "never a value in the Pod spec");
            let source = var.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).expect("secretKeyRef");
            assert_eq!(
                (source.name.as_str(), source.key.as_str(), source.optional),
                ("fs-s3", var.name.as_str(), Some(true))
            );
        }
    }

    #[test]
    fn a_missing_secret_name_or_bucket_is_reported_by_name_never_by_value() {
        assert_eq!(connect("").err().map(|e| e.to_string()), Some(S3FilesError::NoSecret.to_string()));
        let error = S3FilesError::Config { secret: "fs".into(), source: ConfigError::Missing { key: keys::REGION } };
        assert_eq!(error.to_string(), "System FileStorage S3 Secret fs: AWS_REGION is missing");
        assert_eq!(
            S3FilesError::NoBucket { secret: "fs".into() }.to_string(),
            "System FileStorage S3 Secret fs: AWS_BUCKET is missing"
        );
    }
}
