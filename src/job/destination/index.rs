//! The formats of a backup in a bucket (docs/s3.md):
//!
//! - `manifest.json`, the **clear index** ([`Index`]), written last: the commit marker. It holds
//!   what anyone may read: the backup's identity, whether it is encrypted and with which key, and
//!   for every object the backup needs (its own and the content it references) the key, the
//!   stored size and the stored SHA-256. Never paths of files or hashes of plaintext.
//! - `manifest.sealed`, the **sealed manifest** ([`Contents`]): the claim layout's manifest
//!   (paths, sizes, plaintext SHA-256, links, what is absent, step times) plus each file's mode,
//!   times, content object and (for reuse by the next backup) identity.
//! - `parts/<step>.sealed`: what one step wrote ([`Part`]), merged by the committing step.

use crate::job::manifest::Manifest;
use serde::{Deserialize, Serialize};

/// Format version of the clear index.
pub const INDEX_FORMAT_VERSION: u32 = 1;

/// What the clear index says this is.
pub const INDEX_FORMAT: &str = "apimanager-backup-operator/s3";

/// The clear index's name in the backup's folder.
pub const INDEX_FILE: &str = crate::layout::MANIFEST_FILE;

/// The sealed manifest's name in the backup's folder.
pub const CONTENTS_FILE: &str = "manifest.sealed";

/// The folder of the steps' parts in the backup's folder.
pub const PARTS_FOLDER: &str = "parts";

/// An object the backup needs, as the clear index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Its key below the prefix.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// Lowercase hex SHA-256 of the bytes stored.
    pub sha256: String,
}

/// `manifest.json` of a backup in a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// [`INDEX_FORMAT`].
    pub format: String,
    /// [`INDEX_FORMAT_VERSION`].
    pub format_version: u32,
    /// Version of the operator that committed the backup.
    pub operator_version: String,
    /// Namespace of the backed-up installation.
    pub namespace: String,
    /// Name of the APIManagerBackup.
    pub backup_name: String,
    /// UID of the APIManagerBackup (every sealed object of the backup is bound to it).
    pub backup_uid: String,
    /// When the backup was committed (RFC 3339).
    pub committed_at: String,
    /// The id of the key that wrapped the backup's data key; `None`: not encrypted.
    pub key_id: Option<String>,
    /// The sealed manifest.
    pub contents: StoredObject,
    /// Every other object the backup needs, sorted by key.
    pub objects: Vec<StoredObject>,
}

/// A file's metadata beyond the claim manifest's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileMeta {
    /// The path, as in the manifest.
    pub path: String,
    /// Permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    /// Modification time: seconds and nanoseconds since the epoch.
    pub modified: (i64, u32),
    /// Access time.
    pub accessed: (i64, u32),
    /// The object holding its content, below the prefix; `None` for a folder.
    pub content: Option<String>,
    /// What identifies the file's version without reading it, when the next backup may reuse its
    /// content ([`super::unchanged`]); `None` for a folder, a link, a file changed too shortly
    /// before it was read, or a backup made before this was recorded.
    #[serde(default, rename = "stat", skip_serializing_if = "Option::is_none")]
    pub identity: Option<FileIdentity>,
}

/// What identifies a version of a file without reading it, from its listing's `lstat`: listed in
/// the sealed manifest only (the clear index never shows inodes or change times), as `"stat":
/// [size, ctime seconds, ctime nanoseconds, inode, device]` (an entry per file: kept short).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StatFields", into = "StatFields")]
pub struct FileIdentity {
    /// Size in bytes.
    pub size: u64,
    /// Change time (ctime: seconds and nanoseconds since the epoch), set by the kernel on every
    /// change of the content or metadata; no user can set it back.
    pub changed: (i64, u32),
    /// Inode number.
    pub inode: u64,
    /// Device number of its filesystem.
    pub device: u64,
}

/// [`FileIdentity`] as the sealed manifest lists it.
type StatFields = (u64, i64, u32, u64, u64);

impl From<StatFields> for FileIdentity {
    fn from((size, seconds, nanoseconds, inode, device): StatFields) -> Self {
        Self { size, changed: (seconds, nanoseconds), inode, device }
    }
}

impl From<FileIdentity> for StatFields {
    fn from(identity: FileIdentity) -> Self {
        (identity.size, identity.changed.0, identity.changed.1, identity.inode, identity.device)
    }
}

/// `manifest.sealed`: the manifest of the claim layout plus each file's and folder's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contents {
    /// What a backup on a claim lists in `manifest.json`.
    pub manifest: Manifest,
    /// Each copied file's and folder's metadata and content object, sorted by path. Exported
    /// objects are not listed: each is the backup's object of its path.
    pub meta: Vec<FileMeta>,
    /// The group owning the copied FileStorage folder (the installation's FileStorage group,
    /// which a restore gives the files back); `None` in backups without files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_group: Option<u32>,
}

