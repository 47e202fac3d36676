//! An S3 System FileStorage in a backup in a bucket. `job backup-s3-files` stores each object of
//! the installation's FileStorage bucket as a content object of the prefix, through the same data
//! path as the claim's files (sealed, named by its content, so an object an earlier backup stored
//! is referenced, not uploaded again), and records its key, size, content type, metadata and
//! SHA-256 in the sealed manifest's `systemFileStorageS3` section (with its content object among
//! the files' metadata, so `verify` opens and checks it like a file). `job restore-s3-files`
//! streams each object from its content object back into the bucket the restored installation's
//! Secret names.

use super::DestinationError;
use super::index::{CONTENTS_FILE, FileMeta};
use super::naming::Naming;
use super::place::{Place, Transferred};
use super::read::Committed;
use super::write::{BucketBackup, Traffic};
use crate::job::filestorage_s3::{self, S3FilesError, S3Object, S3Section, object_path};
use crate::job::manifest::{FileEntry, Manifest, now};
use crate::job::report::StepReport;
use crate::job::{JobError, RestoreS3FilesArgs, S3FilesArgs};
use crate::s3::{ListedObject, ObjectMetadata, S3Client};
use crate::seal::StreamDigest;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;

/// An object at most this large is held in memory while it is named and stored (read once); a
/// larger one is read twice, streaming: to name it, then (when its content is not stored yet)
/// to store it.
const HELD_BYTES: u64 = 1 << 20;
/// Objects read or restored at once.
const CONCURRENCY: usize = 4;
/// Bytes in flight between a download and an upload.
const PIPE_BYTES: usize = 256 << 10;

/// An object of the FileStorage bucket, read once: its content name and digest, its metadata,
/// and its bytes when it is small.
struct Named {
    key: String,
    name: String,
    digest: StreamDigest,
    metadata: ObjectMetadata,
    bytes: Option<Vec<u8>>,
}

/// `job backup-s3-files` into the bucket: every object of the FileStorage bucket the Secret
/// `args.secret` names, by content; the step's part, and the commit when this is the backup's
/// last step.
pub async fn backup(args: &S3FilesArgs) -> Result<Traffic, JobError> {
    let started_at = now();
    let mut backup = BucketBackup::begin(&args.common, filestorage_s3::STEP).await?;
    backup.learn_earlier_content(false).await?;
    let (client, bucket) = filestorage_s3::connect(&args.secret)?;
    let mut objects = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.list_page(&bucket, "", token.as_deref(), 1000).await.map_err(S3FilesError::from)?;
        let namers: Vec<Naming> = page.objects.iter().map(|_| backup.content_namer()).collect();
        let mut named = futures::stream::iter(page.objects.into_iter().zip(namers))
            .map(|(listed, naming)| name_object(&client, &bucket, listed, naming))
            .buffered(CONCURRENCY);
        while let Some(object) = named.try_next().await? {
            objects.push(store(&mut backup, &client, &bucket, object).await?);
        }
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let mut manifest = Manifest::default();
    manifest.add_files(objects.iter().map(|o| FileEntry {
        path: o.path.clone(),
        size: o.size,
        sha256: o.sha256.clone(),
    }));
    manifest.system_file_storage_s3 = Some(S3Section { bucket, secret: args.secret.clone(), objects });
    manifest.finish_step(filestorage_s3::STEP, started_at, args.last_step);
    Ok(backup.finish(manifest, args.last_step).await?)
}

/// Reads object `listed` of `bucket` once to name its content (keeping its bytes when small).
async fn name_object(
    client: &S3Client,
    bucket: &str,
    listed: ListedObject,
    mut naming: Naming,
) -> Result<Named, JobError> {
    let (info, bytes) = if listed.size <= HELD_BYTES {
        let mut bytes = Vec::new();
        let info = client.download(bucket, &listed.key, &mut bytes).await.map_err(S3FilesError::from)?;
        naming.update(&bytes);
        (info, Some(bytes))
    } else {
        (client.download(bucket, &listed.key, &mut naming).await.map_err(S3FilesError::from)?, None)
    };
    let (name, digest) = naming.finish();
    Ok(Named { key: listed.key, name, digest, metadata: info.metadata, bytes })
}

