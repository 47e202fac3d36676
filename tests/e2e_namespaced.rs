//! Namespace scoping on the real control plane and the real authorizer: the operator runs as its
//! ServiceAccount with the RBAC of `manifests/components/namespaced` and `--namespace 3scale`,
//! backs up and restores in 3scale, leaves every other namespace alone and may not touch it.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::backup::admission::VALIDATE_PATH;
use apimanager_backup_operator::local::LocalCluster;
use apimanager_backup_operator::local::install::{FIELD_MANAGER, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use apimanager_backup_operator::restore::admission::VALIDATE_PATH as VALIDATE_RESTORE_PATH;
use apimanager_backup_operator::scope::Namespaces;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::apiserver::open_watches;
use support::cluster::{
    assert_can_i, create_backup, finished_backup, kubectl_ok, kubectl_run, namespace_with_installation,
    start_scoped_cluster,
};
use support::https::{client_config, request, sample, scrape};
use support::restore::{create_restore, finished_restore};

const WATCHED: &str = "3scale";
const OTHER: &str = "elsewhere";

/// The cluster of this binary, its operator managing namespace [`WATCHED`] only.
fn scoped() -> &'static LocalCluster {
    static SCOPED: OnceLock<LocalCluster> = OnceLock::new();
    SCOPED.get_or_init(|| {
        let (cluster, dir) = start_scoped_cluster("namespaced", &[], Namespaces::from_names([WATCHED.to_owned()]));
        apimanager_backup_operator::local::process::remove_at_exit(&dir);
        cluster
    })
}

