//! `manifest.json`: every file of the backup with size and sha256, what is absent and why, the
//! source APIManager, the step times and the operator version. Each job step adds to it.

use super::JobError;
use crate::api::referenced_secrets::SecretReference;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Format version of `manifest.json`.
pub const FORMAT_VERSION: u32 = 1;

/// A name and uid of a Kubernetes object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

/// One file of the backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup root, `/`-separated, in the form of [`encode_path`].
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// A symbolic link of the backup, copied as a link; or a hard link to a file listed in `files`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// Path relative to the backup root, `/`-separated, in the form of [`encode_path`].
    pub path: String,
    /// A symbolic link: where it points, as stored in the link. A hard link: the path of the
    /// file it shares its content with. Both in the form of [`encode_path`].
    pub target: String,
}

/// Something the backup deliberately does not contain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsentEntry {
    /// Where it would have been written.
    pub path: String,
    /// Why it is absent.
    pub reason: String,
}

/// What a copied tree holds, as the manifest records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeEntries {
    /// Regular files (the first name of each).
    pub files: Vec<FileEntry>,
    /// Symbolic links.
    pub links: Vec<LinkEntry>,
    /// Further names of hard-linked files.
    pub hard_links: Vec<LinkEntry>,
    /// What was passed over, and why.
    pub absent: Vec<AbsentEntry>,
}

/// A Secret the APIManager references (beyond the 13 of the 3scale reference, or among them),
/// exported with them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferencedSecretEntry {
    /// The Secret's name.
    pub name: String,
    /// Its file, relative to the backup root (listed under `files` too).
    pub path: String,
    /// The fields of the backed-up APIManager naming it, each with its role.
    pub references: Vec<SecretReference>,
}

/// Whether a backup finished. The backup's first step marks it in progress before writing anything
/// else; its last step marks it complete in the same atomic write of `manifest.json` that records
/// the last files, so a backup that failed or was interrupted at any point reads as unfinished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BackupState {
    /// A step is writing the backup, or one failed or was interrupted: not restorable.
    InProgress,
    /// Every step finished. Manifests written before the state existed read as complete.
    #[default]
    Complete,
}

/// Start and end of one step (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepTimes {
    /// When the step started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
}

/// The whole manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Whether the backup finished.
    #[serde(default)]
    pub state: BackupState,
    /// Version of the operator that wrote the last step.
    pub operator_version: String,
    /// Namespace of the backed-up installation.
    pub namespace: String,
    /// The source APIManager.
    pub api_manager: ObjectRef,
    /// The APIManagerBackup.
    pub backup: ObjectRef,
    /// Times of each step, by step name.
    pub steps: BTreeMap<String, StepTimes>,
    /// Every file, sorted by path.
    pub files: Vec<FileEntry>,
    /// Every symbolic link, sorted by path.
    #[serde(default)]
    pub links: Vec<LinkEntry>,
    /// Every further name of a file with several hard links (the first name is under `files`),
    /// sorted by path.
    #[serde(default)]
    pub hard_links: Vec<LinkEntry>,
    /// What is not in the backup, sorted by path.
    pub absent: Vec<AbsentEntry>,
    /// The objects of an S3 System FileStorage bucket, when the backup copied one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_file_storage_s3: Option<super::s3_section::S3Section>,
    /// The Secrets the APIManager references, sorted by name; a restore creates them before the
    /// APIManager. Manifests written before this list existed have none.
    #[serde(default)]
    pub referenced_secrets: Vec<ReferencedSecretEntry>,
}

impl Manifest {
    /// Reads the manifest under `root`, or an empty one if no step wrote it yet.
    pub fn load(root: &Path) -> Result<Self, JobError> {
        Ok(Self::read(root)?.unwrap_or_default())
    }

