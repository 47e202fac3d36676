//! Files unchanged since the previous backup, found as restic and borg find them: a file whose
//! path, size, modification time (with nanoseconds), change time, inode and device equal what the
//! newest committed backup of the namespace recorded in its sealed manifest keeps that backup's
//! content object, size and plaintext SHA-256, and is not read. Every write, rename, link count or
//! metadata change sets the change time (ctime) to the kernel's clock, and no user can set it
//! back: a file changed in place and given back its size and modification time (`touch -d`) is
//! read again.
//!
//! - What identifies a file ([`FileIdentity`]) is recorded in the sealed manifest only, never in
//!   the clear index.
//! - Content names come from the current naming key: the previous backup's are reused only when
//!   its key is the current one ([`same_names`]), or when neither is encrypted.
//! - A file is recorded only when its change time was [`SETTLED`] before the step started reading
//!   it ([`settled`]): a change within the same tick of a coarse filesystem clock could otherwise
//!   leave the change time as it was.

use super::index::{Contents, FileIdentity, Index};
use crate::job::manifest::FileEntry;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long before a file is read its change time must be for the file to be recorded as
/// reusable (above the timestamp granularity of the filesystems a FileStorage lives on).
pub const SETTLED: Duration = Duration::from_secs(1);

/// What the previous backup stored of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its content object, below the prefix.
    pub content: String,
    /// Its plaintext size.
    pub size: u64,
    /// Its plaintext SHA-256.
    pub sha256: String,
}

/// The files of the previous backup that may be reused, by manifest path.
#[derive(Debug, Default)]
pub struct Previous {
    files: HashMap<String, (FileKey, Stored)>,
}

/// A file's metadata the reuse compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileKey {
    modified: (i64, u32),
    identity: FileIdentity,
}

impl Previous {
    /// The files of the sealed manifest `contents` recorded with their identity and content.
    pub fn of(contents: Contents) -> Self {
        let mut entries: HashMap<String, FileEntry> =
            contents.manifest.files.into_iter().map(|entry| (entry.path.clone(), entry)).collect();
        let mut files = HashMap::new();
        for meta in contents.meta {
            let (Some(identity), Some(content)) = (meta.identity, meta.content) else { continue };
            let Some(entry) = entries.remove(&meta.path) else { continue };
            // A read that saw another size than the listing's is never reused.
            if entry.size != identity.size {
                continue;
            }
            let key = FileKey { modified: meta.modified, identity };
            files.insert(meta.path, (key, Stored { content, size: entry.size, sha256: entry.sha256 }));
        }
        Self { files }
    }

    /// What the previous backup stored of the file `path` when its modification time and
    /// identity are those recorded, taken out (a path is stored once); `None`: it must be read.
    pub fn take_unchanged(&mut self, path: &str, modified: (i64, u32), identity: &FileIdentity) -> Option<Stored> {
        let (key, _) = self.files.get(path)?;
        if *key != (FileKey { modified, identity: *identity }) {
            return None;
        }
        self.files.remove(path).map(|(_, stored)| stored)
    }

