//! A backup's step job, as the Pods of its attempts run it.

use super::*;
use crate::api::apimanager::FileStorage;
use crate::names::JOB_SERVICE_ACCOUNT;
use crate::names::{MANAGED_BY, STEP_JOB_LABEL, TERMINATION_LOG};
use crate::platform::Platform;
use crate::reconcile::fixtures::{BACKUP_UID, backup};
use crate::reconcile::step::{API_ACCESS_VOLUME, JOB_USER, JobSettings, SERVICE_ACCOUNT_MOUNT, StepJob, pod};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use serde_json::json;
use std::collections::BTreeMap;

fn settings() -> JobSettings {
    JobSettings {
        image: "registry/abo:1".into(),
        command: "/abo".into(),
        backoff_limit: 2,
        file_storage_group: Some(1001),
        platform: Platform::Kubernetes,
    }
}

fn jobs(storage: FileStorage) -> Vec<StepJob> {
    let backup = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    backup.jobs(&BackupPlan { file_storage_group: Some(1001), ..BackupPlan::new("example", storage) })
}

fn pod_spec(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().expect("pod spec")
}

/// Every container of the Pod, init containers first.
fn containers(pod: &PodSpec) -> Vec<&Container> {
    pod.init_containers.iter().flatten().chain(&pod.containers).collect()
}

#[test]
fn a_backup_is_one_pod_per_attempt_exporting_in_an_init_container_then_copying() {
    let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    let [backup_job] = <[StepJob; 1]>::try_from(jobs(FileStorage::Claim("system-storage".into()))).expect("one");
    let job_name = format!("{}-{BACKUP_UID}", crate::names::BACKUP_JOB);
    assert_eq!(backup_job.job_name(&owner), job_name);
    let attempt = pod(&owner, &backup_job, 1, &settings(), 120);
    assert_eq!(attempt.metadata.name, Some(format!("{job_name}-1")));
    let labels = attempt.metadata.labels.clone().expect("labels");
    assert_eq!(
        labels,
        BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (crate::names::BACKUP_UID_LABEL.to_owned(), BACKUP_UID.to_owned()),
            (STEP_JOB_LABEL.to_owned(), job_name),
        ])
    );
    let pod = pod_spec(&attempt);
    let names = |containers: &[Container]| containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(pod.init_containers.as_deref().unwrap_or_default()), [crate::names::EXPORT_OBJECTS]);
    assert_eq!(names(&pod.containers), [crate::names::COPY_FILES]);
    assert_eq!(backup_job.running_step(false).reason, "ExportingObjects", "until the Pod is ready");
    assert_eq!(backup_job.running_step(true).reason, "CopyingFiles", "every init container done");
}

#[test]
fn step_pods_run_unprivileged_with_a_deadline_owned_by_the_backup() {
    let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    for storage in [FileStorage::Claim("system-storage".into()), FileStorage::S3 { secret: Some("fs-s3".into()) }] {
        let [one] = <[StepJob; 1]>::try_from(jobs(storage)).expect("one step job");
        let attempt = pod(&owner, &one, 0, &settings(), 120);
        let owners = attempt.metadata.owner_references.clone().expect("owner");
        let owner_ref = &owners[0];
        assert_eq!(
            (owner_ref.kind.as_str(), owner_ref.controller, owner_ref.block_owner_deletion),
            ("APIManagerBackup", Some(true), Some(true))
        );
        let pod = pod_spec(&attempt);
        assert_eq!(pod.active_deadline_seconds, Some(120));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.service_account_name.as_deref(), Some(JOB_SERVICE_ACCOUNT));
        let pod_security = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(pod_security.run_as_non_root, Some(true));
        let ids = (pod_security.run_as_user, pod_security.run_as_group, pod_security.fs_group);
        assert_eq!(ids, (Some(JOB_USER), Some(JOB_USER), Some(JOB_USER)), "numeric user, group and fsGroup");
        assert_eq!(pod_security.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
        for (container, step) in containers(pod).into_iter().zip(one.steps()) {
            let security = container.security_context.as_ref().expect("container security context");
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.read_only_root_filesystem, Some(true));
            let dropped = security.capabilities.as_ref().and_then(|c| c.drop.clone());
            assert_eq!(dropped, Some(vec!["ALL".to_owned()]));
            assert_eq!(container.image.as_deref(), Some("registry/abo:1"));
            assert_eq!(container.command, Some(vec!["/abo".to_owned()]));
            assert_eq!(container.termination_message_path.as_deref(), Some(TERMINATION_LOG));
            let args = container.args.clone().expect("args");
            assert_eq!(args[..2], ["job".to_owned(), step.name().to_owned()]);
            assert_eq!(args.last().map(String::as_str), Some("--termination-log=/dev/termination-log"));
        }
    }
}

