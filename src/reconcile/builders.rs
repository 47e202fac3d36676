//! The objects an operation creates, built as plain values (no API calls), so their shape is tested
//! directly: the Job of a [`JobStep`] (shared by every operation), the backup claim, the restored
//! System FileStorage claim and the Jobs' RBAC.

use super::machine::Operation;
use crate::api::GROUP;
use crate::api::apimanager::{APIManager, DEFAULT_SYSTEM_STORAGE_CLAIM, SystemStorageClaim};
use crate::api::backup::APIManagerBackup;
use crate::names::{
    CLAIM_APIMANAGER_NAME, CLAIM_APIMANAGER_UID, CLAIM_BACKUP_NAME, CLAIM_BACKUP_UID, JOB_DATA_CLUSTER_ROLE,
    JOB_SERVICE_ACCOUNT, MANAGED_BY, TERMINATION_LOG,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
    ServiceAccount, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// User and group the Job Pods run as: the image's numeric `USER` (see `Containerfile`), so the
/// Pods pass the `restricted` Pod Security Standard whatever the image says.
pub const JOB_USER: i64 = 65532;

/// How the Jobs are run.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Container image holding this binary.
    pub image: String,
    /// The binary's path (or name on `PATH`) inside the image.
    pub command: String,
    /// Retries of a failed Pod before the Job fails.
    pub backoff_limit: i32,
    /// Group owning the System FileStorage files (the System app Pods' `fsGroup` or group), added
    /// to the supplemental groups of the Pods mounting that claim, so they read group-only files
    /// without the files ever being changed.
    pub file_storage_group: Option<i64>,
}

/// A step that runs as a Job: what the step machine and the Job builder need to know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStep {
    /// The `job` subcommand and the Job's name prefix (one of [`crate::names`]' steps).
    pub name: &'static str,
    /// The action of its `JobCreated` event (events of different actions are not merged).
    pub action: &'static str,
    /// The `Ready` reason while it runs, e.g. `ExportingObjects`.
    pub reason: &'static str,
    /// What it does, for the `Ready` message.
    pub doing: &'static str,
    /// The arguments after `job <name>`.
    pub args: Vec<String>,
    /// The claims its Pod mounts.
    pub claims: Vec<ClaimMount>,
    /// The ServiceAccount its Pod runs as.
    pub service_account: &'static str,
    /// Whether its Pod gets an API token (only steps reading the API do).
    pub api_access: bool,
}

impl JobStep {
    /// The Job's name: `<step>-<owner uid>`, stable across operator restarts.
    pub fn job_name<K: Resource>(&self, owner: &K) -> String {
        format!("{}-{}", self.name, owner.uid().unwrap_or_default())
    }
}

/// A claim mounted into a Job's Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMount {
    /// The volume's name in the Pod.
    pub volume: &'static str,
    /// The claim's name.
    pub claim: String,
    /// Where it is mounted.
    pub path: &'static str,
    /// Mounted read-only.
    pub read_only: bool,
}

fn labels<O: Operation>(owner: &O) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (O::UID_LABEL.to_owned(), owner.uid().unwrap_or_default()),
    ])
}

