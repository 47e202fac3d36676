//! The embedded default: a real control plane on loopback with the operator running against it
//! as its own ServiceAccount, webhooks registered. Used by `apimanager-backup-operator local` and
//! by the end-to-end tests, so both exercise the same setup.

pub mod background;
pub mod cert_manager;
pub mod control_plane;
pub mod deployed;
pub mod faults;
pub mod forwarder;
pub mod install;
pub mod node;
pub mod openshift;
pub mod pod_network;
pub mod pod_security;
pub mod probe;
pub mod process;
pub mod reclaim;
pub mod s3_sample;
pub mod s3_server;
pub mod scc;
pub mod serving_pods;
pub mod session;
pub mod threescale_operator;

use control_plane::{ControlPlane, free_port, kubeconfig};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};
use node::{NodeSettings, NodeStandIn};
use process::Supervised;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use threescale_operator::ThreescaleOperatorStandIn;

use crate::platform::Platform;
use crate::scope::Namespaces;

use crate::api::backup::{
    APIManagerBackup, APIManagerBackupSpec, BackupDestination, PersistentVolumeClaimDestination,
    PersistentVolumeClaimResources,
};

/// Errors of the local control plane and its setup.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A helper command exited with an error.
    #[error("{what} failed: {stderr}")]
    Command {
        /// What was being done.
        what: String,
        /// The command's standard error.
        stderr: String,
    },
    /// A process of the control plane exited.
    #[error("{name} exited ({status}); last lines of its log:\n{log_tail}")]
    Exited {
        /// Which process.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// Something did not become ready in time.
    #[error("not ready in time: {0}")]
    NotReady(String),
    /// A kubeconfig could not be used.
    #[error("kubeconfig: {0}")]
    Kube(String),
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// A manifest could not be read.
    #[error("manifest: {0}")]
    Yaml(String),
    /// A request to the local S3 server failed.
    #[error("S3 server: {0}")]
    S3(#[from] crate::s3::S3Error),
    /// A fault proxy could not start.
    #[error("fault proxy: {0}")]
    Faults(#[from] faults::FaultError),
    /// The local S3 server's connection settings were refused.
    #[error("S3 server settings: {0}")]
    S3Config(#[from] crate::s3::ConfigError),
}

/// File marking a folder made by `local`, the only kind of non-empty folder it clears.
pub const DIR_MARKER: &str = ".apimanager-backup-operator-local";

/// Environment variable naming the binary the node stand-in runs for backup Pods instead of the
/// operator under test; CI sets it to the binary taken out of the container image.
pub const JOB_BINARY_ENV: &str = "APIMANAGER_BACKUP_JOB_BINARY";

/// The image the operator under test gives its step Pods: what `--job-image` resolves to in the
/// environment the operator inherits.
pub fn job_image() -> String {
    std::env::var(crate::cli::JOB_IMAGE_ENV).unwrap_or_else(|_| crate::cli::DEFAULT_JOB_IMAGE.to_owned())
}

/// The source tree this binary was built from (for the build and certificate scripts).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the control plane, again (up to three times, in a cleared `dir`) when a process exits
/// at start: the free ports it was given can be taken by someone else before it binds them.
pub(crate) async fn start_control_plane(repo: &Path, bin: &Path, dir: &Path) -> Result<ControlPlane, LocalError> {
    let mut attempt = 1;
    loop {
        match ControlPlane::start(repo, bin, dir).await {
            Err(error @ LocalError::Exited { .. }) if attempt < 3 => {
                eprintln!("control plane attempt {attempt} failed, retrying: {error}");
                attempt += 1;
                let clear = |source| LocalError::Io { what: format!("clearing {}", dir.display()), source };
                let marked = dir.join(DIR_MARKER).exists();
                std::fs::remove_dir_all(dir).map_err(clear)?;
                std::fs::create_dir_all(dir).map_err(clear)?;
                if marked {
                    std::fs::write(dir.join(DIR_MARKER), b"").map_err(clear)?;
                }
            }
            outcome => return outcome,
        }
    }
}

/// The operator (`serve`) running as a child process with its ServiceAccount's kubeconfig.
pub struct OperatorProcess {
    process: Supervised,
    binary: PathBuf,
    port: u16,
    certs: PathBuf,
    logs: PathBuf,
    /// `https://127.0.0.1:<port>` of its HTTPS server.
    pub url: String,
    /// Kubeconfig of the operator's ServiceAccount.
    pub kubeconfig: PathBuf,
}

impl OperatorProcess {
    fn spawn(
        binary: &Path,
        port: u16,
        certs: &Path,
        kubeconfig: &Path,
        logs: &Path,
        extra: &[String],
    ) -> Result<Supervised, LocalError> {
        let mut serve = Command::new(binary);
        serve
            .arg("serve")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--tls-cert={}", certs.join("tls.crt").display()))
            .arg(format!("--tls-key={}", certs.join("tls.key").display()))
            .arg("--tls-reload-interval=1s")
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            // No retries unless a test asks for them with the flag, which takes precedence.
            .env("APIMANAGER_BACKUP_JOB_BACKOFF_LIMIT", "0")
            // No Service's endpoints to leave: stop at SIGTERM.
            .env("APIMANAGER_BACKUP_SHUTDOWN_DELAY", "0s")
            .env("POD_NAME", Self::identity(port))
            .env("POD_NAMESPACE", install::OPERATOR_NAMESPACE)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        Supervised::spawn(&format!("operator-{port}"), serve, logs)
    }

    /// The identity of the operator on `port` in the leader Lease (its stand-in Pod name, kept
    /// across restarts on the same port, as a restarted container keeps its Pod's name).
    pub fn identity(port: u16) -> String {
        format!("operator-{port}")
    }

    /// This operator's identity in the leader Lease.
    pub fn name(&self) -> String {
        Self::identity(self.port)
    }

    /// `127.0.0.1:<port>` of its HTTPS server.
    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the operator with SIGKILL (no chance to release anything, as a node failure would).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Process id of the operator.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The operator's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// Sends SIGTERM and waits up to `grace` (then SIGKILL); returns how the operator ended.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.stop(grace)
    }

    /// [`respawn`](Self::respawn) talking to the API server through `kubeconfig` from now on
    /// (for example one of [`LocalCluster::kubeconfig_via`]).
    pub fn respawn_via(&mut self, kubeconfig: &Path, operator_args: &[String]) -> Result<(), LocalError> {
        kubeconfig.clone_into(&mut self.kubeconfig);
        self.respawn(operator_args)
    }

    /// Kills the operator (no graceful shutdown, as a crash or eviction would) and starts it again
    /// on the same port with `operator_args`; returns at once.
    pub fn respawn(&mut self, operator_args: &[String]) -> Result<(), LocalError> {
        let _ = self.process.stop(Duration::ZERO);
        self.process = Self::spawn(&self.binary, self.port, &self.certs, &self.kubeconfig, &self.logs, operator_args)?;
        Ok(())
    }

    /// A probe of its `/readyz` over HTTPS, trusting the cluster's CA as the kubelet's probe would,
    /// holding one client (one TLS set-up, its connection kept alive) for repeated checks on the
    /// current runtime.
    pub fn readyz_probe(&self) -> Result<ReadyzProbe, String> {
        let url = self.url.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
        let ca = std::fs::read(self.certs.join("ca.crt")).map_err(|e| format!("reading ca.crt: {e}"))?;
        let roots = <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(&ca)
            .map(|cert| cert.map(|der| der.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("ca.crt: {e}"))?;
        let mut config = kube::Config::new(url);
        config.root_cert = Some(roots);
        let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
        Ok(ReadyzProbe { client })
    }

    /// Waits until `/readyz` answers 200, as a Service routes only to ready Pods; fails after
    /// `timeout` with the last answer, or at once when the operator exits.
    pub async fn wait_until_ready(&mut self, timeout: Duration) -> Result<(), LocalError> {
        let deadline = Instant::now() + timeout;
        let probe = self.readyz_probe().map_err(LocalError::NotReady)?;
        loop {
            self.process.check_running()?;
            match probe.check().await {
                Ok(()) => return Ok(()),
                Err(last) if Instant::now() > deadline => {
                    return Err(LocalError::NotReady(format!("operator {}: {last}", crate::server::READYZ_PATH)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// Checks an operator's `/readyz` with one client (see [`OperatorProcess::readyz_probe`]); it
/// lives on the runtime that made it.
pub struct ReadyzProbe {
    client: kube::Client,
}

impl ReadyzProbe {
    /// One `GET /readyz`: `Ok` on 200, otherwise the answer (`not ready: …`) or why there was none.
    pub async fn check(&self) -> Result<(), String> {
        let request = http::Request::get(crate::server::READYZ_PATH).body(Vec::new()).map_err(|e| e.to_string())?;
        match self.client.request_text(request).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) => Err(format!("HTTP {}: {}", status.code, status.message)),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// How long the harness waits for the operator's `/readyz` before giving up.
const OPERATOR_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A control plane with CRDs, the operator, its webhooks and the stand-ins of the node and of
/// 3scale-operator. Dropping it stops the stand-ins, the operator, then the control plane.
pub struct LocalCluster {
    /// OpenShift's SCC admission and namespace allocation, on a cluster playing OpenShift.
    pub openshift: Option<openshift::OpenShiftStandIn>,
    /// Marks APIManagers available, as 3scale-operator would.
    pub threescale_operator: ThreescaleOperatorStandIn,
    /// Runs backup Pods.
    pub node: NodeStandIn,
    /// The operator under test.
    pub operator: OperatorProcess,
    /// The control plane.
    pub plane: ControlPlane,
    /// Where the webhooks are probed: a namespace the operator manages.
    probe_namespace: String,
}

impl LocalCluster {
    /// Builds what is missing, starts the control plane under `dir`, installs the CRDs and the
    /// operator's identity, runs `operator_binary serve` (with `operator_args` added) and the
    /// stand-ins of the node and of 3scale-operator, and once the operator's `/readyz` answers 200 registers the webhooks (as a
    /// Service sends traffic only to ready Pods), returning once the API server reaches them.
    pub async fn start(operator_binary: &Path, dir: &Path, operator_args: &[String]) -> Result<Self, LocalError> {
        Self::start_scoped(operator_binary, dir, operator_args, &Namespaces::All).await
    }

    /// [`start`](Self::start) with the operator managing `namespaces` only, installed as the
    /// `namespaced` component of `manifests/` installs it: RBAC in those namespaces (created when
    /// missing), webhooks called for them, `--namespace` for each.
    pub async fn start_scoped(
        operator_binary: &Path,
        dir: &Path,
        operator_args: &[String],
        namespaces: &Namespaces,
    ) -> Result<Self, LocalError> {
        Self::start_on(operator_binary, dir, operator_args, namespaces, Platform::Kubernetes).await
    }

    /// [`start_scoped`](Self::start_scoped) on a cluster playing `platform`: for
    /// [`Platform::OpenShift`], OpenShift's discovery, namespace allocation and `restricted-v2`
    /// admission (see [`openshift`]) are in place before the operator starts.
    pub async fn start_on(
        operator_binary: &Path,
        dir: &Path,
        operator_args: &[String],
        namespaces: &Namespaces,
        platform: Platform,
    ) -> Result<Self, LocalError> {
        let repo = repo_dir();
        let bin = control_plane::build_binaries(&repo)?;
        let plane = start_control_plane(&repo, &bin, dir).await?;
        let admin = plane.admin_client().await?;
        install::install_crds(&admin).await?;
        let token = install::install_operator_identity(&admin).await?;
        let mut operator_args = operator_args.to_vec();
        if let Namespaces::Only(names) = namespaces {
            install::scope_operator_identity(&admin, names).await?;
            operator_args.extend(names.iter().map(|name| format!("--namespace={name}")));
        }
        let openshift = match platform {
            Platform::OpenShift => {
                Some(openshift::OpenShiftStandIn::start(&admin, &plane.admin_kubeconfig, &plane.certs).await?)
            }
            Platform::Kubernetes => None,
        };
        install::install_admission_policy(&admin, &job_image()).await?;
        let operator_kubeconfig = dir.join(control_plane::CREDENTIALS_DIR).join("operator.kubeconfig");
        let contents =
            kubeconfig(&plane.server, &plane.certs.join("ca.crt"), install::OPERATOR_SERVICE_ACCOUNT, &token);
        control_plane::write_credential(&operator_kubeconfig, &contents)?;

        let port = free_port()?;
        let logs = plane.dir.join("logs");
        let process =
            OperatorProcess::spawn(operator_binary, port, &plane.certs, &operator_kubeconfig, &logs, &operator_args)?;
        let operator = OperatorProcess {
            process,
            binary: operator_binary.to_owned(),
            port,
            certs: plane.certs.clone(),
            logs,
            url: format!("https://127.0.0.1:{port}"),
            kubeconfig: operator_kubeconfig,
        };
        let job_binary = std::env::var_os(JOB_BINARY_ENV).map_or_else(|| operator_binary.to_owned(), PathBuf::from);
        let node = NodeStandIn::start(
            plane.admin_kubeconfig.clone(),
            NodeSettings {
                operator_binary: job_binary,
                volumes: dir.join("volumes"),
                pods: dir.join("pods"),
                server: plane.server.clone(),
                ca: plane.certs.join("ca.crt"),
            },
        );
        let threescale_operator = ThreescaleOperatorStandIn::start(plane.admin_kubeconfig.clone());
        let probe_namespace = match namespaces {
            Namespaces::Only(names) => names.first().cloned().unwrap_or_default(),
            Namespaces::All => "default".to_owned(),
        };
        let mut cluster = Self { openshift, threescale_operator, node, operator, plane, probe_namespace };
        cluster.operator.wait_until_ready(OPERATOR_READY_TIMEOUT).await?;
        let ca = std::fs::read(cluster.plane.certs.join("ca.crt"))
            .map_err(|source| LocalError::Io { what: "reading ca.crt".into(), source })?;
        install::register_scoped_webhooks(&admin, &cluster.operator.url, &ca, namespaces).await?;
        cluster.wait_for_webhooks(&admin, Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Starts one more replica of the operator (`serve` with `operator_args`) on a port of its own,
    /// with the same ServiceAccount, certificate and node stand-in; it is not registered anywhere
    /// (see [`forwarder::Forwarder`]).
    pub fn start_replica(&self, operator_args: &[String]) -> Result<OperatorProcess, LocalError> {
        self.start_replica_via(&self.operator.kubeconfig, operator_args)
    }

    /// [`start_replica`](Self::start_replica) talking to the API server through `kubeconfig`
    /// (for example one of [`kubeconfig_via`](Self::kubeconfig_via)).
    pub fn start_replica_via(
        &self,
        kubeconfig: &Path,
        operator_args: &[String],
    ) -> Result<OperatorProcess, LocalError> {
        let o = &self.operator;
        let port = free_port()?;
        let process = OperatorProcess::spawn(&o.binary, port, &o.certs, kubeconfig, &o.logs, operator_args)?;
        Ok(OperatorProcess {
            process,
            binary: o.binary.clone(),
            port,
            certs: o.certs.clone(),
            logs: o.logs.clone(),
            url: format!("https://127.0.0.1:{port}"),
            kubeconfig: kubeconfig.to_owned(),
        })
    }

    /// Starts a [`faults::FaultProxy`] in front of the API server with `spec` in force, its
    /// connections to the API server made from `source` (a loopback address, e.g. 127.0.0.2, so
    /// the audit log tells each proxy's replica apart) when given.
    pub async fn fault_proxy(
        &self,
        source: Option<std::net::IpAddr>,
        spec: faults::FaultSpec,
    ) -> Result<faults::FaultProxy, LocalError> {
        Ok(faults::FaultProxy::start(&self.plane.server, &self.plane.certs, source, spec).await?)
    }

    /// Writes `credentials/<name>.kubeconfig`: the operator's ServiceAccount kubeconfig with the
    /// API server at `server` (a [`faults::FaultProxy`]'s URL); returns its path.
    pub fn kubeconfig_via(&self, server: &str, name: &str) -> Result<PathBuf, LocalError> {
        let original = self.plane.dir.join(control_plane::CREDENTIALS_DIR).join("operator.kubeconfig");
        let mut config = kube::config::Kubeconfig::read_from(&original).map_err(|e| LocalError::Kube(e.to_string()))?;
        for cluster in &mut config.clusters {
            if let Some(cluster) = cluster.cluster.as_mut() {
                cluster.server = Some(server.to_owned());
            }
        }
        let contents = serde_json::to_string(&config).map_err(|e| LocalError::Kube(e.to_string()))?;
        let path = self.plane.dir.join(control_plane::CREDENTIALS_DIR).join(format!("{name}.kubeconfig"));
        control_plane::write_credential(&path, &contents)?;
        Ok(path)
    }

    /// Points both webhook configurations at `base_url` (for example a [`forwarder::Forwarder`]
    /// in front of several replicas), trusting the development CA.
    pub async fn register_webhooks_at(&self, base_url: &str) -> Result<(), LocalError> {
        let ca = std::fs::read(self.plane.certs.join("ca.crt"))
            .map_err(|source| LocalError::Io { what: "reading ca.crt".into(), source })?;
        install::register_webhooks(&self.admin_client().await?, base_url, &ca).await
    }

    /// Kills the operator (no graceful shutdown, as a crash or eviction would) and starts it again
    /// on the same port with `operator_args`, returning once it is ready and the webhooks answer.
    pub async fn restart_operator(&mut self, operator_args: &[String]) -> Result<(), LocalError> {
        let kubeconfig = self.operator.kubeconfig.clone();
        self.restart_operator_via(&kubeconfig, operator_args).await
    }

    /// [`restart_operator`](Self::restart_operator) talking to the API server through
    /// `kubeconfig` from now on (see [`kubeconfig_via`](Self::kubeconfig_via)).
    pub async fn restart_operator_via(
        &mut self,
        kubeconfig: &Path,
        operator_args: &[String],
    ) -> Result<(), LocalError> {
        self.operator.respawn_via(kubeconfig, operator_args)?;
        self.operator.wait_until_ready(OPERATOR_READY_TIMEOUT).await?;
        let admin = self.admin_client().await?;
        self.wait_for_webhooks(&admin, Duration::from_secs(60)).await
    }

    /// The folder standing in for claim `claim` of `namespace`.
    pub fn volume(&self, namespace: &str, claim: &str) -> PathBuf {
        self.plane.dir.join("volumes").join(namespace).join(claim)
    }

    /// Waits until a dry-run create of a zero-sized backup is refused by the validating webhook,
    /// which proves the API server calls the operator.
    async fn wait_for_webhooks(&mut self, client: &kube::Client, timeout: Duration) -> Result<(), LocalError> {
        let probe = APIManagerBackup::new(
            "webhook-probe",
            APIManagerBackupSpec {
                api_manager_name: None,
                backup_destination: BackupDestination {
                    persistent_volume_claim: Some(PersistentVolumeClaimDestination {
                        resources: Some(PersistentVolumeClaimResources { requests: Some(Quantity("0".into())) }),
                        ..PersistentVolumeClaimDestination::default()
                    }),
                    s3: None,
                },
            },
        );
        let api: Api<APIManagerBackup> = Api::namespaced(client.clone(), &self.probe_namespace);
        let params = PostParams { dry_run: true, ..PostParams::default() };
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.operator.process.check_running()?;
            match api.create(&params, &probe).await {
                Err(kube::Error::Api(status)) if status.message.contains("must be greater than zero") => return Ok(()),
                Err(error) => last = error.to_string(),
                Ok(_) => last = "the probe was accepted: the webhook is not called yet".into(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(LocalError::NotReady(format!("webhooks: {last}")))
    }

    /// A client acting as the cluster administrator.
    pub async fn admin_client(&self) -> Result<kube::Client, LocalError> {
        self.plane.admin_client().await
    }
}
