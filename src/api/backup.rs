//! The `APIManagerBackup` custom resource (`apps.3scale.net/v1alpha1`), compatible with the
//! 3scale-operator's resource of the same name.

use super::s3::{Encryption, S3BackupLocation, S3Bucket};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Message shared by the CRD's CEL rule and the validating webhook when no destination is set.
pub const DESTINATION_REQUIRED: &str =
    "exactly one backup destination must be set; supported: persistentVolumeClaim, s3";

/// Message shared by the CRD's CEL rule and the validating webhook when the claim has no size.
pub const REQUESTS_REQUIRED: &str =
    "the backup claim's size must be set, also when volumeName is set (for example 10Gi)";

/// Desired state of an `APIManagerBackup`: which APIManager to back up, and where to.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apps.3scale.net",
    version = "v1alpha1",
    kind = "APIManagerBackup",
    plural = "apimanagerbackups",
    namespaced,
    status = "APIManagerBackupStatus",
    doc = "APIManagerBackup backs up a 3scale installation deployed by an APIManager in the same namespace.",
    printcolumn(name = "Completed", type_ = "boolean", json_path = ".status.completed"),
    printcolumn(name = "PVC", type_ = "string", json_path = ".status.backupPersistentVolumeClaimName"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct APIManagerBackupSpec {
    /// Name of the APIManager to back up; defaults to the only APIManager of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_manager_name: Option<String>,
    /// Where the backup is written. Exactly one destination must be set.
    #[x_kube(validation = Rule::new("[has(self.persistentVolumeClaim), has(self.s3)].filter(set, set).size() == 1")
        .message(DESTINATION_REQUIRED)
        .reason(Reason::FieldValueRequired))]
    pub backup_destination: BackupDestination,
}

/// The backup destinations; they are mutually exclusive.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupDestination {
    /// Back up into a PersistentVolumeClaim created for this backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("has(self.resources) && has(self.resources.requests)")
        .message(REQUESTS_REQUIRED)
        .field_path(".resources.requests")
        .reason(Reason::FieldValueRequired))]
    pub persistent_volume_claim: Option<PersistentVolumeClaimDestination>,
    /// Back up into an S3-compatible bucket, sealed on the client (docs/s3.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Bucket>,
}

impl BackupDestination {
    /// Names of the destinations that are set, in schema order.
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
}

/// A PersistentVolumeClaim destination: either sized by `resources.requests` (optionally on a
/// `storageClass`), or bound to an existing PersistentVolume by `volumeName`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimDestination {
    /// Size of the claim; required, also when `volumeName` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PersistentVolumeClaimResources>,
    /// Name of an existing PersistentVolume to bind the claim to (not the claim's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// StorageClass of the claim; ignored when `volumeName` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Seal the backup on the client (docs/encryption.md): with `keySecretRef`, the claim holds
    /// the sealed layout of docs/s3.md; unset or `disabled: true`, the claim holds the clear
    /// files 3scale-operator writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

impl PersistentVolumeClaimDestination {
    /// The key Secret's name, when the backup is sealed.
    pub fn key_secret(&self) -> Option<&str> {
        Encryption::key_secret(self.encryption.as_ref())
    }
}

/// Resources of the backup claim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimResources {
    /// Storage requested for the claim, a Kubernetes quantity such as `10Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Quantity>,
}

/// Observed state of an `APIManagerBackup`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct APIManagerBackupStatus {
    /// `true` once the backup has finished successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<bool>,
    /// Name of the APIManager this backup handles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_manager_source_name: Option<String>,
    /// When the backup started (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the backup completed (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Name of the PersistentVolumeClaim holding the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_persistent_volume_claim_name: Option<String>,
    /// Where the backup is, when its destination is an S3 bucket (no Secret is named here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3BackupLocation>,
    /// Bytes the backup wrote to its destination, as stored (on a claim in the clear layout, the
    /// files' sizes; sealed, in a bucket or on a claim, what its steps stored, without content an
    /// earlier backup had stored), recorded when its last step succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<i64>,
    /// `true` once every backup step has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_steps_completed: Option<bool>,
    /// The group the System FileStorage files are shared through: the group owning the claim's
    /// root (found by the inspect-files step) or the operator's `--file-storage-group`. The copy's
    /// Pod runs with it as a supplemental group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage_group: Option<i64>,
    /// Standard conditions: `Ready` and `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

super::status::operation_status!(APIManagerBackupStatus);