/// What one step wrote: its share of the sealed manifest and the objects it stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Its share of the sealed manifest.
    pub contents: Contents,
    /// The objects it stored or references.
    pub objects: Vec<StoredObject>,
    /// Bytes its step uploaded before writing the part.
    #[serde(default)]
    pub uploaded: u64,
}

impl Part {
    /// Adds `other` (another step's part) to this one.
    pub fn merge(&mut self, other: Part) {
        let (manifest, theirs) = (&mut self.contents.manifest, other.contents.manifest);
        if manifest.namespace.is_empty() {
            manifest.namespace = theirs.namespace;
        }
        if manifest.backup.uid.is_empty() {
            manifest.backup = theirs.backup;
        }
        if manifest.api_manager.uid.is_empty() {
            manifest.api_manager = theirs.api_manager;
        }
        manifest.steps.extend(theirs.steps);
        manifest.add_files(theirs.files);
        manifest.links.extend(theirs.links);
        manifest.hard_links.extend(theirs.hard_links);
        manifest.absent.extend(theirs.absent);
        manifest.referenced_secrets.extend(theirs.referenced_secrets);
        if manifest.system_file_storage_s3.is_none() {
            manifest.system_file_storage_s3 = theirs.system_file_storage_s3;
        }
        self.contents.meta.extend(other.contents.meta);
        self.contents.file_storage_group = self.contents.file_storage_group.or(other.contents.file_storage_group);
        self.objects.extend(other.objects);
        self.uploaded += other.uploaded;
    }

    /// Sorts every list and drops repeated objects (content shared by several files).
    pub fn normalize(&mut self) {
        let manifest = &mut self.contents.manifest;
        manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.links.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.hard_links.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.absent.sort_by(|a, b| a.path.cmp(&b.path));
        manifest.referenced_secrets.sort_by(|a, b| a.name.cmp(&b.name));
        manifest.referenced_secrets.dedup_by(|a, b| a.name == b.name);
        self.contents.meta.sort_by(|a, b| a.path.cmp(&b.path));
        self.objects.sort_by(|a, b| a.key.cmp(&b.key));
        self.objects.dedup_by(|a, b| a.key == b.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::manifest::{FileEntry, ObjectRef, ReferencedSecretEntry};

    #[test]
    fn a_file_identity_is_listed_as_one_short_array() {
        let meta = FileMeta {
            path: "system-filestorage-pvc/a".into(),
            mode: 0o644,
            modified: (1, 2),
            accessed: (3, 4),
            content: Some("_content/c".into()),
            identity: Some(FileIdentity { size: 5, changed: (1_700_000_000, 6), inode: 7, device: 8 }),
        };
        let json = serde_json::to_string(&meta).expect("json");
        assert!(json.ends_with(r#","stat":[5,1700000000,6,7,8]}"#), "{json}");
        assert_eq!(serde_json::from_str::<FileMeta>(&json).expect("parses"), meta);
        let folder = FileMeta { content: None, identity: None, ..meta };
        assert!(!serde_json::to_string(&folder).expect("json").contains("stat"));
    }

    #[test]
    fn parts_merge_into_one_sorted_manifest_with_each_object_once() {
        let object = |key: &str| StoredObject { key: key.into(), size: 1, sha256: "a".into() };
        let file = |path: &str| FileEntry { path: path.into(), size: 1, sha256: "b".into() };
        let mut export = Part::default();
        export.contents.manifest.namespace = "3scale".into();
        export.contents.manifest.backup = ObjectRef { name: "nightly".into(), uid: "u1".into() };
        export.contents.manifest.files = vec![file("secrets/b.json"), file("apimanager.json")];
        export.objects = vec![object("3scale/nightly-u1/secrets/b.json")];
        export.contents.manifest.referenced_secrets = vec![ReferencedSecretEntry {
            name: "registry".into(),
            path: "secrets/registry.json".into(),
            references: Vec::new(),
        }];
        let mut copy = Part::default();
        copy.contents.manifest.files = vec![file("system-filestorage-pvc/x"), file("system-filestorage-pvc/y")];
        copy.objects = vec![object("_content/c"), object("_content/c")];
        let mut merged = Part::default();
        merged.merge(copy);
        merged.merge(export);
        merged.normalize();
        let paths: Vec<&str> = merged.contents.manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["apimanager.json", "secrets/b.json", "system-filestorage-pvc/x", "system-filestorage-pvc/y"]
        );
        let keys: Vec<&str> = merged.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["3scale/nightly-u1/secrets/b.json", "_content/c"]);
        assert_eq!(merged.contents.manifest.namespace, "3scale");
        assert_eq!(merged.contents.manifest.backup.uid, "u1");
        let referenced: Vec<&str> =
            merged.contents.manifest.referenced_secrets.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(referenced, ["registry"], "the export's referenced Secrets survive the merge");
    }
}
