//! The step jobs every operation runs, built as plain values (no API calls), so their shape is
//! tested directly: what a step is ([`JobStep`]), how steps group into one Pod per attempt
//! ([`StepJob`]), that Pod ([`pod`]) and the objects an owner of step Pods labels and binds the same
//! way whatever its kind ([`StepOwner`]).

use super::pods::attempt_name;
use crate::job::JobCommand;
use crate::names::{MANAGED_BY, STEP_JOB_LABEL, TERMINATION_LOG};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccount, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// An object that owns step Pods (and what they need): each carries the owner's UID in a label of
/// the owner's kind.
pub trait StepOwner: Resource<DynamicType = ()> {
    /// The label holding its UID on every object it creates.
    const UID_LABEL: &'static str;
}

/// The volume of the API token, mounted only into containers of steps reading the API.
const API_ACCESS_VOLUME: &str = "api-access";
/// Where a container finds the API token, the CA and its namespace (where the kubelet would
/// automount them, and where in-cluster clients look).
const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// User and group the step Pods run as: the image's numeric `USER` (see `Containerfile`), so the
/// Pods pass the `restricted` Pod Security Standard whatever the image says.
pub const JOB_USER: i64 = 65532;

/// How the step Pods are run.
#[derive(Clone, Debug)]
pub struct JobSettings {
    /// Container image holding this binary.
    pub image: String,
    /// The binary's path (or name on `PATH`) inside the image.
    pub command: String,
    /// Retries of a failed attempt (a new Pod each) before its step job fails.
    pub backoff_limit: i32,
    /// Group owning the System FileStorage files (the System app Pods' `fsGroup` or group), added
    /// to the supplemental groups of the Pods mounting that claim, so they read group-only files
    /// without the files ever being changed.
    pub file_storage_group: Option<i64>,
}

/// A step that runs in a step job's Pod: what the step machine and the Pod builder need to know of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStep {
    /// What its container runs: `job <name>` and its typed arguments; the name is also the
    /// container's and the name prefix of a step job running it alone.
    pub command: JobCommand,
    /// The action of the `JobCreated` event of a step job running it alone (events of different actions
    /// are not merged).
    pub action: &'static str,
    /// The `Ready` reason while it runs, e.g. `ExportingObjects`.
    pub reason: &'static str,
    /// What it does, for the `Ready` message.
    pub doing: &'static str,
    /// The claims its container mounts.
    pub claims: Vec<ClaimMount>,
    /// The ServiceAccount its Pod runs as.
    pub service_account: &'static str,
    /// Whether its container gets an API token (only steps reading the API do).
    pub api_access: bool,
}

impl JobStep {
    /// The step's name: its `job` subcommand and its container's name (one of [`crate::names`]' steps).
    pub fn name(&self) -> &'static str {
        self.command.name()
    }

    /// The name of a step job running this step alone: `<step>-<owner uid>`.
    pub fn job_name<K: Resource>(&self, owner: &K) -> String {
        job_name(self.name(), owner)
    }
}

/// Step job `<prefix>-<owner uid>`: stable across operator restarts.
fn job_name<K: Resource>(prefix: &str, owner: &K) -> String {
    format!("{prefix}-{}", owner.uid().unwrap_or_default())
}

/// One step job of an operation: its steps run one after the other in one Pod per attempt, those
/// before `main` as init containers, so the operator creates and tracks one Pod for all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepJob {
    /// The step job's name prefix.
    pub name: &'static str,
    /// The action of its `JobCreated` event.
    pub action: &'static str,
    /// The steps run first, in order, each to success (init containers).
    pub init: Vec<JobStep>,
    /// The last step (the Pod's container).
    pub main: JobStep,
}

impl StepJob {
    /// A step job running `step` alone, named after it.
    pub fn single(step: JobStep) -> Self {
        Self { name: step.name(), action: step.action, init: Vec::new(), main: step }
    }

    /// The step job's name: `<name>-<owner uid>` (its Pods `<name>-<owner uid>-<attempt>`), stable
    /// across operator restarts.
    pub fn job_name<K: Resource>(&self, owner: &K) -> String {
        job_name(self.name, owner)
    }

    /// Every step, in the order they run.
    pub fn steps(&self) -> impl Iterator<Item = &JobStep> {
        self.init.iter().chain(std::iter::once(&self.main))
    }

    /// The step running while the step job runs: the last one once its Pod is ready (a Pod is ready only
    /// after every init container succeeded), else the first.
    pub fn running_step(&self, pod_ready: bool) -> &JobStep {
        if pod_ready { &self.main } else { self.init.first().unwrap_or(&self.main) }
    }
}