#[test]
fn a_spent_timeout_still_gives_a_valid_deadline() {
    let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    let attempt = pod(&owner, &jobs(FileStorage::S3 { secret: Some("fs-s3".into()) })[0], 0, &settings(), 0);
    assert_eq!(attempt.spec.and_then(|s| s.active_deadline_seconds), Some(1));
}

#[test]
fn only_the_export_gets_an_api_token_and_the_copy_reads_file_storage_read_only() {
    let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    let attempt = pod(&owner, &jobs(FileStorage::Claim("files".into()))[0], 0, &settings(), 60);
    let pod = pod_spec(&attempt);
    assert_eq!(pod.automount_service_account_token, Some(false), "no token for every container");
    let [export, copy] = <[&Container; 2]>::try_from(containers(pod)).expect("two containers");
    let mounts = |c: &Container| -> Vec<(String, String, Option<bool>)> {
        let mounts = c.volume_mounts.iter().flatten();
        mounts.map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only)).collect()
    };
    let api = (API_ACCESS_VOLUME.to_owned(), SERVICE_ACCOUNT_MOUNT.to_owned(), Some(true));
    assert!(mounts(export).contains(&api), "the export reads the API: {:?}", mounts(export));
    assert!(!mounts(copy).contains(&api), "no token in the copy's container");
    let storage = ("system-storage".to_owned(), crate::layout::FILE_STORAGE_MOUNT.to_owned(), Some(true));
    assert!(mounts(copy).contains(&storage), "the copy reads System FileStorage read-only");
    let groups = pod.security_context.as_ref().and_then(|c| c.supplemental_groups.clone());
    assert_eq!(groups, Some(vec![1001]), "the copy reads group-only files through the FileStorage group");
    let volumes: Vec<(String, Option<String>, Option<bool>)> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            let claim = v.persistent_volume_claim.as_ref();
            (v.name.clone(), claim.map(|c| c.claim_name.clone()), claim.and_then(|c| c.read_only))
        })
        .collect();
    assert_eq!(
        volumes,
        [
            ("backup".to_owned(), Some("b".to_owned()), None),
            ("system-storage".to_owned(), Some("files".to_owned()), Some(true)),
            (API_ACCESS_VOLUME.to_owned(), None, None)
        ],
        "the backup claim once, shared by both containers"
    );
    let token = pod.volumes.iter().flatten().find(|v| v.name == API_ACCESS_VOLUME).and_then(|v| v.projected.clone());
    let sources = token.and_then(|p| p.sources).expect("projected sources");
    assert!(sources[0].service_account_token.as_ref().is_some_and(|t| t.path == "token"));
    assert_eq!(sources[1].config_map.as_ref().map(|c| c.name.as_str()), Some("kube-root-ca.crt"));
}

