//! The step jobs every operation runs, built as plain values (no API calls), so their shape is
//! tested directly: what a step is ([`JobStep`]), how steps group into one Pod per attempt
//! ([`StepJob`]), that Pod ([`pod`]) and the objects an owner of step Pods labels and binds the same
//! way whatever its kind ([`StepOwner`]).

use super::pods::attempt_name;
use crate::job::JobCommand;
use crate::names::{MANAGED_BY, STEP_JOB_LABEL, TERMINATION_LOG};
use crate::platform::Platform;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccount,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
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
pub const API_ACCESS_VOLUME: &str = "api-access";
/// Where a container finds the API token, the CA and its namespace (where the kubelet would
/// automount them, and where in-cluster clients look).
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// User and group the step Pods run as on Kubernetes: the image's numeric `USER` (see
/// `Containerfile`), so the Pods pass the `restricted` Pod Security Standard whatever the image says.
/// On OpenShift the platform assigns them (see [`pod_security`]).
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
    /// `--file-storage-group`: the group owning the System FileStorage files, given instead of the
    /// one each operation finds (see [`ClaimMount::group`]).
    pub file_storage_group: Option<i64>,
    /// The platform: who picks the Pods' user, group and `fsGroup`.
    pub platform: Platform,
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
    /// The user's Secrets its container mounts (an S3 bucket's credentials, CA bundle and keys).
    pub secrets: Vec<SecretMount>,
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
    /// The group its files are shared through (System's FileStorage group), which the Pod joins as
    /// a supplemental group; `None` for the operator's own claims.
    pub group: Option<i64>,
}

impl ClaimMount {
    /// The claim `claim` mounted at `path` as volume `volume`, no group of its own.
    pub fn new(volume: &'static str, claim: impl Into<String>, path: &'static str, read_only: bool) -> Self {
        Self { volume, claim: claim.into(), path, read_only, group: None }
    }
}

/// A user's Secret mounted read-only into a step's container: its value reaches the step through
/// the Pod spec only, never through arguments, status, events or logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMount {
    /// The volume's name in the Pod (one of [`SECRET_VOLUMES`]).
    pub volume: &'static str,
    /// The Secret's name.
    pub secret: String,
    /// Where it is mounted (a folder).
    pub path: &'static str,
    /// Only this key, as this file name in the folder; every key when `None`.
    pub item: Option<(String, &'static str)>,
}

/// The names of the volumes of users' Secrets a step Pod may have (the admission fence admits
/// these and no other Secret volume).
pub const SECRET_VOLUMES: [&str; 3] = ["s3-credentials", "s3-ca-bundle", "encryption-keys"];

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
    for mount in job.steps().flat_map(|step| &step.secrets) {
        if !volumes.iter().any(|v| v.name == mount.volume) {
            volumes.push(secret_volume(mount));
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
    mounts.extend(step.secrets.iter().map(|secret| VolumeMount {
        name: secret.volume.to_owned(),
        mount_path: secret.path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }));
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
        // The S3 FileStorage steps' bucket Secret, by reference only (see `JobCommand::secret_env`).
        env: step.command.secret_env().map(crate::job::filestorage_s3::secret_env),
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

/// Non-root, the claims made writable through `fsGroup`, and the groups of the claims mounted (the
/// System FileStorage group) as supplemental groups (a claim read for a copy is never re-owned). On
/// Kubernetes the user, group and `fsGroup` are [`JOB_USER`]; on OpenShift none is set, as
/// `restricted-v2` refuses ids outside the namespace's ranges and assigns them itself (the
/// container's group is then 0).
fn pod_security(job: &StepJob, settings: &JobSettings) -> PodSecurityContext {
    let mut groups: Vec<i64> = Vec::new();
    for group in job.steps().flat_map(|step| &step.claims).filter_map(|claim| claim.group) {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    let ids = match settings.platform {
        Platform::Kubernetes => Some(JOB_USER),
        Platform::OpenShift => None,
    };
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: ids,
        run_as_group: ids,
        fs_group: ids,
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        supplemental_groups: (!groups.is_empty()).then_some(groups),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

/// The volume of a user's Secret: readable by the Pod's group only (`fsGroup`), every key or the
/// one named.
fn secret_volume(mount: &SecretMount) -> Volume {
    Volume {
        name: mount.volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(mount.secret.clone()),
            default_mode: Some(0o440),
            items: mount
                .item
                .as_ref()
                .map(|(key, path)| vec![KeyToPath { key: key.clone(), path: (*path).to_owned(), mode: None }]),
            optional: None,
        }),
        ..Volume::default()
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
