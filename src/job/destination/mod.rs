//! Where the step Pods write a backup and read it back: a folder on the backup claim, or a folder
//! (a key prefix) in an S3 bucket, sealed on the client (docs/s3.md).
//!
//! - [`args`]: the steps' arguments naming the bucket, folder and mounted Secrets ([`S3Args`]);
//! - [`source`]: where the restore steps read exported objects (claim or bucket);
//! - [`sink`]: where `export-objects` puts each exported object ([`sink::Folder`] on the claim,
//!   [`write::BucketBackup`] in the bucket);
//! - [`bucket`]: the connection ([`bucket::Bucket`]) and sealed object I/O;
//! - [`index`]: the formats in the bucket: the clear index `manifest.json` (the commit marker)
//!   and the sealed manifest;
//! - [`write`]: a backup step into the bucket (objects, the FileStorage tree by content, the
//!   commit);
//! - [`read`]: verifying a backup in the bucket and restoring its files;
//! - [`s3_files`]: an S3 System FileStorage's objects into the bucket by content, and back;
//! - [`steps`]: the job steps' work when the backup is in a bucket;
//! - [`error`]: what goes wrong ([`DestinationError`]).

pub mod args;
pub mod bucket;
pub mod error;
pub mod index;
pub mod read;
pub mod s3_files;
pub mod sink;
pub mod source;
pub mod steps;
pub mod write;

pub use args::S3Args;
pub use error::DestinationError;
pub use sink::{Folder, ObjectSink};
