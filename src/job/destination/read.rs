//! Reading a backup in the sealed layout (from a bucket or the claim): only a committed one (its
//! `manifest.json` present), checked without the key (every object the clear index lists is there
//! with its stored size and SHA-256) or, given the key, completely (every object opens for its
//! backup and path or content name, and its plaintext matches the sealed manifest); and its
//! FileStorage files written onto a folder, streamed object by object.

use super::DestinationError;
use super::index::{CONTENTS_FILE, Contents, INDEX_FILE, INDEX_FORMAT, Index, StoredObject};
use super::place::{Place, content_context};
use super::write::{open_bytes, parse, sealed_contents};
use crate::job::CommonArgs;
use crate::job::JobError;
use crate::job::manifest::{FileEntry, TreeEntries, decode_path};
use crate::seal::ContentName;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Problems listed in a failure message, at most.
const LISTED_PROBLEMS: usize = 5;

/// A committed backup in the sealed layout.
#[derive(Debug)]
pub struct Committed {
    /// Where it is.
    pub place: Place,
    /// Its clear index.
    pub index: Index,
}

/// What a check of a sealed backup covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Without the key: the objects' stored bytes.
    Stored {
        /// Objects checked.
        objects: usize,
    },
    /// With the key: every object opened and its plaintext compared.
    Opened {
        /// Files checked.
        files: usize,
        /// Links listed.
        links: usize,
    },
}

impl Committed {
    /// Connects and reads the clear index of the backup `common` names; fails with
    /// [`DestinationError::Incomplete`] when the backup's folder has none.
    pub async fn open(common: &CommonArgs) -> Result<Self, DestinationError> {
        Self::at(Place::connect(common)?).await
    }

    /// Reads the clear index of the backup at `bucket`.
    pub async fn at(bucket: Place) -> Result<Self, DestinationError> {
        bucket.check().await?;
        let relative = bucket.in_folder(INDEX_FILE);
        if bucket.store.size(&bucket.key(&relative)).await?.is_none() {
            return Err(DestinationError::Incomplete { folder: bucket.folder_location() });
        }
        let index: Index = parse(&bucket, &relative, &bucket.raw(&relative).await?)?;
        let corrupt = |reason: String| DestinationError::Corrupt { object: bucket.location(&relative), reason };
        if index.format != INDEX_FORMAT {
            return Err(corrupt(format!("its format is {:?}, not {INDEX_FORMAT:?}", index.format)));
        }
        // A claim's backup is at its root: the index's UID binds its objects.
        if !bucket.folder.is_empty() && !bucket.folder.ends_with(&format!("-{}", index.backup_uid)) {
            return Err(corrupt("it names a backup UID other than its folder's".into()));
        }
        Ok(Self { place: bucket, index })
    }

    /// Fails when the backup is encrypted and no key was given, naming `field`, where the keys
    /// that open it are set.
    pub fn require_key(&self, field: &'static str) -> Result<(), DestinationError> {
        match (&self.index.key_id, &self.place.ring) {
            (Some(key_id), None) => Err(DestinationError::KeyRequired {
                folder: self.place.folder_location(),
                key_id: key_id.clone(),
                field,
            }),
            _ => Ok(()),
        }
    }

    /// The backup's object `path` (in its folder), opened.
    pub async fn object(&self, path: &str) -> Result<Vec<u8>, DestinationError> {
        let relative = self.place.in_folder(path);
        let raw = self.place.raw(&relative).await?;
        open_bytes(&self.place, &self.index.backup_uid, path, &raw).await
    }

    /// The sealed manifest, checked against the clear index's digest of it.
    pub async fn contents(&self) -> Result<Contents, DestinationError> {
        sealed_contents(&self.place, &self.index, &self.place.in_folder(CONTENTS_FILE)).await
    }

