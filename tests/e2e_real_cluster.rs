//! The paths a real cluster takes and a harness could skip: backup Pods in namespaces enforcing
//! the `restricted` Pod Security Standard, run (by the node stand-in, as a kubelet would) as their
//! numeric user with their groups, reading a System FileStorage another user wrote with group-only
//! permissions; APIManagers reported available as 3scale-operator reports them (by its stand-in);
//! and the install of `manifests/` as the real API server admits it.

mod support;

use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::local::install::RESTRICTED;
use apimanager_backup_operator::local::session::{FILE_STORAGE_GROUP, SYSTEM_APP_USER};
use apimanager_backup_operator::local::threescale_operator::{REASON, report_available};
use apimanager_backup_operator::names::MANAGED_BY;
use apimanager_backup_operator::reconcile::step::JOB_USER;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use support::cluster::{
    apimanager_yaml, create_backup, eventually, finished_backup, kubectl_ok, kubectl_run, namespace,
    namespace_never_available, namespace_with_installation, shared,
};

/// (uid, gid, permission bits) of `path`.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let metadata = std::fs::symlink_metadata(path).expect("metadata");
    (metadata.uid(), metadata.gid(), metadata.mode() & 0o7777)
}

#[tokio::test]
async fn restricted_pods_back_up_group_only_files_of_another_user_without_touching_them() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "restricted-backup").await;
    let admin = cluster.admin_client().await.expect("client");
    let labels = Api::<Namespace>::all(admin).get(&ns).await.expect("namespace").metadata.labels.expect("labels");
    assert_eq!(labels.get(RESTRICTED.0).map(String::as_str), Some(RESTRICTED.1));
    let source = cluster.volume(&ns, "system-storage");
    let (user, group) = (SYSTEM_APP_USER, FILE_STORAGE_GROUP);
    let before = [
        (source.clone(), (user, group, 0o750)),
        (source.join("uploads/logos"), (user, group, 0o750)),
        (source.join("uploads/attachments.txt"), (user, group, 0o640)),
    ];
    for (path, expected) in &before {
        assert_eq!(owner_and_mode(path), *expected, "{} as the System app left it", path.display());
    }

    create_backup(cluster, &ns, "b");
    let backup = finished_backup(cluster, &ns, "b").await;
    let status = backup.status.expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(status.file_storage_group, Some(i64::from(group)), "found from the claim's root, no flag set");

    for (path, expected) in &before {
        assert_eq!(owner_and_mode(path), *expected, "{} unchanged by the backup", path.display());
    }
    let root = cluster.volume(&ns, "b");
    let job_user = u32::try_from(JOB_USER).expect("uid");
    assert_eq!(
        std::fs::read_to_string(root.join("system-filestorage-pvc/uploads/attachments.txt")).expect("copied file"),
        "developer portal attachment\n"
    );
    let (uid, _, mode) = owner_and_mode(&root.join("system-filestorage-pvc/uploads/attachments.txt"));
    assert_eq!((uid, mode), (job_user, 0o640), "copied by the copy Pod's user, mode kept");
    let (uid, _, _) = owner_and_mode(&root.join("secrets/system-seed.json"));
    assert_eq!(uid, job_user, "exported by the export Pod's user");
    let (_, gid, mode) = owner_and_mode(&root);
    assert_eq!(
        (gid, mode & 0o2070),
        (job_user, 0o2070),
        "the backup claim got the Pods' fsGroup, as a kubelet gives it"
    );
}

/// A Pod the node stand-in runs: `/bin/sh -c script` in `namespace`, as the restricted standard
/// requires, with `security` merged into the Pod's security context.
fn shell_pod(name: &str, script: &str, security: serde_json::Value, automount: bool) -> Pod {
    let mut pod_security = json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
    pod_security.as_object_mut().expect("object").extend(security.as_object().expect("object").clone());
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": automount,
            "securityContext": pod_security,
            "containers": [{"name": "c", "image": "busybox", "command": ["/bin/sh", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": true}}]
        }
    }))
    .expect("pod")
}

/// Creates `pod`, retrying while the namespace's default ServiceAccount is not made yet.
async fn create(pods: &Api<Pod>, pod: &Pod) {
    eventually(Duration::from_secs(30), "the Pod is admitted", || async {
        match pods.create(&PostParams::default(), pod).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.is_already_exists() => true,
            Err(kube::Error::Api(status)) if status.message.contains("serviceaccount") => false,
            Err(error) => panic!("Pod refused: {error}"),
        }
    })
    .await;
}

