//! Real cert-manager on the local control plane: its controller and its CA injector (v1.20.3,
//! built from source by `tests/cert-manager/build.sh`), run against the API server with the
//! administrator's kubeconfig, each with its own loopback metrics (and health) address and no
//! leader election, after cert-manager's CRDs are installed and served. Stopped when dropped.

use super::LocalError;
use super::control_plane::{free_port, run_build_script};
use super::install::{apply_yaml, wait_established};
use super::process::Supervised;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The CRDs cert-manager's controller needs (its `deploy/crds`), each waited for.
const CRDS: [&str; 6] = [
    "certificaterequests.cert-manager.io",
    "certificates.cert-manager.io",
    "clusterissuers.cert-manager.io",
    "issuers.cert-manager.io",
    "challenges.acme.cert-manager.io",
    "orders.acme.cert-manager.io",
];

/// Builds (or finds in the cache) cert-manager; returns the folder holding `bin/` and `crds/`.
pub fn build(repo: &Path) -> Result<PathBuf, LocalError> {
    run_build_script(repo, "tests/cert-manager/build.sh", "building cert-manager")
}

/// cert-manager's controller and CA injector, running.
pub struct CertManager {
    _controller: Supervised,
    _cainjector: Supervised,
}

impl CertManager {
    /// Builds what is missing, installs cert-manager's CRDs with `client` and starts both
    /// processes with `kubeconfig`, their logs in `logs`; returns once they run.
    pub async fn start(repo: &Path, client: &kube::Client, kubeconfig: &Path, logs: &Path) -> Result<Self, LocalError> {
        let dir = build(repo)?;
        install_crds(client, &dir.join("crds")).await?;
        let kubeconfig_path = kubeconfig;
        let kubeconfig = format!("--kubeconfig={}", kubeconfig.display());
        let (controller_metrics, cainjector_metrics) = (free_port()?, free_port()?);
        let mut controller = Command::new(dir.join("bin/cert-manager-controller"));
        controller
            .arg(&kubeconfig)
            .arg("--leader-elect=false")
            .arg(format!("--metrics-listen-address=127.0.0.1:{controller_metrics}"))
            .arg(format!("--internal-healthz-listen-address=127.0.0.1:{}", free_port()?))
            .arg("--v=2");
        let mut cainjector = Command::new(dir.join("bin/cert-manager-cainjector"));
        // Its client (controller-runtime's) reads KUBECONFIG; the flag alone is not enough.
        cainjector
            .env("KUBECONFIG", kubeconfig_path)
            .arg(&kubeconfig)
            .arg("--leader-elect=false")
            .arg(format!("--metrics-listen-address=127.0.0.1:{cainjector_metrics}"))
            .arg("--v=2");
        let mut controller = Supervised::spawn("cert-manager-controller", controller, logs)?;
        let mut cainjector = Supervised::spawn("cert-manager-cainjector", cainjector, logs)?;
        wait_listening(&mut controller, controller_metrics).await?;
        wait_listening(&mut cainjector, cainjector_metrics).await?;
        Ok(Self { _controller: controller, _cainjector: cainjector })
    }
}

/// Waits until `process` accepts connections on loopback `port` (its metrics server, started
/// once its clients are set up); fails at once when it exits, or after a minute.
async fn wait_listening(process: &mut Supervised, port: u16) -> Result<(), LocalError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        process.check_running()?;
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LocalError::NotReady(format!("{} does not listen on {port}", process.log().display())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Applies every CRD file of `dir` and waits until each is served.
async fn install_crds(client: &kube::Client, dir: &Path) -> Result<(), LocalError> {
    for name in CRDS {
        let (resource, group) = name.split_once('.').unwrap_or((name, ""));
        let file = dir.join(format!("{group}_{resource}.yaml"));
        let yaml = std::fs::read_to_string(&file)
            .map_err(|source| LocalError::Io { what: format!("reading {}", file.display()), source })?;
        apply_yaml(client, &yaml, "default").await?;
    }
    for name in CRDS {
        wait_established(client, name).await?;
    }
    Ok(())
}
