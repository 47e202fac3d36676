//! Restores end to end on the real control plane: admission of APIManagerRestores through the
//! operator's webhooks and the CRD's CEL rules, driven by `kubectl` as users type it; the restore
//! job steps run as the binary on a backup a real backup wrote; whole restores run by the
//! operator's reconciler, from an emptied namespace back to the installation.

mod support;

use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::layout::{CONFIG_MAPS, NEVER_RESTORED};
use apimanager_backup_operator::local::LocalCluster;
use apimanager_backup_operator::local::session::FILE_STORAGE_GROUP;
use apimanager_backup_operator::local::threescale_operator::report_available;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::certs::TempDir;
use support::cluster::{
    OPERATOR, apimanager_yaml, assert_can_i, create_backup, create_rejected, delete_restorable, finished_backup,
    kubectl_ok, kubectl_run, namespace, namespace_never_available, namespace_with_installation, sample_secret_names,
    shared,
};
use support::restore::{
    Installation, create_restore, event_reasons, finished_restore, ready_reason, restore_when, restore_yaml, sample,
};
use support::threescale_backup::{FILE_STORAGE_LINK, threescale_operator_backup_claim};

/// A claim as an APIManagerBackup leaves it (same annotations for both operators).
fn backup_claim_yaml(name: &str, apimanager: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  annotations:\n    apiManagerName: {apimanager}\n    apiManagerUID: am-uid\n    apiManagerBackupName: {name}\n    apiManagerBackupUID: backup-uid\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
    )
}

#[test]
fn restore_over_a_live_apimanager_is_refused_with_what_to_do() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-live");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml("example", true));
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_claim_yaml("nightly", "example"));
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "nightly")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "nightly": the backup is of APIManager "example", which exists in namespace "restore-live"; restoring over a live installation is refused: delete that APIManager (and its Secrets, ConfigMaps and system-storage claim) first, or restore into another namespace"#
    );
}

#[test]
fn a_missing_claim_and_a_claim_holding_no_backup_are_refused() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-claims");
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "nowhere")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "nowhere": no PersistentVolumeClaim of that name in namespace "restore-claims"; a restore reads a backup claim of its own namespace"#
    );
    let plain = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: plain\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n";
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], plain);
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "plain")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "plain": the PersistentVolumeClaim holds no backup: it lacks the annotations apiManagerName and apiManagerBackupUID that an APIManagerBackup (of this operator or of 3scale-operator) puts on its claim"#
    );
}

#[test]
fn no_source_is_refused_by_the_crd_itself() {
    let ns = namespace(shared(), "restore-no-source");
    let yaml = "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerRestore\nmetadata:\n  name: r\nspec:\n  restoreSource: {}\n";
    assert_eq!(
        create_rejected(&ns, yaml),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource: Required value: exactly one restore source must be set; supported: persistentVolumeClaim, s3"#
    );
}

#[test]
fn an_accepted_restore_mounts_read_only_and_its_spec_never_changes() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-accepted");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_claim_yaml("nightly", "example"));
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_claim_yaml("weekly", "example"));
    let out = kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &restore_yaml("r", "nightly"));
    assert_eq!(out.trim(), "apimanagerrestore.apps.3scale.net/r created");
    let read_only = kubectl_ok(
        cluster,
        &[
            "-n",
            &ns,
            "get",
            "apimanagerrestore",
            "r",
            "-o",
            "jsonpath={.spec.restoreSource.persistentVolumeClaim.claimSource.readOnly}",
        ],
        "",
    );
    assert_eq!(read_only, "true");
    let patch = r#"{"spec":{"restoreSource":{"persistentVolumeClaim":{"claimSource":{"claimName":"weekly"}}}}}"#;
    let output = kubectl_run(cluster, &["-n", &ns, "patch", "apimanagerrestore", "r", "--type=merge", "-p", patch], "");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"The APIManagerRestore "r" is invalid: spec: Forbidden: spec is immutable once the restore is created; create a new APIManagerRestore to restore another backup"#
    );
}

