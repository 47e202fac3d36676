//! The node stand-in: no kubelet runs locally, so this plays the node for backup Pods, each Pod
//! on its own task (Pods run in parallel, as on a node). It runs each Pod's init containers one
//! after the other, then its container, each command (this binary) as a local process with the
//! Pod's claims mapped to folders, as the Pod's user, group and supplemental groups, with a token
//! of the Pod's ServiceAccount when the container gets one, and writes the Pod's phase, conditions
//! and each container's state, exit code and termination message back through the API as a
//! kubelet does. As a kubelet, it enforces the Pod's `activeDeadlineSeconds`: at the deadline it
//! kills the running container's process and reports the Pod `Failed` with reason
//! `DeadlineExceeded`.

use super::background::Background;
use super::control_plane::kubeconfig;
use super::pod_security::{self, ConfigError, Identity};
use crate::names::managed_by_selector;
use crate::reconcile::pods::DEADLINE_EXCEEDED;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the stand-in needs to run Pods.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The binary that Pods whose command is `apimanager-backup-operator` run.
    pub operator_binary: PathBuf,
    /// Claims become folders `<volumes>/<namespace>/<claim>`.
    pub volumes: PathBuf,
    /// Per-Pod working folders (kubeconfig, log, termination message).
    pub pods: PathBuf,
    /// API server URL for the Pods' kubeconfigs.
    pub server: String,
    /// CA the Pods trust.
    pub ca: PathBuf,
}

/// The running stand-in; dropping it stops it (Pods already started finish on their own).
pub struct NodeStandIn {
    paused: Arc<AtomicBool>,
    paused_namespaces: PausedNamespaces,
    _task: Background,
    _reclaim: Background,
}

impl NodeStandIn {
    /// Starts watching backup Pods with `admin` credentials, on a thread and runtime of its own,
    /// and removing the folders of deleted claims.
    pub fn start(admin_kubeconfig: PathBuf, settings: NodeSettings) -> Self {
        let paused = Arc::new(AtomicBool::new(false));
        let paused_namespaces = PausedNamespaces::default();
        let flag = Paused { all: paused.clone(), namespaces: paused_namespaces.clone() };
        let volumes = settings.volumes.clone();
        let reclaim = Background::spawn("volume-reclaim", admin_kubeconfig.clone(), move |client| {
            super::reclaim::reclaim_deleted_claims(client, volumes)
        });
        let task =
            Background::spawn("node-stand-in", admin_kubeconfig, move |client| watch_pods(client, settings, flag));
        Self { paused, paused_namespaces, _task: task, _reclaim: reclaim }
    }

    /// Holds Pods (Pending) instead of running them until the guard drops, so a backup stays in
    /// progress.
    pub fn pause(&self) -> PauseGuard {
        self.paused.store(true, Ordering::SeqCst);
        PauseGuard(Resume::All(self.paused.clone()))
    }

    /// [`pause`](Self::pause) for the Pods of `namespace` only (tests sharing a cluster each
    /// work in a namespace of their own).
    pub fn pause_in(&self, namespace: &str) -> PauseGuard {
        lock(&self.paused_namespaces).insert(namespace.to_owned());
        PauseGuard(Resume::Namespace(self.paused_namespaces.clone(), namespace.to_owned()))
    }
}

/// The namespaces whose Pods are held.
type PausedNamespaces = Arc<Mutex<HashSet<String>>>;

fn lock(namespaces: &PausedNamespaces) -> std::sync::MutexGuard<'_, HashSet<String>> {
    namespaces.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What holds Pods: every Pod, or those of some namespaces.
#[derive(Clone)]
struct Paused {
    all: Arc<AtomicBool>,
    namespaces: PausedNamespaces,
}

impl Paused {
    fn holds(&self, namespace: &str) -> bool {
        self.all.load(Ordering::SeqCst) || lock(&self.namespaces).contains(namespace)
    }
}

/// What a [`PauseGuard`] resumes.
enum Resume {
    All(Arc<AtomicBool>),
    Namespace(PausedNamespaces, String),
}

