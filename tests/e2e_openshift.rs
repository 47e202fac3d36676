//! End to end on a control plane playing OpenShift (the harness's OpenShift mode): its discovery,
//! its namespace allocations and its `restricted-v2` admission, called by the API server, and the
//! node stand-in running an admitted Pod as OpenShift's runtime does; then the operator on it with
//! no flag: found the platform, backups and restores of System files owned 1001:0 (OpenShift's
//! convention) and of a System fsGroup, the restored tree changed by the System app's user, and a
//! file the group cannot read failing the backup with the fix.

mod support;

use apimanager_backup_operator::local::scc::{self, Allocation};
use apimanager_backup_operator::names::MANAGED_BY;
use apimanager_backup_operator::platform::Platform;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;
use support::cluster::{create_backup, eventually, finished_backup, kubectl_ok, namespace, shared_openshift};
use support::restore::{create_restore, finished_restore, tree};

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

/// Namespace `name` holding the sample 3scale installation with its System files owned by user
/// 1001 and group `gid`, readable by the group only; returns the namespace's first user.
async fn installation(name: &str, gid: u32) -> i64 {
    use apimanager_backup_operator::local::{install, session};
    let cluster = shared_openshift();
    let admin = cluster.admin_client().await.expect("admin client");
    install::ensure_namespace(&admin, name).await.expect("namespace");
    session::seed_file_storage_as(&cluster.volume(name, "system-storage"), 1001, gid).expect("file storage");
    install::apply_yaml(&admin, session::SAMPLE_INSTALLATION, name).await.expect("installation");
    allocation(name).await.uids[0].first
}

/// Deletes what a restore brings back (all but the database Secrets) and the files (the claim's
/// folder goes with the claim, as a volume reclaimed by `Delete`).
async fn empty_namespace(ns: &str) {
    use apimanager_backup_operator::layout::{CONFIG_MAPS, NEVER_RESTORED, SECRETS};
    let cluster = shared_openshift();
    let restorable: Vec<&str> = SECRETS.into_iter().filter(|name| !NEVER_RESTORED.contains(name)).collect();
    kubectl_ok(cluster, &[&["-n", ns, "delete", "secret"][..], &restorable].concat(), "");
    kubectl_ok(cluster, &[&["-n", ns, "delete", "configmap"][..], &CONFIG_MAPS].concat(), "");
    kubectl_ok(cluster, &["-n", ns, "delete", "apimanager", "example-apimanager"], "");
    kubectl_ok(cluster, &["-n", ns, "delete", "persistentvolumeclaim", "system-storage"], "");
    let folder = cluster.volume(ns, "system-storage");
    eventually(Duration::from_secs(30), "the deleted claim's folder is reclaimed", || async { !folder.exists() }).await;
}

/// Runs `script` in `folder` as the System app would: user 1001, primary group `gid`, supplemental
/// `groups`; returns its standard error when it fails.
fn as_system_app(folder: &std::path::Path, gid: u32, groups: &[u32], script: &str) -> Result<(), String> {
    let mut command = std::process::Command::new("setpriv");
    command.args(["--reuid=1001", &format!("--regid={gid}")]);
    if groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        command.arg(format!("--groups={}", groups.join(",")));
    }
    let output = command.args(["--", "sh", "-ec", script]).current_dir(folder).output().expect("setpriv runs");
    if output.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&output.stderr).into_owned()) }
}

/// Backs up the installation of `ns` (System files of group `gid`) with no flag, empties the
/// namespace, restores it, and checks that the System app (user 1001, primary group `app_gid`,
/// supplemental `app_groups`) can create, overwrite and delete files in the restored tree.
async fn backup_and_restore(ns: &str, gid: u32, app_gid: u32, app_groups: &[u32]) {
    let cluster = shared_openshift();
    let storage = cluster.volume(ns, "system-storage");
    let original = tree(&storage);
    create_backup(cluster, ns, "nightly");
    let backup = finished_backup(cluster, ns, "nightly").await;
    let status = backup.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(status.file_storage_group, Some(i64::from(gid)), "found from the claim's root");

    empty_namespace(ns).await;
    create_restore(cluster, ns, "back", "nightly");
    let restore = finished_restore(cluster, ns, "back").await;
    let status = restore.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(status.file_storage_group, Some(i64::from(gid)), "the backed-up files' group");

    let restored = tree(&storage);
    assert_eq!(restored.len(), original.len(), "{restored:?}");
    for (path, entry) in &original {
        let metadata = std::fs::symlink_metadata(storage.join(path)).expect("restored");
        assert_eq!(metadata.gid(), gid, "{} keeps the FileStorage group", path.display());
        assert_eq!(restored.get(path), Some(&entry.shared_with_group()), "{}", path.display());
    }
    let script = "echo created > uploads/created.txt; echo overwritten > uploads/attachments.txt; \
rm uploads/logos/portal-logo.svg; mkdir uploads/new; echo nested > uploads/new/file.txt";
    as_system_app(&storage, app_gid, app_groups, script).expect("the System app changes the restored files");
    assert_eq!(std::fs::read_to_string(storage.join("uploads/attachments.txt")).expect("file"), "overwritten\n");
    assert!(!storage.join("uploads/logos/portal-logo.svg").exists());
    assert_eq!(std::fs::metadata(storage.join("uploads/new/file.txt")).expect("created").gid(), gid, "setgid folders");
}

