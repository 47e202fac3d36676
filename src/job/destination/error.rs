//! What goes wrong reading or writing a backup in a bucket.

/// Why reading or writing a backup in S3 failed. Messages name buckets, keys and key ids,
/// never credentials, key bytes or content.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The S3 settings are incomplete or invalid.
    #[error("S3 settings: {0}")]
    Config(#[from] crate::s3::ConfigError),
    /// A step argument is missing.
    #[error("S3 destination: {0} is not given")]
    Argument(&'static str),
    /// A request failed.
    #[error("{0}")]
    S3(#[from] crate::s3::S3Error),
    /// The keys could not be loaded.
    #[error("encryption keys: {0}")]
    Keys(#[source] crate::seal::SealError),
    /// An object could not be sealed or opened.
    #[error("s3://{bucket}/{key}: {source}")]
    Seal {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// Why.
        source: crate::seal::SealError,
    },
    /// The bucket holds no committed backup at the folder.
    #[error(
        "no manifest.json under s3://{bucket}/{folder}/: the backup is incomplete (its step did not finish) or \
there is none; nothing was restored"
    )]
    Incomplete {
        /// The bucket.
        bucket: String,
        /// The backup's folder.
        folder: String,
    },
    /// An object of the backup does not hold what its index or manifest says.
    #[error("s3://{bucket}/{key} is unusable: {reason}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The backup in the bucket differs from its manifest.
    #[error("the backup in s3://{bucket}/{folder}/ does not match its manifest; nothing was restored: {}", .problems.join("; "))]
    NotVerified {
        /// The bucket.
        bucket: String,
        /// The backup's folder.
        folder: String,
        /// What differs (the first few).
        problems: Vec<String>,
    },
}
