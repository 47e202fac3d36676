//! The objects particular to a restore, built as plain values (no API calls), so their shape is
//! tested directly: the restored System FileStorage claim and the step Pods' RoleBinding.

use crate::api::apimanager::{DEFAULT_SYSTEM_STORAGE_CLAIM, SystemStorageClaim};
use crate::api::restore::APIManagerRestore;
use crate::names::{RESTORE_JOB_CLUSTER_ROLE, RESTORE_SERVICE_ACCOUNT};
use crate::reconcile::step;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Name of the per-restore RoleBinding (by UID: names cannot collide across restores).
pub fn binding_name(restore: &APIManagerRestore) -> String {
    format!("apimanager-restore-{}", restore.uid().unwrap_or_default())
}

/// Binds the restore step Pods' ClusterRole to their ServiceAccount in the restore's namespace, owned
/// by the restore and deleted when it ends.
pub fn role_binding(restore: &APIManagerRestore) -> RoleBinding {
    step::cluster_role_binding(restore, binding_name(restore), RESTORE_JOB_CLUSTER_ROLE, RESTORE_SERVICE_ACCOUNT)
}

/// The System FileStorage claim a restore creates when the namespace has none, as the backed-up
/// APIManager asks for it: `ReadWriteMany` as 3scale makes it, its size (3scale's default of
/// [`SYSTEM_STORAGE_DEFAULT_SIZE`] when unset), class and volume. It has no owner and no label of
/// this operator: it belongs to the installation.
pub fn system_storage_claim(namespace: &str, wanted: &SystemStorageClaim) -> PersistentVolumeClaim {
    let size = wanted.requests.clone().unwrap_or_else(|| SYSTEM_STORAGE_DEFAULT_SIZE.to_owned());
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SYSTEM_STORAGE_CLAIM.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteMany".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size))])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: wanted.storage_class_name.clone(),
            volume_name: wanted.volume_name.clone(),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The size 3scale gives the System FileStorage claim when the APIManager sets none.
pub const SYSTEM_STORAGE_DEFAULT_SIZE: &str = "100Mi";
