//! A backup step writing the sealed layout (into a bucket, or onto the claim). Exported objects
//! are sealed to their path in the backup's folder; the FileStorage tree is stored **by content**:
//! each file's content object is named by a keyed hash of its plaintext
//! ([`crate::seal::ContentNamer`]; SHA-256 when not
//! encrypted) under `<prefix>/_content/`, and a content object an earlier backup stored already is
//! referenced, not uploaded; a file unchanged since the previous backup (its path, size, times,
//! inode and device: [`super::unchanged`]) keeps that backup's content name without being read.
//! Each step but the last writes its part (`parts/<step>.sealed`); the
//! last step merges the parts and its own into the sealed manifest and then writes
//! `manifest.json`, the commit marker.
//! A retried step writes the same keys again: only its own backup's objects (content objects are
//! never overwritten).

use super::index::{
    CONTENTS_FILE, Contents, FileIdentity, FileMeta, INDEX_FILE, INDEX_FORMAT, INDEX_FORMAT_VERSION, Index,
    PARTS_FOLDER, Part, StoredObject,
};
use super::naming::{Listed, NamedAhead, Naming, name_one, open_listed};
use super::place::{Place, content_context};
use super::unchanged::{Previous, Stored, same_names, settled};
use super::uploads::{Finished, Uploads};
use super::{DestinationError, ObjectSink};
use crate::job::CommonArgs;
use crate::job::JobError;
use crate::job::manifest::{AbsentEntry, FileEntry, LinkEntry, Manifest, encode_path, now};
use crate::job::tree::{LOST_AND_FOUND, Next, Visit, walk};
use crate::seal::{ContentNamer, Context, Header, Sealer, StreamDigest};
use rustix::fs::FileType;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// How many of the newest committed backups of the namespace tell the stored digests of content
/// a backup references.
const EARLIER_INDEXES: usize = 3;

/// What a step stored and referenced, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes uploaded (as stored).
    pub uploaded: u64,
    /// Files whose content was uploaded.
    pub files_uploaded: u64,
    /// Files whose content an earlier backup had stored.
    pub files_referenced: u64,
    /// Files read to name their content.
    pub files_hashed: u64,
    /// Files unchanged since the previous backup, whose content name it gave (not read).
    pub files_unchanged: u64,
    /// When the step committed the backup: bytes uploaded by all its steps.
    pub backup_uploaded: Option<u64>,
}

/// One step of a backup in the sealed layout.
#[derive(Debug)]
pub struct BucketBackup {
    place: Arc<Place>,
    sealer: Option<Arc<Sealer>>,
    backup_uid: String,
    step: &'static str,
    /// The other steps' parts written before this one.
    earlier: Vec<Part>,
    /// This step's part.
    part: Part,
    /// Stored digests of content objects known to exist, by key below the prefix.
    known_content: HashMap<String, StoredObject>,
    /// The files the previous backup stored, reusable unread when unchanged.
    previous: Previous,
    /// What this step moved.
    pub traffic: Traffic,
}

impl BucketBackup {
    /// Connects, checks the bucket, reads the parts earlier steps of this backup wrote (and
    /// seals with their data key, so the whole backup has one).
    pub async fn begin(common: &CommonArgs, step: &'static str) -> Result<Self, DestinationError> {
        let backup_uid = common.s3.s3_backup_uid.clone().ok_or(DestinationError::Argument("--s3-backup-uid"))?;
        let bucket = Place::connect(common)?;
        bucket.check().await?;
        let mut earlier = Vec::new();
        let mut wrapped = None;
        let parts = bucket.key(&bucket.in_folder(PARTS_FOLDER)) + "/";
        for listed in bucket.store.list(&parts).await? {
            let name = listed.key.trim_start_matches(&parts);
            if name == part_name(step) {
                continue;
            }
            let relative = format!("{PARTS_FOLDER}/{name}");
            let raw = bucket.raw(&bucket.in_folder(&relative)).await?;
            if bucket.ring.is_some() && wrapped.is_none() {
                let (header, _) = Header::parse(&raw).map_err(bucket.seal_error(&bucket.in_folder(&relative)))?;
                wrapped = Some(header.wrapped_key);
            }
            let plain = open_bytes(&bucket, &backup_uid, &relative, &raw).await?;
            let mut part: Part = parse(&bucket, &bucket.in_folder(&relative), &plain)?;
            // What its step uploaded includes the part itself.
            part.uploaded += raw.len() as u64;
            earlier.push(part);
        }
        let sealer = match (&bucket.ring, wrapped) {
            (Some(ring), Some(wrapped)) => Some(Sealer::resume(ring, wrapped).map_err(DestinationError::Keys)?.into()),
            (Some(ring), None) => Some(Sealer::new(ring).map_err(DestinationError::Keys)?.into()),
            (None, _) => None,
        };
        Ok(Self {
            place: Arc::new(bucket),
            sealer,
            backup_uid,
            step,
            earlier,
            part: Part::default(),
            known_content: HashMap::new(),
            previous: Previous::default(),
            traffic: Traffic::default(),
        })
    }

