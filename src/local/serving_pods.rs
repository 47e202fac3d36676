//! The node stand-in for long-running Pods (the operator's own Deployment), as a kubelet runs
//! them: a Node object kept `Ready` by a heartbeat; each Pod of the watched namespace bound to it
//! (there is no scheduler), given an IP and network namespace of its own
//! ([`pod_network`](super::pod_network)), its container run from the binary standing for its
//! image with the Pod's own command, arguments, environment (values and Pod fields), Secret
//! volumes (kept up to date while it runs), ServiceAccount token, user, groups and no
//! privileges; restarted with a kubelet's back-off when it exits; its readiness probe run and
//! reported in the Pod's conditions, so the endpoints controller adds the Pod to its Service's
//! endpoints once ready; on deletion sent SIGTERM, given its grace period, then SIGKILL, and the
//! Pod deleted for good.
//!
//! What it does differently from a kubelet: no container runtime or mount namespace, so each
//! volume is a folder and the container sees its mount paths in its arguments and environment
//! rewritten to those folders; its API token arrives as a kubeconfig (`KUBECONFIG`, pointing at
//! the API server's loopback address, which [`pod_network`](super::pod_network) relays into the
//! Pod) instead of the files under `/var/run/secrets/kubernetes.io/serviceaccount`; liveness
//! probes, resource limits and the read-only root filesystem are not enforced.

use super::LocalError;
use super::background::Background;
use super::control_plane::kubeconfig;
use super::node::{NodeError, as_identity, container_env, container_status, map_path, pod_conditions, pod_token};
use super::pod_network::{PodNetwork, ensure_pod_range};
use super::pod_security;
use super::probe::Probe;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The Node the stand-in plays.
pub const NODE_NAME: &str = "local-node";
/// How often the Node's `Ready` condition is renewed (a kubelet's default status frequency).
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often a running Pod's Secret volumes are brought up to date.
const VOLUME_SYNC: Duration = Duration::from_secs(2);
/// A kubelet's restart back-off: 10 s, doubled per restart, at most 5 minutes.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What the stand-in needs to run long-running Pods.
#[derive(Clone, Debug)]
pub struct ServingSettings {
    /// The image the Pods may run; a container of another image is not run (`ErrImagePull`).
    pub image: String,
    /// What that image runs: its entrypoint, this binary.
    pub binary: PathBuf,
    /// The namespace whose Pods are run.
    pub namespace: String,
    /// Per-Pod working folders (volumes, kubeconfig, log).
    pub pods: PathBuf,
    /// `https://127.0.0.1:<port>` of the API server.
    pub server: String,
    /// CA the Pods trust.
    pub ca: PathBuf,
}

/// The running stand-in; dropping it stops the heartbeat and every Pod it runs (SIGKILL).
pub struct ServingNode {
    _heartbeat: Background,
    _pods: Background,
}

impl ServingNode {
    /// Registers the Node, routes the Pod IP range and starts running the namespace's Pods.
    pub async fn start(client: &kube::Client, admin: PathBuf, settings: ServingSettings) -> Result<Self, LocalError> {
        ensure_pod_range()?;
        register_node(client).await?;
        let heartbeat = Background::spawn("node-heartbeat", admin.clone(), heartbeat);
        let pods = Background::spawn("serving-pods", admin, move |client| watch_pods(client, settings));
        Ok(Self { _heartbeat: heartbeat, _pods: pods })
    }
}

fn ready_condition() -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "node stand-in is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})
}

async fn register_node(client: &kube::Client) -> Result<(), LocalError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = Node::default();
    node.metadata.name = Some(NODE_NAME.to_owned());
    node.metadata.labels = Some([("kubernetes.io/hostname".to_owned(), NODE_NAME.to_owned())].into());
    let api = |source| LocalError::Api { what: format!("registering Node {NODE_NAME}"), source };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(source) => return Err(api(source)),
    }
    nodes.patch_status(NODE_NAME, &PatchParams::default(), &Patch::Strategic(ready_condition())).await.map_err(api)?;
    Ok(())
}

/// Renews the Node's `Ready` condition, so the node lifecycle controller never marks it (and its
/// Pods) not ready.
async fn heartbeat(client: kube::Client) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if let Err(error) =
            nodes.patch_status(NODE_NAME, &PatchParams::default(), &Patch::Strategic(ready_condition())).await
        {
            tracing::warn!(%error, "node stand-in: heartbeat failed");
        }
    }
}

