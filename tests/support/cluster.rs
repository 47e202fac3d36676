//! One real control plane with the operator per test binary, started on first use and killed
//! when the binary exits; each test works in its own namespace.

use apimanager_backup_operator::local::{LocalCluster, process};
use apimanager_backup_operator::platform::Platform;
use apimanager_backup_operator::scope::Namespaces;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The operator binary under test.
pub const OPERATOR: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");

/// Starts a fresh cluster in a new scratch directory on a runtime of its own (tests each have
/// their own runtime, which ends with the test).
pub fn start_cluster(label: &str) -> (LocalCluster, PathBuf) {
    start_cluster_with(label, &[])
}

/// [`start_cluster`] with `operator_args` added to the operator's `serve`.
pub fn start_cluster_with(label: &str, operator_args: &[&str]) -> (LocalCluster, PathBuf) {
    start_scoped_cluster(label, operator_args, Namespaces::All)
}

/// [`start_cluster_with`] with the operator managing `namespaces` only (see
/// [`LocalCluster::start_scoped`]).
pub fn start_scoped_cluster(label: &str, operator_args: &[&str], namespaces: Namespaces) -> (LocalCluster, PathBuf) {
    start_cluster_on(label, operator_args, namespaces, Platform::Kubernetes)
}

/// [`start_scoped_cluster`] on a cluster playing `platform` (see [`LocalCluster::start_on`]).
pub fn start_cluster_on(
    label: &str,
    operator_args: &[&str],
    namespaces: Namespaces,
    platform: Platform,
) -> (LocalCluster, PathBuf) {
    let operator_args: Vec<String> = operator_args.iter().map(|a| (*a).to_owned()).collect();
    let dir = std::env::temp_dir().join(format!("abo-e2e-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let work = dir.clone();
    let cluster = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(LocalCluster::start_on(Path::new(OPERATOR), &work, &operator_args, &namespaces, platform))
    })
    .join()
    .expect("cluster start thread");
    match cluster {
        Ok(cluster) => (cluster, dir),
        Err(error) => panic!("the local cluster did not start: {error}"),
    }
}

/// The cluster shared by the tests of this binary.
pub fn shared() -> &'static LocalCluster {
    static SHARED: OnceLock<LocalCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (cluster, dir) = start_cluster("shared");
        process::remove_at_exit(&dir);
        cluster
    })
}

/// The cluster playing OpenShift shared by the tests of this binary.
pub fn shared_openshift() -> &'static LocalCluster {
    static SHARED: OnceLock<LocalCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (cluster, dir) = start_cluster_on("openshift", &[], Namespaces::All, Platform::OpenShift);
        process::remove_at_exit(&dir);
        cluster
    })
}

/// `kubectl` as the cluster administrator of `cluster`.
pub fn kubectl(cluster: &LocalCluster) -> Command {
    let mut command = Command::new("kubectl");
    command.arg("--kubeconfig").arg(&cluster.plane.admin_kubeconfig);
    command
}

/// Runs `kubectl <args>` with `stdin` and returns its output.
pub fn kubectl_run(cluster: &LocalCluster, args: &[&str], stdin: &str) -> Output {
    kubectl_with(&cluster.plane.admin_kubeconfig, args, stdin)
}

/// Runs `kubectl --kubeconfig <kubeconfig> <args>` with `stdin` and returns its output.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl starts");
    if let Some(mut input) = child.stdin.take() {
        std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("write kubectl stdin");
    }
    child.wait_with_output().expect("kubectl finishes")
}