    /// Reads the manifest under `root`; `None` when there is none (a backup made by
    /// 3scale-operator, or one no step has written to yet).
    pub fn read(root: &Path) -> Result<Option<Self>, JobError> {
        let path = root.join(crate::layout::MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| JobError::Corrupt { path: path.clone(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JobError::Io { what: "reading".into(), path, source }),
        }
    }

    /// Marks the backup in progress and writes the manifest so, before a step writes anything else.
    pub fn begin(&mut self, root: &Path) -> Result<(), JobError> {
        self.state = BackupState::InProgress;
        self.save(root)
    }

    /// Records that `step` ran from `started_at` until now; the backup's `last` step marks it
    /// complete (both written by the next [`Manifest::save`]).
    pub fn finish_step(&mut self, step: &str, started_at: String, last: bool) {
        self.steps.insert(step.to_owned(), StepTimes { started_at, finished_at: now() });
        if last {
            self.state = BackupState::Complete;
        }
    }

    /// Records files, replacing earlier entries (present or absent) for the same paths.
    pub fn add_files(&mut self, entries: impl IntoIterator<Item = FileEntry>) {
        let entries: Vec<FileEntry> = entries.into_iter().collect();
        let paths: std::collections::HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        self.files.retain(|f| !paths.contains(f.path.as_str()));
        self.absent.retain(|a| !paths.contains(a.path.as_str()));
        self.files.extend(entries);
    }

    /// Replaces everything recorded under folder `prefix` with what a new copy of it holds.
    pub fn replace_under(&mut self, prefix: &str, tree: TreeEntries) {
        let under = format!("{prefix}/");
        self.files.retain(|f| !f.path.starts_with(&under));
        self.links.retain(|l| !l.path.starts_with(&under));
        self.hard_links.retain(|l| !l.path.starts_with(&under));
        self.absent.retain(|a| !a.path.starts_with(&under));
        self.files.extend(tree.files);
        self.links.extend(tree.links);
        self.hard_links.extend(tree.hard_links);
        self.absent.extend(tree.absent);
    }

    /// Records an absent item.
    pub fn add_absent(&mut self, path: String, reason: String) {
        self.files.retain(|f| f.path != path);
        self.absent.retain(|a| a.path != path);
        self.absent.push(AbsentEntry { path, reason });
    }

    /// Writes the manifest under `root` atomically (temporary file, fsync, rename).
    pub fn save(&mut self, root: &Path) -> Result<(), JobError> {
        self.format_version = FORMAT_VERSION;
        self.operator_version = env!("CARGO_PKG_VERSION").to_owned();
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.absent.sort_by(|a, b| a.path.cmp(&b.path));
        self.links.sort_by(|a, b| a.path.cmp(&b.path));
        self.hard_links.sort_by(|a, b| a.path.cmp(&b.path));
        self.referenced_secrets.sort_by(|a, b| a.name.cmp(&b.name));
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| JobError::Corrupt { path: root.join(crate::layout::MANIFEST_FILE), reason: e.to_string() })?;
        super::write_atomically(&root.join(crate::layout::MANIFEST_FILE), &bytes, 0o644)
    }
}

/// Size and SHA-256 of the file at `path`, recorded under `relative`.
pub fn hash_file(path: &Path, relative: &str) -> Result<FileEntry, JobError> {
    let mut file = std::fs::File::open(path).map_err(|source| JobError::Io {
        what: "reading".into(),
        path: path.to_owned(),
        source,
    })?;
    let (size, sha256) = hash_stream(&mut file, path, |_| Ok(()))?;
    Ok(FileEntry { path: relative.to_owned(), size, sha256 })
}

/// Reads `input` (the file at `path`) to its end, handing each chunk to `sink`; returns the size
/// and the lowercase hex SHA-256 of what was read.
pub fn hash_stream(
    input: &mut impl Read,
    path: &Path,
    mut sink: impl FnMut(&[u8]) -> Result<(), JobError>,
) -> Result<(u64, String), JobError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = input.read(&mut buffer).map_err(|source| JobError::Io {
            what: "reading".into(),
            path: path.to_owned(),
            source,
        })?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        sink(&buffer[..read])?;
        size += read as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// A path (or link target) as `manifest.json` records it, without loss: valid UTF-8 stays as it
