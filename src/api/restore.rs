//! The `APIManagerRestore` custom resource (`apps.3scale.net/v1alpha1`), compatible with the
//! 3scale-operator's resource of the same name: it restores an installation from a backup claim.

use super::s3::{Encryption, S3Bucket};
use k8s_openapi::api::core::v1::{LocalObjectReference, PersistentVolumeClaimVolumeSource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Message shared by the CRD's CEL rule and the validating webhook when no source is set.
pub const SOURCE_REQUIRED: &str = "exactly one restore source must be set; supported: persistentVolumeClaim, s3";

/// Message shared by the CRD's CEL rule and the validating webhook when the spec changes.
pub const SPEC_IMMUTABLE: &str =
    "spec is immutable once the restore is created; create a new APIManagerRestore to restore another backup";

/// Desired state of an `APIManagerRestore`: the backup to restore into its namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apps.3scale.net",
    version = "v1alpha1",
    kind = "APIManagerRestore",
    plural = "apimanagerrestores",
    namespaced,
    status = "APIManagerRestoreStatus",
    doc = "APIManagerRestore restores a 3scale installation into its namespace from a backup claim written by an APIManagerBackup.",
    printcolumn(name = "Completed", type_ = "boolean", json_path = ".status.completed"),
    printcolumn(name = "APIManager", type_ = "string", json_path = ".status.apiManagerToRestoreRef.name"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message(SPEC_IMMUTABLE).reason(Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct APIManagerRestoreSpec {
    /// Where the backup is read from. Exactly one source must be set.
    #[x_kube(validation = Rule::new("[has(self.persistentVolumeClaim), has(self.s3)].filter(set, set).size() == 1")
        .message(SOURCE_REQUIRED)
        .reason(Reason::FieldValueRequired))]
    pub restore_source: RestoreSource,
    /// When the backed-up System FileStorage is in S3: write its objects into the restored
    /// installation's bucket even when that bucket already holds objects (same keys are replaced).
    /// Unset or false, such a bucket fails the restore and nothing is written to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overwrite_file_storage_objects: Option<bool>,
}

/// The restore sources; they are mutually exclusive.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// Restore from a PersistentVolumeClaim holding a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimRestoreSource>,
    /// Restore from a backup in an S3-compatible bucket: nothing but the bucket, its credentials
    /// and the keys is needed (the backup's namespace and objects may be gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3RestoreSource>,
}

/// A backup in an S3-compatible bucket.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3RestoreSource {
    /// The bucket, how to reach it and the keys opening the backup.
    #[serde(flatten)]
    pub bucket: S3Bucket,
    /// The backup's folder under the prefix, `<namespace>/<backup name>-<backup uid>`, as the
    /// APIManagerBackup's `status.s3.path` gave it.
    pub backup_path: String,
}

impl RestoreSource {
    /// Names of the sources that are set, in schema order.
    pub fn configured(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.persistent_volume_claim.is_some() {
            set.push("persistentVolumeClaim");
        }
        if self.s3.is_some() {
            set.push("s3");
        }
        set
    }

    /// The backup claim's name, when the claim source is set.
    pub fn claim_name(&self) -> Option<&str> {
        self.persistent_volume_claim.as_ref().map(|c| c.claim_source.claim_name.as_str())
    }
}

/// A PersistentVolumeClaim holding a backup (usually the claim an APIManagerBackup wrote).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimRestoreSource {
    /// The claim, in the restore's namespace (`claimName`, `readOnly`). It is always mounted
    /// read-only: a restore never writes to its backup.
    pub claim_source: PersistentVolumeClaimVolumeSource,
    /// The keys opening a sealed backup on the claim (`keySecretRef`). A sealed claim restored
    /// without them fails naming this field; keys given for a claim in the clear layout are not
    /// used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

impl PersistentVolumeClaimRestoreSource {
    /// The key Secret's name, when keys are given.
    pub fn key_secret(&self) -> Option<&str> {
        Encryption::key_secret(self.encryption.as_ref())
    }
}

/// Observed state of an `APIManagerRestore`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct APIManagerRestoreStatus {
    /// The APIManager the restore creates (its name as backed up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_manager_to_restore_ref: Option<LocalObjectReference>,
    /// The System FileStorage claim the files are restored to (`system-storage`), recorded by the
    /// verify step; absent when the backed-up APIManager keeps its files in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_storage_claim_name: Option<String>,
    /// The group the restored System FileStorage files and folders are given, with group read and
    /// write: the group of the backed-up files (recorded by the verify step) or the operator's
    /// `--file-storage-group`. The restore-files Pod runs with it as a supplemental group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_group: Option<i64>,
    /// When the backup holds S3 System FileStorage objects: the Secret naming the bucket they are
    /// written to (the backed-up APIManager's `configurationSecretRef`; empty when it names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_s3_secret_name: Option<String>,
    /// Secrets and ConfigMaps (as `Kind name`) that already existed and were left as they were,
    /// recorded by the step restoring them (empty: none existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_objects: Option<Vec<String>>,
    /// `true` once every restore step has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_steps_completed: Option<bool>,
    /// `true` once the restored APIManager reports itself available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    /// When the restore started (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the restore completed (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Standard conditions: `Ready`, `Failed` and `Verified`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

super::status::operation_status!(APIManagerRestoreStatus);