#[tokio::test]
async fn a_claim_holding_a_backup_of_3scale_operator_is_admitted() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-3scale-layout");
    let root = threescale_operator_backup_claim(cluster, &ns, "threescale-nightly").await;
    assert!(root.join("apimanager/apimanager-backup.json").is_file());
    assert!(!root.join("manifest.json").exists());
    let created = kubectl_ok(
        cluster,
        &["-n", &ns, "create", "--dry-run=server", "-f", "-"],
        &restore_yaml("r", "threescale-nightly"),
    );
    assert_eq!(created.trim(), "apimanagerrestore.apps.3scale.net/r created (server dry run)");
}

/// Runs `apimanager-backup-operator job <step> <args>` as a restore Pod would, as the cluster
/// administrator; returns whether it succeeded and its termination message.
fn run_step(cluster: &LocalCluster, scratch: &Path, step: &str, args: &[String]) -> (bool, String) {
    let log = scratch.join(format!("{step}.termination-log"));
    let output = Command::new(OPERATOR)
        .args(["job", step])
        .args(args)
        .arg(format!("--termination-log={}", log.display()))
        .env("KUBECONFIG", &cluster.plane.admin_kubeconfig)
        .output()
        .expect("job step runs");
    (output.status.success(), std::fs::read_to_string(&log).unwrap_or_default())
}

/// Gives the sample System FileStorage `storage` what a copy could lose: a symbolic link (`logo`)
/// and a file modified long ago (`uploads/attachments.txt`).
fn add_a_link_and_an_old_mtime(storage: &Path) {
    std::os::unix::fs::symlink("uploads/logos/portal-logo.svg", storage.join("logo")).expect("link");
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(storage.join("uploads/attachments.txt"), old).expect("mtime");
}

fn mode_and_mtime(path: &Path) -> (u32, i64) {
    let meta = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.permissions().mode() & 0o7777, filetime::FileTime::from_last_modification_time(&meta).unix_seconds())
}