    /// Checks the backup: with the key (or when not encrypted) every object's plaintext,
    /// otherwise every object's stored bytes. Fails naming what differs.
    pub async fn verify(&self) -> Result<Coverage, DestinationError> {
        let mut problems = Vec::new();
        let opening = self.place.ring.is_some() || self.index.key_id.is_none();
        let coverage = if opening {
            let contents = self.contents().await?;
            let expected = plaintext_digests(&contents, &self.place);
            for object in &self.index.objects {
                self.check_opened(object, expected.get(object.key.as_str()).copied(), &mut problems).await?;
            }
            Coverage::Opened {
                files: contents.manifest.files.len(),
                links: contents.manifest.links.len() + contents.manifest.hard_links.len(),
            }
        } else {
            for object in std::iter::once(&self.index.contents).chain(&self.index.objects) {
                match self.place.stored_digest(&object.key).await {
                    Ok(stored) if stored.size == object.size && stored.sha256 == object.sha256 => {}
                    Ok(_) => problems.push(format!("{} differs from manifest.json", object.key)),
                    Err(error) if error.is_missing() => problems.push(format!("{} is missing", object.key)),
                    Err(error) => return Err(error),
                }
            }
            Coverage::Stored { objects: self.index.objects.len() + 1 }
        };
        if problems.is_empty() {
            return Ok(coverage);
        }
        let total = problems.len();
        problems.truncate(LISTED_PROBLEMS);
        if total > LISTED_PROBLEMS {
            problems.push(format!("and {} more", total - LISTED_PROBLEMS));
        }
        Err(DestinationError::NotVerified { folder: self.place.folder_location(), problems })
    }

