//! What the operator's watch caches keep of an object: everything except the bookkeeping that no
//! rule or reconcile step reads (`managedFields`, kubectl's last-applied configuration), which is
//! most of a small object's size in memory; of a backup that has ended, only what the reconciler
//! (to skip it) and the backup gauges read; of a Job, only its status.

use crate::api::backup::{APIManagerBackup, BackupDestination};
use crate::reconcile::status::{FAILED, OperationStatus};
use k8s_openapi::api::batch::v1::Job;
use kube::Resource;

/// The annotation `kubectl apply` stores the whole applied object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops `managedFields` and the last-applied annotation of `object`.
pub fn metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// [`metadata`] of `job`, and its spec (the Pod template): the reconciler reads a Job's status only.
pub fn job(job: &mut Job) {
    metadata(job);
    job.spec = None;
}

/// [`metadata`] of `backup`; once it has ended (it is never worked on again), also everything but
/// its name, namespace, UID, version, `spec.apiManagerName`, and of its status the times,
/// `completed`, `apiManagerSourceName` and the `Failed` condition without its message: a cache of
/// many finished backups holds little more than their names.
pub fn backup(backup: &mut APIManagerBackup) {
    metadata(backup);
    let Some(status) = backup.status.as_mut().filter(|s| s.progress().is_final()) else { return };
    status.backup_persistent_volume_claim_name = None;
    status.main_steps_completed = None;
    status.observed_generation = None;
    status.conditions.retain(|c| c.type_ == FAILED && c.status == "True");
    for condition in &mut status.conditions {
        condition.message = String::new();
        condition.observed_generation = None;
    }
    status.conditions.shrink_to_fit();
    backup.spec.backup_destination = BackupDestination::default();
    let meta = &mut backup.metadata;
    meta.labels = None;
    meta.annotations = None;
    meta.owner_references = None;
    meta.finalizers = None;
    meta.generate_name = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::status::Progress;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn drops_bookkeeping_and_keeps_the_rest() {
        let mut object: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c", "labels": {"app": "x"},
                "annotations": {LAST_APPLIED: "{}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "data": {"k": "v"}}))
        .expect("config map");
        metadata(&mut object);
        assert_eq!(
            serde_json::to_value(&object).expect("serializes"),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "x"}, "annotations": {"keep": "me"}},
                "data": {"k": "v"}})
        );
    }

    fn backup_with(status: serde_json::Value) -> APIManagerBackup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
            "metadata": {"name": "b", "namespace": "n", "uid": "u", "resourceVersion": "7",
                "labels": {"team": "x"}, "annotations": {"note": "y"}, "managedFields": [{"manager": "m"}]},
            "spec": {"apiManagerName": "am", "backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}},
            "status": status}))
        .expect("backup")
    }

    #[test]
    fn a_running_backup_keeps_everything_but_bookkeeping() {
        let status = serde_json::json!({"startTime": "2026-11-26T10:00:00Z", "backupPersistentVolumeClaimName": "b",
            "conditions": [{"type": "Ready", "status": "False", "reason": "CopyingFiles", "message": "copying",
                "lastTransitionTime": "2026-11-26T10:00:01Z"}]});
        let mut running = backup_with(status.clone());
        backup(&mut running);
        let mut expected = backup_with(status);
        expected.metadata.managed_fields = None;
        assert_eq!(serde_json::to_value(running).expect("json"), serde_json::to_value(expected).expect("json"));
    }

    #[test]
    fn an_ended_backup_keeps_what_the_skip_and_the_gauges_read() {
        for (status, ended) in [
            (
                serde_json::json!({"completed": true, "startTime": "2026-11-26T10:00:00Z",
                    "completionTime": "2026-11-26T10:01:00Z", "apiManagerSourceName": "am",
                    "backupPersistentVolumeClaimName": "b", "mainStepsCompleted": true, "observedGeneration": 1,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "BackupCompleted",
                        "message": "backup written", "lastTransitionTime": "2026-11-26T10:01:00Z"}]}),
                "completed",
            ),
            (
                serde_json::json!({"startTime": "2026-11-26T10:00:00Z", "apiManagerSourceName": "am",
                    "conditions": [{"type": "Failed", "status": "True", "reason": "JobFailed", "message": "long",
                        "lastTransitionTime": "2026-11-26T10:01:00Z"},
                        {"type": "Ready", "status": "False", "reason": "JobFailed", "message": "long",
                        "lastTransitionTime": "2026-11-26T10:01:00Z"}]}),
                "failed",
            ),
        ] {
            let mut original = backup_with(status);
            let before: Progress = original.status.as_ref().expect("status").progress();
            backup(&mut original);
            let after = original.status.as_ref().expect("status").progress();
            assert!(after.is_final(), "{ended}: still final");
            assert_eq!(after.ended(), before.ended(), "{ended}: the same end");
            assert_eq!(after.failure_reason(), before.failure_reason(), "{ended}: the same reason");
            assert_eq!(
                original.status.as_ref().and_then(|s| s.api_manager_source_name.as_deref()),
                Some("am"),
                "{ended}: the gauges' key"
            );
            let kept = serde_json::to_value(&original).expect("json");
            assert_eq!(
                kept["metadata"],
                serde_json::json!({"name": "b", "namespace": "n", "uid": "u", "resourceVersion": "7"})
            );
            assert_eq!(kept["spec"], serde_json::json!({"apiManagerName": "am", "backupDestination": {}}));
            assert!(after.conditions.iter().all(|c| c.message.is_empty()), "{ended}: no messages");
        }
    }
}
