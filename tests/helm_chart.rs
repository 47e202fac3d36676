//! The Helm chart (`charts/apimanager-backup-operator`) renders exactly the objects of the
//! kustomize install (`manifests/`), for its defaults and for each value that stands for a
//! kustomize component; `helm lint` passes; `helm install` puts them on a real API server. Helm
//! is built from its Go module, pinned and cached (`tests/helm/build.sh`).

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const NAMESPACE: &str = "apimanager-backup-operator";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The cached `helm` binary (built on first use).
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let output = Command::new("bash").arg(repo("tests/helm/build.sh")).output().expect("tests/helm/build.sh runs");
        assert!(output.status.success(), "building helm: {}", String::from_utf8_lossy(&output.stderr));
        PathBuf::from(String::from_utf8(output.stdout).expect("path").trim())
    })
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("runs");
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Every object by (kind, namespace, name), with each container's environment in name order
/// (its order means nothing; kustomize's patches append where the chart's template inserts), and
/// the install's labels on an object without labels (kustomize's `labels` of the base do not
/// reach the objects a component adds, which the chart labels where it templates them).
fn objects(yaml: &str) -> BTreeMap<(String, String, String), Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("YAML");
    let mut objects = BTreeMap::new();
    for mut doc in docs.into_iter().filter(|doc| !doc.is_null()) {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let key = (text(&doc["kind"]), text(&doc["metadata"]["namespace"]), text(&doc["metadata"]["name"]));
        if doc["metadata"]["labels"].is_null() {
            doc["metadata"]["labels"] = serde_json::json!({
                "app.kubernetes.io/name": "apimanager-backup-operator",
                "app.kubernetes.io/part-of": "apimanager-backup-operator"
            });
        }
        if let Some(containers) = doc.pointer_mut("/spec/template/spec/containers").and_then(Value::as_array_mut) {
            for container in containers {
                if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                    env.sort_by_key(|e| e["name"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        assert!(objects.insert(key.clone(), doc).is_none(), "{key:?} twice");
    }
    objects
}

fn helm_template(values: &[&str]) -> String {
    let mut command = Command::new(helm());
    command.args(["template", "apimanager-backup-operator"]).arg(repo("charts/apimanager-backup-operator"));
    command.args(["--namespace", NAMESPACE, "--set", "createNamespace=true"]);
    for value in values {
        command.args(["--set", value]);
    }
    run(&mut command)
}

fn assert_same(components: &[&str], values: &[&str]) {
    let kustomize = objects(&support::kustomize::render_with_components(&components.join("-"), components));
    let chart = objects(&helm_template(values));
    let (k, c): (Vec<_>, Vec<_>) = (kustomize.keys().collect(), chart.keys().collect());
    assert_eq!(c, k, "the chart ({values:?}) renders the objects of kustomize ({components:?})");
    for (key, object) in &kustomize {
        assert_eq!(&chart[key], object, "{key:?} ({values:?} against {components:?})");
    }
}

#[test]
fn helm_lint_passes() {
    let output = run(Command::new(helm()).arg("lint").arg(repo("charts/apimanager-backup-operator")));
    assert!(output.contains("0 chart(s) failed"), "{output}");
}

#[test]
fn the_chart_renders_the_kustomize_install() {
    assert_same(&[], &[]);
}

#[test]
fn each_value_renders_what_its_kustomize_component_does() {
    assert_same(&["cert-manager"], &["certificate.source=cert-manager"]);
    assert_same(&["webhooks-only"], &["mode=webhooks-only"]);
    assert_same(&["alerts"], &["alerts.enabled=true"]);
    assert_same(&["namespaced"], &["namespaces={3scale}"]);
}

#[test]
fn image_replicas_and_resources_reach_the_deployment_and_the_fence() {
    let chart = objects(&helm_template(&[
        "image.repository=registry.example.com/abo",
        "image.tag=1.2.3",
        "replicas=3",
        "resources.limits.memory=256Mi",
    ]));
    let deployment = &chart[&("Deployment".to_owned(), NAMESPACE.to_owned(), "apimanager-backup-operator".to_owned())];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/abo:1.2.3");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(container["resources"]["limits"]["memory"], "256Mi");
    let job_image =
        container["env"].as_array().expect("env").iter().find(|e| e["name"] == "APIMANAGER_BACKUP_JOB_IMAGE");
    assert_eq!(job_image.map(|e| &e["value"]), Some(&Value::from("registry.example.com/abo:1.2.3")));
    let policy = &chart[&(
        "ValidatingAdmissionPolicy".to_owned(),
        NAMESPACE.to_owned(),
        "apimanager-backup-operator-fence".to_owned(),
    )];
    let variables = policy["spec"]["variables"].as_array().expect("variables");
    let fenced = variables.iter().find(|v| v["name"] == "jobImage").expect("jobImage");
    assert_eq!(fenced["expression"], "'registry.example.com/abo:1.2.3'");
}

/// `helm install` of the defaults onto a real API server (no node: the operator's Pods stay
/// pending): the release is deployed and every object the chart renders is on the server.
#[tokio::test]
async fn helm_install_puts_every_object_of_the_chart_on_the_api_server() {
    use apimanager_backup_operator::local::control_plane::{ControlPlane, build_binaries};
    let dir = std::env::temp_dir().join(format!("abo-helm-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let repo = apimanager_backup_operator::local::repo_dir();
    let bin = build_binaries(&repo).expect("control plane binaries");
    let plane = ControlPlane::start(&repo, &bin, &dir).await.expect("control plane");
    let kubeconfig = plane.admin_kubeconfig.display().to_string();
    let chart = repo.join("charts/apimanager-backup-operator");
    run(Command::new(helm()).args(["install", "apimanager-backup-operator"]).arg(&chart).args([
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ]));
    let status: Value = serde_json::from_str(&run(Command::new(helm()).args([
        "status",
        "apimanager-backup-operator",
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
        "-o",
        "json",
    ])))
    .expect("status JSON");
    assert_eq!(status["info"]["status"], "deployed");
    let rendered = objects(&helm_template(&[]));
    for (kind, namespace, name) in rendered.keys() {
        let mut get = Command::new("kubectl");
        get.args(["--kubeconfig", &kubeconfig, "get", kind, name, "-o", "name"]);
        if !namespace.is_empty() && kind != "ValidatingAdmissionPolicy" && kind != "ValidatingAdmissionPolicyBinding" {
            get.args(["--namespace", namespace]);
        }
        let found = run(&mut get);
        assert_eq!(found.trim().rsplit('/').next(), Some(name.as_str()), "{kind} {name} installed");
    }
    drop(plane);
    let _ = std::fs::remove_dir_all(dir);
}
