//! A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, the admission plugins
//! of a real cluster, service-account tokens) and kube-controller-manager (the garbage collector,
//! which removes a deleted operation's step Pods, among the defaults), built from source by `tests/control-plane/build.sh`.

use super::LocalError;
use super::process::Supervised;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Service account issuer and audience of the local cluster.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Admission plugins enabled on the API server, as a production cluster has them.
const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,\
DefaultTolerationSeconds,StorageObjectInUseProtection,PersistentVolumeClaimResize,RuntimeClass,Priority,\
PodSecurity,ResourceQuota,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,\
NodeRestriction,OwnerReferencesPermissionEnforcement";
/// The API server's audit policy: every write of the operator's ServiceAccount, at the `Metadata`
/// level (who, what, when, from where, the answer's code), once the answer is sent; nothing else.
const AUDIT_POLICY: &str = r#"{"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
"rules": [
  {"level": "Metadata", "users": ["system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator"],
   "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
  {"level": "None"}
]}"#;
/// The API server's audit log under the control plane's `logs/` folder (JSON lines).
pub const AUDIT_LOG: &str = "audit.log";

/// A running control plane; dropping it stops the three processes (controller manager first).
pub struct ControlPlane {
    controller_manager: Supervised,
    apiserver: Supervised,
    etcd: Supervised,
    /// Working directory: certificates, keys, etcd data, logs, kubeconfigs.
    pub dir: PathBuf,
    /// Kubeconfig of the cluster administrator (group `system:masters`).
    pub admin_kubeconfig: PathBuf,
    /// Directory of ca.crt, tls.crt and tls.key made by `certs/generate.sh`; the API server and
    /// the operator both serve with tls.crt, and everything trusts ca.crt.
    pub certs: PathBuf,
    /// `https://127.0.0.1:<port>` of the API server.
    pub server: String,
}

/// A free TCP port on loopback (free when asked; the caller binds it right after).
pub fn free_port() -> Result<u16, LocalError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|source| LocalError::Io { what: "finding a free port".into(), source })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| LocalError::Io { what: "finding a free port".into(), source })
}

fn run(what: &str, command: &mut Command) -> Result<String, LocalError> {
    let output = command.output().map_err(|source| LocalError::Io { what: what.to_owned(), source })?;
    if !output.status.success() {
        return Err(LocalError::Command {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Builds (or finds in the cache) the control-plane binaries; returns their directory. The
/// script's progress lines (what it builds, how long that takes, a line every 30 s) go straight
/// to this process's standard error, so a first run never looks like a hang.
pub fn build_binaries(repo: &Path) -> Result<PathBuf, LocalError> {
    run_build_script(repo, "tests/control-plane/build.sh", "building the control plane")
}

/// Runs the build script `script` (relative to `repo`) of a cached real part, its progress on
/// this process's standard error; returns the path it prints last on its standard output.
pub fn run_build_script(repo: &Path, script: &str, what: &str) -> Result<PathBuf, LocalError> {
    let what = format!("{what} ({script})");
    let output = Command::new("bash")
        .arg(repo.join(script))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|source| LocalError::Io { what: what.clone(), source })?;
    if !output.status.success() {
        return Err(LocalError::Command { what, stderr: "see its output above".to_owned() });
    }
    let out = String::from_utf8_lossy(&output.stdout);
    Ok(PathBuf::from(out.trim().lines().last().unwrap_or_default()))
}

/// Makes the development CA and serving certificate in `dir` with `certs/generate.sh`.
pub fn generate_certs(repo: &Path, dir: &Path) -> Result<(), LocalError> {
    run("making certificates (certs/generate.sh)", Command::new("bash").arg(repo.join("certs/generate.sh")).arg(dir))
        .map(drop)
}

/// Folder under the working directory that holds the control plane's credentials (the
/// administrator's and the operator's kubeconfigs, the token file, the ServiceAccount signing key).
pub const CREDENTIALS_DIR: &str = "credentials";

/// Creates folder `path` (and its parents) readable by its owner only (mode 0700).
pub fn create_private_dir(path: &Path) -> Result<(), LocalError> {
    let io = |source| LocalError::Io { what: format!("creating {}", path.display()), source };
    std::fs::create_dir_all(path).map_err(io)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io)
}

/// Writes a credential: a file readable and writable by its owner only (mode 0600), also when
/// it existed before.
pub fn write_credential(path: &Path, contents: &str) -> Result<(), LocalError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| LocalError::Io { what: format!("writing {}", path.display()), source };
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).map_err(io)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

/// A kubeconfig for `server` trusting `ca` and authenticating with a bearer `token`.
pub fn kubeconfig(server: &str, ca: &Path, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
users:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    user: {user}\n\
current-context: local\n",
        ca = ca.display()
    )
}