/// Keeps the node stand-in paused while alive.
pub struct PauseGuard(Resume);

impl Drop for PauseGuard {
    fn drop(&mut self) {
        match &self.0 {
            Resume::All(paused) => paused.store(false, Ordering::SeqCst),
            Resume::Namespace(namespaces, namespace) => {
                lock(namespaces).remove(namespace);
            }
        }
    }
}

async fn watch_pods(client: kube::Client, settings: NodeSettings, paused: Paused) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&managed_by_selector());
    let mut seen = HashSet::new();
    let mut events = std::pin::pin!(watcher(pods, config).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        let pending = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|p| p == "Pending");
        let Some(uid) = pod.uid() else { continue };
        if pending && pod.metadata.deletion_timestamp.is_none() && seen.insert(uid) {
            let (client, settings, paused) = (client.clone(), settings.clone(), paused.clone());
            tokio::spawn(async move {
                while paused.holds(&pod.namespace().unwrap_or_default()) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                let ran = match deadline.and_then(|seconds| u64::try_from(seconds).ok()) {
                    // Dropping the run at the deadline kills its process (`kill_on_drop`).
                    Some(seconds) => {
                        tokio::time::timeout(Duration::from_secs(seconds), run_pod(&client, &settings, &pod)).await
                    }
                    None => Ok(run_pod(&client, &settings, &pod).await),
                };
                let Ok(ran) = ran else {
                    tracing::info!(pod = %name, "node stand-in: the Pod's activeDeadlineSeconds passed; stopped it");
                    if let Err(error) = report_deadline_exceeded(&client, &pod).await {
                        tracing::warn!(pod = %name, %error, "node stand-in could not mark the Pod Failed");
                    }
                    return;
                };
                if let Err(error) = ran {
                    tracing::warn!(pod = %name, %error, "node stand-in could not run the Pod; marking it Failed");
                    if let Err(error) = report_failure(&client, &pod, &error).await {
                        tracing::warn!(pod = %name, %error, "node stand-in could not mark the Pod Failed");
                    }
                }
            });
        }
    }
}

/// Why a Pod could not be run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// A local file or process failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The Pod asks for something the stand-in cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// The container's security settings cannot be honoured (a kubelet's
    /// `CreateContainerConfigError`).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A required environment variable's Secret or key is missing (a kubelet's
    /// `CreateContainerConfigError`).
    #[error("{0}")]
    Env(String),
    /// A volume's Secret or key is missing (a kubelet's `FailedMount`).
    #[error("{0}")]
    Mount(String),
}

impl NodeError {
    /// The Pod's status reason, as a kubelet would give it.
    fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) | Self::Env(_) => "CreateContainerConfigError",
            Self::Mount(_) => "FailedMount",
            _ => "NodeStandInError",
        }
    }
}

/// Replaces a leading `from` in `value` (or in the value of `--flag=value`) with `to`.
pub fn map_path(arg: &str, from: &str, to: &Path) -> String {
    let (flag, value) = match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (Some(flag), value),
        _ => (None, arg),
    };
    let mapped = match value.strip_prefix(from) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{}{rest}", to.display()),
        _ => return arg.to_owned(),
    };
    match flag {
        Some(flag) => format!("{flag}={mapped}"),
        None => mapped,
    }
}

/// How a container ended.
struct Terminated {
    code: i32,
    message: String,
    started: String,
    finished: String,
}

impl Terminated {
    fn state(&self) -> serde_json::Value {
        let reason = if self.code == 0 { "Completed" } else { "Error" };
        serde_json::json!({"terminated": {"exitCode": self.code, "reason": reason, "message": self.message,
            "startedAt": self.started, "finishedAt": self.finished}})
    }
}

/// A container's status entry as a kubelet writes it, in `state`.
pub(super) fn container_status(container: &Container, state: serde_json::Value, ready: bool) -> serde_json::Value {
    let started = state.get("running").is_some();
    serde_json::json!({"name": container.name, "image": container.image, "imageID": "", "ready": ready,
        "restartCount": 0, "started": started, "state": state})
}