#[tokio::test]
async fn files_of_openshifts_convention_1001_0_0640_are_backed_up_and_restored_with_no_flag() {
    let ns = "ocp-group-0";
    installation(ns, 0).await;
    // OpenShift's images: the System app runs as 1001 with group 0 (anyuid), or as the namespace's
    // user with group 0 (restricted-v2).
    backup_and_restore(ns, 0, 0, &[]).await;
}

#[tokio::test]
async fn files_of_a_system_fs_group_are_backed_up_and_restored_with_no_flag() {
    let ns = "ocp-fs-group";
    installation(ns, 5000).await;
    // The System app's Pod has fsGroup 5000: its user 1001 with that supplemental group.
    backup_and_restore(ns, 5000, 1001, &[5000]).await;
}

#[tokio::test]
async fn a_file_the_group_cannot_read_fails_the_backup_naming_it_its_owner_group_and_the_fix() {
    let cluster = shared_openshift();
    let ns = "ocp-unreadable";
    let user = installation(ns, 0).await;
    let private = cluster.volume(ns, "system-storage").join("uploads/private.key");
    std::fs::write(&private, b"key").expect("file");
    std::os::unix::fs::chown(&private, Some(1001), Some(1001)).expect("owner");
    std::fs::set_permissions(&private, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("mode");
    create_backup(cluster, ns, "nightly");
    let backup = finished_backup(cluster, ns, "nightly").await;
    let status = backup.status.expect("status");
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("a Failed condition");
    assert!(
        failed.message.contains(&format!(
            "cannot read {}: owned by uid 1001 and gid 1001 with mode 0600, while this step runs as uid {user} with groups 0,{user}; \
fix: make it readable by the group owning the System FileStorage claim's root (gid 0): chgrp 0 and chmod g+r (g+rx for a folder), \
as System writes its files, or run the operator with --file-storage-group=1001",
            private.display()
        )),
        "{}",
        failed.message
    );
}

#[tokio::test]
async fn the_operator_finds_openshift_and_lets_it_assign_user_and_groups() {
    let cluster = shared_openshift();
    let ns = "ocp-detected";
    let user = installation(ns, 0).await;
    let pods: Api<Pod> = Api::namespaced(cluster.admin_client().await.expect("client"), ns);
    let first = {
        let _held = cluster.node.pause();
        create_backup(cluster, ns, "nightly");
        eventually(Duration::from_secs(60), "the first step Pod is created", || async {
            pods.list(&Default::default()).await.is_ok_and(|list| !list.items.is_empty())
        })
        .await;
        pods.list(&Default::default()).await.expect("pods").items.remove(0)
    };
    let spec = first.spec.clone().expect("spec");
    let pod = spec.security_context.clone().expect("pod security");
    assert_eq!((pod.run_as_user, pod.run_as_group), (None, None), "the operator pins no user or group");
    assert_eq!(pod.run_as_non_root, Some(true));
    assert_eq!(pod.fs_group, Some(user), "restricted-v2 assigned the namespace's first group");
    assert_eq!(spec.containers[0].security_context.as_ref().and_then(|s| s.run_as_user), Some(user));
    assert_eq!(first.annotations().get(scc::SCC_ANNOTATION).map(String::as_str), Some(scc::SCC_NAME));
    let backup = finished_backup(cluster, ns, "nightly").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
    let log = std::fs::read_to_string(cluster.operator.log()).expect("operator log");
    assert!(log.contains("platform found from the API's discovery") && log.contains("openshift"), "{log}");
}

#[tokio::test]
async fn told_it_is_plain_kubernetes_the_operator_pins_ids_and_restricted_v2_refuses_them() {
    use apimanager_backup_operator::scope::Namespaces;
    let (cluster, dir) = support::cluster::start_cluster_on(
        "ocp-told",
        &["--platform=kubernetes"],
        Namespaces::All,
        Platform::OpenShift,
    );
    let _cleanup = support::certs::TempDir(dir);
    let admin = cluster.admin_client().await.expect("admin client");
    let ns = "ocp-told";
    apimanager_backup_operator::local::install::ensure_namespace(&admin, ns).await.expect("namespace");
    apimanager_backup_operator::local::install::apply_yaml(
        &admin,
        apimanager_backup_operator::local::session::SAMPLE_INSTALLATION,
        ns,
    )
    .await
    .expect("installation");
    create_backup(&cluster, ns, "nightly");
    let backup = finished_backup(&cluster, ns, "nightly").await;
    let failed = backup.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Failed").expect("failed");
    assert!(failed.message.contains("65532 is not an allowed group"), "{}", failed.message);
}