/// What the watch tells a running Pod: the grace period once it is being deleted.
type Deletion = watch::Sender<Option<i64>>;

async fn watch_pods(client: kube::Client, settings: ServingSettings) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
    let settings = Arc::new(settings);
    let mut running: HashMap<String, Deletion> = HashMap::new();
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        let Some(uid) = pod.uid() else { continue };
        let grace = pod.metadata.deletion_grace_period_seconds;
        if let Some(deletion) = running.get(&uid) {
            if pod.metadata.deletion_timestamp.is_some() {
                deletion.send_replace(Some(grace.unwrap_or(30)));
            }
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if phase != "Pending" || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (deletion, deleted) = watch::channel(None);
        running.insert(uid, deletion);
        let (client, settings) = (client.clone(), settings.clone());
        tokio::spawn(async move {
            let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            if let Err(error) = run_pod(&client, &settings, pod, deleted).await {
                tracing::warn!(pod = %name, %error, "node stand-in could not run the Pod");
            }
        });
    }
}

/// Why a long-running Pod could not be run.
#[derive(Debug, thiserror::Error)]
enum ServingError {
    #[error("{0}")]
    Node(#[from] NodeError),
    #[error("{0}")]
    Local(#[from] LocalError),
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

async fn patch_status(pods: &Api<Pod>, name: &str, status: serde_json::Value) -> Result<(), kube::Error> {
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&serde_json::json!({ "status": status })))
        .await
        .map(drop)
}

async fn run_pod(
    client: &kube::Client,
    settings: &ServingSettings,
    pod: Pod,
    mut deleted: watch::Receiver<Option<i64>>,
) -> Result<(), ServingError> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = serde_json::json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}});
    pods.create_subresource::<serde_json::Value, serde_json::Value>("binding", &name, &PostParams::default(), &binding)
        .await?;
    let mut pod = pods.get(&name).await?;
    let spec = pod.spec.clone().ok_or_else(|| NodeError::Unsupported("Pod without spec".into()))?;
    let [container]: [Container; 1] = spec
        .containers
        .clone()
        .try_into()
        .map_err(|_| NodeError::Unsupported("exactly one container, no init containers".into()))?;
    let ports: Vec<u16> =
        container.ports.iter().flatten().filter_map(|p| u16::try_from(p.container_port).ok()).collect();
    let api_port = settings.server.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(443);
    let network = PodNetwork::create(&ports, api_port).await?;
    let ip = network.ip.to_string();
    let started = k8s_openapi::jiff::Timestamp::now().to_string();
    let creating = serde_json::json!({"waiting": {"reason": "ContainerCreating"}});
    patch_status(
        &pods,
        &name,
        serde_json::json!({"phase": "Pending", "hostIP": "127.0.0.1", "podIP": ip,
        "podIPs": [{"ip": ip}], "startTime": started, "conditions": pod_conditions(true, false, &started),
        "containerStatuses": [container_status(&container, creating, false)]}),
    )
    .await?;
    pod.status.get_or_insert_default().pod_ip = Some(ip.clone());

    if container.image.as_deref() != Some(settings.image.as_str()) {
        let message = format!("image {:?} is not the image this node has ({})", container.image, settings.image);
        let waiting = serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": message}});
        patch_status(
            &pods,
            &name,
            serde_json::json!({"containerStatuses": [container_status(&container, waiting, false)]}),
        )
        .await?;
        deletion(&mut deleted).await;
        return finish(&pods, &pod).await;
    }
    let work = settings.pods.join(format!("{namespace}-{name}"));
    std::fs::create_dir_all(&work)?;
    let identity = pod_security::identity(&spec, &container).map_err(NodeError::from)?;
    let volumes = Volumes::prepare(client, &pod, &container, &work, &mut deleted).await?;
    let Some(volumes) = volumes else { return finish(&pods, &pod).await };
    let token = pod_token(client, &namespace, spec.service_account_name.as_deref().unwrap_or("default"), &pod).await?;
    let (config, ca) = (work.join("kubeconfig"), work.join("ca.crt"));
    let _ = std::fs::remove_file(&config);
    std::fs::copy(&settings.ca, &ca)?;
    super::node::write_private(
        &config,
        &kubeconfig(&settings.server, &ca, "pod", &token),
        &identity,
        pod_security::can_switch_users(),
    )?;
    let env = container_env(client, &pod, &container).await?;
    let sync = tokio::spawn(volumes.clone().keep_up_to_date(client.clone(), namespace.clone()));

    let mut restarts = 0u32;
    let outcome = loop {
        let mut process = start_container(settings, &network, &container, &identity, &env, &volumes, &config, &work)?;
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let running = serde_json::json!({"running": {"startedAt": now}});
        let mut status = container_status(&container, running, false);
        status["restartCount"] = restarts.into();
        patch_status(
            &pods,
            &name,
            serde_json::json!({"phase": "Running", "conditions": pod_conditions(true, false, &now),
            "containerStatuses": [status.clone()]}),
        )
        .await?;
        let probe = Probe::readiness(&container, &ip);
        let mut ready = false;
        let mut next_probe = tokio::time::Instant::now() + probe.as_ref().map_or(Duration::ZERO, |p| p.initial_delay);
        let ended = loop {
            tokio::select! {
                exit = process.wait() => break Some(exit?),
                () = deletion(&mut deleted) => break None,
                () = tokio::time::sleep_until(next_probe), if probe.is_some() => {
                    let Some(probe) = &probe else { continue };
                    next_probe = tokio::time::Instant::now() + probe.period;
                    let now_ready = probe.check().await;
                    if now_ready != ready {
                        ready = now_ready;
                        let now = k8s_openapi::jiff::Timestamp::now().to_string();
                        status["ready"] = ready.into();
                        patch_status(&pods, &name, serde_json::json!({"conditions": pod_conditions(true, ready, &now),
                            "containerStatuses": [status.clone()]})).await?;
                    }
                }
            }
        };
        match ended {
            None => {
                let grace = *deleted.borrow();
                break stop(&mut process, grace).await;
            }
            Some(exit) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), %exit, restarts, "node stand-in: container exited; restarting it");
                restarts += 1;
                let backoff = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(restarts - 1)).min(BACKOFF_MAX);
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let waiting = serde_json::json!({"waiting": {"reason": "CrashLoopBackOff"}});
                let mut status = container_status(&container, waiting, false);
                status["restartCount"] = restarts.into();
                patch_status(
                    &pods,
                    &name,
                    serde_json::json!({"conditions": pod_conditions(true, false, &now),
                    "containerStatuses": [status]}),
                )
                .await?;
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = deletion(&mut deleted) => break Ok(()),
                }
            }
        }
    };
    sync.abort();
    drop(network);
    outcome?;
    finish(&pods, &pod).await
}