fn owned_meta<O: Operation>(owner: &O, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(labels(owner)),
        owner_references: owner.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// The backup claim, named after the backup. It has no owner: the claim is the backup and
/// outlives the APIManagerBackup. With `volumeName`, `storageClassName` is `""` so the claim binds
/// to that PersistentVolume instead of getting the default class.
pub fn backup_claim(backup: &APIManagerBackup, apimanager: &APIManager) -> PersistentVolumeClaim {
    let destination = backup.spec.backup_destination.persistent_volume_claim.clone().unwrap_or_default();
    let size = destination.resources.and_then(|r| r.requests).unwrap_or_else(|| Quantity("0".into()));
    let storage_class = match &destination.volume_name {
        Some(_) => Some(String::new()),
        None => destination.storage_class.clone(),
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(backup.name_any()),
            namespace: backup.namespace(),
            labels: Some(labels(backup)),
            annotations: Some(BTreeMap::from([
                (CLAIM_APIMANAGER_NAME.to_owned(), apimanager.name_any()),
                (CLAIM_APIMANAGER_UID.to_owned(), apimanager.uid().unwrap_or_default()),
                (CLAIM_BACKUP_NAME.to_owned(), backup.name_any()),
                (CLAIM_BACKUP_UID.to_owned(), backup.uid().unwrap_or_default()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: storage_class,
            volume_name: destination.volume_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The backup Jobs' ServiceAccount, shared by the backups of a namespace (no owner). It holds no
/// permission between backups: the bindings are removed when a backup ends.
pub fn job_service_account(namespace: &str) -> ServiceAccount {
    service_account(namespace, JOB_SERVICE_ACCOUNT)
}

/// ServiceAccount `name` of `namespace` for the Jobs of the operations there (no owner: it is
/// shared, and holds no permission between operations).
pub fn service_account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())])),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

/// Name of the per-backup Role and its RoleBinding (by UID: names cannot collide across backups).
pub fn rbac_name(backup: &APIManagerBackup) -> String {
    format!("apimanager-backup-{}", backup.uid().unwrap_or_default())
}

/// Name of the per-backup RoleBinding to the data ClusterRole.
pub fn data_binding_name(backup: &APIManagerBackup) -> String {
    format!("apimanager-backup-data-{}", backup.uid().unwrap_or_default())
}

/// A Role allowing `get` on exactly the backed-up APIManager, owned by the backup.
pub fn apimanager_role(backup: &APIManagerBackup, apimanager: &str) -> Role {
    Role {
        metadata: owned_meta(backup, rbac_name(backup)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.to_owned()]),
            resources: Some(vec!["apimanagers".to_owned()]),
            resource_names: Some(vec![apimanager.to_owned()]),
            verbs: vec!["get".to_owned()],
            ..PolicyRule::default()
        }]),
    }
}

fn job_subjects<O: Operation>(owner: &O, service_account: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: service_account.to_owned(),
        namespace: owner.namespace(),
        ..Subject::default()
    }]
}

/// Binds [`apimanager_role`] to the Jobs' ServiceAccount.
pub fn apimanager_role_binding(backup: &APIManagerBackup) -> RoleBinding {
    RoleBinding {
        metadata: owned_meta(backup, rbac_name(backup)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: rbac_name(backup),
        },
        subjects: Some(job_subjects(backup, JOB_SERVICE_ACCOUNT)),
    }
}

/// Binds the data ClusterRole (the named Secrets and ConfigMaps) to the Jobs' ServiceAccount in
/// the backup's namespace only.
pub fn data_role_binding(backup: &APIManagerBackup) -> RoleBinding {
    cluster_role_binding(backup, data_binding_name(backup), JOB_DATA_CLUSTER_ROLE, JOB_SERVICE_ACCOUNT)
}

/// RoleBinding `name`, owned by `owner`, of ClusterRole `cluster_role` to ServiceAccount
/// `service_account` of the owner's namespace: the grant holds in that namespace only.
pub fn cluster_role_binding<O: Operation>(
    owner: &O,
    name: String,
    cluster_role: &str,
    service_account: &str,
) -> RoleBinding {
    RoleBinding {
        metadata: owned_meta(owner, name),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: cluster_role.to_owned(),
        },
        subjects: Some(job_subjects(owner, service_account)),
    }
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