    /// Stores `bytes` as the backup's object `path`, sealed to the backup and path.
    async fn put_own(&mut self, path: &str, bytes: &[u8]) -> Result<super::place::Transferred, DestinationError> {
        let key = self.place.in_folder(path);
        let context = Context::BackupObject { backup_uid: &self.backup_uid, path };
        let stored = self.place.put(self.sealer.as_deref(), context, &key, bytes).await?;
        self.traffic.uploaded += stored.stored.size;
        Ok(stored)
    }

    /// Reads the stored digests of content the newest committed backups of this namespace
    /// reference, so referencing it again needs no download; with `files`, the files the newest
    /// one whose content names are the current key's recorded, so unchanged files need no reading.
    pub async fn learn_earlier_content(&mut self, files: bool) -> Result<(), DestinationError> {
        // A claim holds one backup: no earlier one to learn from.
        if self.place.folder.is_empty() {
            return Ok(());
        }
        let namespace = self.place.folder.split('/').next().unwrap_or_default();
        let folder = self.place.key(namespace) + "/";
        let mut indexes: Vec<_> = self
            .place
            .store
            .list(&folder)
            .await?
            .into_iter()
            .filter(|listed| listed.key.ends_with(&format!("/{INDEX_FILE}")))
            .collect();
        indexes.sort_by(|a, b| b.modified.cmp(&a.modified));
        // Names come from the current key's naming key.
        let current_key = self.place.ring.as_ref().map(|ring| ring.current().as_str().to_owned());
        let mut files_read = !files;
        for listed in indexes.into_iter().take(EARLIER_INDEXES) {
            let mut bytes = Vec::new();
            self.place.store.download(&listed.key, &mut bytes).await?;
            // An unreadable earlier index only means its content is not known here.
            let Ok(index) = serde_json::from_slice::<Index>(&bytes) else { continue };
            if index.key_id.is_some() != self.sealer.is_some() {
                continue;
            }
            if !files_read && same_names(&index, current_key.as_deref()) {
                self.previous = self.previous_files(&index).await;
                files_read = true;
            }
            for object in index.objects {
                if object.key.starts_with(super::place::CONTENT_FOLDER) {
                    self.known_content.insert(object.key.clone(), object);
                }
            }
        }
        Ok(())
    }

    /// The files the sealed manifest of the committed backup `index` lists as reusable; none
    /// when it cannot be read, opened or parsed (its files are then read, as without it).
    async fn previous_files(&self, index: &Index) -> Previous {
        sealed_contents(&self.place, index, &index.contents.key).await.map(Previous::of).unwrap_or_default()
    }

    /// Stores the tree at `source` as `<prefix>/…` paths of the manifest: folders, files (by
    /// content), symbolic and hard links, with modes and times; `lost+found` at its top, pipes,
    /// sockets and devices are listed as absent. Files are named ahead on another thread
    /// ([`NamedAhead`]) and several are uploaded at once ([`Uploads`]); when the step fails, the
    /// uploads in flight end (each aborting its multipart upload if it fails) before it returns.
    pub async fn copy_tree(&mut self, source: &Path, prefix: &str) -> Result<(), JobError> {
        self.learn_earlier_content(true).await?;
        let root = rustix::fs::stat(source).map_err(JobError::errno("reading", source))?;
        self.part.contents.file_storage_group = Some(root.st_gid);
        let items = list_tree(source, prefix)?;
        let steps = self.plan(source, &items);
        let to_read = steps.iter().filter_map(|step| match step {
            Step::Store { listed, unchanged: None, .. } => Some(listed.clone()),
            _ => None,
        });
        let mut named = NamedAhead::start(to_read.collect(), self.content_namer());
        let mut uploads = Uploads::new(self.place.clone(), self.sealer.clone(), &self.backup_uid);
        let stored = self.store_tree(&items, steps, &mut named, &mut uploads).await;
        if stored.is_err() {
            uploads.settle().await;
        }
        stored
    }

