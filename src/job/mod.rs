//! What the backup and restore step Pods run (`apimanager-backup-operator job …`): export the Secrets,
//! ConfigMaps and APIManager, copy the System FileStorage, verify a backup and restore it. A
//! failure is written to the Pod's termination message, which the reconciler puts into the
//! `Failed` condition; a restore step's success carries its [`report::StepReport`] there.

pub mod copy;
pub mod destination;
pub mod export;
pub mod filestorage_s3;
pub mod inspect;
pub mod manifest;
pub mod report;
pub mod restore;
pub mod restore_files;
pub mod s3_section;
pub mod sparse;
pub mod tree;
pub mod verify;

use clap::{Args, Subcommand};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Errors of a backup job step.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A file operation failed. The reason comes first, so a message cut to fit loses only the
    /// end of the path (see [`JobError::termination_message`]).
    #[error("{source} while {what} {path}")]
    Io {
        /// What was being done.
        what: String,
        /// On which file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// An S3 System FileStorage step failed.
    #[error(transparent)]
    FileStorageS3(#[from] filestorage_s3::S3FilesError),
    /// The task reading or storing a file ended without an outcome (it panicked).
    #[error("the task {what} a file ended without an outcome: {path}")]
    TaskEnded {
        /// What the task was doing with the file (`naming`, `uploading`).
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A file or folder was replaced by another while it was copied.
    #[error("replaced by another file while it was copied: {path}")]
    Changed {
        /// The file.
        path: PathBuf,
    },
    /// A file holds something unexpected.
    #[error("{path} is unusable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Kubernetes API could not be reached or refused.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// No usable Kubernetes configuration.
    #[error("no Kubernetes configuration (in-cluster or KUBECONFIG): {0}")]
    Config(String),
    /// Required objects are missing.
    #[error("{0}")]
    Missing(String),
    /// Objects a backup needs do not exist in the installation's namespace.
    #[error(
        "required objects missing in namespace {namespace}: {}; create them or fix the APIManager, then create a new APIManagerBackup",
        .objects.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    MissingObjects {
        /// The namespace.
        namespace: String,
        /// What is missing.
        objects: Vec<export::MissingObject>,
    },
    /// The backup differs from its manifest or holds no backup.
    #[error(
        "the backup does not match {}; nothing was restored: {}",
        crate::layout::MANIFEST_FILE,
        verify::one_line(.0, verify::Reference::Manifest)
    )]
    NotVerified(Vec<verify::Problem>),
    /// The backup never finished: its manifest says it is in progress.
    #[error(
        "the backup did not finish: {} says it is in progress (its APIManagerBackup failed, was interrupted or is still \
running); nothing was restored; restore from a completed backup",
        crate::layout::MANIFEST_FILE
    )]
    Unfinished,
    /// The restore would overwrite something, or did not land as backed up.
    #[error("{0}")]
    Conflict(String),
    /// A file or folder of the System FileStorage this step may not read.
    #[error(
        "cannot read {path}: owned by uid {owner} and gid {group} with mode {mode:04o}, while this step runs as uid {uid} \
with groups {groups}; fix: make it readable by the group owning the System FileStorage claim's root (gid {root_group}): \
chgrp {root_group} and chmod g+r (g+rx for a folder), as System writes its files, or run the operator with \
--file-storage-group={group}"
    )]
    Unreadable {
        /// The file or folder.
        path: PathBuf,
        /// Its owner's user id.
        owner: u32,
        /// Its group id.
        group: u32,
        /// Its permission bits.
        mode: u32,
        /// The user this step runs as.
        uid: u32,
        /// The groups this step runs with, primary first, comma-separated.
        groups: String,
        /// The group owning the claim's root, the one the step was given.
        root_group: u32,
    },
    /// The backup's bucket could not be written or read, or holds no usable backup.
    #[error("{0}")]
    Destination(#[from] destination::DestinationError),
}

/// Kubernetes keeps at most this many bytes of a termination message.
pub const TERMINATION_MESSAGE_MAX_BYTES: usize = 4096;

impl JobError {
    /// A failed file operation: `what` was being done to `path`.
    pub fn io(what: &str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { what: what.to_owned(), path: path.to_owned(), source }
    }