/// A container not started yet (its Pod's init containers still run).
fn initializing() -> serde_json::Value {
    serde_json::json!({"waiting": {"reason": "PodInitializing"}})
}

/// The Pod conditions a kubelet reports: `Initialized` once every init container succeeded,
/// `ContainersReady` and `Ready` while the main container runs (the step machine shows the Pod's
/// last step once it is Ready).
pub(super) fn pod_conditions(initialized: bool, ready: bool, at: &str) -> serde_json::Value {
    let condition = |type_: &str, value: bool| serde_json::json!({"type": type_, "status": if value { "True" } else { "False" }, "lastTransitionTime": at});
    serde_json::json!([
        condition("PodScheduled", true),
        condition("Initialized", initialized),
        condition("ContainersReady", ready),
        condition("Ready", ready)
    ])
}

/// Runs the Pod like a kubelet: its init containers one after the other, each to success, then
/// its container; the Pod's status tells at each change which container runs and how each ended.
async fn run_pod(client: &kube::Client, settings: &NodeSettings, pod: &Pod) -> Result<(), NodeError> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let spec = pod.spec.clone().ok_or_else(|| NodeError::Unsupported("Pod without spec".into()))?;
    let [main]: [Container; 1] = spec
        .containers
        .clone()
        .try_into()
        .map_err(|_| NodeError::Unsupported("exactly one container (after init containers) is supported".into()))?;
    let init = spec.init_containers.clone().unwrap_or_default();
    let work = settings.pods.join(format!("{namespace}-{name}"));
    std::fs::create_dir_all(&work)?;
    let account = spec.service_account_name.clone().unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let account_automounts = accounts.get_opt(&account).await?.and_then(|a| a.automount_service_account_token);
    let node = PodRun { client, settings, pod, spec: &spec, work: &work, account: &account, account_automounts };

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let started = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut init_statuses: Vec<serde_json::Value> = Vec::new();
    for (index, container) in init.iter().enumerate() {
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut statuses = init_statuses.clone();
        statuses.push(container_status(container, serde_json::json!({"running": {"startedAt": now}}), false));
        statuses.extend(init[index + 1..].iter().map(|c| container_status(c, initializing(), false)));
        let status = serde_json::json!({"status": {"phase": "Pending", "startTime": started,
            "conditions": pod_conditions(false, false, &now), "initContainerStatuses": statuses,
            "containerStatuses": [container_status(&main, initializing(), false)]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await?;
        let ended = node.run_container(container).await?;
        init_statuses.push(container_status(container, ended.state(), false));
        if ended.code != 0 {
            // restartPolicy Never: a failed init container fails the Pod; the rest never start.
            init_statuses.extend(init[index + 1..].iter().map(|c| container_status(c, initializing(), false)));
            let failed = serde_json::json!({"status": {"phase": "Failed",
                "conditions": pod_conditions(false, false, &ended.finished), "initContainerStatuses": init_statuses,
                "containerStatuses": [container_status(&main, initializing(), false)]}});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&failed)).await?;
            tracing::info!(pod = %format!("{namespace}/{name}"), container = %container.name, code = ended.code, "node stand-in: init container failed");
            return Ok(());
        }
    }

    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let running = serde_json::json!({"status": {"phase": "Running", "startTime": started,
        "conditions": pod_conditions(true, true, &now), "initContainerStatuses": init_statuses,
        "containerStatuses": [container_status(&main, serde_json::json!({"running": {"startedAt": now}}), true)]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&running)).await?;
    let ended = node.run_container(&main).await?;
    let phase = if ended.code == 0 { "Succeeded" } else { "Failed" };
    let done = serde_json::json!({"status": {"phase": phase,
        "conditions": pod_conditions(true, false, &ended.finished), "initContainerStatuses": init_statuses,
        "containerStatuses": [container_status(&main, ended.state(), false)]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&done)).await?;
    tracing::info!(pod = %format!("{namespace}/{name}"), phase, code = ended.code, "node stand-in ran the Pod");
    Ok(())
}

/// What running one container of a Pod needs.
struct PodRun<'a> {
    client: &'a kube::Client,
    settings: &'a NodeSettings,
    pod: &'a Pod,
    spec: &'a PodSpec,
    work: &'a Path,
    account: &'a str,
    account_automounts: Option<bool>,
}

impl PodRun<'_> {
    /// Runs `container` to its end as its user, with its mounts, its termination message file and,
    /// when it gets one, a token of the Pod's ServiceAccount.
    async fn run_container(&self, container: &Container) -> Result<Terminated, NodeError> {
        let (spec, namespace) = (self.spec, self.pod.namespace().unwrap_or_default());
        let identity = pod_security::identity(spec, container)?;
        let switch_user = pod_security::can_switch_users();
        let work = self.work.join(&container.name);
        std::fs::create_dir_all(&work)?;

        let kubeconfig_path = if pod_security::gets_token(spec, container, self.account_automounts) {
            let token = pod_token(self.client, &namespace, self.account, self.pod).await?;
            let ca = work.join("ca.crt");
            std::fs::copy(&self.settings.ca, &ca)?;
            let path = work.join("kubeconfig");
            let config = kubeconfig(&self.settings.server, &ca, self.account, &token);
            write_private(&path, &config, &identity, switch_user)?;
            Some(path)
        } else {
            None
        };

        let fs_group = spec.security_context.as_ref().and_then(|c| c.fs_group).and_then(|g| u32::try_from(g).ok());
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for mount in container.volume_mounts.clone().unwrap_or_default() {
            let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
            if let Some(claim) = volume.and_then(|v| v.persistent_volume_claim.as_ref()) {
                let folder = self.settings.volumes.join(&namespace).join(&claim.claim_name);
                std::fs::create_dir_all(&folder)?;
                let read_only = mount.read_only == Some(true) || claim.read_only == Some(true);
                if let (false, true, Some(group)) = (read_only, switch_user, fs_group) {
                    pod_security::apply_fs_group(&folder, group)?;
                }
                mounts.push((mount.mount_path.clone(), folder));
            } else if let Some(secret) = volume.and_then(|v| v.secret.as_ref()) {
                let folder = work.join("secrets").join(&mount.name);
                write_secret_volume(self.client, &namespace, &mount.name, secret, &folder, &identity, switch_user)
                    .await?;
                mounts.push((mount.mount_path.clone(), folder));
            }
        }
        let termination = work.join("termination-log");
        let _ = std::fs::remove_file(&termination);
        write_private(&termination, "", &identity, switch_user)?;
        mounts.push((
            container.termination_message_path.clone().unwrap_or_else(|| crate::names::TERMINATION_LOG.into()),
            termination.clone(),
        ));
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let map = |arg: &String| {
            mounts
                .iter()
                .fold(arg.clone(), |arg, (from, to)| if arg.contains(from) { map_path(&arg, from, to) } else { arg })
        };

        let mut command = container.command.clone().unwrap_or_default();
        command.extend(container.args.clone().unwrap_or_default());
        let Some((program, args)) = command.split_first() else {
            return Err(NodeError::Unsupported(format!("container {} without command", container.name)));
        };
        let program = if Path::new(program).file_name().is_some_and(|f| f == "apimanager-backup-operator") {
            self.settings.operator_binary.clone()
        } else {
            PathBuf::from(program)
        };
        let args: Vec<String> = args.iter().map(map).collect();

        let started = k8s_openapi::jiff::Timestamp::now().to_string();
        let log_path = work.join("container.log");
        let log = std::fs::File::create(&log_path)?;
        let mut process = if switch_user {
            as_identity(&identity, &program)
        } else {
            tracing::warn!(pod = %format!("{namespace}/{}", self.pod.name_any()), "node stand-in not running as root: the Pod runs as this user, not as its runAsUser");
            tokio::process::Command::new(&program)
        };
        process.args(&args).env_remove("KUBECONFIG");
        for (name, value) in container_env(self.client, self.pod, container).await? {
            process.env_remove(&name);
            if let Some(value) = value {
                process.env(name, value);
            }
        }
        if let Some(path) = &kubeconfig_path {
            process.env("KUBECONFIG", path);
        }
        let output = process
            .kill_on_drop(true)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await?;
        let code = output.code().unwrap_or(128);
        let mut message = std::fs::read_to_string(&termination).unwrap_or_default();
        if message.is_empty() && code != 0 {
            message = super::process::tail(&log_path);
        }
        let finished = k8s_openapi::jiff::Timestamp::now().to_string();
        Ok(Terminated { code, message, started, finished })
    }
}