/// 32 random hex digits from the kernel's generator, for tokens and keys of the local servers.
pub fn random_token() -> Result<String, LocalError> {
    let mut buf = [0u8; 16];
    let mut file = std::fs::File::open("/dev/urandom")
        .map_err(|source| LocalError::Io { what: "opening /dev/urandom".into(), source })?;
    std::io::Read::read_exact(&mut file, &mut buf)
        .map_err(|source| LocalError::Io { what: "reading /dev/urandom".into(), source })?;
    Ok(crate::job::manifest::hex(&buf))
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager under `dir` with the binaries of
    /// `bin`, and returns once the API server's `/readyz` answers `ok`.
    pub async fn start(repo: &Path, bin: &Path, dir: &Path) -> Result<Self, LocalError> {
        let certs = dir.join("certs");
        let logs = dir.join("logs");
        let credentials = dir.join(CREDENTIALS_DIR);
        std::fs::create_dir_all(&logs)
            .map_err(|source| LocalError::Io { what: format!("creating {}", logs.display()), source })?;
        // The CA and serving keys (certs/generate.sh writes them 0600) and every credential live
        // in folders only this user can enter.
        create_private_dir(&certs)?;
        create_private_dir(&credentials)?;
        generate_certs(repo, &certs)?;
        let sa_key = credentials.join("service-account.key");
        run(
            "making the service-account key",
            Command::new("openssl").args(["genrsa", "-out"]).arg(&sa_key).arg("2048"),
        )?;
        let token = random_token()?;
        let tokens = credentials.join("tokens.csv");
        write_credential(&tokens, &format!("{token},admin,admin-uid,system:masters\n"))?;

        let (client_port, peer_port, apiserver_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut etcd = Command::new(bin.join("etcd"));
        etcd.arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg("--name=local")
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=local={peer_url}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let etcd = Supervised::spawn("etcd", etcd, &logs)?;

        let server = format!("https://127.0.0.1:{apiserver_port}");
        let mut apiserver = Command::new(bin.join("kube-apiserver"));
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            .arg(format!("--cert-dir={}", dir.join("apiserver-certs").display()))
            .arg(format!("--tls-cert-file={}", certs.join("tls.crt").display()))
            .arg(format!("--tls-private-key-file={}", certs.join("tls.key").display()))
            .arg(format!("--client-ca-file={}", certs.join("ca.crt").display()))
            .arg(format!("--token-auth-file={}", tokens.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg(format!("--enable-admission-plugins={ADMISSION_PLUGINS}"))
            .arg(format!("--service-account-issuer={ISSUER}"))
            .arg(format!("--api-audiences={ISSUER}"))
            .arg(format!("--service-account-key-file={}", sa_key.display()))
            .arg(format!("--service-account-signing-key-file={}", sa_key.display()))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--allow-privileged=true")
            .arg("--endpoint-reconciler-type=none")
            // Webhooks (and APIServices) that name a Service are called at one of its ready
            // endpoints' Pod IPs, not at its cluster IP: no kube-proxy runs here to route that.
            .arg("--enable-aggregator-routing=true")
            .arg("--profiling=false")
            .arg("--v=1");
        let audit_policy = dir.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY)
            .map_err(|source| LocalError::Io { what: format!("writing {}", audit_policy.display()), source })?;
        apiserver
            .arg(format!("--audit-policy-file={}", audit_policy.display()))
            .arg(format!("--audit-log-path={}", logs.join(AUDIT_LOG).display()))
            .arg("--audit-log-format=json")
            .arg("--audit-log-mode=blocking");
        let apiserver = Supervised::spawn("kube-apiserver", apiserver, &logs)?;

        let admin_kubeconfig = credentials.join("admin.kubeconfig");
        write_credential(&admin_kubeconfig, &kubeconfig(&server, &certs.join("ca.crt"), "admin", &token))?;
        let mut controller_manager = Command::new(bin.join("kube-controller-manager"));
        controller_manager
            .arg(format!("--kubeconfig={}", admin_kubeconfig.display()))
            .arg("--controllers=*")
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg(format!("--service-account-private-key-file={}", sa_key.display()))
            .arg(format!("--root-ca-file={}", certs.join("ca.crt").display()))
            .arg("--v=1");
        let mut plane = Self {
            controller_manager: Supervised::spawn("kube-controller-manager", controller_manager, &logs)?,
            apiserver,
            etcd,
            dir: dir.to_owned(),
            admin_kubeconfig,
            certs,
            server,
        };
        plane.wait_ready(Duration::from_secs(120)).await?;
        Ok(plane)
    }

    /// A client acting as the cluster administrator.
    pub async fn admin_client(&self) -> Result<kube::Client, LocalError> {
        client_from_kubeconfig(&self.admin_kubeconfig).await
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), LocalError> {
        let deadline = Instant::now() + timeout;
        let client = self.admin_client().await?;
        loop {
            self.etcd.check_running()?;
            self.apiserver.check_running()?;
            self.controller_manager.check_running()?;
            let request =
                http::Request::get("/readyz").body(Vec::new()).map_err(|e| LocalError::NotReady(e.to_string()))?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) if Instant::now() > deadline => return Err(LocalError::NotReady(body)),
                Err(error) if Instant::now() > deadline => {
                    return Err(LocalError::NotReady(error.to_string()));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The API server's audit log: a JSON line per write of the operator's ServiceAccount.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("logs").join(AUDIT_LOG)
    }

    /// Process ids of etcd, kube-apiserver and kube-controller-manager.
    pub fn pids(&self) -> [u32; 3] {
        [self.etcd.pid(), self.apiserver.pid(), self.controller_manager.pid()]
    }
}

/// A client for the cluster and user of a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, LocalError> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| LocalError::Kube(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| LocalError::Kube(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| LocalError::Kube(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::install::{OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};

    #[test]
    fn the_audit_policy_records_the_operators_writes() {
        let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
        let policy: serde_json::Value = serde_saphyr::from_str(AUDIT_POLICY).expect("YAML");
        assert_eq!(policy["rules"][0]["users"][0], user.as_str());
        assert_eq!(policy["rules"][0]["level"], "Metadata");
        assert_eq!(policy["rules"][0]["verbs"].as_array().map(Vec::len), Some(5));
        assert_eq!(policy["rules"][1]["level"], "None");
    }
}