#[test]
fn s3_file_storage_copies_the_bucket_with_its_secret_by_reference_and_no_token() {
    let [one] = <[StepJob; 1]>::try_from(jobs(FileStorage::S3 { secret: Some("fs-s3".into()) })).expect("one step job");
    let names: Vec<&str> = one.steps().map(JobStep::name).collect();
    assert_eq!(names, [crate::names::EXPORT_OBJECTS, crate::names::BACKUP_S3_FILES]);
    let attempt = pod(&backup(json!({}), json!({})), &one, 0, &settings(), 60);
    let spec = pod_spec(&attempt);
    let [export, s3] = <[&Container; 2]>::try_from(containers(spec)).expect("two containers");
    assert_eq!(export.env, None, "the export gets no Secret");
    let args = s3.args.clone().expect("args");
    assert!(args.contains(&"--secret=fs-s3".to_owned()), "{args:?}");
    let env = s3.env.clone().expect("the bucket's Secret keys");
    assert_eq!(env, crate::job::filestorage_s3::secret_env("fs-s3"));
    let mounts: Vec<&str> = s3.volume_mounts.iter().flatten().map(|m| m.name.as_str()).collect();
    assert_eq!(mounts, ["backup"], "the backup claim only: no API token, no FileStorage claim");
    let groups = spec.security_context.as_ref().and_then(|c| c.supplemental_groups.clone());
    assert_eq!(groups, None, "no FileStorage group without a FileStorage claim");

    let [unnamed] = <[StepJob; 1]>::try_from(jobs(FileStorage::S3 { secret: None })).expect("one step job");
    let attempt = pod(&backup(json!({}), json!({})), &unnamed, 0, &settings(), 60);
    assert_eq!(pod_spec(&attempt).containers[0].env, None, "no Secret named: the step reports it, no environment");
}

#[test]
fn without_a_group_the_backup_first_inspects_the_claim_then_the_copy_joins_the_group_found() {
    let storage = FileStorage::Claim("files".into());
    let mut owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    let plan = BackupPlan::new("example", storage);
    let [inspect, _] = <[StepJob; 2]>::try_from(owner.jobs(&plan)).expect("two step jobs");
    assert_eq!(inspect.job_name(&owner), format!("{}-{BACKUP_UID}", crate::names::INSPECT_FILES));
    let attempt = pod(&owner, &inspect, 0, &settings(), 60);
    let spec = pod_spec(&attempt);
    let [container] = <[&Container; 1]>::try_from(containers(spec)).expect("one container");
    let mounts: Vec<_> =
        container.volume_mounts.iter().flatten().map(|m| (m.mount_path.as_str(), m.read_only)).collect();
    assert_eq!(
        mounts,
        [(crate::layout::FILE_STORAGE_MOUNT, Some(true))],
        "System's claim read-only, no token, no backup"
    );
    assert_eq!(spec.security_context.as_ref().and_then(|c| c.supplemental_groups.clone()), None);

    owner.status =
        Some(crate::api::backup::APIManagerBackupStatus { file_storage_group: Some(0), ..Default::default() });
    let [_, backup_job] = <[StepJob; 2]>::try_from(owner.jobs(&plan)).expect("two step jobs");
    let attempt = pod(&owner, &backup_job, 0, &settings(), 60);
    let groups = pod_spec(&attempt).security_context.as_ref().and_then(|c| c.supplemental_groups.clone());
    assert_eq!(groups, Some(vec![0]), "the group found, not the operator's flag");
}

#[test]
fn on_openshift_no_id_is_pinned_and_restricted_v2_admits_the_pods_as_they_are() {
    use crate::local::scc::{Allocation, apply_defaults, violations};
    let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
    let openshift = JobSettings { platform: Platform::OpenShift, ..settings() };
    for job in jobs(FileStorage::Claim("files".into())) {
        let attempt = pod(&owner, &job, 0, &openshift, 60);
        let mut spec = pod_spec(&attempt).clone();
        let security = spec.security_context.clone().expect("pod security");
        assert_eq!((security.run_as_user, security.run_as_group, security.fs_group), (None, None, None));
        assert_eq!(security.run_as_non_root, Some(true), "still within the restricted Pod Security Standard");
        assert_eq!(security.supplemental_groups, Some(vec![1001]), "the FileStorage group on both platforms");
        assert_eq!(security.seccomp_profile.map(|p| p.type_).as_deref(), Some("RuntimeDefault"));
        let namespace = Allocation::block(66);
        apply_defaults(&mut spec, &namespace);
        assert_eq!(violations(&spec, &namespace), Vec::<String>::new());
        let kubernetes = pod_spec(&pod(&owner, &job, 0, &settings(), 60)).clone();
        assert!(!violations(&kubernetes, &namespace).is_empty(), "65532 is outside every namespace's range");
    }
}