/// The environment of `container` of `pod` as a kubelet gives it: each variable's value, a field
/// of the Pod (`valueFrom.fieldRef`: its name, namespace, ServiceAccount, node or IP), or the key
/// of a Secret (`valueFrom.secretKeyRef`) read from the Pod's namespace; `None` for an optional
/// one that is absent. Other sources are not supported.
pub(super) async fn container_env(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, Option<String>)>, NodeError> {
    let namespace = pod.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        let Some(source) = &var.value_from else {
            env.push((var.name.clone(), Some(var.value.clone().unwrap_or_default())));
            continue;
        };
        if let Some(field) = &source.field_ref {
            env.push((var.name.clone(), Some(pod_field(pod, &field.field_path, &var.name)?)));
            continue;
        }
        let Some(selector) = &source.secret_key_ref else {
            return Err(NodeError::Unsupported(format!(
                "environment variable {} from other than a Secret or a field",
                var.name
            )));
        };
        let secret = secrets.get_opt(&selector.name).await?;
        let value = secret.as_ref().and_then(|s| s.data.as_ref()).and_then(|d| d.get(&selector.key));
        let value = value.map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
        if value.is_none() && selector.optional != Some(true) {
            let missing = if secret.is_none() { "secret not found" } else { "key not found in secret" };
            return Err(NodeError::Env(format!(
                "couldn't find key {} in Secret {namespace}/{}: {missing}",
                selector.key, selector.name
            )));
        }
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// The value of the Pod field `path` (a `fieldRef` of variable `name`).
fn pod_field(pod: &Pod, path: &str, name: &str) -> Result<String, NodeError> {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let value = match path {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.uid(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        _ => return Err(NodeError::Unsupported(format!("environment variable {name} from field {path}"))),
    };
    Ok(value.unwrap_or_default())
}

/// Writes the keys of the Secret a `secret` volume names (all, or its `items`) as files of
/// `folder`, readable only by `identity`'s user, as a kubelet projects them. A missing Secret or
/// key fails the Pod at once with the kubelet's `MountVolume.SetUp` words (a kubelet would retry
/// the mount until the Pod's deadline).
async fn write_secret_volume(
    client: &kube::Client,
    namespace: &str,
    volume: &str,
    source: &k8s_openapi::api::core::v1::SecretVolumeSource,
    folder: &Path,
    identity: &Identity,
    switch_user: bool,
) -> Result<(), NodeError> {
    let name = source.secret_name.clone().unwrap_or_default();
    let failed = |why: String| NodeError::Mount(format!("MountVolume.SetUp failed for volume {volume:?} : {why}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Err(failed(format!("secret {name:?} not found")));
    };
    let data = secret.data.unwrap_or_default();
    let files: Vec<(String, String)> = match &source.items {
        Some(items) => items.iter().map(|item| (item.key.clone(), item.path.clone())).collect(),
        None => data.keys().map(|key| (key.clone(), key.clone())).collect(),
    };
    let _ = std::fs::remove_dir_all(folder);
    std::fs::create_dir_all(folder)?;
    if switch_user {
        std::os::unix::fs::chown(folder, Some(identity.uid), Some(identity.gid))?;
    }
    for (key, path) in files {
        let Some(value) = data.get(&key) else {
            return Err(failed(format!("references non-existent secret key: {key}")));
        };
        let file = folder.join(&path);
        write_private_bytes(&file, &value.0, identity, switch_user)?;
    }
    Ok(())
}

/// Marks a Pod the stand-in could not run as Failed with the reason a kubelet would give, so its
/// operation fails at once instead of waiting out its deadline.
async fn report_failure(client: &kube::Client, pod: &Pod, error: &NodeError) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let (reason, message) = (error.reason(), error.to_string());
    let waiting = |containers: &[Container]| -> Vec<serde_json::Value> {
        let state = serde_json::json!({"waiting": {"reason": reason, "message": message}});
        containers.iter().map(|c| container_status(c, state.clone(), false)).collect()
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let failed = serde_json::json!({"status": {"phase": "Failed", "reason": reason, "message": message,
        "initContainerStatuses": waiting(spec.init_containers.as_deref().unwrap_or_default()),
        "containerStatuses": waiting(&spec.containers)}});
    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&failed)).await.map(drop)
}

/// The message a kubelet gives a Pod it stopped at its `activeDeadlineSeconds` (with reason
/// [`DEADLINE_EXCEEDED`]).
pub const DEADLINE_EXCEEDED_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Marks a Pod stopped at its deadline `Failed` as a kubelet does: reason `DeadlineExceeded`, its
/// containers no longer ready.
async fn report_deadline_exceeded(client: &kube::Client, pod: &Pod) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let (reason, message) = (DEADLINE_EXCEEDED, DEADLINE_EXCEEDED_MESSAGE);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let failed = serde_json::json!({"status": {"phase": "Failed", "reason": reason, "message": message,
        "conditions": pod_conditions(true, false, &now)}});
    pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&failed)).await.map(drop)
}

