//! Where the step Pods write a backup and read it back: the claim layout (3scale-operator's: a
//! folder of clear files on the backup claim), or the sealed layout (docs/s3.md), in an S3 bucket
//! or on the backup claim, sealed on the client when keys are given.
//!
//! - [`args`]: the steps' arguments naming the bucket, folder and mounted Secrets ([`S3Args`]);
//! - [`source`]: where the restore steps read exported objects (claim layout or sealed layout);
//! - [`sink`]: where `export-objects` puts each exported object ([`sink::Folder`] on the claim,
//!   [`write::BucketBackup`] in the sealed layout);
//! - [`store`]: where the sealed layout's objects live ([`store::Store`]: a bucket or the claim),
//!   their raw I/O;
//! - [`place`]: the backup's store, prefix, folder and keys ([`place::Place`]) and sealed object
//!   I/O;
//! - [`index`]: the sealed layout's formats: the clear index `manifest.json` (the commit marker)
//!   and the sealed manifest;
//! - [`write`]: a backup step into the sealed layout (objects, the FileStorage tree by content,
//!   the commit);
//! - [`naming`]: content names of the FileStorage's files, taken ahead on another thread;
//! - [`uploads`]: a tree copy's content uploads in flight, several at once;
//! - [`unchanged`]: which files the previous backup stored unchanged, reused without reading;
//! - [`read`]: verifying a sealed backup and restoring its files;
//! - [`offline`]: `verify` (and `--extract`) of a sealed backup in a local folder;
//! - [`s3_files`]: an S3 System FileStorage's objects into the sealed layout by content, and back;
//! - [`steps`]: the job steps' work when the backup is in the sealed layout;
//! - [`error`]: what goes wrong ([`DestinationError`]).

pub mod args;
pub mod error;
pub mod index;
pub mod naming;
pub mod offline;
pub mod place;
pub mod read;
pub mod s3_files;
pub mod sink;
pub mod source;
pub mod steps;
pub mod store;
pub mod unchanged;
pub mod uploads;
pub mod write;

pub use args::S3Args;
pub use error::DestinationError;
pub use sink::{Folder, ObjectSink};

use crate::job::CommonArgs;
use std::path::Path;

/// Whether a backup step writes the sealed layout: into a bucket, or onto the claim when keys
/// are given (without them, a claim's backup is in the claim layout).
pub fn writes_sealed(common: &CommonArgs) -> bool {
    common.s3.is_set() || common.s3.encryption_keys.is_some()
}

/// Whether a restore step reads the sealed layout: from a bucket, or from a claim holding it
/// (keys given for a claim in the claim layout are not used).
pub fn reads_sealed(common: &CommonArgs) -> bool {
    common.s3.is_set() || holds_sealed_layout(&common.backup_dir)
}

/// Whether the folder `root` holds a backup in the sealed layout: its `manifest.json` is a clear
/// index, or it has none and holds the sealed layout's `parts/` or `_content/` (a sealed backup
/// that was not committed, which reading then reports as incomplete).
pub fn holds_sealed_layout(root: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Format {
        format: Option<String>,
    }
    match std::fs::read(root.join(index::INDEX_FILE)) {
        Ok(bytes) => serde_json::from_slice::<Format>(&bytes)
            .is_ok_and(|index| index.format.as_deref() == Some(index::INDEX_FORMAT)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            [index::PARTS_FOLDER, place::CONTENT_FOLDER].iter().any(|folder| root.join(folder).is_dir())
        }
        Err(_) => false,
    }
}