/// is except that a backslash is doubled (`\\`); each byte that is not part of valid UTF-8 is
/// written `\xNN` (two lowercase hex digits). So the usual names appear unchanged and two
/// different byte strings never share a form. [`decode_path`] reverses it.
pub fn encode_path(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            if character == '\\' {
                encoded.push_str("\\\\");
            } else {
                encoded.push(character);
            }
        }
        for byte in chunk.invalid() {
            encoded.push_str(&format!("\\x{byte:02x}"));
        }
    }
    encoded
}

/// A manifest path that [`encode_path`] did not write.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an encoded path: a backslash must be followed by a backslash or xNN")]
pub struct PathEncodingError(pub String);

/// The bytes of a path written by [`encode_path`].
pub fn decode_path(encoded: &str) -> Result<Vec<u8>, PathEncodingError> {
    let invalid = || PathEncodingError(encoded.to_owned());
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first != b'\\' {
            bytes.push(first);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', after @ ..] => {
                bytes.push(b'\\');
                rest = after;
            }
            [b'x', high, low, after @ ..] => {
                let (high, low) = (hex_digit(*high).ok_or_else(invalid)?, hex_digit(*low).ok_or_else(invalid)?);
                bytes.push(high << 4 | low);
                rest = after;
            }
            _ => return Err(invalid()),
        }
    }
    Ok(bytes)
}

/// The value of a lowercase hexadecimal digit.
fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Lowercase hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time in RFC 3339.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_written_before_the_state_and_referenced_secrets_reads_as_complete_with_none() {
        let older = r#"{"formatVersion": 1, "operatorVersion": "0.1.0", "namespace": "3scale",
            "apiManager": {"name": "example", "uid": "u"}, "backup": {"name": "b", "uid": "v"}, "steps": {},
            "files": [], "absent": []}"#;
        let manifest: Manifest = serde_json::from_str(older).expect("an older manifest reads");
        assert_eq!(manifest.state, BackupState::Complete);
        assert!(manifest.referenced_secrets.is_empty());
    }

    #[test]
    fn only_the_last_step_completes_the_backup_and_the_state_is_written() {
        let root = crate::job::scratch("manifest-state");
        let mut manifest = Manifest::default();
        manifest.begin(&root).expect("begin");
        let written = |root: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).expect("manifest")).expect("json")
        };
        assert_eq!(written(&root)["state"], "inProgress", "written before anything else");
        manifest.finish_step("export-objects", now(), false);
        manifest.save(&root).expect("save");
        assert_eq!(Manifest::load(&root).expect("load").state, BackupState::InProgress);
        manifest.finish_step("copy-files", now(), true);
        manifest.save(&root).expect("save");
        assert_eq!(written(&root)["state"], "complete");
        assert_eq!(Manifest::load(&root).expect("load").steps.len(), 2);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn paths_are_encoded_without_loss_and_usual_names_unchanged() {
        let cases: [(&[u8], &str); 5] = [
            (b"uploads/logo.png", "uploads/logo.png"),
            ("caf\u{e9}/\u{1f600}.txt".as_bytes(), "caf\u{e9}/\u{1f600}.txt"),
            (b"a\\xff", "a\\\\xff"),
            (b"bad\xff\xfename", "bad\\xff\\xfename"),
            (b"half\xc3", "half\\xc3"),
        ];
        for (bytes, encoded) in cases {
            assert_eq!(encode_path(bytes), encoded);
            assert_eq!(decode_path(encoded).expect("decodes"), bytes);
        }
        assert_ne!(encode_path(b"\xff"), encode_path(b"\xfe"), "two invalid names never share a form");
        for bad in ["trailing\\", "\\xZZ", "\\x+f", "\\xFF", "\\q"] {
            assert_eq!(decode_path(bad), Err(PathEncodingError(bad.to_owned())));
        }
    }
}
