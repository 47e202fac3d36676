//! End to end on a control plane playing OpenShift (the harness's OpenShift mode): its discovery,
//! its namespace allocations and its `restricted-v2` admission, called by the API server, and the
//! node stand-in running an admitted Pod as OpenShift's runtime does.

mod support;

use apimanager_backup_operator::local::scc::{self, Allocation};
use apimanager_backup_operator::names::MANAGED_BY;
use apimanager_backup_operator::platform::Platform;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use support::cluster::{eventually, namespace, shared_openshift};

/// The allocation the harness gave namespace `name`.
async fn allocation(name: &str) -> Allocation {
    let admin = shared_openshift().admin_client().await.expect("admin client");
    let found = Api::<Namespace>::all(admin).get(name).await.expect("namespace");
    Allocation::from_annotations(found.annotations()).expect("the namespace carries OpenShift's allocation")
}

/// A Pod the node stand-in runs (labelled as the operator's), running `command`, with `security`
/// as its Pod security context and `volumes` mounted by name at `/<name>`.
fn pod(name: &str, security: serde_json::Value, command: &[&str], volumes: &[(&str, &str, bool)]) -> Pod {
    let mounts: Vec<_> = volumes
        .iter()
        .map(|(volume, _, read_only)| serde_json::json!({"name": volume, "mountPath": format!("/{volume}"), "readOnly": read_only}))
        .collect();
    let claims: Vec<_> = volumes
        .iter()
        .map(|(volume, claim, read_only)| serde_json::json!({"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "spec": {"restartPolicy": "Never", "automountServiceAccountToken": false, "securityContext": security,
            "volumes": claims,
            "containers": [{"name": "main", "image": "local", "command": command, "volumeMounts": mounts}]},
    }))
    .expect("pod")
}

/// Creates `pod` in `ns` as the administrator once the namespace's default ServiceAccount exists.
async fn create(ns: &str, pod: &Pod) -> Result<Pod, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(shared_openshift().admin_client().await.expect("client"), ns);
    let mut outcome = pods.create(&PostParams::default(), pod).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while matches!(&outcome, Err(kube::Error::Api(s)) if s.message.contains("serviceaccount") && std::time::Instant::now() < deadline)
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
        outcome = pods.create(&PostParams::default(), pod).await;
    }
    outcome
}

#[tokio::test]
async fn discovery_shows_openshifts_security_group() {
    let admin = shared_openshift().admin_client().await.expect("admin client");
    assert_eq!(Platform::discover(&admin).await.expect("discovery"), Platform::OpenShift);
    let scc = support::cluster::kubectl_ok(
        shared_openshift(),
        &["get", "scc", "restricted-v2", "-o", "jsonpath={.runAsUser.type} {.fsGroup.type} {.supplementalGroups.type}"],
        "",
    );
    assert_eq!(scc, "MustRunAsRange MustRunAs RunAsAny");
}

#[tokio::test]
async fn every_new_namespace_gets_a_block_of_its_own() {
    let cluster = shared_openshift();
    let first = allocation(&namespace(cluster, "ocp-alloc-a")).await;
    let second = allocation(&namespace(cluster, "ocp-alloc-b")).await;
    assert_eq!(first.uids, first.groups);
    assert_eq!(first.uids[0].last - first.uids[0].first + 1, scc::BLOCK_SIZE);
    assert!(first.uids[0].first >= scc::FIRST_BLOCK_START);
    assert_ne!(first.uids, second.uids);
    assert_ne!(first.mcs, second.mcs);
}

#[tokio::test]
async fn a_pod_pinning_ids_outside_the_namespaces_ranges_is_refused() {
    let ns = namespace(shared_openshift(), "ocp-refused");
    let fixed = serde_json::json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}});
    let Err(kube::Error::Api(status)) = create(&ns, &pod("pinned", fixed, &["true"], &[])).await else {
        panic!("a Pod with user and fsGroup 65532 was admitted");
    };
    let range = allocation(&ns).await.uids[0];
    assert_eq!(
        status.message,
        format!(
            "admission webhook \"scc-mutate.local.openshift.io\" denied the request: unable to validate against any security context constraint: \
[provider \"restricted-v2\": Forbidden: spec.securityContext.fsGroup: Invalid value: []int64{{65532}}: 65532 is not an allowed group, \
spec.containers[0].securityContext.runAsUser: Invalid value: 65532: must be in the ranges: [{}, {}]]",
            range.first, range.last
        )
    );
    let host: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "host"}, "spec": {
        "hostNetwork": true, "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "main", "image": "local", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}}))
    .expect("pod");
    let Err(kube::Error::Api(status)) = create(&ns, &host).await else { panic!("a Pod using the host was admitted") };
    for refused in [
        "spec.securityContext.hostNetwork: Invalid value: true: Host network is not allowed to be used",
        "spec.volumes[0]: Invalid value: \"hostPath\": hostPath volumes are not allowed to be used",
        "spec.containers[0].securityContext.capabilities.add: Invalid value: \"SYS_ADMIN\": capability may not be added",
    ] {
        assert!(status.message.contains(refused), "{refused} missing in: {}", status.message);
    }
}

#[tokio::test]
async fn an_admitted_pod_runs_as_the_assigned_user_with_group_0_and_its_fs_group() {
    let cluster = shared_openshift();
    let ns = namespace(cluster, "ocp-runs");
    let range = allocation(&ns).await.uids[0];
    // System's files as OpenShift's images leave them: user 1001, group 0, readable by the group only.
    let files = cluster.volume(&ns, "system-storage");
    std::fs::create_dir_all(&files).expect("claim folder");
    std::fs::write(files.join("logo.svg"), b"<svg/>").expect("file");
    std::os::unix::fs::chown(files.join("logo.svg"), Some(1001), Some(0)).expect("owner");
    std::fs::set_permissions(files.join("logo.svg"), std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("mode");
    let security = serde_json::json!({"runAsNonRoot": true});
    let copy = pod(
        "copy",
        security,
        &["cp", "/files/logo.svg", "/out/logo.svg"],
        &[("files", "system-storage", true), ("out", "out", false)],
    );
    let admitted = create(&ns, &copy).await.expect("a Pod naming no ids is admitted");
    assert_eq!(admitted.annotations().get(scc::SCC_ANNOTATION).map(String::as_str), Some(scc::SCC_NAME));
    let spec = admitted.spec.clone().expect("spec");
    assert_eq!(spec.security_context.as_ref().and_then(|s| s.fs_group), Some(range.first));
    assert_eq!(spec.containers[0].security_context.as_ref().and_then(|s| s.run_as_user), Some(range.first));

    let pods: Api<Pod> = Api::namespaced(cluster.admin_client().await.expect("client"), &ns);
    let phase = |pod: Pod| pod.status.and_then(|s| s.phase).unwrap_or_default();
    eventually(Duration::from_secs(60), "the copy Pod ends", || async {
        matches!(pods.get("copy").await.map(phase).as_deref(), Ok("Succeeded" | "Failed"))
    })
    .await;
    let ended = pods.get("copy").await.expect("pod");
    assert_eq!(phase(ended.clone()), "Succeeded", "group 0 reads the 0640 file of group 0: {:?}", ended.status);
    let copied = std::fs::metadata(cluster.volume(&ns, "out").join("logo.svg")).expect("the copy");
    assert_eq!(copied.uid() as i64, range.first, "written as the user the namespace's range assigned");
    assert_eq!(copied.gid() as i64, range.first, "in the fsGroup's folder (setgid)");
}
