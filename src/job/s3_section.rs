//! The `systemFileStorageS3` section of `manifest.json`: the S3 System FileStorage bucket a backup
//! copied and each of its objects (written by [`super::filestorage_s3`], checked by
//! [`super::verify`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest's record of a copied S3 System FileStorage bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Section {
    /// The bucket copied, as its Secret named it.
    pub bucket: String,
    /// The Secret that named it (`configurationSecretRef`).
    pub secret: String,
    /// Every object, sorted by key.
    pub objects: Vec<S3Object>,
}

/// One object of the bucket and where its bytes are in the backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Object {
    /// The object's key.
    pub key: String,
    /// The file holding its bytes, relative to the backup root (also listed under `files`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of its bytes.
    pub sha256: String,
    /// `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-<name>`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}
