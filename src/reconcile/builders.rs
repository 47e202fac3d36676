//! The objects a backup creates, built from the APIManagerBackup and its APIManager as plain
//! values (no API calls), so their shape is tested directly.

use crate::api::GROUP;
use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackup;
use crate::layout::{BACKUP_MOUNT, FILE_STORAGE_MOUNT};
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

/// Label on everything the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "apimanager-backup-operator");
/// Label holding the UID of the APIManagerBackup an object belongs to (a UID always fits a label
/// value; a name of up to 253 characters does not).
pub const BACKUP_UID_LABEL: &str = "apps.3scale.net/apimanagerbackup-uid";
/// ServiceAccount the backup Jobs run as.
pub const JOB_SERVICE_ACCOUNT: &str = "apimanager-backup";
/// ClusterRole (shipped in `manifests/rbac.yaml`) that reads exactly the backed-up Secrets and
/// ConfigMaps by name; the operator binds it per backup and never reads them itself.
pub const JOB_DATA_CLUSTER_ROLE: &str = "apimanager-backup-job";

/// How the Jobs are run.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Container image holding this binary.
    pub image: String,
    /// The binary's path (or name on `PATH`) inside the image.
    pub command: String,
    /// Retries of a failed Pod before the Job fails.
    pub backoff_limit: i32,
}

/// The two Job steps of a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Secrets, ConfigMaps and the APIManager.
    ExportObjects,
    /// The System FileStorage claim.
    CopyFiles,
}

impl Step {
    /// The `job` subcommand and Job name prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::ExportObjects => "export-objects",
            Self::CopyFiles => "copy-files",
        }
    }

    /// The event action of the step (events of different actions are not merged into one series).
    pub fn action(self) -> &'static str {
        match self {
            Self::ExportObjects => "ExportObjects",
            Self::CopyFiles => "CopyFiles",
        }
    }

    /// The Job's name: `<step>-<backup uid>`, stable across operator restarts.
    pub fn job_name(self, backup: &APIManagerBackup) -> String {
        format!("{}-{}", self.name(), backup.uid().unwrap_or_default())
    }
}

fn labels(backup: &APIManagerBackup) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (BACKUP_UID_LABEL.to_owned(), backup.uid().unwrap_or_default()),
    ])
}

fn owned_meta(backup: &APIManagerBackup, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: backup.namespace(),
        labels: Some(labels(backup)),
        owner_references: backup.controller_owner_ref(&()).map(|owner| vec![owner]),
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
                ("apiManagerName".to_owned(), apimanager.name_any()),
                ("apiManagerUID".to_owned(), apimanager.uid().unwrap_or_default()),
                ("apiManagerBackupName".to_owned(), backup.name_any()),
                ("apiManagerBackupUID".to_owned(), backup.uid().unwrap_or_default()),
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

/// The Jobs' ServiceAccount, shared by the backups of a namespace (no owner). It holds no
/// permission between backups: the bindings are removed when a backup ends.
pub fn job_service_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(JOB_SERVICE_ACCOUNT.to_owned()),
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

fn job_subjects(backup: &APIManagerBackup) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: JOB_SERVICE_ACCOUNT.to_owned(),
        namespace: backup.namespace(),
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
        subjects: Some(job_subjects(backup)),
    }
}

/// Binds the data ClusterRole (the named Secrets and ConfigMaps) to the Jobs' ServiceAccount in
/// the backup's namespace only.
pub fn data_role_binding(backup: &APIManagerBackup) -> RoleBinding {
    RoleBinding {
        metadata: owned_meta(backup, data_binding_name(backup)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: JOB_DATA_CLUSTER_ROLE.to_owned(),
        },
        subjects: Some(job_subjects(backup)),
    }
}

/// The Job of `step`, owned by the backup, stopped by Kubernetes after `deadline_seconds` (what is
/// left of the backup timeout). `file_storage_claim` is the claim copied by [`Step::CopyFiles`].
pub fn job(
    backup: &APIManagerBackup,
    apimanager: &str,
    step: Step,
    file_storage_claim: &str,
    settings: &JobSettings,
    deadline_seconds: i64,
) -> Job {
    let namespace = backup.namespace().unwrap_or_default();
    let mut args = vec!["job".to_owned(), step.name().to_owned()];
    let mut mounts =
        vec![VolumeMount { name: "backup".to_owned(), mount_path: BACKUP_MOUNT.to_owned(), ..VolumeMount::default() }];
    let mut volumes = vec![claim_volume("backup", &backup.name_any(), false)];
    match step {
        Step::ExportObjects => args.extend([
            format!("--namespace={namespace}"),
            format!("--apimanager={apimanager}"),
            format!("--backup-name={}", backup.name_any()),
            format!("--backup-uid={}", backup.uid().unwrap_or_default()),
        ]),
        Step::CopyFiles => {
            args.push(format!("--source={FILE_STORAGE_MOUNT}"));
            mounts.push(VolumeMount {
                name: "system-storage".to_owned(),
                mount_path: FILE_STORAGE_MOUNT.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
            volumes.push(claim_volume("system-storage", file_storage_claim, true));
        }
    }
    args.extend([format!("--backup-dir={BACKUP_MOUNT}"), "--termination-log=/dev/termination-log".to_owned()]);
    let container = Container {
        name: step.name().to_owned(),
        image: Some(settings.image.clone()),
        command: Some(vec![settings.command.clone()]),
        args: Some(args),
        volume_mounts: Some(mounts),
        termination_message_path: Some("/dev/termination-log".to_owned()),
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
    let meta = owned_meta(backup, step.job_name(backup));
    Job {
        spec: Some(JobSpec {
            backoff_limit: Some(settings.backoff_limit),
            active_deadline_seconds: Some(deadline_seconds.max(1)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: meta.labels.clone(), ..ObjectMeta::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(JOB_SERVICE_ACCOUNT.to_owned()),
                    // Only the export talks to the API; the copy needs no token.
                    automount_service_account_token: Some(step == Step::ExportObjects),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
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