/// Stores the content of `object` unless the prefix holds it already, lists its content object
/// for the manifest's path of the object, and returns its record.
async fn store(
    backup: &mut BucketBackup,
    client: &S3Client,
    bucket: &str,
    object: Named,
) -> Result<S3Object, JobError> {
    let content = Place::content_key(&object.name);
    if !backup.reference_content(&content).await? {
        let changed = JobError::from(S3FilesError::Changed { bucket: bucket.to_owned(), key: object.key.clone() });
        let named = (object.name.as_str(), &object.digest);
        match &object.bytes {
            Some(bytes) => backup.upload_content(named, &bytes[..], std::future::ready(Ok(())), changed).await?,
            None => {
                let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
                let feed = async {
                    let mut writer = writer;
                    client.download(bucket, &object.key, &mut writer).await.map_err(S3FilesError::from)?;
                    Ok(())
                };
                backup.upload_content(named, reader, feed, changed).await?
            }
        }
    }
    let path = object_path(&object.key);
    // An object has no mode or times of its own to restore: the manifest's fixed ones.
    backup.add_meta(FileMeta {
        path: path.clone(),
        mode: 0o600,
        modified: (0, 0),
        accessed: (0, 0),
        content: Some(content),
        identity: None,
    });
    Ok(S3Object {
        key: object.key,
        path,
        size: object.digest.size,
        sha256: object.digest.sha256,
        content_type: object.metadata.content_type,
        metadata: object.metadata.user,
    })
}

/// `job restore-s3-files` from the bucket: every object the committed backup's sealed manifest
/// lists, streamed from its content object into the bucket the Secret `args.secret` names, with
/// its content type and metadata; refuses a bucket holding any object unless `args.overwrite`.
pub async fn restore(args: &RestoreS3FilesArgs) -> Result<StepReport, JobError> {
    let committed = Committed::open(&args.common).await?;
    let contents = committed.contents().await?;
    let section = contents.manifest.system_file_storage_s3.as_ref().ok_or(S3FilesError::NotInBackup)?;
    let content_of: BTreeMap<&str, &str> =
        contents.meta.iter().filter_map(|meta| Some((meta.path.as_str(), meta.content.as_deref()?))).collect();
    let (client, bucket) = filestorage_s3::connect(&args.secret)?;
    filestorage_s3::refuse_non_empty(&client, &bucket, &args.secret, args.overwrite).await?;
    let uploads = section.objects.iter().map(|object| {
        let content = content_of.get(object.path.as_str()).copied();
        restore_object(&committed, content, &client, &bucket, object)
    });
    futures::stream::iter(uploads).buffer_unordered(CONCURRENCY).try_collect::<Vec<()>>().await?;
    let bytes = section.objects.iter().map(|o| o.size).sum();
    Ok(StepReport::RestoreS3Files { bucket, objects: section.objects.len(), bytes })
}

/// Streams content object `content` of the backup into `bucket` as `object`, and checks what was
/// read and stored against the sealed manifest's record.
async fn restore_object(
    committed: &Committed,
    content: Option<&str>,
    client: &S3Client,
    bucket: &str,
    object: &S3Object,
) -> Result<(), JobError> {
    let corrupt = |reason: String| DestinationError::Corrupt {
        object: committed.place.location(&committed.place.in_folder(CONTENTS_FILE)),
        reason,
    };
    let content = content.ok_or_else(|| corrupt(format!("it names no content for {}", object.path)))?;
    let (writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let feed = async {
        let mut writer = writer;
        Ok::<Transferred, JobError>(committed.content_into(content, &mut writer).await?)
    };
    let metadata = ObjectMetadata { content_type: object.content_type.clone(), user: object.metadata.clone() };
    let upload = async {
        client.upload(bucket, &object.key, reader, &metadata).await.map_err(|e| JobError::from(S3FilesError::from(e)))
    };
    let (read, stored) = tokio::try_join!(feed, upload)?;
    if read.plaintext.size != object.size || read.plaintext.sha256 != object.sha256 {
        return Err(corrupt(format!("{content} does not hold what it lists for {}", object.path)).into());
    }
    if stored.size != object.size {
        let (bucket, key) = (bucket.to_owned(), object.key.clone());
        return Err(S3FilesError::Stored { bucket, key, expected: object.size, stored: stored.size }.into());
    }
    Ok(())
}
