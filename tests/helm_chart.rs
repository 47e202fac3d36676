//! The Helm chart (`charts/apimanager-backup-operator`) renders exactly the objects of the
//! kustomize install (`manifests/`), for its defaults and for each value that stands for a
//! kustomize component; the objects it takes whole (`files/`) are what `generate.sh` renders from
//! `manifests/`; `helm lint` passes; `helm install` runs the operator on the real control
//! plane, admission going through it. Helm
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
    helm_template_for(values, &[])
}

/// `helm template` with `values`, for a cluster serving the extra `api_versions`.
fn helm_template_for(values: &[&str], api_versions: &[&str]) -> String {
    let mut command = Command::new(helm());
    command.args(["template", "apimanager-backup-operator"]).arg(repo("charts/apimanager-backup-operator"));
    command.args(["--namespace", NAMESPACE, "--set", "createNamespace=true"]);
    for value in values {
        command.args(["--set", value]);
    }
    for api_version in api_versions {
        command.args(["--api-versions", api_version]);
    }
    run(&mut command)
}

fn assert_same(components: &[&str], values: &[&str]) {
    assert_same_for(components, values, &[]);
}

/// The chart with `values`, on a cluster serving `api_versions`, renders what kustomize does
/// with `components`.
fn assert_same_for(components: &[&str], values: &[&str], api_versions: &[&str]) {
    let kustomize = objects(&support::kustomize::render_with_components(&components.join("-"), components));
    let chart = objects(&helm_template_for(values, api_versions));
    let (k, c): (Vec<_>, Vec<_>) = (kustomize.keys().collect(), chart.keys().collect());
    assert_eq!(c, k, "the chart ({values:?}) renders the objects of kustomize ({components:?})");
    for (key, object) in &kustomize {
        assert_eq!(&chart[key], object, "{key:?} ({values:?} against {components:?})");
    }
}

/// `files/` is what `generate.sh` writes from `manifests/` today: every file, nothing else.
#[test]
fn the_chart_files_are_generated_from_the_manifests() {
    let out = std::env::temp_dir().join(format!("abo-chart-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new("bash").arg(repo("charts/apimanager-backup-operator/generate.sh")).arg(&out));
    let names = |dir: &Path| -> Vec<String> {
        let mut names = Vec::new();
        let mut folders = vec![dir.to_owned()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("folder") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    names.push(path.strip_prefix(dir).expect("inside").display().to_string());
                }
            }
        }
        names.sort();
        names
    };
    let files = repo("charts/apimanager-backup-operator/files");
    assert_eq!(names(&files), names(&out), "charts/apimanager-backup-operator/files holds what generate.sh writes");
    for name in names(&out) {
        let kept = std::fs::read_to_string(files.join(&name)).expect("kept file");
        let generated = std::fs::read_to_string(out.join(&name)).expect("generated file");
        assert!(kept == generated, "files/{name} is stale: run charts/apimanager-backup-operator/generate.sh");
    }
    let _ = std::fs::remove_dir_all(out);
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
    assert_same(&["openshift"], &["platform=openshift"]);
}

/// `platform: auto` (the default) runs the operator's Pods as OpenShift wants them where the
/// cluster serves SecurityContextConstraints, and as 65532 elsewhere; `kubernetes` pins 65532
/// even there; anything else fails the install with the values it takes.
#[test]
fn the_platform_follows_the_clusters_security_context_constraints() {
    const SCC: &str = "security.openshift.io/v1/SecurityContextConstraints";
    assert_same_for(&["openshift"], &[], &[SCC]);
    assert_same_for(&[], &["platform=kubernetes"], &[SCC]);
    let mut command = Command::new(helm());
    command
        .args(["template", "x"])
        .arg(repo("charts/apimanager-backup-operator"))
        .args(["--set", "platform=OpenShift"]);
    let output = command.output().expect("helm runs");
    assert!(!output.status.success(), "platform=OpenShift renders");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(r#"platform must be auto, openshift or kubernetes, not "OpenShift""#), "{stderr}");
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

/// `helm install` of the defaults, for real: on a cluster whose Node runs the operator's Pods
/// (see `tests/e2e_install.rs`), the release is deployed, every object the chart renders is on
/// the server, the Deployment rolls out, and the API server's admission goes through the
/// replicas' own certificate: a bad backup refused with the webhook's message, a good one
/// defaulted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_and_admission_works_through_it() {
    let cluster = support::deployed::start("helm", false).await;
    let kubeconfig = cluster.plane.admin_kubeconfig.display().to_string();
    let chart = repo("charts/apimanager-backup-operator");
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
    support::deployed::wait_for_rollout(&cluster);
    support::deployed::assert_admission(&cluster, "helm").await;
}
