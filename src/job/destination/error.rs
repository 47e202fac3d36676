//! What goes wrong reading or writing a sealed backup, in a bucket or on a claim.

/// Why reading or writing a sealed backup failed. Messages name buckets, keys, files and key
/// ids, never credentials, key bytes or content. `object` and `folder` are locations as
/// [`super::store::Store::location`] gives them (`s3://<bucket>/<key>` or a file's path).
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The S3 settings are incomplete or invalid.
    #[error("S3 settings: {0}")]
    Config(#[from] crate::s3::ConfigError),
    /// A step argument is missing.
    #[error("sealed destination: {0} is not given")]
    Argument(&'static str),
    /// A request failed.
    #[error("{0}")]
    S3(#[from] crate::s3::S3Error),
    /// A file operation on the claim failed.
    #[error("{source} while {what} {}", path.display())]
    File {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An object of the claim does not exist.
    #[error("{object} does not exist")]
    Missing {
        /// The object.
        object: String,
    },
    /// The bytes to store could not be read.
    #[error("reading what is stored: {0}")]
    Input(#[source] std::io::Error),
    /// An object's bytes could not be passed on as they were read.
    #[error("passing on what is read: {0}")]
    Sink(#[source] std::io::Error),
    /// The keys could not be loaded.
    #[error("encryption keys: {0}")]
    Keys(#[source] crate::seal::SealError),
    /// The backup is sealed and no key was given.
    #[error(
        "the backup in {folder} is encrypted (key {key_id}) and no key was given: set {field}; nothing was restored"
    )]
    KeyRequired {
        /// The backup's folder.
        folder: String,
        /// The id of the key that sealed it.
        key_id: String,
        /// The field naming the key Secret.
        field: &'static str,
    },
    /// An object could not be sealed or opened.
    #[error("{object}: {source}")]
    Seal {
        /// The object.
        object: String,
        /// Why.
        source: crate::seal::SealError,
    },
    /// The store holds no committed backup at the folder.
    #[error(
        "no manifest.json under {folder}: the backup is incomplete (its step did not finish) or there is none; nothing \
was restored"
    )]
    Incomplete {
        /// The backup's folder.
        folder: String,
    },
    /// An object of the backup does not hold what its index or manifest says.
    #[error("{object} is unusable: {reason}")]
    Corrupt {
        /// The object.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// The backup differs from its manifest.
    #[error("the backup in {folder} does not match its manifest; nothing was restored: {}", .problems.join("; "))]
    NotVerified {
        /// The backup's folder.
        folder: String,
        /// What differs (the first few).
        problems: Vec<String>,
    },
}

impl DestinationError {
    /// Whether the object read does not exist.
    pub fn is_missing(&self) -> bool {
        match self {
            Self::S3(error) => matches!(error.kind, crate::s3::ErrorKind::NoSuchKey),
            Self::Missing { .. } => true,
            _ => false,
        }
    }

    /// Whether what failed is writing the object's bytes on, not reading them.
    pub fn is_sink(&self) -> bool {
        match self {
            Self::S3(error) => matches!(error.kind, crate::s3::ErrorKind::Sink(_)),
            Self::Sink(_) => true,
            _ => false,
        }
    }
}