/// Resolves once the Pod is being deleted.
async fn deletion(deleted: &mut watch::Receiver<Option<i64>>) {
    let _ = deleted.wait_for(Option::is_some).await;
}

/// Deletes the Pod for good, as a kubelet does once its containers are gone.
async fn finish(pods: &Api<Pod>, pod: &Pod) -> Result<(), ServingError> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// SIGTERM, then SIGKILL once `grace` seconds pass.
async fn stop(process: &mut tokio::process::Child, grace: Option<i64>) -> Result<(), ServingError> {
    if let Some(pid) = process.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) on our own child, not reaped yet (it has an id).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let grace = Duration::from_secs(grace.and_then(|g| u64::try_from(g).ok()).unwrap_or(30));
    if tokio::time::timeout(grace, process.wait()).await.is_err() {
        process.kill().await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn start_container(
    settings: &ServingSettings,
    network: &PodNetwork,
    container: &Container,
    identity: &pod_security::Identity,
    env: &[(String, Option<String>)],
    volumes: &Volumes,
    config: &Path,
    work: &Path,
) -> Result<tokio::process::Child, ServingError> {
    // The image's entrypoint is its binary; `command` replaces it, `args` its default command.
    let mut argv = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let program = if argv.is_empty() { settings.binary.clone() } else { PathBuf::from(argv.remove(0)) };
    let program = if program.file_name().is_some_and(|f| f == "apimanager-backup-operator") {
        settings.binary.clone()
    } else {
        program
    };
    argv.extend(args);
    let mut command = if pod_security::can_switch_users() {
        as_identity(identity, &program)
    } else {
        tokio::process::Command::new(&program)
    };
    command.env_clear().args(argv.iter().map(|a| volumes.map(a)));
    for (name, value) in env {
        if let Some(value) = value {
            command.env(name, volumes.map(value));
        }
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(work.join("container.log"))?;
    command
        .env("KUBECONFIG", config)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    network.enter(&mut command);
    Ok(command.spawn()?)
}

/// One volume of a container as a folder.
#[derive(Clone)]
struct Mount {
    /// Where the container mounts it.
    path: String,
    /// The folder standing for it.
    folder: PathBuf,
    /// The Secret and the mode of its files, for a Secret volume.
    secret: Option<(String, u32)>,
}

/// A container's Secret and emptyDir volumes as folders, by mount path.
#[derive(Clone)]
struct Volumes {
    mounts: Vec<Mount>,
    group: Option<u32>,
}

impl Volumes {
    /// Makes each volume's folder, waiting (as a kubelet does) until each required Secret exists;
    /// `None` when the Pod is deleted meanwhile.
    async fn prepare(
        client: &kube::Client,
        pod: &Pod,
        container: &Container,
        work: &Path,
        deleted: &mut watch::Receiver<Option<i64>>,
    ) -> Result<Option<Self>, ServingError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let group = spec.security_context.as_ref().and_then(|c| c.fs_group).and_then(|g| u32::try_from(g).ok());
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else { continue };
            let folder = work.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&folder)?;
            if let Some(secret) = &volume.secret {
                let mode = secret.default_mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(0o644);
                let name = secret.secret_name.clone().unwrap_or_default();
                mounts.push(Mount { path: mount.mount_path.clone(), folder, secret: Some((name, mode)) });
            } else if volume.empty_dir.is_some() {
                if let Some(group) = group {
                    pod_security::apply_fs_group(&folder, group)?;
                }
                mounts.push(Mount { path: mount.mount_path.clone(), folder, secret: None });
            }
        }
        mounts.sort_by_key(|mount| std::cmp::Reverse(mount.path.len()));
        let volumes = Self { mounts, group };
        let namespace = pod.namespace().unwrap_or_default();
        loop {
            if volumes.sync(client, &namespace).await? {
                return Ok(Some(volumes));
            }
            tokio::select! {
                () = tokio::time::sleep(VOLUME_SYNC) => {}
                () = deletion(deleted) => return Ok(None),
            }
        }
    }

    /// `value` with a leading mount path replaced by its folder.
    fn map(&self, value: &str) -> String {
        self.mounts.iter().fold(value.to_owned(), |value, mount| {
            if value.contains(mount.path.as_str()) { map_path(&value, &mount.path, &mount.folder) } else { value }
        })
    }

    /// Writes each Secret's keys as files (replacing changed ones whole); false while a Secret is
    /// missing.
    async fn sync(&self, client: &kube::Client, namespace: &str) -> Result<bool, ServingError> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        for Mount { folder, secret, .. } in &self.mounts {
            let Some((name, mode)) = secret else { continue };
            let Some(secret) = secrets.get_opt(name).await? else { return Ok(false) };
            for (key, value) in secret.data.unwrap_or_default() {
                let file = folder.join(&key);
                if std::fs::read(&file).ok().as_deref() == Some(&value.0[..]) {
                    continue;
                }
                let temporary = folder.join(format!("..{key}.tmp"));
                std::fs::write(&temporary, &value.0)?;
                std::fs::set_permissions(&temporary, std::os::unix::fs::PermissionsExt::from_mode(*mode))?;
                if let (Some(group), true) = (self.group, pod_security::can_switch_users()) {
                    std::os::unix::fs::chown(&temporary, None, Some(group))?;
                }
                std::fs::rename(&temporary, &file)?;
            }
        }
        Ok(true)
    }

    /// Brings the Secret volumes up to date every [`VOLUME_SYNC`], as a kubelet refreshes them.
    async fn keep_up_to_date(self, client: kube::Client, namespace: String) {
        loop {
            tokio::time::sleep(VOLUME_SYNC).await;
            if let Err(error) = self.sync(&client, &namespace).await {
                tracing::warn!(%error, "node stand-in: could not refresh a Secret volume");
            }
        }
    }
}