    /// Opens `object` into nothing and compares both digests.
    async fn check_opened(
        &self,
        object: &StoredObject,
        expected: Option<&FileEntry>,
        problems: &mut Vec<String>,
    ) -> Result<(), DestinationError> {
        let Some(expected) = expected else {
            problems.push(format!("{} is not in the sealed manifest", object.key));
            return Ok(());
        };
        let name = object.key.strip_prefix(&format!("{}/", super::place::CONTENT_FOLDER));
        let content = name.and_then(|name| ContentName::parse(name).ok());
        let own = match self.place.folder.as_str() {
            "" => object.key.as_str(),
            folder => object.key.strip_prefix(&format!("{folder}/")).unwrap_or(&object.key),
        };
        let context = content_context(content.as_ref(), &self.index.backup_uid, own);
        match self.place.get(context, &object.key, &mut tokio::io::sink()).await {
            Ok(got) if got.stored.size != object.size || got.stored.sha256 != object.sha256 => {
                problems.push(format!("{} differs from manifest.json", object.key));
            }
            Ok(got) if got.plaintext.size != expected.size || got.plaintext.sha256 != expected.sha256 => {
                problems.push(format!("{} does not hold what the sealed manifest lists", object.key));
            }
            Ok(_) => {}
            Err(error) if error.is_missing() => problems.push(format!("{} is missing", object.key)),
            Err(DestinationError::Seal { source, .. }) => problems.push(format!("{}: {source}", object.key)),
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Writes the files, folders and links the backup holds under folder `prefix` into the
    /// existing empty folder `into`, with their modes and times; returns what was written. Each
    /// file is checked against the sealed manifest as it is written.
    pub async fn restore_tree(&self, contents: &Contents, prefix: &str, into: &Path) -> Result<TreeEntries, JobError> {
        let under = |path: &str| -> Result<Option<PathBuf>, JobError> {
            if path == prefix {
                return Ok(Some(into.to_owned()));
            }
            let Some(rest) = path.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('/')) else {
                return Ok(None);
            };
            let bytes = decode_path(rest)
                .map_err(|error| JobError::Corrupt { path: into.to_owned(), reason: error.to_string() })?;
            check_inside(&bytes, path, into)?;
            Ok(Some(into.join(OsStr::from_bytes(&bytes))))
        };
        let files: BTreeMap<&str, &FileEntry> = contents.manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let links: BTreeMap<&str, &str> =
            contents.manifest.links.iter().map(|l| (l.path.as_str(), l.target.as_str())).collect();
        let mut written = TreeEntries::default();
        for meta in &contents.meta {
            let Some(path) = under(&meta.path)? else { continue };
            if let Some(entry) = files.get(meta.path.as_str()) {
                let Some(content) = &meta.content else { continue };
                self.restore_file(content, entry, &path).await?;
                written.files.push((*entry).clone());
            } else if let Some(target) = links.get(meta.path.as_str()) {
                let target = decode_path(target)
                    .map_err(|error| JobError::Corrupt { path: path.clone(), reason: error.to_string() })?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|error| JobError::io("creating the link", &path, error))?;
                written.links.extend(contents.manifest.links.iter().filter(|l| l.path == meta.path).cloned());
            } else if path != into {
                std::fs::create_dir(&path).map_err(|error| JobError::io("creating", &path, error))?;
            }
        }
        for link in &contents.manifest.hard_links {
            let (Some(path), Some(first)) = (under(&link.path)?, under(&link.target)?) else { continue };
            std::fs::hard_link(&first, &path).map_err(|error| JobError::io("linking", &path, error))?;
            written.hard_links.push(link.clone());
        }
        // Metadata last, deepest first, so writing into a folder never meets its final mode.
        for meta in contents.meta.iter().rev() {
            let Some(path) = under(&meta.path)? else { continue };
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec { tv_sec: meta.accessed.0, tv_nsec: meta.accessed.1 as _ },
                last_modification: rustix::fs::Timespec { tv_sec: meta.modified.0, tv_nsec: meta.modified.1 as _ },
            };
            let is_link = links.contains_key(meta.path.as_str());
            if !is_link {
                rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(meta.mode & 0o7777))
                    .map_err(JobError::errno("setting the mode of", &path))?;
            }
            rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(JobError::errno("setting the times of", &path))?;
        }
        Ok(written)
    }

    /// Writes the backup's plaintext into the existing empty folder `into` in the claim layout
    /// (3scale-operator's, plus its `manifest.json`): every exported object at its path (0600),
    /// the copied FileStorage tree with modes, times and links, an S3 FileStorage's objects at
    /// their paths, and the manifest marked complete, so `verify` checks the result like any
    /// claim's backup. Every object is authenticated and compared as it is written. Returns the
    /// files written.
    pub async fn extract(&self, into: &Path) -> Result<usize, JobError> {
        let mut contents = self.contents().await?;
        let copied: std::collections::BTreeSet<&str> = contents.meta.iter().map(|m| m.path.as_str()).collect();
        for entry in contents.manifest.files.iter().filter(|entry| !copied.contains(entry.path.as_str())) {
            let bytes = self.object(&entry.path).await?;
            let path = into.join(inside(&entry.path, into)?);
            if digest(&bytes) != (entry.size, entry.sha256.clone()) {
                let reason = "it does not hold what the sealed manifest lists".to_owned();
                return Err(DestinationError::Corrupt { object: self.place.location(&entry.path), reason }.into());
            }
            crate::job::write_atomically(&path, &bytes, 0o600)?;
        }
        let tree = crate::layout::FILE_STORAGE_DIR;
        if copied.contains(tree) {
            let folder = into.join(tree);
            std::fs::create_dir(&folder).map_err(|error| JobError::io("creating", &folder, error))?;
            self.restore_tree(&contents, tree, &folder).await?;
        }
        let files: BTreeMap<&str, &FileEntry> = contents.manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
        let objects = format!("{}/", crate::job::filestorage_s3::DIR);
        for meta in contents.meta.iter().filter(|meta| meta.path.starts_with(&objects)) {
            let (Some(content), Some(entry)) = (&meta.content, files.get(meta.path.as_str())) else { continue };
            let path = into.join(inside(&meta.path, into)?);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|error| JobError::io("creating", parent, error))?;
            }
            self.restore_file(content, entry, &path).await?;
        }
        let written = contents.manifest.files.len();
        contents.manifest.state = crate::job::manifest::BackupState::Complete;
        contents.manifest.save(into)?;
        Ok(written)
    }

    /// Writes the plaintext of content object `content` (its key below the prefix) into
    /// `output`, authenticated as it streams; what was written must be discarded if this fails.
    pub async fn content_into<W: tokio::io::AsyncWrite + Unpin + Send>(
        &self,
        content: &str,
        output: &mut W,
    ) -> Result<super::place::Transferred, DestinationError> {
        let name = content.strip_prefix(&format!("{}/", super::place::CONTENT_FOLDER)).unwrap_or(content);
        let content_name = ContentName::parse(name).ok();
        let context = content_context(content_name.as_ref(), &self.index.backup_uid, content);
        self.place.get(context, content, output).await
    }

    /// Writes the content object `content` to a new file at `path` and checks it against `entry`.
    async fn restore_file(&self, content: &str, entry: &FileEntry, path: &Path) -> Result<(), JobError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| JobError::io("writing", path, error))?;
        let mut file = tokio::fs::File::from_std(file);
        let got = self.content_into(content, &mut file).await?;
        file.sync_all().await.map_err(|error| JobError::io("syncing", path, error))?;
        if got.plaintext.size != entry.size || got.plaintext.sha256 != entry.sha256 {
            return Err(JobError::Corrupt {
                path: path.to_owned(),
                reason: format!("{content} does not hold what the sealed manifest lists"),
            });
        }
        Ok(())
    }
}