    /// Turns a failed system call on `path` into [`JobError::Io`].
    pub fn errno(what: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> Self {
        let path = path.to_owned();
        move |errno| Self::Io { what: what.to_owned(), path, source: errno.into() }
    }

    /// The message for the Pod's termination log, at most `limit` bytes: the reason first, and
    /// a path too long to fit cut in its middle (marked `…`), never the reason.
    pub fn termination_message(&self, limit: usize) -> String {
        let (head, path) = match self {
            Self::Io { what, path, source } => (format!("{source} while {what} "), path.display().to_string()),
            Self::Changed { path } => {
                ("replaced by another file while it was copied: ".to_owned(), path.display().to_string())
            }
            Self::TaskEnded { what, path } => {
                (format!("the task {what} a file ended without an outcome: "), path.display().to_string())
            }
            other => (other.to_string(), String::new()),
        };
        if head.len() + path.len() <= limit {
            return head + &path;
        }
        const ELLIPSIS: &str = "…";
        let Some(room) = limit.checked_sub(head.len() + ELLIPSIS.len()).filter(|room| *room > 0) else {
            let mut head = head;
            head.truncate(head.floor_char_boundary(limit));
            return head;
        };
        // Keep the start of the path and more of its end (the file's name).
        let start = path.floor_char_boundary(room / 4);
        let end = path.ceil_char_boundary(path.len() - (room - start));
        format!("{head}{}{ELLIPSIS}{}", &path[..start], &path[end..])
    }
}

/// The job steps, each with its typed arguments: the operator builds a step Pod's command line
/// from this type ([`JobCommand::argv`]) and the step parses it back into this type, so the two
/// cannot drift apart.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum JobCommand {
    /// Export the Secrets, ConfigMaps and the APIManager into the backup folder.
    #[command(name = crate::names::EXPORT_OBJECTS)]
    ExportObjects(ExportArgs),
    /// Tell who owns the root of the System FileStorage claim (read-only).
    #[command(name = crate::names::INSPECT_FILES)]
    InspectFiles(InspectArgs),
    /// Copy the System FileStorage tree into the backup folder, with sizes and checksums.
    #[command(name = crate::names::COPY_FILES)]
    CopyFiles(CopyArgs),
    /// Copy the objects of the S3 System FileStorage bucket into the backup folder.
    #[command(name = crate::names::BACKUP_S3_FILES)]
    BackupS3Files(S3FilesArgs),
    /// Check the backup folder against its manifest.json before a restore.
    #[command(name = crate::names::VERIFY)]
    Verify(CommonArgs),
    /// Create the backed-up Secrets and ConfigMaps that do not exist (never the database ones).
    #[command(name = crate::names::RESTORE_OBJECTS)]
    RestoreObjects(RestoreArgs),
    /// Copy the backed-up System FileStorage onto its claim and check it.
    #[command(name = crate::names::RESTORE_FILES)]
    RestoreFiles(RestoreFilesArgs),
    /// Write the backed-up S3 System FileStorage objects into the restored installation's bucket.
    #[command(name = crate::names::RESTORE_S3_FILES)]
    RestoreS3Files(RestoreS3FilesArgs),
    /// Create the backed-up APIManager.
    #[command(name = crate::names::RESTORE_APIMANAGER)]
    RestoreApimanager(RestoreArgs),
}