#[tokio::test]
async fn the_restore_steps_bring_a_real_backup_back_into_a_fresh_namespace() {
    let cluster = shared();
    let source = namespace_with_installation(cluster, "round-trip-source").await;
    let storage = cluster.volume(&source, "system-storage");
    add_a_link_and_an_old_mtime(&storage);
    std::fs::set_permissions(storage.join("uploads/attachments.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("mode");
    create_backup(cluster, &source, "nightly");
    let backup = finished_backup(cluster, &source, "nightly").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
    let root = cluster.volume(&source, "nightly");
    let verified = Command::new(OPERATOR).arg("verify").arg(&root).output().expect("verify runs");
    assert_eq!(verified.status.code(), Some(0), "{}", String::from_utf8_lossy(&verified.stdout));

    let scratch = TempDir::new("round-trip");
    let (ok, report) = run_step(cluster, &scratch.0, "verify", &[format!("--backup-dir={}", root.display())]);
    assert!(ok, "{report}");
    assert!(
        report.contains(r#""checked":{"result":"verified""#) && report.contains(r#""name":"example-apimanager""#),
        "{report}"
    );

    // The target namespace already holds its own database Secrets and a zync Secret.
    let target = namespace(cluster, "round-trip-target");
    for name in ["system-database", "backend-redis", "system-redis", "zync"] {
        kubectl_ok(cluster, &["-n", &target, "create", "secret", "generic", name, "--from-literal=URL=target-own"], "");
    }
    let backup_dir = format!("--backup-dir={}", root.display());
    let namespace_arg = format!("--namespace={target}");
    let (ok, report) = run_step(cluster, &scratch.0, "restore-objects", &[namespace_arg.clone(), backup_dir.clone()]);
    assert!(ok, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).expect("report");
    assert_eq!(report["kept"], serde_json::json!(["Secret zync"]), "an existing object is never overwritten");
    let created: Vec<&str> = report["created"].as_array().expect("created").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(
        created.len(),
        13 - 3 - 1 + 5 + 2,
        "every Secret but the database ones and zync, the 5 the APIManager references, both ConfigMaps: {created:?}"
    );
    let admin = cluster.admin_client().await.expect("client");
    let (from, to): (Api<Secret>, Api<Secret>) =
        (Api::namespaced(admin.clone(), &source), Api::namespaced(admin.clone(), &target));
    for name in sample_secret_names() {
        let name = name.as_str();
        let restored = to.get(name).await.expect("secret in the target");
        if NEVER_RESTORED.contains(&name) || name == "zync" {
            let own = restored.data.expect("data")["URL"].0.clone();
            assert_eq!(own, b"target-own", "{name} is untouched");
        } else {
            assert_eq!(restored.data, from.get(name).await.expect("source").data, "{name} restored as backed up");
        }
    }
    let (from, to): (Api<ConfigMap>, Api<ConfigMap>) =
        (Api::namespaced(admin.clone(), &source), Api::namespaced(admin.clone(), &target));
    for name in CONFIG_MAPS {
        assert_eq!(to.get(name).await.expect("restored").data, from.get(name).await.expect("source").data, "{name}");
    }

    let restored_storage = scratch.0.join("system-storage");
    std::fs::create_dir_all(&restored_storage).expect("claim folder");
    let target_arg = format!("--target={}", restored_storage.display());
    let (ok, report) = run_step(cluster, &scratch.0, "restore-files", &[target_arg, backup_dir.clone()]);
    assert!(ok, "{report}");
    assert_eq!(report, r#"{"step":"restoreFiles","files":2,"links":1,"verified":true}"#);
    for file in ["uploads/attachments.txt", "uploads/logos/portal-logo.svg"] {
        assert_eq!(
            std::fs::read(restored_storage.join(file)).expect("restored"),
            std::fs::read(storage.join(file)).expect("source")
        );
        assert_eq!(mode_and_mtime(&restored_storage.join(file)), mode_and_mtime(&storage.join(file)), "{file}");
    }
    assert_eq!(
        std::fs::read_link(restored_storage.join("logo")).expect("link"),
        Path::new("uploads/logos/portal-logo.svg")
    );

    let (ok, report) = run_step(cluster, &scratch.0, "restore-apimanager", &[namespace_arg, backup_dir]);
    assert!(ok, "{report}");
    assert_eq!(report, r#"{"step":"restoreApiManager","name":"example-apimanager","created":true}"#);
    let apimanagers: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), &target, &ApiResource::erase::<APIManager>(&()));
    let original: Api<DynamicObject> = Api::namespaced_with(admin, &source, &ApiResource::erase::<APIManager>(&()));
    assert_eq!(
        apimanagers.get("example-apimanager").await.expect("restored").data["spec"],
        original.get("example-apimanager").await.expect("source").data["spec"]
    );
}

#[tokio::test]
async fn one_changed_byte_fails_the_verify_step_naming_the_file() {
    let cluster = shared();
    let source = namespace_with_installation(cluster, "changed-byte").await;
    create_backup(cluster, &source, "nightly");
    finished_backup(cluster, &source, "nightly").await;
    let root = cluster.volume(&source, "nightly");
    let file = root.join("system-filestorage-pvc/uploads/attachments.txt");
    let mut bytes = std::fs::read(&file).expect("backed-up file");
    bytes[0] ^= 1;
    std::fs::write(&file, &bytes).expect("one byte changed");
    let scratch = TempDir::new("changed-byte");
    let (ok, message) = run_step(cluster, &scratch.0, "verify", &[format!("--backup-dir={}", root.display())]);
    assert!(!ok);
    assert!(
        message.starts_with(
            "the backup does not match manifest.json; nothing was restored: system-filestorage-pvc/uploads/attachments.txt: sha256 "
        ),
        "{message}"
    );
}

/// The restore's condition `type_` as `(status, reason, message)`.
fn condition(restore: &APIManagerRestore, type_: &str) -> (String, String, String) {
    let status = restore.status.clone().expect("status");
    let found = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_} condition"));
    (found.status.clone(), found.reason.clone(), found.message.clone())
}

/// Asserts the restore's RoleBinding is gone and its step Pods' account may create nothing.
fn assert_restore_rbac_removed(cluster: &LocalCluster, ns: &str, restore: &APIManagerRestore) {
    let uid = restore.metadata.uid.clone().expect("uid");
    let bindings = kubectl_ok(cluster, &["-n", ns, "get", "rolebindings", "-o", "name"], "");
    assert!(!bindings.contains(&uid), "the restore's RoleBinding is removed: {bindings}");
    let account = format!("system:serviceaccount:{ns}:apimanager-restore");
    assert_can_i(
        cluster,
        ns,
        &account,
        &[("create", "secrets", "no"), ("create", "configmaps", "no"), ("create", "apimanagers.apps.3scale.net", "no")],
    );
}

#[tokio::test]
async fn a_backup_restores_an_emptied_namespace_with_every_object_and_file_as_it_was() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "restore-round-trip").await;
    let storage = cluster.volume(&ns, "system-storage");
    add_a_link_and_an_old_mtime(&storage);
    create_backup(cluster, &ns, "nightly");
    assert_eq!(finished_backup(cluster, &ns, "nightly").await.status.and_then(|s| s.completed), Some(true));

    let original = Installation::of(cluster, &ns).await;
    let original_files = &original.files;
    assert_eq!(original_files.len(), 5, "two files, one link, two folders: {original_files:?}");

    // Everything but the database Secrets goes: the Secrets (those the APIManager references too),
    // ConfigMaps, APIManager, the files and their claim.
    delete_restorable(cluster, &ns).await;

    create_restore(cluster, &ns, "back", "nightly");
    let restore = finished_restore(cluster, &ns, "back").await;
    let status = restore.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(
        condition(&restore, "Ready"),
        (
            "True".to_owned(),
            "RestoreCompleted".to_owned(),
            "APIManager example-apimanager restored from PersistentVolumeClaim nightly and available".to_owned()
        )
    );
    assert_eq!(
        condition(&restore, "Verified"),
        ("True".to_owned(), "Verified".to_owned(), "the backup matches manifest.json: 23 files and 1 link".to_owned())
    );
    assert_eq!(status.api_manager_to_restore_ref.map(|r| r.name).as_deref(), Some("example-apimanager"));
    assert_eq!(status.system_storage_claim_name.as_deref(), Some("system-storage"));
    assert_eq!(status.kept_objects, Some(Vec::new()), "nothing was there to keep");

    original.assert_restored_in(cluster, &ns).await;
    let secrets: Api<Secret> = Api::namespaced(cluster.admin_client().await.expect("client"), &ns);
    for kept in original.secrets.iter().filter(|s| NEVER_RESTORED.contains(&s.name_any().as_str())) {
        let restored = secrets.get(&kept.name_any()).await.expect("kept secret");
        assert_eq!(restored.metadata.uid, kept.metadata.uid, "{} is never recreated", kept.name_any());
        assert_eq!(restored.metadata.resource_version, kept.metadata.resource_version, "{} untouched", kept.name_any());
    }
    for path in original_files.keys() {
        let group = std::os::unix::fs::MetadataExt::gid(&std::fs::symlink_metadata(storage.join(path)).expect("meta"));
        assert_eq!(group, FILE_STORAGE_GROUP, "{} is the System FileStorage group's", path.display());
    }
    assert_eq!(status.file_storage_group, Some(i64::from(FILE_STORAGE_GROUP)), "the backed-up files' group");
    let claim = kubectl_ok(
        cluster,
        &[
            "-n",
            &ns,
            "get",
            "pvc",
            "system-storage",
            "-o",
            "jsonpath={.spec.accessModes} {.spec.resources.requests.storage}",
        ],
        "",
    );
    assert_eq!(claim, r#"["ReadWriteMany"] 100Mi"#, "created as 3scale makes it");

    let reasons = event_reasons(cluster, &ns, "back");
    assert_eq!(reasons.iter().filter(|r| *r == "JobCreated").count(), 4, "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "RestoreCompleted"), "{reasons:?}");
    assert_restore_rbac_removed(cluster, &ns, &restore);
    // Other tests of this binary complete restores too: at least this one is counted.
    for series in [
        r#"apimanager_restores_total{outcome="succeeded",reason="RestoreCompleted"}"#,
        r#"apimanager_restore_duration_seconds_count{outcome="succeeded"}"#,
    ] {
        assert!(sample(cluster, series).await >= 1.0, "{series}");
    }
}

#[tokio::test]
async fn one_changed_byte_fails_the_restore_at_verify_naming_the_file_and_nothing_is_written() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "restore-changed-byte").await;
    create_backup(cluster, &ns, "nightly");
    finished_backup(cluster, &ns, "nightly").await;
    let file = cluster.volume(&ns, "nightly").join("system-filestorage-pvc/uploads/attachments.txt");
    let mut bytes = std::fs::read(&file).expect("backed-up file");
    bytes[0] ^= 1;
    std::fs::write(&file, &bytes).expect("one byte changed");
    kubectl_ok(cluster, &["-n", &ns, "delete", "secret", "zync"], "");
    kubectl_ok(cluster, &["-n", &ns, "delete", "configmap", "system-environment"], "");
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanager", "example-apimanager"], "");
    kubectl_ok(cluster, &["-n", &ns, "delete", "persistentvolumeclaim", "system-storage"], "");

    create_restore(cluster, &ns, "back", "nightly");
    let restore = finished_restore(cluster, &ns, "back").await;
    let uid = restore.metadata.uid.clone().expect("uid");
    let (status, reason, message) = condition(&restore, "Failed");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "JobFailed"));
    let expected = format!(
        "Pod verify-{uid}-0 failed after 1 attempt: the backup does not match manifest.json; nothing was \
restored: system-filestorage-pvc/uploads/attachments.txt: sha256 "
    );
    assert!(message.starts_with(&expected), "{message}");
    assert_eq!(condition(&restore, "Ready").2, message);
    assert_eq!(restore.status.clone().and_then(|s| s.api_manager_to_restore_ref), None);
    for (kind, name) in [
        ("secret", "zync"),
        ("configmap", "system-environment"),
        ("apimanager", "example-apimanager"),
        ("persistentvolumeclaim", "system-storage"),
    ] {
        let found = kubectl_ok(cluster, &["-n", &ns, "get", kind, "--ignore-not-found", "-o", "name"], "");
        assert!(!found.lines().any(|line| line.ends_with(&format!("/{name}"))), "{kind} {name} was written: {found}");
    }
    let pods = kubectl_ok(cluster, &["-n", &ns, "get", "pods", "-o", "name"], "");
    assert_eq!(pods.trim(), format!("pod/verify-{uid}-0"), "no step after verify, its Pod kept for debugging");
    assert!(event_reasons(cluster, &ns, "back").iter().any(|r| r == "JobFailed"));
    assert_restore_rbac_removed(cluster, &ns, &restore);
    // Other tests' restores of claims holding no real backup fail at verify too: at least this one.
    let series = r#"apimanager_restores_total{outcome="failed",reason="JobFailed"}"#;
    assert!(sample(cluster, series).await >= 1.0, "{series}");
}