/// `program` run through `setpriv` as `identity`, without new privileges and without any
/// capability, as a kubelet starts a container with `allowPrivilegeEscalation: false` and
/// `capabilities: drop: [ALL]`.
pub(super) fn as_identity(identity: &Identity, program: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("setpriv");
    command.arg(format!("--reuid={}", identity.uid)).arg(format!("--regid={}", identity.gid));
    if identity.groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        let groups: Vec<String> = identity.groups.iter().map(u32::to_string).collect();
        command.arg(format!("--groups={}", groups.join(",")));
    }
    command.args(["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]).arg(program);
    command
}

/// Writes `contents` to a new file readable only by `identity`'s user (when users are switched).
pub(super) fn write_private(
    path: &Path,
    contents: &str,
    identity: &Identity,
    switch_user: bool,
) -> std::io::Result<()> {
    write_private_bytes(path, contents.as_bytes(), identity, switch_user)
}

/// [`write_private`] of bytes.
fn write_private_bytes(path: &Path, contents: &[u8], identity: &Identity, switch_user: bool) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    if switch_user {
        std::os::unix::fs::fchown(&file, Some(identity.uid), Some(identity.gid))?;
    }
    Ok(())
}

/// A token of the Pod's ServiceAccount bound to the Pod, as the kubelet would mount.
pub(super) async fn pod_token(
    client: &kube::Client,
    namespace: &str,
    account: &str,
    pod: &Pod,
) -> Result<String, NodeError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = accounts.create_token_request(account, &PostParams::default(), &request).await?;
    answer.status.map(|s| s.token).ok_or_else(|| NodeError::Unsupported("TokenRequest answered without a token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_mount_paths_in_flags_and_plain_arguments() {
        let to = Path::new("/tmp/volumes/ns/backup");
        assert_eq!(map_path("--backup-dir=/backup", "/backup", to), "--backup-dir=/tmp/volumes/ns/backup");
        assert_eq!(map_path("/backup/sub", "/backup", to), "/tmp/volumes/ns/backup/sub");
        assert_eq!(map_path("--backup-dir=/backups", "/backup", to), "--backup-dir=/backups");
        assert_eq!(map_path("--namespace=backup", "/backup", to), "--namespace=backup");
    }
}