impl JobCommand {
    /// The step's name: its `job` subcommand, container name and manifest key.
    pub fn name(&self) -> &'static str {
        use crate::names::{
            BACKUP_S3_FILES, COPY_FILES, EXPORT_OBJECTS, INSPECT_FILES, RESTORE_APIMANAGER, RESTORE_FILES,
            RESTORE_OBJECTS, RESTORE_S3_FILES, VERIFY,
        };
        match self {
            Self::InspectFiles(_) => INSPECT_FILES,
            Self::ExportObjects(_) => EXPORT_OBJECTS,
            Self::CopyFiles(_) => COPY_FILES,
            Self::BackupS3Files(_) => BACKUP_S3_FILES,
            Self::RestoreS3Files(_) => RESTORE_S3_FILES,
            Self::Verify(_) => VERIFY,
            Self::RestoreObjects(_) => RESTORE_OBJECTS,
            Self::RestoreFiles(_) => RESTORE_FILES,
            Self::RestoreApimanager(_) => RESTORE_APIMANAGER,
        }
    }

    /// Whether this step is the backup's last (it marks the backup complete and reports what the
    /// backup wrote).
    pub fn is_last_step(&self) -> bool {
        match self {
            Self::ExportObjects(ExportArgs { last_step, .. })
            | Self::CopyFiles(CopyArgs { last_step, .. })
            | Self::BackupS3Files(S3FilesArgs { last_step, .. }) => *last_step,
            _ => false,
        }
    }

    /// Makes this step the backup's last, which marks `manifest.json` complete (a restore step has
    /// no such flag and is left as it is).
    pub fn make_last_step(&mut self) {
        match self {
            Self::ExportObjects(ExportArgs { last_step, .. })
            | Self::CopyFiles(CopyArgs { last_step, .. })
            | Self::BackupS3Files(S3FilesArgs { last_step, .. }) => *last_step = true,
            _ => {}
        }
    }

    /// The arguments running this step: `job <name>`, then `--<flag>=<value>` for every flag of
    /// its arguments, in the order clap declares them.
    pub fn argv(&self) -> Vec<String> {
        let flags = match self {
            Self::InspectFiles(args) => flags(args),
            Self::ExportObjects(args) => flags(args),
            Self::CopyFiles(args) => flags(args),
            Self::BackupS3Files(args) => flags(args),
            Self::RestoreS3Files(args) => flags(args),
            Self::Verify(args) => flags(args),
            Self::RestoreObjects(args) | Self::RestoreApimanager(args) => flags(args),
            Self::RestoreFiles(args) => flags(args),
        };
        ["job", self.name()].into_iter().map(str::to_owned).chain(flags).collect()
    }

    /// The Secret whose keys the step's Pod receives as environment variables
    /// ([`filestorage_s3::secret_env`]), for the steps that use an S3 System FileStorage bucket.
    pub fn secret_env(&self) -> Option<&str> {
        let secret = match self {
            Self::BackupS3Files(args) => &args.secret,
            Self::RestoreS3Files(args) => &args.secret,
            _ => return None,
        };
        Some(secret.as_str()).filter(|name| !name.is_empty())
    }
}

/// `--<flag>=<value>` for every flag clap declares for `A`, its value read from `args`' fields
/// (named as clap names its arguments: by field); an unset optional value is left out.
fn flags<A: Args + Serialize>(args: &A) -> Vec<String> {
    // Every field is text (paths too, see `path_text`), so serializing cannot fail.
    let values = match serde_json::to_value(args) {
        Ok(serde_json::Value::Object(values)) => values,
        _ => serde_json::Map::new(),
    };
    let declared = A::augment_args(clap::Command::new(crate::names::CONTROLLER));
    declared
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            match values.get(arg.get_id().as_str())? {
                serde_json::Value::Null => None,
                serde_json::Value::String(value) => Some(format!("--{long}={value}")),
                value => Some(format!("--{long}={value}")),
            }
        })
        .collect()
}

/// A path as text (a path the operator builds is always UTF-8).
fn path_text<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// Settings shared by every step.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct CommonArgs {
    /// Root of the backup claim.
    #[arg(long, default_value = crate::layout::BACKUP_MOUNT)]
    #[serde(serialize_with = "path_text")]
    pub backup_dir: PathBuf,
    /// Where the failure reason is written for Kubernetes to report.
    #[arg(long, default_value = crate::names::TERMINATION_LOG)]
    #[serde(serialize_with = "path_text")]
    pub termination_log: PathBuf,
    /// The backup's S3 bucket and folder, when it is not on the backup claim.
    #[command(flatten)]
    #[serde(flatten)]
    pub s3: destination::S3Args,
}

impl CommonArgs {
    /// The settings of a step Pod: the backup claim mounted at `backup_dir`, the failure reason
    /// written where Kubernetes reads it ([`crate::names::TERMINATION_LOG`]).
    pub fn at(backup_dir: &str) -> Self {
        Self {
            backup_dir: backup_dir.into(),
            termination_log: crate::names::TERMINATION_LOG.into(),
            s3: destination::S3Args::default(),
        }
    }
}