/// A claim mounted into a step Pod.
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

/// The labels of everything `owner` creates: managed by this operator, and `owner`'s UID.
pub fn labels<O: StepOwner>(owner: &O) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (O::UID_LABEL.to_owned(), owner.uid().unwrap_or_default()),
    ])
}

/// The metadata of object `name` that `owner` creates and controls (deleted with it).
pub fn owned_meta<O: StepOwner>(owner: &O, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.namespace(),
        labels: Some(labels(owner)),
        owner_references: owner.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// ServiceAccount `name` of `namespace` for the step Pods of the operations there (no owner: it is
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

/// The subjects of a binding to ServiceAccount `service_account` of `owner`'s namespace.
pub fn job_subjects<O: StepOwner>(owner: &O, service_account: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".to_owned(),
        name: service_account.to_owned(),
        namespace: owner.namespace(),
        ..Subject::default()
    }]
}

/// RoleBinding `name`, owned by `owner`, of ClusterRole `cluster_role` to ServiceAccount
/// `service_account` of the owner's namespace: the grant holds in that namespace only.
pub fn cluster_role_binding<O: StepOwner>(
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

/// Attempt `attempt` of step job `job`: one Pod (`<job name>-<attempt>`) owned by `owner`, its
/// steps before the last as init containers, stopped by its node after `deadline_seconds` (what is
/// left of the operation's timeout): non-root, read-only root filesystem, no capabilities, an API
/// token only in the containers of steps reading the API, each container's failure reason in
/// [`TERMINATION_LOG`].
pub fn pod<O: StepOwner>(owner: &O, job: &StepJob, attempt: u32, settings: &JobSettings, deadline_seconds: i64) -> Pod {
    let mut volumes: Vec<Volume> = Vec::new();
    for claim in job.steps().flat_map(|step| &step.claims) {
        if !volumes.iter().any(|v| v.name == claim.volume) {
            volumes.push(claim_volume(claim.volume, &claim.claim, claim.read_only));
        }
    }
    if job.steps().any(|step| step.api_access) {
        volumes.push(api_access_volume());
    }
    let init: Vec<Container> = job.init.iter().map(|step| container(step, settings)).collect();
    let job_name = job.job_name(owner);
    let mut meta = owned_meta(owner, attempt_name(&job_name, attempt));
    meta.labels.get_or_insert_default().insert(STEP_JOB_LABEL.to_owned(), job_name);
    // Foreground deletion of the operation waits for its Pods.
    for owner in meta.owner_references.iter_mut().flatten() {
        owner.block_owner_deletion = Some(true);
    }
    Pod {
        metadata: meta,
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            active_deadline_seconds: Some(deadline_seconds.max(1)),
            service_account_name: Some(job.main.service_account.to_owned()),
            // Only the containers of steps reading the API mount a token (`api_access_volume`).
            automount_service_account_token: Some(false),
            security_context: Some(pod_security(job, settings)),
            init_containers: (!init.is_empty()).then_some(init),
            containers: vec![container(&job.main, settings)],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The container of `step`: `job <step> <args>`, its claims mounted, the API token mounted when it
/// reads the API.
fn container(step: &JobStep, settings: &JobSettings) -> Container {
    let args = step.command.argv();
    let mut mounts: Vec<VolumeMount> = step
        .claims
        .iter()
        .map(|c| VolumeMount {
            name: c.volume.to_owned(),
            mount_path: c.path.to_owned(),
            read_only: c.read_only.then_some(true),
            ..VolumeMount::default()
        })
        .collect();
    if step.api_access {
        mounts.push(VolumeMount {
            name: API_ACCESS_VOLUME.to_owned(),
            mount_path: SERVICE_ACCOUNT_MOUNT.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    Container {
        name: step.name().to_owned(),
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
    }
}

/// The Pod volume holding what the kubelet would automount for the ServiceAccount (a bound token,
/// the cluster's CA, the namespace), mounted only into containers reading the API, so a step
/// reading files only never holds a token even when it shares the Pod with one that reads the API.
fn api_access_volume() -> Volume {
    let token = ServiceAccountTokenProjection {
        path: "token".to_owned(),
        expiration_seconds: Some(3607),
        ..ServiceAccountTokenProjection::default()
    };
    let ca = ConfigMapProjection {
        name: "kube-root-ca.crt".to_owned(),
        items: Some(vec![KeyToPath { key: "ca.crt".to_owned(), path: "ca.crt".to_owned(), mode: None }]),
        optional: None,
    };
    let namespace = DownwardAPIProjection {
        items: Some(vec![DownwardAPIVolumeFile {
            path: "namespace".to_owned(),
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: "metadata.namespace".to_owned(),
            }),
            ..DownwardAPIVolumeFile::default()
        }]),
    };
    Volume {
        name: API_ACCESS_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection { service_account_token: Some(token), ..VolumeProjection::default() },
                VolumeProjection { config_map: Some(ca), ..VolumeProjection::default() },
                VolumeProjection { downward_api: Some(namespace), ..VolumeProjection::default() },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Non-root with a numeric user, the claims made writable through `fsGroup`, and for a Pod mounting
/// System FileStorage its group as a supplemental group (that claim stays read-only for a copy and
/// is never re-owned).
fn pod_security(job: &StepJob, settings: &JobSettings) -> PodSecurityContext {
    let mounts_file_storage =
        job.steps().flat_map(|step| &step.claims).any(|c| c.path == crate::layout::FILE_STORAGE_MOUNT);
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
    use crate::backup::operation::BackupPlan;
    use crate::names::JOB_SERVICE_ACCOUNT;
    use crate::reconcile::fixtures::{BACKUP_UID, backup};
    use crate::reconcile::machine::Operation;
    use serde_json::json;

    fn settings() -> JobSettings {
        JobSettings {
            image: "registry/abo:1".into(),
            command: "/abo".into(),
            backoff_limit: 2,
            file_storage_group: Some(1001),
        }
    }

    fn jobs(storage: FileStorage) -> Vec<StepJob> {
        let backup = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        backup.jobs(&BackupPlan { apimanager: "example".into(), storage })
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
        for storage in [FileStorage::Claim("system-storage".into()), FileStorage::S3] {
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
        let attempt = pod(&owner, &jobs(FileStorage::S3)[0], 0, &settings(), 0);
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
        let token =
            pod.volumes.iter().flatten().find(|v| v.name == API_ACCESS_VOLUME).and_then(|v| v.projected.clone());
        let sources = token.and_then(|p| p.sources).expect("projected sources");
        assert!(sources[0].service_account_token.as_ref().is_some_and(|t| t.path == "token"));
        assert_eq!(sources[1].config_map.as_ref().map(|c| c.name.as_str()), Some("kube-root-ca.crt"));
    }

    #[test]
    fn s3_file_storage_means_no_copy_step() {
        let [one] = <[StepJob; 1]>::try_from(jobs(FileStorage::S3)).expect("one step job");
        let names: Vec<&str> = one.steps().map(JobStep::name).collect();
        assert_eq!(names, [crate::names::EXPORT_OBJECTS]);
        let pod = pod_spec(&pod(&backup(json!({}), json!({})), &one, 0, &settings(), 60)).clone();
        assert_eq!(pod.init_containers, None);
        let groups = pod.security_context.and_then(|c| c.supplemental_groups);
        assert_eq!(groups, None, "no FileStorage group without FileStorage");
    }

    /// Every step's command line, as its container runs it, parses back (by the binary's own
    /// command line) into the very command it was built from.
    #[test]
    fn every_step_command_line_parses_back_into_its_command() {
        use crate::cli::{Cli, Command};
        use crate::reconcile::fixtures::restore;
        use crate::restore::operation::RestorePlan;
        use clap::Parser;
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        let backups = [FileStorage::Claim("files".into()), FileStorage::S3].map(|storage| {
            owner
                .jobs(&BackupPlan { apimanager: "example".into(), storage })
                .into_iter()
                .flat_map(|job| job.steps().cloned().collect::<Vec<_>>())
        });
        let restored =
            restore(json!({"apiManagerToRestoreRef": {"name": "example"}, "systemStorageClaimName": "system-storage"}));
        let restores = [restore(json!({})), restored].map(|r| r.job_steps(&RestorePlan { claim: "nightly".into() }));
        let steps: Vec<JobStep> = backups.into_iter().flatten().chain(restores.into_iter().flatten()).collect();
        let mut names: Vec<&str> = steps.iter().map(JobStep::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names,
            ["copy-files", "export-objects", "restore-apimanager", "restore-files", "restore-objects", "verify"],
            "every step is built"
        );
        for step in steps {
            let job = StepJob::single(step.clone());
            let attempt = pod(&owner, &job, 0, &settings(), 60);
            let container = &pod_spec(&attempt).containers[0];
            let command_line = std::iter::once("/abo".to_owned()).chain(container.args.clone().expect("args"));
            match Cli::try_parse_from(command_line) {
                Ok(Cli { command: Command::Job(parsed), .. }) => assert_eq!(parsed, step.command),
                Ok(_) => panic!("{} parses as another command", step.name()),
                Err(error) => panic!("{} does not parse: {error}", step.name()),
            }
        }
    }
}