/// The Job of `step`, owned by `owner`, stopped by Kubernetes after `deadline_seconds` (what is left
/// of the operation's timeout): non-root, read-only root filesystem, no capabilities, an API token
/// only when the step reads the API, its failure reason in [`TERMINATION_LOG`].
pub fn job<O: Operation>(owner: &O, step: &JobStep, settings: &JobSettings, deadline_seconds: i64) -> Job {
    let mut args = vec!["job".to_owned(), step.name.to_owned()];
    args.extend(step.args.iter().cloned());
    args.push(format!("--termination-log={TERMINATION_LOG}"));
    let mounts = step
        .claims
        .iter()
        .map(|c| VolumeMount {
            name: c.volume.to_owned(),
            mount_path: c.path.to_owned(),
            read_only: c.read_only.then_some(true),
            ..VolumeMount::default()
        })
        .collect();
    let volumes = step.claims.iter().map(|c| claim_volume(c.volume, &c.claim, c.read_only)).collect();
    let container = Container {
        name: step.name.to_owned(),
        image: Some(settings.image.clone()),
        command: Some(vec![settings.command.clone()]),
        args: Some(args),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_LOG.to_owned()),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".into())),
                ("memory".to_owned(), Quantity("32Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), Quantity("256Mi".into()))])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let meta = owned_meta(owner, step.job_name(owner));
    Job {
        spec: Some(JobSpec {
            backoff_limit: Some(settings.backoff_limit),
            active_deadline_seconds: Some(deadline_seconds.max(1)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: meta.labels.clone(), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(step.service_account.to_owned()),
                    automount_service_account_token: Some(step.api_access),
                    security_context: Some(pod_security(step, settings)),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        metadata: meta,
        status: None,
    }
}

/// Non-root with a numeric user, the claims made writable through `fsGroup`, and for a Pod mounting
/// System FileStorage its group as a supplemental group (that claim stays read-only for a copy and
/// is never re-owned).
fn pod_security(step: &JobStep, settings: &JobSettings) -> PodSecurityContext {
    let mounts_file_storage = step.claims.iter().any(|c| c.path == crate::layout::FILE_STORAGE_MOUNT);
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(JOB_USER),
        run_as_group: Some(JOB_USER),
        fs_group: Some(JOB_USER),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        supplemental_groups: settings.file_storage_group.filter(|_| mounts_file_storage).map(|group| vec![group]),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_owned(),
            read_only: read_only.then_some(true),
        }),
        ..Volume::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::FileStorage;
    use crate::reconcile::backup::BackupPlan;
    use crate::reconcile::fixtures::{BACKUP_UID, NAMESPACE, apimanager, backup};
    use serde_json::json;

    fn settings() -> JobSettings {
        JobSettings {
            image: "registry/abo:1".into(),
            command: "/abo".into(),
            backoff_limit: 2,
            file_storage_group: Some(1001),
        }
    }

    fn steps(storage: FileStorage) -> Vec<JobStep> {
        let backup = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        backup.job_steps(&BackupPlan { apimanager: "example".into(), storage })
    }

    fn pod_spec(job: &Job) -> &PodSpec {
        job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec")
    }

    #[test]
    fn claim_with_volume_name_binds_to_that_volume_with_an_empty_storage_class() {
        let destination = json!({"volumeName": "pv-1", "storageClass": "fast", "resources": {"requests": "2Gi"}});
        let claim = backup_claim(&backup(destination, json!({})), &apimanager(json!({})));
        let spec = claim.spec.expect("spec");
        assert_eq!(spec.volume_name.as_deref(), Some("pv-1"));
        assert_eq!(spec.storage_class_name.as_deref(), Some(""), "never the default class");
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        let requests = spec.resources.and_then(|r| r.requests).expect("requests");
        assert_eq!(requests["storage"], Quantity("2Gi".into()));
    }

    #[test]
    fn claim_carries_its_class_annotations_and_no_owner() {
        let destination = json!({"storageClass": "fast", "resources": {"requests": "1Gi"}});
        let claim = backup_claim(&backup(destination, json!({})), &apimanager(json!({})));
        assert_eq!(claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()), Some("fast"));
        assert_eq!(claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()), None);
        assert_eq!(claim.metadata.name.as_deref(), Some("b"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(claim.metadata.owner_references, None, "the claim outlives the APIManagerBackup");
        let annotations = claim.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations,
            BTreeMap::from([
                (CLAIM_APIMANAGER_NAME.to_owned(), "example".to_owned()),
                (CLAIM_APIMANAGER_UID.to_owned(), "am-uid".to_owned()),
                (CLAIM_BACKUP_NAME.to_owned(), "b".to_owned()),
                (CLAIM_BACKUP_UID.to_owned(), BACKUP_UID.to_owned()),
            ])
        );
        assert_eq!(claim.metadata.labels.expect("labels")[crate::names::BACKUP_UID_LABEL], BACKUP_UID);
    }

    #[test]
    fn jobs_run_unprivileged_with_a_deadline_owned_by_the_backup() {
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        for step in steps(FileStorage::Claim("system-storage".into())) {
            let job = job(&owner, &step, &settings(), 120);
            assert_eq!(job.metadata.name, Some(format!("{}-{BACKUP_UID}", step.name)));
            let owners = job.metadata.owner_references.clone().expect("owner");
            assert_eq!((owners[0].kind.as_str(), owners[0].controller), ("APIManagerBackup", Some(true)));
            let spec = job.spec.as_ref().expect("job spec");
            assert_eq!((spec.backoff_limit, spec.active_deadline_seconds), (Some(2), Some(120)));
            let pod = pod_spec(&job);
            assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
            assert_eq!(pod.service_account_name.as_deref(), Some(JOB_SERVICE_ACCOUNT));
            let pod_security = pod.security_context.as_ref().expect("pod security context");
            assert_eq!(pod_security.run_as_non_root, Some(true));
            let ids = (pod_security.run_as_user, pod_security.run_as_group, pod_security.fs_group);
            assert_eq!(ids, (Some(JOB_USER), Some(JOB_USER), Some(JOB_USER)), "numeric user, group and fsGroup");
            assert_eq!(pod_security.seccomp_profile.as_ref().map(|p| p.type_.as_str()), Some("RuntimeDefault"));
            let container = &pod.containers[0];
            let security = container.security_context.as_ref().expect("container security context");
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert_eq!(security.capabilities.as_ref().and_then(|c| c.drop.clone()), Some(vec!["ALL".to_owned()]));
            assert_eq!(container.image.as_deref(), Some("registry/abo:1"));
            assert_eq!(container.command, Some(vec!["/abo".to_owned()]));
            assert_eq!(container.termination_message_path.as_deref(), Some(TERMINATION_LOG));
            let args = container.args.clone().expect("args");
            assert_eq!(args[..2], ["job".to_owned(), step.name.to_owned()]);
            assert_eq!(args.last().map(String::as_str), Some("--termination-log=/dev/termination-log"));
        }
    }

    #[test]
    fn a_spent_timeout_still_gives_a_valid_deadline() {
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        let job = job(&owner, &steps(FileStorage::S3)[0], &settings(), 0);
        assert_eq!(job.spec.and_then(|s| s.active_deadline_seconds), Some(1));
    }

    #[test]
    fn only_the_export_gets_an_api_token_and_the_copy_reads_file_storage_read_only() {
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        let [export, copy] = <[JobStep; 2]>::try_from(steps(FileStorage::Claim("files".into()))).expect("two steps");
        let export = job(&owner, &export, &settings(), 60);
        assert_eq!(pod_spec(&export).automount_service_account_token, Some(true));
        let groups = |pod: &PodSpec| pod.security_context.as_ref().and_then(|c| c.supplemental_groups.clone());
        assert_eq!(groups(pod_spec(&export)), None, "no FileStorage group without FileStorage");
        let copy = job(&owner, &copy, &settings(), 60);
        let pod = pod_spec(&copy);
        assert_eq!(pod.automount_service_account_token, Some(false), "no token on the copy Job");
        assert_eq!(groups(pod), Some(vec![1001]), "the copy reads group-only files through the FileStorage group");
        let volumes: Vec<(String, String, Option<bool>)> = pod
            .volumes
            .iter()
            .flatten()
            .map(|v| {
                let claim = v.persistent_volume_claim.as_ref().expect("a claim");
                (v.name.clone(), claim.claim_name.clone(), claim.read_only)
            })
            .collect();
        assert_eq!(
            volumes,
            [
                ("backup".to_owned(), "b".to_owned(), None),
                ("system-storage".to_owned(), "files".to_owned(), Some(true))
            ]
        );
        let mounts = pod.containers[0].volume_mounts.clone().expect("mounts");
        assert_eq!(mounts[1].mount_path, crate::layout::FILE_STORAGE_MOUNT);
        assert_eq!(mounts[1].read_only, Some(true));
    }

    #[test]
    fn s3_file_storage_means_no_copy_step() {
        let names: Vec<&str> = steps(FileStorage::S3).iter().map(|s| s.name).collect();
        assert_eq!(names, [crate::names::EXPORT_OBJECTS]);
    }

    #[test]
    fn job_rbac_grants_exactly_the_apimanager_and_the_data_role() {
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        let role = apimanager_role(&owner, "example");
        let rule = &role.rules.expect("rules")[0];
        assert_eq!(rule.resource_names, Some(vec!["example".to_owned()]));
        assert_eq!(rule.verbs, ["get"]);
        assert_eq!(role.metadata.name, Some(format!("apimanager-backup-{BACKUP_UID}")));
        let data = data_role_binding(&owner);
        assert_eq!((data.role_ref.kind.as_str(), data.role_ref.name.as_str()), ("ClusterRole", JOB_DATA_CLUSTER_ROLE));
        let subject = &data.subjects.expect("subjects")[0];
        assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (JOB_SERVICE_ACCOUNT, Some(NAMESPACE)));
    }
}