/// Settings of `job export-objects`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct ExportArgs {
    /// Namespace of the 3scale installation.
    #[arg(long)]
    pub namespace: String,
    /// Name of the APIManager.
    #[arg(long)]
    pub apimanager: String,
    /// Name of the APIManagerBackup (recorded in the manifest).
    #[arg(long)]
    pub backup_name: String,
    /// UID of the APIManagerBackup (recorded in the manifest).
    #[arg(long)]
    pub backup_uid: String,
    /// This step is the backup's last: it marks `manifest.json` complete (`--last-step`, or
    /// `--last-step=true|false`).
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub last_step: bool,
    /// Shared settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Settings of `job inspect-files` (no backup claim).
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct InspectArgs {
    /// Root of the System FileStorage claim (mounted read-only).
    #[arg(long, default_value = crate::layout::FILE_STORAGE_MOUNT)]
    #[serde(serialize_with = "path_text")]
    pub source: PathBuf,
    /// Where the report or the failure reason is written for Kubernetes to report.
    #[arg(long, default_value = crate::names::TERMINATION_LOG)]
    #[serde(serialize_with = "path_text")]
    pub termination_log: PathBuf,
}

/// Settings of `job copy-files`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct CopyArgs {
    /// Root of the System FileStorage claim (mounted read-only).
    #[arg(long, default_value = crate::layout::FILE_STORAGE_MOUNT)]
    #[serde(serialize_with = "path_text")]
    pub source: PathBuf,
    /// This step is the backup's last: it marks `manifest.json` complete (`--last-step`, or
    /// `--last-step=true|false`).
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub last_step: bool,
    /// Shared settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Settings of `job backup-s3-files`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct S3FilesArgs {
    /// Name of the Secret holding the bucket's location and credentials, whose keys the Pod
    /// receives as environment variables (empty when the APIManager names none).
    #[arg(long, default_value = "")]
    pub secret: String,
    /// This step is the backup's last: it marks `manifest.json` complete (`--last-step`, or
    /// `--last-step=true|false`).
    #[arg(long, action = clap::ArgAction::Set, default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub last_step: bool,
    /// Shared settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Settings of `job restore-s3-files`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct RestoreS3FilesArgs {
    /// Name of the restored installation's Secret naming the bucket, as for `backup-s3-files`.
    #[arg(long, default_value = "")]
    pub secret: String,
    /// Write the backed-up objects into a bucket that already holds objects.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub overwrite: bool,
    /// Shared settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Settings of `job restore-objects` and `job restore-apimanager`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct RestoreArgs {
    /// Namespace restored into.
    #[arg(long)]
    pub namespace: String,
    /// Shared settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Settings of `job restore-files`.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize)]
pub struct RestoreFilesArgs {
    /// Root of the System FileStorage claim restored into.
    #[arg(long, default_value = crate::layout::FILE_STORAGE_MOUNT)]
    #[serde(serialize_with = "path_text")]
    pub target: PathBuf,
    /// Group the restored files and folders are given, with group read and write (folders also
    /// setgid), so the System app sharing that group can change them; unset: as copied.
    #[arg(long)]
    pub group: Option<u32>,
    /// Shared settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub common: CommonArgs,
}

/// Runs a step; writes the reason of a failure, or the report of a restore step, to the
/// termination log.
pub async fn run(command: JobCommand) -> Result<(), JobError> {
    let (outcome, termination_log) = match command {
        JobCommand::ExportObjects(args) => {
            let uploaded = export::run(&args).await;
            let written = uploaded.and_then(|uploaded| written(args.last_step, uploaded, &args.common.backup_dir));
            (written, args.common.termination_log)
        }
        JobCommand::InspectFiles(args) => (inspect::run(&args).map(Some), args.termination_log),
        JobCommand::CopyFiles(args) if destination::writes_sealed(&args.common) => {
            let traffic = destination::steps::copy_files(&args).await;
            let written = traffic.and_then(|t| written(args.last_step, t.backup_uploaded, &args.common.backup_dir));
            (written, args.common.termination_log)
        }
        JobCommand::CopyFiles(args) => {
            let written = copy::run(&args).and_then(|()| written(args.last_step, None, &args.common.backup_dir));
            (written, args.common.termination_log)
        }
        JobCommand::BackupS3Files(args) if destination::writes_sealed(&args.common) => {
            let traffic = destination::s3_files::backup(&args).await;
            let written = traffic.and_then(|t| written(args.last_step, t.backup_uploaded, &args.common.backup_dir));
            (written, args.common.termination_log)
        }
        JobCommand::BackupS3Files(args) => {
            let copied = filestorage_s3::backup(&args.secret, args.last_step, &args.common.backup_dir).await;
            let written = copied.and_then(|()| written(args.last_step, None, &args.common.backup_dir));
            (written, args.common.termination_log)
        }
        JobCommand::RestoreS3Files(args) if destination::reads_sealed(&args.common) => {
            (destination::s3_files::restore(&args).await.map(Some), args.common.termination_log)
        }
        JobCommand::RestoreS3Files(args) => {
            let restored = filestorage_s3::restore(&args.secret, args.overwrite, &args.common.backup_dir).await;
            (restored.map(Some), args.common.termination_log)
        }
        JobCommand::Verify(args) if destination::reads_sealed(&args) => {
            (destination::steps::verify(&args).await.map(Some), args.termination_log)
        }
        JobCommand::Verify(args) => (verify_step(&args.backup_dir).map(Some), args.termination_log),
        JobCommand::RestoreObjects(args) => {
            (restore::restore_objects(&args).await.map(Some), args.common.termination_log)
        }
        JobCommand::RestoreFiles(args) if destination::reads_sealed(&args.common) => {
            (destination::steps::restore_files(&args).await.map(Some), args.common.termination_log)
        }
        JobCommand::RestoreFiles(args) => (restore_files::run(&args).map(Some), args.common.termination_log),
        JobCommand::RestoreApimanager(args) => {
            (restore::restore_apimanager(&args).await.map(Some), args.common.termination_log)
        }
    };
    let message = match &outcome {
        Ok(report) => report.as_ref().map(report::StepReport::to_message),
        Err(error) => Some(error.termination_message(TERMINATION_MESSAGE_MAX_BYTES)),
    };
    if let Some(message) = message {
        let _ = std::fs::write(&termination_log, message);
    }
    outcome.map(drop)
}

