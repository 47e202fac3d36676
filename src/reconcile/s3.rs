//! What the step Pods of an operation whose backup is in the sealed layout get (in an S3 bucket, or
//! on a claim with keys): the step arguments naming the bucket, prefix and folder ([`S3Args`]) and
//! the user's Secrets mounted read-only ([`SecretMount`]): the credentials, the CA bundle and the
//! keys reach the steps through the Pod spec only, never as arguments.

use super::step::{SECRET_VOLUMES, SecretMount};
use crate::api::s3::S3Bucket;
use crate::job::destination::S3Args;

/// Where a step finds the credentials Secret (3scale's S3 keys, one file each).
pub const CREDENTIALS_MOUNT: &str = "/var/run/apimanager-backup/s3-credentials";
/// Where a step finds the CA bundle's folder.
pub const CA_BUNDLE_MOUNT: &str = "/var/run/apimanager-backup/s3-ca-bundle";
/// The CA bundle's file in [`CA_BUNDLE_MOUNT`].
pub const CA_BUNDLE_FILE: &str = "ca.crt";
/// Where a step finds the key Secret (one file per key).
pub const KEYS_MOUNT: &str = "/var/run/apimanager-backup/encryption-keys";

/// The arguments and mounts of a step reaching the backup at `path` (`<namespace>/<name>-<uid>`)
/// in `bucket`; `backup_uid` is the backup's when a backup step writes it (a restore reads it
/// from the bucket).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketAccess {
    /// The step arguments.
    pub args: S3Args,
    /// The Secrets its container mounts.
    pub secrets: Vec<SecretMount>,
}

/// The [`BucketAccess`] of the backup at `path` in `bucket`.
pub fn access(bucket: &S3Bucket, path: &str, backup_uid: Option<&str>) -> BucketAccess {
    let [credentials_volume, ca_volume, keys_volume] = SECRET_VOLUMES;
    let mut secrets = vec![SecretMount {
        volume: credentials_volume,
        secret: bucket.credentials_secret_ref.name.clone(),
        path: CREDENTIALS_MOUNT,
        item: None,
    }];
    let ca_bundle = bucket.ca_bundle_secret_ref.as_ref().map(|ca| {
        secrets.push(SecretMount {
            volume: ca_volume,
            secret: ca.name.clone(),
            path: CA_BUNDLE_MOUNT,
            item: Some((ca.key.clone(), CA_BUNDLE_FILE)),
        });
        format!("{CA_BUNDLE_MOUNT}/{CA_BUNDLE_FILE}")
    });
    let keys = bucket.key_secret().map(|secret| {
        secrets.push(SecretMount { volume: keys_volume, secret: secret.to_owned(), path: KEYS_MOUNT, item: None });
        KEYS_MOUNT.to_owned()
    });
    let prefix = bucket.prefix();
    let args = S3Args {
        s3_bucket: Some(bucket.bucket.clone()),
        s3_prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
        s3_backup: Some(path.to_owned()),
        s3_backup_uid: backup_uid.map(str::to_owned),
        s3_region: Some(bucket.region.clone()),
        s3_endpoint: bucket.endpoint.clone(),
        s3_force_path_style: bucket.force_path_style,
        s3_allow_http: bucket.allow_http,
        s3_credentials: Some(CREDENTIALS_MOUNT.to_owned()),
        s3_ca_bundle: ca_bundle,
        encryption_keys: keys,
    };
    BucketAccess { args, secrets }
}

/// The [`BucketAccess`] of a backup on a claim opened or sealed by the keys of Secret
/// `key_secret`: those keys only (no S3 argument, no other Secret); `backup_uid` is the
/// backup's when a backup step writes it.
pub fn claim_access(key_secret: &str, backup_uid: Option<&str>) -> BucketAccess {
    let [_, _, keys_volume] = SECRET_VOLUMES;
    let secrets =
        vec![SecretMount { volume: keys_volume, secret: key_secret.to_owned(), path: KEYS_MOUNT, item: None }];
    let args = S3Args {
        s3_backup_uid: backup_uid.map(str::to_owned),
        encryption_keys: Some(KEYS_MOUNT.to_owned()),
        ..S3Args::default()
    };
    BucketAccess { args, secrets }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_mounted_and_only_their_folders_are_arguments() {
        let bucket: S3Bucket = serde_json::from_value(json!({"bucket": "backups", "prefix": "/prod/", "region": "eu-west-1",
            "endpoint": "https://s3.example.com", "forcePathStyle": true, "credentialsSecretRef": {"name": "backup-s3"},
            "caBundleSecretRef": {"name": "s3-ca", "key": "bundle.pem"}, "encryption": {"keySecretRef": {"name": "backup-key"}}}))
        .expect("bucket");
        let access = access(&bucket, "3scale/nightly-u", Some("u"));
        assert_eq!(
            access.secrets,
            [
                SecretMount {
                    volume: "s3-credentials",
                    secret: "backup-s3".into(),
                    path: CREDENTIALS_MOUNT,
                    item: None
                },
                SecretMount {
                    volume: "s3-ca-bundle",
                    secret: "s3-ca".into(),
                    path: CA_BUNDLE_MOUNT,
                    item: Some(("bundle.pem".into(), CA_BUNDLE_FILE)),
                },
                SecretMount { volume: "encryption-keys", secret: "backup-key".into(), path: KEYS_MOUNT, item: None },
            ]
        );
        assert_eq!(access.args.s3_prefix.as_deref(), Some("prod"));
        assert_eq!(access.args.s3_ca_bundle.as_deref(), Some("/var/run/apimanager-backup/s3-ca-bundle/ca.crt"));
        assert_eq!(access.args.encryption_keys.as_deref(), Some(KEYS_MOUNT));
        let clear: S3Bucket = serde_json::from_value(json!({"bucket": "backups", "region": "us-east-1",
            "credentialsSecretRef": {"name": "backup-s3"}, "encryption": {"disabled": true}}))
        .expect("bucket");
        let access = super::access(&clear, "3scale/nightly-u", None);
        assert_eq!(access.secrets.len(), 1, "the credentials only");
        assert_eq!((access.args.encryption_keys, access.args.s3_prefix), (None, None));
    }

    #[test]
    fn a_sealed_claim_mounts_the_keys_only() {
        let access = claim_access("backup-key", Some("u"));
        assert_eq!(
            access.secrets,
            [SecretMount { volume: "encryption-keys", secret: "backup-key".into(), path: KEYS_MOUNT, item: None }]
        );
        let expected =
            S3Args { s3_backup_uid: Some("u".into()), encryption_keys: Some(KEYS_MOUNT.into()), ..S3Args::default() };
        assert_eq!(access.args, expected);
        assert!(!access.args.is_set(), "not a bucket");
    }
}