    /// Stores `items` of the tree as `steps` (one each) say, then waits for every upload.
    async fn store_tree(
        &mut self,
        items: &[Item],
        steps: Vec<Step>,
        named: &mut NamedAhead,
        uploads: &mut Uploads,
    ) -> Result<(), JobError> {
        for (item, step) in items.iter().zip(steps) {
            let meta = |content| FileMeta {
                path: item.path.clone(),
                mode: item.mode,
                modified: item.modified,
                accessed: item.accessed,
                content,
                identity: None,
            };
            match step {
                Step::Folder => self.part.contents.meta.push(meta(None)),
                Step::Link(target) => {
                    self.part.contents.manifest.links.push(LinkEntry { path: item.path.clone(), target });
                    self.part.contents.meta.push(meta(None));
                }
                Step::Absent(reason) => {
                    self.part.contents.manifest.absent.push(AbsentEntry { path: item.path.clone(), reason });
                }
                Step::HardLink(target) => {
                    self.part.contents.manifest.hard_links.push(LinkEntry { path: item.path.clone(), target });
                }
                Step::Store { listed, identity, unchanged } => {
                    let (entry, content, reusable) =
                        self.store_file(item, &identity, (listed, unchanged), named, uploads).await?;
                    self.part.contents.manifest.files.push(entry);
                    self.part.contents.meta.push(FileMeta { identity: reusable, ..meta(Some(content)) });
                }
            }
        }
        while !uploads.is_empty() {
            self.finish_upload(uploads).await?;
        }
        Ok(())
    }

    /// What to do with each of `items` (at `source`): a further name of a file listed before is
    /// a hard link to it; a file unchanged since the previous backup is referenced unread; the
    /// other files are read.
    fn plan(&mut self, source: &Path, items: &[Item]) -> Vec<Step> {
        let mut first_names: HashMap<(u64, u64), String> = HashMap::new();
        let mut plan = |item: &Item| match &item.kind {
            Kind::Folder => Step::Folder,
            Kind::Link(target) => Step::Link(target.clone()),
            Kind::Absent(reason) => Step::Absent(reason.clone()),
            Kind::File { id, links, identity } => {
                if *links > 1 {
                    if let Some(first) = first_names.get(id) {
                        return Step::HardLink(first.clone());
                    }
                    first_names.insert(*id, item.path.clone());
                }
                let listed = Listed { path: source.join(OsStr::from_bytes(&item.relative)), id: *id };
                let unchanged = self.previous.take_unchanged(&item.path, item.modified, identity);
                Step::Store { listed, identity: *identity, unchanged }
            }
        };
        items.iter().map(&mut plan).collect()
    }

    /// Stores the content of the file `listed` (`item` of the tree) unless the prefix holds it
    /// already: `unchanged` since the previous backup, it is referenced unread; else its name
    /// comes from `named` and its upload starts in `uploads`. Returns its manifest entry, its
    /// content object's key and its `identity` when the next backup may reuse them.
    async fn store_file(
        &mut self,
        item: &Item,
        identity: &FileIdentity,
        (listed, unchanged): (Listed, Option<Stored>),
        named: &mut NamedAhead,
        uploads: &mut Uploads,
    ) -> Result<(FileEntry, String, Option<FileIdentity>), JobError> {
        let fresh = match unchanged {
            Some(stored) if self.reference_content(&stored.content).await? => {
                self.traffic.files_unchanged += 1;
                let entry = FileEntry { path: item.path.clone(), size: stored.size, sha256: stored.sha256 };
                return Ok((entry, stored.content, Some(*identity)));
            }
            // Its content is gone from the prefix: it is read now (it is not among those named ahead).
            Some(_) => name_one(listed.clone(), self.content_namer()).await?,
            None => named.next(&listed.path).await?,
        };
        self.traffic.files_hashed += 1;
        let reusable = settled(identity.changed, fresh.read_at).then_some(*identity);
        let entry = FileEntry { path: item.path.clone(), size: fresh.digest.size, sha256: fresh.digest.sha256.clone() };
        let key = Place::content_key(&fresh.name);
        // Equal content is uploaded once: an upload of it in flight is let finish, then referenced.
        while uploads.uploading(&key) {
            self.finish_upload(uploads).await?;
        }
        if self.reference_content(&key).await? {
            return Ok((entry, key, reusable));
        }
        while uploads.is_full_for(fresh.digest.size) {
            self.finish_upload(uploads).await?;
        }
        uploads.start(&fresh.name, open_listed(&listed)?, listed.path, fresh.digest);
        Ok((entry, key, reusable))
    }

