//! `decrypt`: opening sealed objects with the binary and the key alone, for the day the operator
//! is gone. A single object, or every file of a downloaded folder into the same paths under the
//! output folder. The plaintext of an object is written to `<name>.partial` (mode 0600) and
//! renamed into place only once the whole object is authenticated; nothing is overwritten.

use super::context::Context;
use super::keys::KeyRing;
use super::naming::ContentName;
use super::stream::open;
use super::{SealError, quoted};
use crate::plural::counted;
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What the input objects are bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Objects {
    /// Objects of one backup; a single object needs its path under the backup's folder (in a
    /// folder, each file's path under it is its path).
    Backup {
        /// `metadata.uid` of the APIManagerBackup.
        backup_uid: String,
        /// The single object's path.
        path: Option<String>,
    },
    /// Content objects, each named by its content name (its file name).
    Content,
}

/// Why an object, or the whole input, could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The object does not open.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The output exists already.
    #[error("{} exists already; not overwritten", .0.display())]
    Exists(PathBuf),
    /// A file operation failed.
    #[error("{source} while {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A single object of a backup without `--path`.
    #[error("a single object of a backup needs --path, its path under the backup's folder")]
    NoPath,
    /// `--path` given for a folder.
    #[error("--path is for a single object; {} is a folder", .0.display())]
    PathForFolder(PathBuf),
    /// Neither a regular file nor a folder (a link, a device).
    #[error("not a regular file; skipped")]
    NotAFile,
    /// A file name that is not UTF-8 (no object store writes one).
    #[error("the name {0:?} is not UTF-8; skipped")]
    NotUtf8(String),
}

/// What `decrypt` did.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects decrypted.
    pub decrypted: u64,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// Objects that were not, by path relative to the input (`.` for a single object).
    pub failures: Vec<(String, DecryptError)>,
}

impl fmt::Display for Report {
    /// One line per failed object, then a count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (object, error) in &self.failures {
            writeln!(f, "{object}: {error}")?;
        }
        let total = self.decrypted + self.failures.len() as u64;
        let objects = if self.failures.is_empty() {
            counted(total, "object", "objects")
        } else {
            format!("{} of {}", self.decrypted, counted(total, "object", "objects"))
        };
        write!(f, "decrypted: {objects}, {} of plaintext", counted(self.bytes, "byte", "bytes"))
    }
}

/// Decrypts `input` (a sealed object, or a folder of them) into `output` (a file, or a folder).
pub async fn decrypt(ring: &KeyRing, objects: &Objects, input: &Path, output: &Path) -> Result<Report, DecryptError> {
    let metadata = std::fs::metadata(input).map_err(|source| io("reading", input, source))?;
    let mut report = Report::default();
    if metadata.is_dir() {
        if let Objects::Backup { path: Some(_), .. } = objects {
            return Err(DecryptError::PathForFolder(input.to_owned()));
        }
        let mut files = Vec::new();
        list(input, "", &mut files)?;
        for (relative, kind) in files {
            let outcome = match kind {
                Ok(()) => {
                    decrypt_object(ring, objects, &relative, &input.join(&relative), &output.join(&relative)).await
                }
                Err(error) => Err(error),
            };
            report.add(relative, outcome);
        }
    } else {
        let path = match objects {
            Objects::Backup { path: Some(path), .. } => path.clone(),
            Objects::Backup { path: None, .. } => return Err(DecryptError::NoPath),
            Objects::Content => input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        report.add(".".to_owned(), decrypt_object(ring, objects, &path, input, output).await);
    }
    Ok(report)
}

impl Report {
    fn add(&mut self, object: String, outcome: Result<u64, DecryptError>) {
        match outcome {
            Ok(bytes) => {
                self.decrypted += 1;
                self.bytes += bytes;
            }
            Err(error) => self.failures.push((object, error)),
        }
    }
}

/// Every entry under `folder`, by `/`-separated path under the root, sorted; a regular file is
/// `Ok`, anything else but a folder the reason it is skipped.
fn list(folder: &Path, prefix: &str, files: &mut Vec<(String, Result<(), DecryptError>)>) -> Result<(), DecryptError> {
    let entries = std::fs::read_dir(folder).map_err(|source| io("listing", folder, source))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| io("listing", folder, source))?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let Some(text) = name.to_str() else {
            let shown = name.to_string_lossy();
            files.push((format!("{prefix}{shown}"), Err(DecryptError::NotUtf8(quoted(&shown)))));
            continue;
        };
        let relative = format!("{prefix}{text}");
        let path = folder.join(&name);
        let kind = std::fs::symlink_metadata(&path).map_err(|source| io("reading", &path, source))?.file_type();
        if kind.is_dir() {
            list(&path, &format!("{relative}/"), files)?;
        } else if kind.is_file() {
            files.push((relative, Ok(())));
        } else {
            files.push((relative, Err(DecryptError::NotAFile)));
        }
    }
    Ok(())
}

/// Opens the object at `input`, whose path (or content name) is `name`, into `output`; the
/// plaintext's size.
async fn decrypt_object(
    ring: &KeyRing,
    objects: &Objects,
    name: &str,
    input: &Path,
    output: &Path,
) -> Result<u64, DecryptError> {
    let content_name;
    let context = match objects {
        Objects::Backup { backup_uid, .. } => Context::BackupObject { backup_uid, path: name },
        Objects::Content => {
            content_name = ContentName::parse(name.rsplit('/').next().unwrap_or(name))?;
            Context::Content(&content_name)
        }
    };
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(DecryptError::Exists(output.to_owned()));
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| io("creating", parent, source))?;
    }
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut source = tokio::fs::File::open(input).await.map_err(|source| io("reading", input, source))?;
    if let Err(error) = std::fs::remove_file(&partial)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        return Err(io("removing", &partial, error));
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|source| io("creating", &partial, source))?;
    let mut sink = tokio::fs::File::from_std(file);
    let opened = match open(ring, context, &mut source, &mut sink).await {
        Ok(opened) => opened,
        Err(error) => {
            drop(sink);
            std::fs::remove_file(&partial).map_err(|source| io("removing", &partial, source))?;
            return Err(error.into());
        }
    };
    sink.sync_all().await.map_err(|source| io("writing", &partial, source))?;
    std::fs::rename(&partial, output).map_err(|source| io("renaming", &partial, source))?;
    Ok(opened.plaintext.size)
}

/// A failed file operation.
fn io(what: &'static str, path: &Path, source: std::io::Error) -> DecryptError {
    DecryptError::Io { what, path: path.to_owned(), source }
}
