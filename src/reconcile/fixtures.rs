//! Objects for the reconciler's unit tests.

use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackup;
use serde_json::{Value, json};

/// Namespace of every fixture.
pub const NAMESPACE: &str = "3scale";
/// UID of the fixture backup.
pub const BACKUP_UID: &str = "0b1c2d3e-0000-4000-8000-000000000001";

/// An APIManagerBackup `b` as the API server stores it, with `destination` as its
/// `spec.backupDestination.persistentVolumeClaim` and `status`.
pub fn backup(destination: Value, status: Value) -> APIManagerBackup {
    serde_json::from_value(json!({
        "apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManagerBackup",
        "metadata": {"name": "b", "namespace": NAMESPACE, "uid": BACKUP_UID, "generation": 1, "resourceVersion": "1"},
        "spec": {"apiManagerName": "example", "backupDestination": {"persistentVolumeClaim": destination}},
        "status": status,
    }))
    .expect("a valid APIManagerBackup")
}

/// APIManager `example` with all databases external and `system` as its `spec.system`.
pub fn apimanager(system: Value) -> APIManager {
    serde_json::from_value(json!({
        "apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManager",
        "metadata": {"name": "example", "namespace": NAMESPACE, "uid": "am-uid"},
        "spec": {"externalComponents": {"system": {"database": true, "redis": true}, "backend": {"redis": true}},
            "system": system},
    }))
    .expect("a valid APIManager")
}