    /// Waits for the next upload in `uploads` to finish and records it.
    async fn finish_upload(&mut self, uploads: &mut Uploads) -> Result<(), JobError> {
        let Some(finished) = uploads.next_finished().await else { return Ok(()) };
        let Finished { key, stored } = finished?;
        self.record_upload(key, stored.stored);
        Ok(())
    }

    /// Whether the prefix holds content object `key` already (an earlier backup's index lists it,
    /// or a HEAD finds it); if so, this step's part references it.
    pub async fn reference_content(&mut self, key: &str) -> Result<bool, DestinationError> {
        if let Some(known) = self.known_content.get(key) {
            self.part.objects.push(known.clone());
            self.traffic.files_referenced += 1;
            return Ok(true);
        }
        let Some(size) = self.place.store.size(&self.place.key(key)).await? else {
            return Ok(false);
        };
        // Stored by a backup whose index this step did not read: its digest from its bytes.
        let stored = self.place.stored_digest(key).await?;
        if stored.size != size {
            return Ok(false);
        }
        let object = StoredObject { key: key.to_owned(), size: stored.size, sha256: stored.sha256 };
        self.known_content.insert(key.to_owned(), object.clone());
        self.part.objects.push(object);
        self.traffic.files_referenced += 1;
        Ok(true)
    }

    /// Uploads content object `name`, named from a plaintext of digest `named`, from what
    /// `input` yields (sealed when encrypted) while `feed` (which fills `input`, or nothing) runs;
    /// a failed `feed` aborts the upload. Kept only when its plaintext is `named`
    /// ([`Place::put_named`]); otherwise the step fails with `changed`.
    pub async fn upload_content<R: tokio::io::AsyncRead + Unpin + Send>(
        &mut self,
        (name, named): (&str, &StreamDigest),
        input: R,
        feed: impl Future<Output = Result<(), JobError>>,
        changed: JobError,
    ) -> Result<(), JobError> {
        let key = Place::content_key(name);
        let content = crate::seal::ContentName::parse(name).ok();
        let context = content_context(content.as_ref(), &self.backup_uid, &key);
        let put = async {
            self.place.put_named(self.sealer.as_deref(), context, &key, input, named).await.map_err(JobError::from)
        };
        let ((), stored) = tokio::try_join!(feed, put)?;
        let stored = stored.ok_or(changed)?;
        self.record_upload(key, stored.stored);
        Ok(())
    }

    /// Records content object `key`, just uploaded and kept as `stored`, in this step's part.
    fn record_upload(&mut self, key: String, stored: StreamDigest) {
        let object = StoredObject { key: key.clone(), size: stored.size, sha256: stored.sha256 };
        self.traffic.uploaded += object.size;
        self.traffic.files_uploaded += 1;
        self.known_content.insert(key, object.clone());
        self.part.objects.push(object);
    }

    /// A namer of content: its keyed name when the backup is encrypted, `sha256-<hex>` when not.
    pub fn content_namer(&self) -> Naming {
        Naming::new(self.place.ring.as_ref().map(ContentNamer::new))
    }

    /// Lists `meta` (a stored file's metadata and content object) in this step's part.
    pub fn add_meta(&mut self, meta: FileMeta) {
        self.part.contents.meta.push(meta);
    }

