//! The operator installed as users install it, on a [`DeployedCluster`]: the image the manifests
//! deploy, `kubectl apply -k`, waiting for the rollout, and the admission checks every install
//! path must pass.

use apimanager_backup_operator::local::deployed::{DeployedCluster, Image};
use apimanager_backup_operator::local::install::{self, OPERATOR_NAMESPACE};
use apimanager_backup_operator::local::{process, session};
use apimanager_backup_operator::platform::Platform;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The operator's Deployment, Service and webhook configurations, as `manifests/` names them.
pub const DEPLOYMENT: &str = "apimanager-backup-operator";

/// What a create in a namespace without an APIManager is refused with: only the validating
/// webhook knows it, so this answer proves the API server called the operator.
pub fn no_apimanager_message(name: &str, namespace: &str) -> String {
    format!(
        r#"The APIManagerBackup "{name}" is invalid: spec.apiManagerName: Required value: no APIManager exists in namespace "{namespace}"; create the APIManager to back up first"#
    )
}

/// A backup `name` of 1Gi without `apiManagerName`.
pub fn backup_yaml(name: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n"
    )
}

/// The image `kubectl kustomize manifests/` deploys (the one `manifests/image/build.sh` tags,
/// which `manifests/image/check.sh` checks in CI), run from `APIMANAGER_BACKUP_JOB_BINARY` (the
/// binary CI takes out of that image) or else from the operator binary under test, built from
/// the same sources.
pub fn image() -> Image {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests"))
        .output()
        .expect("kubectl kustomize runs");
    assert!(output.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&output.stderr));
    let rendered = String::from_utf8_lossy(&output.stdout);
    let name = rendered
        .lines()
        .find_map(|line| line.trim().strip_prefix("image: "))
        .expect("the Deployment's image")
        .to_owned();
    let binary = std::env::var_os(apimanager_backup_operator::local::JOB_BINARY_ENV)
        .map_or_else(|| PathBuf::from(super::cluster::OPERATOR), PathBuf::from);
    Image { name, binary }
}

/// Starts a cluster (with real cert-manager when asked) in a new scratch folder removed when the
/// test binary exits.
pub async fn start(label: &str, with_cert_manager: bool) -> DeployedCluster {
    start_on(label, with_cert_manager, Platform::Kubernetes).await
}

/// [`start`] on `platform` (OpenShift: its discovery and `restricted-v2` admission of every Pod).
pub async fn start_on(label: &str, with_cert_manager: bool, platform: Platform) -> DeployedCluster {
    let dir = std::env::temp_dir().join(format!("abo-e2e-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    process::remove_at_exit(&dir);
    match DeployedCluster::start(&dir, &image(), with_cert_manager, platform).await {
        Ok(cluster) => cluster,
        Err(error) => panic!("the cluster did not start: {error}"),
    }
}

/// Runs `kubectl <args>` as the cluster administrator with `stdin`.
pub fn kubectl(cluster: &DeployedCluster, args: &[&str], stdin: &str) -> Output {
    super::cluster::kubectl_with(&cluster.plane.admin_kubeconfig, args, stdin)
}

/// [`kubectl`] that must succeed; its standard output.
pub fn kubectl_ok(cluster: &DeployedCluster, args: &[&str], stdin: &str) -> String {
    let output = kubectl(cluster, args, stdin);
    assert!(output.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kubectl rollout status` of the operator's Deployment: every replica updated and available.
pub fn wait_for_rollout(cluster: &DeployedCluster) {
    kubectl_ok(
        cluster,
        &["-n", OPERATOR_NAMESPACE, "rollout", "status", &format!("deployment/{DEPLOYMENT}"), "--timeout=240s"],
        "",
    );
}

/// Creates namespace `name` (restricted) without an APIManager.
pub async fn empty_namespace(cluster: &DeployedCluster, name: &str) -> String {
    let admin = cluster.plane.admin_client().await.expect("admin client");
    install::ensure_namespace(&admin, name).await.expect("namespace");
    name.to_owned()
}

/// Creates namespace `name` holding the sample 3scale installation (APIManager
/// `example-apimanager` with external databases, its Secrets, ConfigMaps and `system-storage`).
pub async fn namespace_with_installation(cluster: &DeployedCluster, name: &str) -> String {
    let admin = cluster.plane.admin_client().await.expect("admin client");
    install::ensure_namespace(&admin, name).await.expect("namespace");
    session::seed_file_storage(&cluster.volume(name, "system-storage")).expect("file storage");
    install::apply_yaml(&admin, session::SAMPLE_INSTALLATION, name).await.expect("installation");
    name.to_owned()
}

/// Waits until the API server reaches the operator through its Service: a server-side dry-run
/// create in `namespace` (no APIManager) gets the validating webhook's answer.
pub async fn wait_for_admission(cluster: &DeployedCluster, namespace: &str) {
    let expected = no_apimanager_message("probe", namespace);
    super::cluster::eventually(std::time::Duration::from_secs(120), "admission through the Service", || {
        let output =
            kubectl(cluster, &["-n", namespace, "create", "--dry-run=server", "-f", "-"], &backup_yaml("probe"));
        let refused = String::from_utf8_lossy(&output.stderr).trim_end().to_owned();
        let matches = refused == expected;
        async move { matches }
    })
    .await;
}

/// The checks every install path passes once rolled out: `kubectl create` of a backup in a
/// namespace without an APIManager is refused with the webhook's exact message, and one in the
/// sample installation's namespace is created with `spec.apiManagerName` defaulted.
pub async fn assert_admission(cluster: &DeployedCluster, label: &str) -> String {
    let empty = empty_namespace(cluster, &format!("{label}-empty")).await;
    wait_for_admission(cluster, &empty).await;
    let refused = kubectl(cluster, &["-n", &empty, "create", "-f", "-"], &backup_yaml("refused"));
    assert!(!refused.status.success(), "a backup without an APIManager was created");
    assert_eq!(String::from_utf8_lossy(&refused.stderr).trim_end(), no_apimanager_message("refused", &empty));

    let installation = namespace_with_installation(cluster, &format!("{label}-3scale")).await;
    let created = kubectl_ok(cluster, &["-n", &installation, "create", "-f", "-"], &backup_yaml("nightly"));
    assert_eq!(created.trim(), "apimanagerbackup.apps.3scale.net/nightly created");
    let defaulted = kubectl_ok(
        cluster,
        &["-n", &installation, "get", "apimanagerbackup", "nightly", "-o", "jsonpath={.spec.apiManagerName}"],
        "",
    );
    assert_eq!(defaulted, "example-apimanager");
    installation
}

/// The caBundle of every webhook of both of the operator's webhook configurations.
pub async fn ca_bundles(admin: &kube::Client) -> Vec<Option<Vec<u8>>> {
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
    let mutating: kube::Api<MutatingWebhookConfiguration> = kube::Api::all(admin.clone());
    let validating: kube::Api<ValidatingWebhookConfiguration> = kube::Api::all(admin.clone());
    let m = mutating.get(DEPLOYMENT).await.expect("mutating");
    let v = validating.get(DEPLOYMENT).await.expect("validating");
    let mut bundles: Vec<_> = m.webhooks.iter().flatten().map(|w| w.client_config.ca_bundle.clone()).collect();
    bundles.extend(v.webhooks.iter().flatten().map(|w| w.client_config.ca_bundle.clone()));
    bundles.into_iter().map(|b| b.map(|b| b.0)).collect()
}