#[tokio::test]
async fn a_backup_of_3scale_operator_is_restored_unverified_once_its_apimanager_is_available() {
    let cluster = shared();
    let ns = namespace_never_available(cluster, "restore-unverified");
    threescale_operator_backup_claim(cluster, &ns, "threescale-nightly").await;
    create_restore(cluster, &ns, "back", "threescale-nightly");
    let waiting = restore_when(cluster, &ns, "back", |status| ready_reason(status, "WaitingForAPIManager")).await;
    assert_eq!(
        condition(&waiting, "Verified"),
        (
            "False".to_owned(),
            "NoManifest".to_owned(),
            "the backup has no manifest.json (3scale-operator's layout), so it could not be verified; it is restored \
unchecked"
                .to_owned()
        )
    );
    assert_eq!(condition(&waiting, "Ready").2, "waiting until APIManager example-apimanager reports itself Available");
    assert_eq!(waiting.status.clone().and_then(|s| s.completed), None, "not before the APIManager is available");

    let admin = cluster.admin_client().await.expect("client");
    let apimanagers: Api<APIManager> = Api::namespaced(admin.clone(), &ns);
    let restored = apimanagers.get("example-apimanager").await.expect("the APIManager is restored");
    report_available(&admin, &restored).await.expect("3scale-operator's part");
    let restore = finished_restore(cluster, &ns, "back").await;
    assert_eq!(restore.status.clone().and_then(|s| s.completed), Some(true), "{:?}", restore.status);
    assert_eq!(condition(&restore, "Ready").1, "RestoreCompleted");
    assert_eq!(condition(&restore, "Verified").1, "NoManifest", "still says it was not verified");
    let secrets: Api<Secret> = Api::namespaced(admin, &ns);
    assert!(secrets.get_opt("system-seed").await.expect("get").is_some(), "its Secrets are restored");
    let (link, target) = FILE_STORAGE_LINK;
    assert_eq!(std::fs::read_link(cluster.volume(&ns, "system-storage").join(link)).expect("link"), Path::new(target));
}