    /// Records `manifest` (this step's entries, identity and times) and writes this step's part for
    /// the step that commits; with `commit` (this step is the last), writes instead the sealed
    /// manifest of every part and its own, then last `manifest.json`.
    pub async fn finish(mut self, manifest: Manifest, commit: bool) -> Result<Traffic, DestinationError> {
        let mut own = std::mem::take(&mut self.part);
        own.merge(Part { contents: Contents { manifest, ..Contents::default() }, ..Part::default() });
        own.uploaded = self.traffic.uploaded;
        own.normalize();
        if !commit {
            let relative = format!("{PARTS_FOLDER}/{}", part_name(self.step));
            self.put_own(&relative, &to_json(&own)).await?;
            return Ok(self.traffic);
        }
        let mut whole = Part::default();
        for part in std::mem::take(&mut self.earlier) {
            whole.merge(part);
        }
        let own_uploaded = own.uploaded;
        whole.merge(own);
        whole.normalize();
        let manifest = &mut whole.contents.manifest;
        manifest.format_version = crate::job::manifest::FORMAT_VERSION;
        manifest.operator_version = env!("CARGO_PKG_VERSION").to_owned();
        let sealed = self.put_own(CONTENTS_FILE, &to_json(&whole.contents)).await?;
        let index = Index {
            format: INDEX_FORMAT.to_owned(),
            format_version: INDEX_FORMAT_VERSION,
            operator_version: env!("CARGO_PKG_VERSION").to_owned(),
            namespace: whole.contents.manifest.namespace.clone(),
            backup_name: whole.contents.manifest.backup.name.clone(),
            backup_uid: self.backup_uid.clone(),
            committed_at: now(),
            key_id: self.sealer.as_ref().map(|sealer| sealer.wrapped_key().key_id.to_string()),
            contents: StoredObject {
                key: self.place.in_folder(CONTENTS_FILE),
                size: sealed.stored.size,
                sha256: sealed.stored.sha256,
            },
            objects: whole.objects,
        };
        let key = self.place.key(&self.place.in_folder(INDEX_FILE));
        let metadata = crate::s3::ObjectMetadata {
            content_type: Some("application/json".into()),
            ..crate::s3::ObjectMetadata::default()
        };
        let bytes = to_json(&index);
        self.traffic.uploaded += bytes.len() as u64;
        self.place.store.upload(&key, &bytes[..], &metadata).await?;
        self.traffic.backup_uploaded = Some(whole.uploaded + self.traffic.uploaded - own_uploaded);
        Ok(self.traffic)
    }
}

impl ObjectSink for BucketBackup {
    async fn put(&mut self, relative: &str, bytes: Vec<u8>, manifest: &mut Manifest) -> Result<(), JobError> {
        let stored = self.put_own(relative, &bytes).await?;
        let plaintext = stored.plaintext;
        manifest.add_files([FileEntry { path: relative.to_owned(), size: plaintext.size, sha256: plaintext.sha256 }]);
        let key = self.place.in_folder(relative);
        self.part.objects.push(StoredObject { key, size: stored.stored.size, sha256: stored.stored.sha256 });
        Ok(())
    }
}

/// A part's object name for `step`.
fn part_name(step: &str) -> String {
    format!("{step}.sealed")
}

/// Compact JSON of a format type (serializing these never fails: string keys, no maps of other
/// keys); every file listed in it costs bytes in each backup, deduplicated or not.
fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// The plaintext of the backup object `path` (in the backup's folder) whose stored bytes are `raw`.
pub(super) async fn open_bytes(
    bucket: &Place,
    backup_uid: &str,
    path: &str,
    raw: &[u8],
) -> Result<Vec<u8>, DestinationError> {
    let Some(ring) = &bucket.ring else { return Ok(raw.to_vec()) };
    let mut plain = Vec::new();
    let context = Context::BackupObject { backup_uid, path };
    crate::seal::open(ring, context, &mut &raw[..], &mut plain)
        .await
        .map_err(bucket.seal_error(&bucket.in_folder(path)))?;
    Ok(plain)
}

/// The sealed manifest of the committed backup `index`, stored at `relative`: checked against the
/// index's digest of it, opened and parsed.
pub(super) async fn sealed_contents(
    place: &Place,
    index: &Index,
    relative: &str,
) -> Result<Contents, DestinationError> {
    let raw = place.raw(relative).await?;
    let sha256 = crate::job::manifest::hex(&Sha256::digest(&raw));
    if raw.len() as u64 != index.contents.size || sha256 != index.contents.sha256 {
        return Err(DestinationError::Corrupt {
            object: place.location(relative),
            reason: "its bytes differ from the digest manifest.json lists".into(),
        });
    }
    let plain = open_bytes(place, &index.backup_uid, CONTENTS_FILE, &raw).await?;
    parse(place, relative, &plain)
}

