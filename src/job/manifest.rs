//! `manifest.json`: every file of the backup with size and sha256, what is absent and why, the
//! source APIManager, the step times and the operator version. Each Job step adds to it.

use super::JobError;
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
    /// Path relative to the backup root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// A symbolic link of the backup, copied as a link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// Path relative to the backup root, `/`-separated.
    pub path: String,
    /// Where the link points, as stored in the link.
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
    /// What is not in the backup, sorted by path.
    pub absent: Vec<AbsentEntry>,
}

impl Manifest {
    /// Reads the manifest under `root`, or an empty one if no step wrote it yet.
    pub fn load(root: &Path) -> Result<Self, JobError> {
        let path = root.join(crate::layout::MANIFEST_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| JobError::Corrupt { path: path.clone(), reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(JobError::Io { what: "reading".into(), path, source }),
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
    pub fn replace_under(
        &mut self,
        prefix: &str,
        files: Vec<FileEntry>,
        links: Vec<LinkEntry>,
        absent: Vec<(String, String)>,
    ) {
        let under = format!("{prefix}/");
        self.files.retain(|f| !f.path.starts_with(&under));
        self.links.retain(|l| !l.path.starts_with(&under));
        self.absent.retain(|a| !a.path.starts_with(&under));
        self.files.extend(files);
        self.links.extend(links);
        self.absent.extend(absent.into_iter().map(|(path, reason)| AbsentEntry { path, reason }));
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

/// Lowercase hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time in RFC 3339.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}