/// What each object of the backup must open to, by key below the prefix: an exported object its
/// manifest entry, a content object the entry of a file that holds it.
fn plaintext_digests<'a>(contents: &'a Contents, place: &Place) -> BTreeMap<String, &'a FileEntry> {
    let files: BTreeMap<&str, &FileEntry> = contents.manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut expected: BTreeMap<String, &FileEntry> = BTreeMap::new();
    for meta in &contents.meta {
        if let (Some(content), Some(entry)) = (&meta.content, files.get(meta.path.as_str())) {
            expected.insert(content.clone(), entry);
        }
    }
    let copied: std::collections::BTreeSet<&str> = contents.meta.iter().map(|m| m.path.as_str()).collect();
    for entry in &contents.manifest.files {
        if !copied.contains(entry.path.as_str()) {
            expected.insert(place.in_folder(&entry.path), entry);
        }
    }
    expected
}

/// `path` (a manifest's path of a backup object) when it stays inside its folder `into`.
fn inside<'a>(path: &'a str, into: &Path) -> Result<&'a str, JobError> {
    check_inside(path.as_bytes(), path, into)?;
    Ok(path)
}

/// Fails unless `bytes` (the manifest's `path`, decoded) stays inside its folder `into`: no
/// empty, `.` or `..` segment.
fn check_inside(bytes: &[u8], path: &str, into: &Path) -> Result<(), JobError> {
    if bytes.split(|b| *b == b'/').any(|segment| segment.is_empty() || segment == b"." || segment == b"..") {
        return Err(JobError::Corrupt {
            path: into.to_owned(),
            reason: format!("the path {path:?} leaves its folder"),
        });
    }
    Ok(())
}

/// Size and lowercase hex SHA-256 of `bytes`.
fn digest(bytes: &[u8]) -> (u64, String) {
    use sha2::Digest;
    (bytes.len() as u64, crate::job::manifest::hex(&sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_path_leaving_its_folder_is_corrupt_and_names_the_path() {
        let into = Path::new("/backup/staging");
        for bad in ["../etc/passwd", "secrets/../../x", "secrets//x", "./x", "secrets/", ""] {
            let error = inside(bad, into).expect_err(bad);
            assert_eq!(error.to_string(), format!("/backup/staging is unusable: the path {bad:?} leaves its folder"));
        }
        assert_eq!(inside("secrets/system-app.json", into).expect("inside"), "secrets/system-app.json");
        assert!(check_inside(b"uploads/..", "system-filestorage-pvc/uploads/..", into).is_err());
        assert!(check_inside(b"uploads/..logo", "system-filestorage-pvc/uploads/..logo", into).is_ok());
    }
}