/// The report of a backup's last step ([`report::StepReport::BackupWritten`]): the bytes a
/// bucket's backup uploaded (`uploaded`), else the sizes of the files the claim's manifest under
/// `backup_dir` lists; `None` for a step that is not the backup's last.
fn written(last_step: bool, uploaded: Option<u64>, backup_dir: &Path) -> Result<Option<report::StepReport>, JobError> {
    if !last_step {
        return Ok(None);
    }
    let bytes = match uploaded {
        Some(bytes) => bytes,
        None => manifest::Manifest::load(backup_dir)?.files.iter().map(|file| file.size).sum(),
    };
    Ok(Some(report::StepReport::BackupWritten { bytes }))
}

/// `job verify`: a backup that differs from its manifest, or whose APIManager cannot be read,
/// fails the step naming the files.
fn verify_step(backup_dir: &Path) -> Result<report::StepReport, JobError> {
    let checked = match verify::verify_backup(backup_dir)? {
        verify::Verification::Verified { files, links } => report::Checked::Verified { files, links },
        verify::Verification::NoManifest => report::Checked::NoManifest,
        verify::Verification::Failed(problems) => return Err(JobError::NotVerified(problems)),
        verify::Verification::Unfinished => return Err(JobError::Unfinished),
    };
    let mut api_manager = restore::backed_up_apimanager(backup_dir)?;
    // Objects to write back only when the backup copied the bucket.
    if manifest::Manifest::read(backup_dir)?.and_then(|m| m.system_file_storage_s3).is_none() {
        api_manager.file_storage_s3_secret = None;
    }
    Ok(report::StepReport::Verify { checked, api_manager })
}

/// Writes `bytes` to `path` with permissions `mode` through a temporary file, an fsync and a
/// rename (then an fsync of the folder), so a reader never sees half a file and a crash never
/// loses a file the manifest lists; creates the parent folders.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), JobError> {
    let io = |what: &str, path: &Path| {
        let what = what.to_owned();
        let path = path.to_owned();
        move |source| JobError::Io { what, path, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let temporary = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&temporary);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .map_err(io("creating", &temporary))?;
        std::io::Write::write_all(&mut file, bytes).map_err(io("writing", &temporary))?;
        file.sync_all().map_err(io("syncing", &temporary))?;
    }
    std::fs::rename(&temporary, path).map_err(io("renaming into", path))?;
    match path.parent() {
        Some(parent) => std::fs::File::open(parent).and_then(|f| f.sync_all()).map_err(io("syncing", parent)),
        None => Ok(()),
    }
}

