//! The arguments of a step whose backup is in an S3 bucket.

use clap::Args;
use serde::Serialize;

/// Where the backup is, when it is in an S3 bucket; every field is unset for a claim. Secret
/// values never pass through these arguments: the credentials and keys are folders of mounted
/// Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args, Serialize)]
pub struct S3Args {
    /// The bucket; set means the backup is in S3, not on the backup claim.
    #[arg(long)]
    pub s3_bucket: Option<String>,
    /// Key prefix of the backups in the bucket (without a trailing `/`); content shared by
    /// backups is stored under `<prefix>/_content/`.
    #[arg(long)]
    pub s3_prefix: Option<String>,
    /// The backup's folder below the prefix: `<namespace>/<backup name>-<backup uid>`.
    #[arg(long)]
    pub s3_backup: Option<String>,
    /// UID of the APIManagerBackup (every sealed object of the backup is bound to it).
    #[arg(long)]
    pub s3_backup_uid: Option<String>,
    /// Region (overrides `AWS_REGION` of the credentials Secret).
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Endpoint URL of an S3-compatible store (overrides `AWS_HOSTNAME`/`AWS_PROTOCOL`).
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// Path-style addressing (overrides `AWS_PATH_STYLE`).
    #[arg(long, action = clap::ArgAction::Set)]
    pub s3_force_path_style: Option<bool>,
    /// Plain http is allowed for the endpoint.
    #[arg(long, action = clap::ArgAction::Set)]
    pub s3_allow_http: Option<bool>,
    /// Folder of the mounted credentials Secret (3scale's S3 Secret keys, one file each).
    #[arg(long)]
    pub s3_credentials: Option<String>,
    /// A PEM CA bundle file for a private endpoint.
    #[arg(long)]
    pub s3_ca_bundle: Option<String>,
    /// Folder of the mounted key Secret; unset means the backup is not encrypted.
    #[arg(long)]
    pub encryption_keys: Option<String>,
}

impl S3Args {
    /// Whether the backup is in S3.
    pub fn is_set(&self) -> bool {
        self.s3_bucket.is_some()
    }
}