/// Waits until Pod `name` failed and returns (reason, message) of its container.
async fn failed_container(pods: &Api<Pod>, name: &str) -> (String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = pods.get(name).await.expect("pod").status.unwrap_or_default();
        if status.phase.as_deref() == Some("Failed") {
            let state = status.container_statuses.unwrap_or_default().remove(0).state.unwrap_or_default();
            return match (state.terminated, state.waiting) {
                (Some(done), _) => (done.reason.unwrap_or_default(), done.message.unwrap_or_default()),
                (None, Some(waiting)) => (waiting.reason.unwrap_or_default(), waiting.message.unwrap_or_default()),
                (None, None) => panic!("Pod {name} failed without a container state"),
            };
        }
        assert!(std::time::Instant::now() < deadline, "Pod {name} fails: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn node_stand_in_runs_pods_as_a_kubelet_would() {
    let cluster = shared();
    let ns = namespace(cluster, "kubelet-like");
    let admin = cluster.admin_client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(admin, &ns);
    let report = r#"echo "user $(id -u) group $(id -g) groups $(id -G) kubeconfig ${KUBECONFIG:-none}"; exit 3"#;
    let identity = json!({"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "supplementalGroups": [1001]});
    create(&pods, &shell_pod("identity", report, identity, false)).await;
    let (reason, message) = failed_container(&pods, "identity").await;
    assert_eq!(reason, "Error");
    assert_eq!(message.trim(), "user 65532 group 65532 groups 65532 1001 kubeconfig none");

    let with_token = json!({"runAsUser": 65532, "runAsGroup": 65532});
    let report = r#"test -r "$KUBECONFIG" && echo "token readable by $(id -u)"; exit 3"#;
    create(&pods, &shell_pod("token", report, with_token, true)).await;
    let (_, message) = failed_container(&pods, "token").await;
    assert_eq!(message.trim(), "token readable by 65532");

    create(&pods, &shell_pod("no-user", "exit 0", json!({}), false)).await;
    let (reason, message) = failed_container(&pods, "no-user").await;
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(message, "container has runAsNonRoot and image will run as root: set a numeric runAsUser");
}

#[tokio::test]
async fn the_3scale_operator_stand_in_marks_apimanagers_available_unless_their_namespace_says_never() {
    let cluster = shared();
    let admin = cluster.admin_client().await.expect("client");
    // The stand-in handles APIManagers one at a time in the order of its watch (and of a full
    // list: by namespace, then name), which puts this one first: once the other is marked, this one
    // was seen and left alone.
    let never = namespace_never_available(cluster, "always-unavailable");
    kubectl_ok(cluster, &["-n", &never, "create", "-f", "-"], &apimanager_yaml("example", true));
    let ns = namespace(cluster, "becomes-available");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml("example", true));

    let waited = kubectl_run(
        cluster,
        &["-n", &ns, "wait", "--for=condition=Available", "apimanager/example", "--timeout=30s"],
        "",
    );
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
    assert_eq!(String::from_utf8_lossy(&waited.stdout).trim(), "apimanager.apps.3scale.net/example condition met");
    let api: Api<APIManager> = Api::namespaced(admin.clone(), &ns);
    let available = api.get("example").await.expect("APIManager");
    assert!(available.is_available());
    let conditions = &available.status.expect("status")["conditions"];
    assert_eq!(conditions.as_array().map(Vec::len), Some(1), "{conditions}");
    assert_eq!(conditions[0]["type"], "Available");
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(conditions[0]["reason"], REASON);

    let left: Api<APIManager> = Api::namespaced(admin.clone(), &never);
    let untouched = left.get("example").await.expect("APIManager");
    assert!(!untouched.is_available());
    assert_eq!(untouched.status, None, "never marked");
    // There, a test makes it available when it chooses.
    report_available(&admin, &untouched).await.expect("reported available");
    let waited = kubectl_run(
        cluster,
        &["-n", &never, "wait", "--for=condition=Available", "apimanager/example", "--timeout=30s"],
        "",
    );
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
}

#[test]
fn the_real_api_server_admits_every_object_of_the_install() {
    let cluster = shared();
    let rendered = std::process::Command::new("kubectl")
        .args(["kustomize", "manifests/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("kubectl kustomize runs");
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let rendered = String::from_utf8(rendered.stdout).expect("UTF-8");
    let objects = rendered.lines().filter(|line| line.starts_with("kind: ")).count();
    // Server-side dry runs: every admission step (validation, PodSecurity, the CRD's schema) runs
    // and nothing is stored, so the harness's own webhook registration stays in place. Objects the
    // harness installed already are replaced, the others created: each is admitted by one of both.
    let mut admitted = Vec::new();
    for (verb, done, absent) in [("replace", "replaced", "NotFound"), ("create", "created", "AlreadyExists")] {
        let output = kubectl_run(cluster, &[verb, "--dry-run=server", "-f", "-"], &rendered);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let refusals: Vec<&str> = stderr.lines().filter(|line| !line.contains(&format!("({absent})"))).collect();
        assert!(refusals.is_empty(), "kubectl {verb}: refused or warned: {refusals:?}");
        let suffix = format!(" {done} (server dry run)");
        admitted.extend(stdout.lines().filter_map(|line| line.strip_suffix(&suffix)).map(str::to_owned));
    }
    admitted.sort();
    admitted.dedup();
    assert_eq!(admitted.len(), objects, "every object admitted once: {admitted:?}");
    for kind in
        ["namespace/", "customresourcedefinition", "clusterrole", "deployment", "service/", "webhookconfiguration"]
    {
        assert!(admitted.iter().any(|object| object.contains(kind)), "{kind} admitted: {admitted:?}");
    }
}