/// Scratch folders for the unit tests of the steps.
#[cfg(test)]
pub(crate) fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("abo-job-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_too_long_keeps_the_reason_and_cuts_the_middle_of_the_path() {
        let deep: PathBuf = std::iter::repeat_n("folder-ééé", 600).collect::<PathBuf>().join("the-file.bin");
        let error = JobError::io("reading", &deep, std::io::Error::from_raw_os_error(13));
        let message = error.termination_message(TERMINATION_MESSAGE_MAX_BYTES);
        assert!(message.len() <= TERMINATION_MESSAGE_MAX_BYTES, "{} bytes", message.len());
        assert!(message.starts_with("Permission denied (os error 13) while reading folder-ééé/"), "{message}");
        assert!(message.ends_with("/folder-ééé/the-file.bin"), "{message}");
        assert!(message.contains('…'));

        let short = JobError::io("reading", Path::new("/data/x"), std::io::Error::from_raw_os_error(2));
        assert_eq!(short.termination_message(4096), "No such file or directory (os error 2) while reading /data/x");
        let missing = JobError::Missing("m".repeat(5000));
        assert_eq!(missing.termination_message(4096), "m".repeat(4096));
        let ended = JobError::TaskEnded { what: "uploading", path: deep.clone() };
        let message = ended.termination_message(TERMINATION_MESSAGE_MAX_BYTES);
        assert!(message.starts_with("the task uploading a file ended without an outcome: folder-ééé/"), "{message}");
        assert!(message.ends_with("/the-file.bin") && message.len() <= TERMINATION_MESSAGE_MAX_BYTES);
    }

    /// Each step's arguments, none at its default, render to a command line that parses back into
    /// the same arguments: every flag clap declares is rendered.
    #[test]
    fn arguments_render_to_a_command_line_that_parses_back() {
        #[derive(clap::Parser)]
        struct Step {
            #[command(subcommand)]
            command: JobCommand,
        }
        let s3 = destination::S3Args {
            s3_bucket: Some("backups".into()),
            s3_prefix: Some("prod/3scale".into()),
            s3_backup: Some("3scale/nightly-u".into()),
            s3_backup_uid: Some("u".into()),
            s3_region: Some("eu-west-1".into()),
            s3_endpoint: Some("https://s3.example.com:9000".into()),
            s3_force_path_style: Some(true),
            s3_allow_http: Some(false),
            s3_credentials: Some("/var/run/s3".into()),
            s3_ca_bundle: Some("/var/run/s3-ca/ca.crt".into()),
            encryption_keys: Some("/var/run/keys".into()),
        };
        let common = CommonArgs { backup_dir: "/b".into(), termination_log: "/t/log".into(), s3 };
        let restore = RestoreArgs { namespace: "n".into(), common: common.clone() };
        let commands = [
            JobCommand::ExportObjects(ExportArgs {
                namespace: "n".into(),
                apimanager: "a b".into(),
                backup_name: "b".into(),
                backup_uid: "u".into(),
                last_step: true,
                common: common.clone(),
            }),
            JobCommand::CopyFiles(CopyArgs { source: "/s".into(), last_step: true, common: common.clone() }),
            JobCommand::BackupS3Files(S3FilesArgs { secret: "fs s3".into(), last_step: true, common: common.clone() }),
            JobCommand::RestoreS3Files(RestoreS3FilesArgs {
                secret: "fs".into(),
                overwrite: true,
                common: common.clone(),
            }),
            JobCommand::Verify(common.clone()),
            JobCommand::RestoreObjects(restore.clone()),
            JobCommand::InspectFiles(InspectArgs { source: "/s".into(), termination_log: "/t/log".into() }),
            JobCommand::RestoreFiles(RestoreFilesArgs { target: "/t".into(), group: Some(0), common: common.clone() }),
            JobCommand::RestoreFiles(RestoreFilesArgs { target: "/t".into(), group: None, common }),
            JobCommand::RestoreApimanager(restore),
        ];
        for command in commands {
            let argv = command.argv();
            assert_eq!(argv[..2], ["job".to_owned(), command.name().to_owned()]);
            assert!(argv.iter().any(|arg| arg == "--termination-log=/t/log"), "{argv:?}");
            let parsed = <Step as clap::Parser>::try_parse_from(
                std::iter::once("step").chain(argv.iter().skip(1).map(String::as_str)),
            );
            assert_eq!(parsed.map(|step| step.command).ok(), Some(command), "{argv:?}");
        }
        let on_claim = JobCommand::Verify(CommonArgs::at("/b")).argv();
        assert_eq!(on_claim, ["job", "verify", "--backup-dir=/b", "--termination-log=/dev/termination-log"]);
    }
}
