//! What the operator's watch caches keep of an object: everything except the bookkeeping that no
//! rule or reconcile step reads (`managedFields`, kubectl's last-applied configuration), which is
//! most of a small object's size in memory; of a backup that has ended, only what the reconciler
//! (to skip it) and the backup gauges read; of a step Pod, only what the step machine reads.

use crate::api::backup::{APIManagerBackup, BackupDestination};
use crate::api::schedule::APIManagerBackupSchedule;
use crate::api::status::{FAILED, OperationStatus};
use crate::names::SCHEDULE_LABEL;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
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

/// What the step machine reads of a step Pod (docs/design.md, "Memory"): of its metadata the
/// name, namespace, UID, labels, owners (the controller maps a Pod to its operation by them) and
/// creation; of its status the phase, reason, message, each condition's type, status and last
/// change, and each container's name and state (the exit code, termination message and end of a
/// finished one). No spec: the Pod is never rebuilt from the cache.
pub fn pod(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels: meta.labels,
        owner_references: meta.owner_references,
        creation_timestamp: meta.creation_timestamp,
        ..ObjectMeta::default()
    };
    pod.spec = None;
    let Some(status) = pod.status.take() else { return };
    let containers = |statuses: Option<Vec<ContainerStatus>>| {
        statuses.map(|statuses| {
            statuses
                .into_iter()
                .map(|s| ContainerStatus { name: s.name, state: s.state, ..ContainerStatus::default() })
                .collect()
        })
    };
    let conditions = status.conditions.map(|conditions| {
        conditions
            .into_iter()
            .map(|c| PodCondition {
                type_: c.type_,
                status: c.status,
                last_transition_time: c.last_transition_time,
                ..PodCondition::default()
            })
            .collect()
    });
    pod.status = Some(PodStatus {
        phase: status.phase,
        reason: status.reason,
        message: status.message,
        conditions,
        init_container_statuses: containers(status.init_container_statuses),
        container_statuses: containers(status.container_statuses),
        ..PodStatus::default()
    });
}

/// [`metadata`] of `backup`; once it has ended (it is never worked on again), also everything but
/// its name, namespace, UID, version, `spec.apiManagerName`, the schedule's label and owner
/// reference (of a backup a schedule made: its retention reads them), and of its status the times,
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
    meta.labels = meta.labels.take().map(|labels| labels.into_iter().filter(|(k, _)| k == SCHEDULE_LABEL).collect());
    meta.labels = meta.labels.take().filter(|labels| !labels.is_empty());
    meta.annotations = None;
    let by_schedule = |owner: &OwnerReference| owner.kind == APIManagerBackupSchedule::kind(&());
    meta.owner_references = meta.owner_references.take().map(|owners| owners.into_iter().filter(by_schedule).collect());
    meta.owner_references = meta.owner_references.take().filter(|owners| !owners.is_empty());
    meta.finalizers = None;
    meta.generate_name = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::Progress;
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

    #[test]
    fn a_pod_keeps_what_the_step_machine_reads() {
        let terminated = serde_json::json!({"terminated": {"exitCode": 1, "reason": "Error", "message": "boom",
            "startedAt": "2026-11-26T10:00:00Z", "finishedAt": "2026-11-26T10:00:05Z"}});
        let container = |name: &str, state: &serde_json::Value| {
            serde_json::json!({"name": name, "image": "registry/abo:1",
            "imageID": "sha256:x", "ready": false, "restartCount": 0, "started": false, "state": state})
        };
        let owner = serde_json::json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
            "name": "b", "uid": "u", "controller": true, "blockOwnerDeletion": true});
        let labels = serde_json::json!({"app.kubernetes.io/managed-by": "apimanager-backup-operator",
            "apps.3scale.net/step-job": "backup-u"});
        let mut full: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "backup-u-0", "namespace": "n", "uid": "p", "resourceVersion": "9",
                "creationTimestamp": "2026-11-26T09:59:59Z", "labels": labels, "ownerReferences": [owner],
                "annotations": {"a": "b"}, "managedFields": [{"manager": "m"}]},
            "spec": {"containers": [{"name": "copy-files", "image": "registry/abo:1"}]},
            "status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too long", "podIP": "10.0.0.1",
                "startTime": "2026-11-26T10:00:00Z", "qosClass": "BestEffort",
                "conditions": [{"type": "Ready", "status": "False", "reason": "PodFailed", "message": "m",
                    "lastTransitionTime": "2026-11-26T10:00:05Z", "lastProbeTime": null}],
                "initContainerStatuses": [container("export-objects", &serde_json::json!({"terminated": {"exitCode": 0, "message": "ok"}}))],
                "containerStatuses": [container("copy-files", &terminated)]}}))
        .expect("pod");
        pod(&mut full);
        let kept = |name: &str, state: &serde_json::Value| {
            serde_json::json!({"name": name, "image": "",
            "imageID": "", "ready": false, "restartCount": 0, "state": state})
        };
        assert_eq!(
            serde_json::to_value(&full).expect("json"),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "backup-u-0", "namespace": "n", "uid": "p",
                    "creationTimestamp": "2026-11-26T09:59:59Z", "labels": labels, "ownerReferences": [owner]},
                "status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "too long",
                    "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-26T10:00:05Z"}],
                    "initContainerStatuses": [kept("export-objects", &serde_json::json!({"terminated": {"exitCode": 0, "message": "ok"}}))],
                    "containerStatuses": [kept("copy-files", &terminated)]}})
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
    fn an_ended_backup_of_a_schedule_keeps_what_retention_reads() {
        let mut ended = backup_with(serde_json::json!({"completed": true, "completionTime": "2026-11-26T10:01:00Z"}));
        ended.metadata.labels = Some([("team".into(), "x".into()), (SCHEDULE_LABEL.into(), "nightly".into())].into());
        let owner = |kind: &str| OwnerReference {
            kind: kind.into(),
            name: "o".into(),
            uid: "ou".into(),
            ..OwnerReference::default()
        };
        ended.metadata.owner_references = Some(vec![owner("Other"), owner("APIManagerBackupSchedule")]);
        backup(&mut ended);
        assert_eq!(ended.metadata.labels, Some([(SCHEDULE_LABEL.into(), "nightly".into())].into()));
        assert_eq!(ended.metadata.owner_references, Some(vec![owner("APIManagerBackupSchedule")]));
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