/// Runs kubectl and returns stdout, failing the test with kubectl's stderr if it fails.
pub fn kubectl_ok(cluster: &LocalCluster, args: &[&str], stdin: &str) -> String {
    let output = kubectl_run(cluster, args, stdin);
    assert!(output.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kubectl create` in `ns` of the shared cluster that must fail; returns what kubectl printed on
/// stderr.
pub fn create_rejected(ns: &str, yaml: &str) -> String {
    let output = kubectl_run(shared(), &["-n", ns, "create", "-f", "-"], yaml);
    assert!(!output.status.success(), "accepted: {yaml}");
    String::from_utf8_lossy(&output.stderr).trim_end().to_owned()
}

/// Creates namespace `name`, enforcing the `restricted` Pod Security Standard, and returns it.
pub fn namespace(cluster: &LocalCluster, name: &str) -> String {
    namespace_labelled(cluster, name, &[])
}

/// [`namespace`], labelled so the harness's 3scale-operator stand-in never marks its APIManagers
/// available (as a 3scale installation that never gets ready).
pub fn namespace_never_available(cluster: &LocalCluster, name: &str) -> String {
    use apimanager_backup_operator::local::threescale_operator::NEVER_AVAILABLE;
    namespace_labelled(cluster, name, &[NEVER_AVAILABLE])
}

fn namespace_labelled(cluster: &LocalCluster, name: &str, labels: &[(&str, &str)]) -> String {
    use apimanager_backup_operator::local::install::RESTRICTED;
    let labels: String =
        [RESTRICTED].iter().chain(labels).map(|(key, value)| format!("    {key}: {value:?}\n")).collect();
    let yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n{labels}");
    kubectl_ok(cluster, &["create", "-f", "-"], &yaml);
    name.to_owned()
}

/// YAML of an APIManager named `name`; `external` sets all three databases external.
pub fn apimanager_yaml(name: &str, external: bool) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManager\nmetadata:\n  name: {name}\nspec:\n  wildcardDomain: example.com\n  externalComponents:\n    system:\n      database: {external}\n      redis: {external}\n    backend:\n      redis: {external}\n"
    )
}

/// Creates namespace `name` holding the sample 3scale installation (13 Secrets, 2 ConfigMaps,
/// the `system-storage` claim with a few files, an APIManager with external databases).
pub async fn namespace_with_installation(cluster: &LocalCluster, name: &str) -> String {
    use apimanager_backup_operator::local::{install, session};
    let admin = cluster.admin_client().await.expect("admin client");
    install::ensure_namespace(&admin, name).await.expect("namespace");
    session::seed_file_storage(&cluster.volume(name, "system-storage")).expect("file storage");
    install::apply_yaml(&admin, session::SAMPLE_INSTALLATION, name).await.expect("installation");
    name.to_owned()
}

/// The names of every Secret of the sample installation: the 13 of the 3scale reference and those its
/// APIManager references.
pub fn sample_secret_names() -> Vec<String> {
    use apimanager_backup_operator::local::session::SAMPLE_INSTALLATION;
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(SAMPLE_INSTALLATION).expect("sample");
    let secrets = documents.iter().filter(|object| object["kind"] == "Secret");
    secrets.map(|secret| secret["metadata"]["name"].as_str().expect("name").to_owned()).collect()
}

/// The Secrets the sample installation's APIManager references, sorted.
pub const SAMPLE_REFERENCED_SECRETS: [&str; 5] = [
    "apicast-custom-environment",
    "apicast-custom-policy",
    "apicast-https-certificate",
    "apicast-tracing-config",
    "registry-pull-secret",
];

/// Empties namespace `ns` of the sample installation as a restore brings it back: every Secret but
/// the database ones (a restore never makes those), the ConfigMaps, the APIManager, the
/// `system-storage` claim and its files.
pub async fn delete_restorable(cluster: &LocalCluster, ns: &str) {
    use apimanager_backup_operator::layout::{CONFIG_MAPS, NEVER_RESTORED};
    let secrets = sample_secret_names();
    let restorable: Vec<&str> =
        secrets.iter().map(String::as_str).filter(|name| !NEVER_RESTORED.contains(name)).collect();
    kubectl_ok(cluster, &[&["-n", ns, "delete", "secret"][..], &restorable].concat(), "");
    kubectl_ok(cluster, &[&["-n", ns, "delete", "configmap"][..], &CONFIG_MAPS].concat(), "");
    kubectl_ok(cluster, &["-n", ns, "delete", "apimanager", "example-apimanager"], "");
    kubectl_ok(cluster, &["-n", ns, "delete", "persistentvolumeclaim", "system-storage"], "");
    // The harness removes a deleted claim's folder, as a provisioned volume's reclaim policy would.
    let storage = cluster.volume(ns, "system-storage");
    eventually(std::time::Duration::from_secs(30), "the deleted claim's folder is reclaimed", || async {
        !storage.exists()
    })
    .await;
}

/// Creates an APIManagerBackup `name` of 1Gi in `namespace` with kubectl.
pub fn create_backup(cluster: &LocalCluster, namespace: &str, name: &str) {
    let yaml = format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n"
    );
    kubectl_ok(cluster, &["-n", namespace, "create", "-f", "-"], &yaml);
}

/// Waits until backup `name` completed or failed.
pub async fn finished_backup(
    cluster: &LocalCluster,
    namespace: &str,
    name: &str,
) -> apimanager_backup_operator::api::backup::APIManagerBackup {
    let admin = cluster.admin_client().await.expect("admin client");
    let api = kube::Api::namespaced(admin, namespace);
    apimanager_backup_operator::local::session::wait_for_backup(&api, name, std::time::Duration::from_secs(90))
        .await
        .expect("backup finishes")
}

/// Asserts `kubectl auth can-i <verb> <resource> --as <user>` in `namespace` for each case.
pub fn assert_can_i(cluster: &LocalCluster, namespace: &str, user: &str, cases: &[(&str, &str, &str)]) {
    for (verb, resource, expected) in cases {
        let output = kubectl_run(cluster, &["-n", namespace, "auth", "can-i", verb, resource, "--as", user], "");
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), *expected, "{user}: {verb} {resource}");
    }
}

/// Polls `check` every 200 ms until it holds, failing with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A client acting as the cluster administrator impersonating `user` (as `kubectl --as` does), so
/// the API server authorizes and admits each request as that user's.
pub async fn client_as(cluster: &LocalCluster, user: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.plane.admin_kubeconfig).expect("admin kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("config");
    config.auth_info.impersonate = Some(user.to_owned());
    kube::Client::try_from(config).expect("client")
}
