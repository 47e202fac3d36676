//! The embedded default: a real control plane on loopback with the operator running against it
//! as its own ServiceAccount, webhooks registered. Used by `apimanager-backup-operator local` and
//! by the end-to-end tests, so both exercise the same setup.

pub mod control_plane;
pub mod install;
pub mod process;
pub mod session;

use control_plane::{ControlPlane, client_from_kubeconfig, free_port, kubeconfig};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};
use process::Supervised;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
}

/// The source tree this binary was built from (for the build and certificate scripts).
pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The operator (`serve`) running as a child process with its ServiceAccount's kubeconfig.
pub struct OperatorProcess {
    process: Supervised,
    /// `https://127.0.0.1:<port>` of its HTTPS server.
    pub url: String,
    /// Kubeconfig of the operator's ServiceAccount.
    pub kubeconfig: PathBuf,
}

impl OperatorProcess {
    /// Process id of the operator.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The operator's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

/// A control plane with CRDs, the operator and its webhooks. Dropping it stops the operator, then
/// the control plane.
pub struct LocalCluster {
    /// The operator under test.
    pub operator: OperatorProcess,
    /// The control plane.
    pub plane: ControlPlane,
}

impl LocalCluster {
    /// Builds what is missing, starts the control plane under `dir`, installs the CRDs and the
    /// operator's identity, runs `operator_binary serve` and registers the webhooks, returning once
    /// the API server reaches the webhooks.
    pub async fn start(operator_binary: &Path, dir: &Path) -> Result<Self, LocalError> {
        let repo = repo_dir();
        let bin = control_plane::build_binaries(&repo)?;
        let plane = ControlPlane::start(&repo, &bin, dir).await?;
        let admin = plane.admin_client().await?;
        install::install_crds(&admin).await?;
        let token = install::install_operator_identity(&admin).await?;
        let operator_kubeconfig = dir.join("operator.kubeconfig");
        let contents =
            kubeconfig(&plane.server, &plane.certs.join("ca.crt"), install::OPERATOR_SERVICE_ACCOUNT, &token);
        std::fs::write(&operator_kubeconfig, contents)
            .map_err(|source| LocalError::Io { what: "writing the operator kubeconfig".into(), source })?;

        let port = free_port()?;
        let mut serve = Command::new(operator_binary);
        serve
            .arg("serve")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--tls-cert={}", plane.certs.join("tls.crt").display()))
            .arg(format!("--tls-key={}", plane.certs.join("tls.key").display()))
            .arg("--tls-reload-interval=1s")
            .env("KUBECONFIG", &operator_kubeconfig)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        let process = Supervised::spawn("operator", serve, &plane.dir.join("logs"))?;
        let url = format!("https://127.0.0.1:{port}");
        let mut cluster = Self { operator: OperatorProcess { process, url, kubeconfig: operator_kubeconfig }, plane };
        let ca = std::fs::read(cluster.plane.certs.join("ca.crt"))
            .map_err(|source| LocalError::Io { what: "reading ca.crt".into(), source })?;
        install::register_webhooks(&admin, &cluster.operator.url, &ca).await?;
        cluster.wait_for_webhooks(&admin, Duration::from_secs(60)).await?;
        Ok(cluster)
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
                },
            },
        );
        let api: Api<APIManagerBackup> = Api::namespaced(client.clone(), "default");
        let params = PostParams { dry_run: true, ..PostParams::default() };
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.operator.process.check_running()?;
            match api.create(&params, &probe).await {
                Err(kube::Error::Api(status)) if status.message.contains("must be greater than zero") => {
                    return Ok(());
                }
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

    /// A client acting as the operator's ServiceAccount.
    pub async fn operator_client(&self) -> Result<kube::Client, LocalError> {
        client_from_kubeconfig(&self.operator.kubeconfig).await
    }
}
