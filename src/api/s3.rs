//! The S3 bucket of an `APIManagerBackup` destination and of an `APIManagerRestore` source:
//! where the bucket is, whose credentials reach it, and the keys sealing the backup (docs/s3.md,
//! docs/encryption.md); the keys ([`Encryption`]) also seal a backup on a claim. Only Secret names are held here, never a Secret's value.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Message shared by the CRD's CEL rule and the validating webhook when the encryption is not
/// chosen.
pub const ENCRYPTION_REQUIRED: &str = "set encryption.keySecretRef to a Secret of keys (docs/encryption.md) or, to \
store the backup in clear, encryption.disabled: true";

/// Message shared by the CRD's CEL rule and the validating webhook when both a key and
/// `disabled: true` are given.
pub const ENCRYPTION_CONTRADICTS: &str = "disabled: true contradicts keySecretRef; remove one of them";

/// Where a backup is in an S3-compatible bucket, and how to reach and open it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.encryption) && (has(self.encryption.keySecretRef) || (has(self.encryption.disabled) && self.encryption.disabled))")
    .message(ENCRYPTION_REQUIRED)
    .field_path(".encryption")
    .reason(Reason::FieldValueRequired))]
pub struct S3Bucket {
    /// The bucket's name; it must exist.
    pub bucket: String,
    /// Key prefix of the backups in the bucket (`/`-separated, no leading or trailing `/`).
    /// Backups under one prefix share the content they have in common.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The region requests are signed for (for example `eu-west-1`; S3-compatible stores often
    /// accept `us-east-1`).
    pub region: String,
    /// URL of an S3-compatible store (`https://host[:port]`); AWS's endpoint for the region when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path-style addressing (`https://host/bucket/key`), which most S3-compatible stores need.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// Allow an `http://` endpoint (a test server): credentials' signatures and the bucket's
    /// traffic then pass unprotected by TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// A Secret of this namespace with the credentials, in the keys of 3scale's S3 FileStorage
    /// Secret (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_REGION`,
    /// `AWS_HOSTNAME`, `AWS_PROTOCOL`, `AWS_PATH_STYLE`; the fields above take precedence).
    pub credentials_secret_ref: SecretRef,
    /// A key of a Secret of this namespace holding the PEM CA bundle a private endpoint's
    /// certificate chains to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<SecretKeyRef>,
    /// How the backup is sealed on the client before it leaves the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// A Secret of the object's namespace, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
}

/// One key of a Secret of the object's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// The keys sealing a backup, or the explicit choice of none.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.keySecretRef) && has(self.disabled) && self.disabled)")
    .message(ENCRYPTION_CONTRADICTS)
    .field_path(".disabled")
    .reason(Reason::FieldValueForbidden))]
pub struct Encryption {
    /// A Secret of this namespace whose entries are keys (`<key id>`: 32 bytes, raw or base64),
    /// optionally `current` naming the one that seals; the others still open older backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretRef>,
    /// `true` stores the backup in clear: whoever reads the bucket reads the installation's
    /// Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

impl Encryption {
    /// The key Secret's name of `encryption`, unless it is absent or `disabled: true`.
    pub fn key_secret(encryption: Option<&Self>) -> Option<&str> {
        let encryption = encryption?;
        if encryption.disabled == Some(true) {
            return None;
        }
        encryption.key_secret_ref.as_ref().map(|secret| secret.name.as_str())
    }
}

impl S3Bucket {
    /// The key Secret's name, when the backup is sealed.
    pub fn key_secret(&self) -> Option<&str> {
        Encryption::key_secret(self.encryption.as_ref())
    }

    /// The prefix without surrounding `/` (empty when none).
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or_default().trim_matches('/')
    }
}

/// A backup's place in its bucket, as a backup's status reports it and a restore names it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3BackupLocation {
    /// The bucket.
    pub bucket: String,
    /// The prefix (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The backup's folder under the prefix: `<namespace>/<backup name>-<backup uid>`
    /// (`spec.restoreSource.s3.backupPath` of a restore).
    pub path: String,
}

impl S3BackupLocation {
    /// `s3://<bucket>/<prefix>/<path>/`.
    pub fn url(&self) -> String {
        let prefix = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        format!("s3://{}/{prefix}{}/", self.bucket, self.path)
    }
}

/// The backup's folder under its prefix: `<namespace>/<name>-<uid>`.
pub fn backup_path(namespace: &str, name: &str, uid: &str) -> String {
    format!("{namespace}/{name}-{uid}")
}