    /// How many files may be reused.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file may be reused.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Whether the backup of `index` named its content as a backup by the current key
/// (`current_key`; `None`: not encrypted) names it: the same key, or neither encrypted.
pub fn same_names(index: &Index, current_key: Option<&str>) -> bool {
    index.key_id.as_deref() == current_key
}

/// Whether a file whose change time is `changed` (seconds and nanoseconds since the epoch),
/// read from `read_at` on, may be recorded as reusable: it changed at least [`SETTLED`] before.
pub fn settled(changed: (i64, u32), read_at: SystemTime) -> bool {
    let Ok(seconds) = u64::try_from(changed.0) else { return true };
    let changed = UNIX_EPOCH + Duration::new(seconds, changed.1.min(999_999_999));
    changed.checked_add(SETTLED).is_some_and(|settled| settled < read_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::destination::index::{FileMeta, StoredObject};

    const PATH: &str = "system-filestorage-pvc/uploads/logo.png";
    const MODIFIED: (i64, u32) = (1_700_000_000, 123_456_789);
    const IDENTITY: FileIdentity =
        FileIdentity { size: 5, changed: (1_700_000_100, 987_654_321), inode: 42, device: 2049 };

    /// A sealed manifest listing the file at [`PATH`] with `identity`.
    fn contents(identity: Option<FileIdentity>, size: u64) -> Contents {
        let mut contents = Contents::default();
        contents.manifest.files.push(FileEntry { path: PATH.into(), size, sha256: "ab".repeat(32) });
        contents.meta.push(FileMeta {
            path: PATH.into(),
            mode: 0o644,
            modified: MODIFIED,
            accessed: (0, 0),
            content: Some("_content/c0ffee".into()),
            identity,
        });
        contents
    }

    #[test]
    fn a_file_with_its_recorded_metadata_keeps_its_content_unread() {
        let mut previous = Previous::of(contents(Some(IDENTITY), 5));
        assert_eq!(previous.len(), 1);
        assert_eq!(
            previous.take_unchanged(PATH, MODIFIED, &IDENTITY),
            Some(Stored { content: "_content/c0ffee".into(), size: 5, sha256: "ab".repeat(32) })
        );
        assert_eq!(previous.take_unchanged(PATH, MODIFIED, &IDENTITY), None, "taken once");
        assert!(previous.is_empty());
    }

    #[test]
    fn any_change_of_path_size_times_inode_or_device_reads_the_file_again() {
        let mut previous = Previous::of(contents(Some(IDENTITY), 5));
        let changed = [
            ("size", FileIdentity { size: 6, ..IDENTITY }),
            ("change time", FileIdentity { changed: (IDENTITY.changed.0 + 1, IDENTITY.changed.1), ..IDENTITY }),
            ("change time's nanoseconds", FileIdentity { changed: (IDENTITY.changed.0, 1), ..IDENTITY }),
            ("inode", FileIdentity { inode: 43, ..IDENTITY }),
            ("device", FileIdentity { device: 2050, ..IDENTITY }),
        ];
        for (what, identity) in changed {
            assert_eq!(previous.take_unchanged(PATH, MODIFIED, &identity), None, "{what} changed");
        }
        assert_eq!(previous.take_unchanged(PATH, (MODIFIED.0 + 1, MODIFIED.1), &IDENTITY), None, "modification time");
        assert_eq!(previous.take_unchanged(PATH, (MODIFIED.0, 0), &IDENTITY), None, "its nanoseconds");
        assert_eq!(previous.take_unchanged("system-filestorage-pvc/uploads/other.png", MODIFIED, &IDENTITY), None);
        assert!(previous.take_unchanged(PATH, MODIFIED, &IDENTITY).is_some(), "a file that differs is not taken");
    }

    #[test]
    fn files_recorded_without_identity_or_read_at_another_size_are_read_again() {
        assert!(Previous::of(contents(None, 5)).is_empty(), "an older backup records no identity");
        assert!(Previous::of(contents(Some(IDENTITY), 4)).is_empty(), "the read saw 4 bytes, the listing 5");
    }

    #[test]
    fn only_names_of_the_current_key_are_reused() {
        let index = |key_id: Option<&str>| Index {
            format: crate::job::destination::index::INDEX_FORMAT.into(),
            format_version: 1,
            operator_version: "0".into(),
            namespace: "3scale".into(),
            backup_name: "nightly".into(),
            backup_uid: "u1".into(),
            committed_at: "2026-12-06T00:00:00Z".into(),
            key_id: key_id.map(str::to_owned),
            contents: StoredObject { key: "3scale/nightly-u1/manifest.sealed".into(), size: 1, sha256: "a".into() },
            objects: Vec::new(),
        };
        assert!(same_names(&index(Some("2026-01")), Some("2026-01")));
        assert!(!same_names(&index(Some("2026-01")), Some("2026-06")), "rotated: the new key names anew");
        assert!(same_names(&index(None), None), "neither encrypted: SHA-256 names");
        assert!(!same_names(&index(None), Some("2026-01")));
        assert!(!same_names(&index(Some("2026-01")), None));
    }

    #[test]
    fn a_file_changed_within_the_settling_time_before_its_read_is_not_recorded() {
        let read_at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(settled((1_799_999_998, 999_999_999), read_at));
        assert!(!settled((1_799_999_999, 0), read_at), "exactly SETTLED before");
        assert!(!settled((1_799_999_999, 500_000_000), read_at));
        assert!(!settled((1_800_000_005, 0), read_at), "a change time ahead of the clock");
        assert!(settled((-5, 0), read_at), "before the epoch");
    }
}