/// `bytes` of object `relative` as `T`.
pub(super) fn parse<T: serde::de::DeserializeOwned>(
    bucket: &Place,
    relative: &str,
    bytes: &[u8],
) -> Result<T, DestinationError> {
    serde_json::from_slice(bytes).map_err(|error| DestinationError::Corrupt {
        object: bucket.location(relative),
        reason: format!("does not parse ({:?} error at line {})", error.classify(), error.line()),
    })
}

/// What a listed tree entry is.
enum Kind {
    Folder,
    File { id: (u64, u64), links: u64, identity: FileIdentity },
    Link(String),
    Absent(String),
}

/// What a backup step does with an entry of the tree.
enum Step {
    /// Lists the folder.
    Folder,
    /// Lists the symbolic link to this target.
    Link(String),
    /// Lists the entry as absent, for this reason.
    Absent(String),
    /// Lists the file as a hard link to the file of this path, stored before.
    HardLink(String),
    /// Stores the file's content: unread when `unchanged` since the previous backup.
    Store { listed: Listed, identity: FileIdentity, unchanged: Option<Stored> },
}

/// One entry of the tree being backed up.
struct Item {
    relative: Vec<u8>,
    path: String,
    mode: u32,
    modified: (i64, u32),
    accessed: (i64, u32),
    kind: Kind,
}

/// Every entry of the tree at `source` (the root folder first, as `prefix`), in walk order.
fn list_tree(source: &Path, prefix: &str) -> Result<Vec<Item>, JobError> {
    let named = |relative: &[u8]| {
        let mut joined = prefix.as_bytes().to_vec();
        if !relative.is_empty() {
            joined.push(b'/');
            joined.extend_from_slice(relative);
        }
        encode_path(&joined)
    };
    let item = |relative: &[u8], stat: &rustix::fs::Stat, kind| Item {
        relative: relative.to_vec(),
        path: named(relative),
        mode: stat.st_mode & 0o7777,
        modified: (stat.st_mtime, u32::try_from(stat.st_mtime_nsec).unwrap_or(0)),
        accessed: (stat.st_atime, u32::try_from(stat.st_atime_nsec).unwrap_or(0)),
        kind,
    };
    let mut items = Vec::new();
    let root = walk(source, &mut |visit| {
        match visit {
            Visit::Enter(entry) if entry.relative == LOST_AND_FOUND.as_bytes() => {
                let reason = "filesystem housekeeping folder, not 3scale data".to_owned();
                items.push(item(entry.relative, entry.stat, Kind::Absent(reason)));
                return Ok(Next::SkipDirectory);
            }
            Visit::Enter(entry) => items.push(item(entry.relative, entry.stat, Kind::Folder)),
            Visit::Leave(_) => {}
            Visit::Other(entry) => {
                let kind = match FileType::from_raw_mode(entry.stat.st_mode) {
                    FileType::RegularFile => Kind::File {
                        id: (entry.stat.st_dev, entry.stat.st_ino),
                        links: entry.stat.st_nlink,
                        identity: identity(entry.stat),
                    },
                    FileType::Symlink => {
                        let target = rustix::fs::readlinkat(entry.dir, entry.name, Vec::new())
                            .map_err(JobError::errno("reading the link", entry.path))?;
                        Kind::Link(encode_path(target.as_bytes()))
                    }
                    _ => Kind::Absent("not copied: only files, folders and links are".to_owned()),
                };
                items.push(item(entry.relative, entry.stat, kind));
            }
        }
        Ok(Next::Continue)
    })?;
    items.insert(0, item(b"", &root, Kind::Folder));
    Ok(items)
}

/// The identity of the file `stat` describes.
fn identity(stat: &rustix::fs::Stat) -> FileIdentity {
    FileIdentity {
        size: u64::try_from(stat.st_size).unwrap_or(0),
        changed: (stat.st_ctime, u32::try_from(stat.st_ctime_nsec).unwrap_or(0)),
        inode: stat.st_ino,
        device: stat.st_dev,
    }
}