#[tokio::test]
async fn a_scoped_operator_backs_up_its_namespace_and_leaves_others_untouched() {
    let cluster = scoped();
    namespace_with_installation(cluster, WATCHED).await;
    namespace_with_installation(cluster, OTHER).await;
    // The API server calls the webhooks for the watched namespace only, so the other backup is
    // created as the CRD's schema alone admits it.
    create_backup(cluster, OTHER, "untouched");
    create_backup(cluster, WATCHED, "scoped");

    let done = finished_backup(cluster, WATCHED, "scoped").await;
    let status = done.status.expect("status");
    assert_eq!(status.completed, Some(true), "{status:?}");
    assert_one_watch_per_kind(cluster).await;
    let admin = cluster.admin_client().await.expect("admin client");
    let other: Api<APIManagerBackup> = Api::namespaced(admin.clone(), OTHER);
    let untouched = other.get("untouched").await.expect("the other backup");
    assert!(untouched.status.is_none(), "the other namespace's backup got a status: {:?}", untouched.status);
    assert_eq!(untouched.spec.api_manager_name, None, "not defaulted by the webhook");

    // A restore of that backup runs in the watched namespace with the same scoped RBAC; one in the
    // other namespace (admitted by the CRD alone) gets nothing.
    kubectl_ok(cluster, &["-n", WATCHED, "delete", "apimanager", "example-apimanager"], "");
    create_restore(cluster, OTHER, "untouched", "nightly");
    create_restore(cluster, WATCHED, "back", "scoped");
    let restored = finished_restore(cluster, WATCHED, "back").await;
    assert_eq!(restored.status.clone().and_then(|s| s.completed), Some(true), "{:?}", restored.status);
    let other_restores: Api<APIManagerRestore> = Api::namespaced(admin.clone(), OTHER);
    let untouched = other_restores.get("untouched").await.expect("the other restore");
    assert!(untouched.status.is_none(), "the other namespace's restore got a status: {:?}", untouched.status);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), OTHER);
    assert!(pods.list(&ListParams::default()).await.expect("pods").items.is_empty(), "no Pods in {OTHER}");

    let operator = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    let inside = [
        ("list", "apimanagerbackups.apps.3scale.net", "yes"),
        ("watch", "apimanagers.apps.3scale.net", "yes"),
        ("create", "pods", "yes"),
        ("watch", "pods", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/apimanager-backup-job", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/apimanager-restore-job", "yes"),
        ("list", "apimanagerrestores.apps.3scale.net", "yes"),
    ];
    assert_can_i(cluster, WATCHED, &operator, &inside);
    let outside = inside.map(|(verb, resource, _)| (verb, resource, "no"));
    assert_can_i(cluster, OTHER, &operator, &outside);
    assert_can_i(cluster, OTHER, &operator, &[("create", "rolebindings.rbac.authorization.k8s.io", "no")]);
    let everywhere = kubectl_run(
        cluster,
        &["auth", "can-i", "list", "apimanagerbackups.apps.3scale.net", "--all-namespaces", "--as", &operator],
        "",
    );
    assert_eq!(String::from_utf8_lossy(&everywhere.stdout).trim(), "no", "no cluster-wide list");

    // Called for another namespace all the same, the operator refuses rather than looking it up.
    let backup = serde_json::json!({"spec": {"apiManagerName": "example-apimanager",
        "backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}}});
    assert_refused_as_unmanaged(cluster, VALIDATE_PATH, "APIManagerBackup", backup).await;
}

/// While the operator leads (its controllers run: a backup just completed), it holds one watch per
/// kind, as the API server counts the watches it serves: the webhooks' cache and both controllers
/// share the APIManagers', the observer and the backup controller the backups'; the restores' and
/// the two controllers' step Pods' have one reader each. Only the operator watches these kinds
/// within one namespace here (the stand-ins and kube-controller-manager watch every namespace).
async fn assert_one_watch_per_kind(cluster: &LocalCluster) {
    let ca = cluster.plane.certs.join("ca.crt");
    let metrics = scrape(cluster.operator.address(), &ca).await;
    assert_eq!(sample(&metrics, "apimanager_backup_operator_leader"), Some(1.0), "the operator leads");
    let expected: BTreeMap<String, f64> =
        [("apimanagerbackups", 1.0), ("apimanagerrestores", 1.0), ("apimanagers", 1.0), ("pods", 2.0)]
            .into_iter()
            .map(|(resource, count)| (resource.to_owned(), count))
            .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = open_watches(cluster).await;
        let in_namespace: BTreeMap<String, f64> = open
            .into_iter()
            .filter(|((resource, scope), count)| {
                scope == "namespace" && *count > 0.0 && expected.contains_key(resource)
            })
            .map(|((resource, _), count)| (resource, count))
            .collect();
        if in_namespace == expected {
            return;
        }
        assert!(Instant::now() < deadline, "watches within a namespace: {in_namespace:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn restores_in_an_unmanaged_namespace_are_refused_naming_the_managed_ones() {
    let restore = serde_json::json!({"spec": {"restoreSource": {"persistentVolumeClaim": {
        "claimSource": {"claimName": "nightly", "readOnly": true}}}}});
    assert_refused_as_unmanaged(scoped(), VALIDATE_RESTORE_PATH, "APIManagerRestore", restore).await;
}

/// Sends the validating webhook at `path` a CREATE of a `kind` with `object`'s spec in namespace
/// [`OTHER`], as the API server would if its configuration still called the webhook there, and
/// asserts the denial: 403 naming the managed namespace.
async fn assert_refused_as_unmanaged(cluster: &LocalCluster, path: &str, kind: &str, object: Value) {
    let plural = format!("{}s", kind.to_lowercase());
    let mut object = object;
    object["apiVersion"] = "apps.3scale.net/v1alpha1".into();
    object["kind"] = kind.into();
    object["metadata"] = serde_json::json!({"name": "b", "namespace": OTHER});
    let review = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "0d4f6a52-2f5e-4cf4-9a38-5b1a9f3c1e01",
        "kind": {"group": "apps.3scale.net", "version": "v1alpha1", "kind": kind},
        "resource": {"group": "apps.3scale.net", "version": "v1alpha1", "resource": plural},
        "name": "b", "namespace": OTHER, "operation": "CREATE", "userInfo": {"username": "admin"},
        "object": object}});
    let tls = client_config(&[&cluster.plane.certs.join("ca.crt")]);
    let reply = request(cluster.operator.address(), tls, "POST", path, review.to_string().as_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer: Value = serde_json::from_str(&reply.body).expect("AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["allowed"], false, "{kind}: {response}");
    assert_eq!(response["status"]["code"], 403, "{kind}: {response}");
    assert_eq!(
        response["status"]["message"],
        format!("this operator does not manage namespace \"{OTHER}\" (it manages {WATCHED})"),
        "{kind}"
    );
}

#[test]
fn the_namespaced_install_is_admitted_by_the_api_server() {
    let cluster = scoped();
    let rendered = support::kustomize::render_with_components("namespaced-dry-run", &["namespaced"]);
    // As the harness's own field manager, so the install replaces what the harness applied (the
    // webhooks' loopback URL gives way to the Service) instead of merging with it.
    let applied = kubectl_run(
        cluster,
        &["apply", "--server-side", "--field-manager", FIELD_MANAGER, "--dry-run=server", "-f", "-"],
        &rendered,
    );
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(applied.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&applied.stderr));
    assert!(
        stdout.contains(
            "rolebinding.rbac.authorization.k8s.io/apimanager-backup-operator serverside-applied (server dry run)"
        ),
        "{stdout}"
    );
}
