//! Backups end to end: the operator (as its ServiceAccount) reconciles, the real Job controller
//! runs the Jobs, the node stand-in runs their Pods (as the Jobs' ServiceAccount), and the files
//! land in the folder standing in for the backup claim.

mod support;

use apimanager_backup_operator::job::export::SERVER_METADATA;
use apimanager_backup_operator::job::manifest::{Manifest, hash_file};
use apimanager_backup_operator::layout::{CONFIG_MAPS, SECRETS};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::cluster::{
    assert_can_i, create_backup, eventually, finished_backup, kubectl_ok, kubectl_run, namespace_with_installation,
    shared,
};

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("JSON file")
}

fn assert_cleaned(object: &Value, file: &str) {
    assert!(object.get("status").is_none(), "{file} keeps status");
    for field in SERVER_METADATA {
        assert!(object["metadata"].get(field).is_none(), "{file} keeps metadata.{field}");
    }
}

#[tokio::test]
async fn full_backup_writes_every_object_and_file() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "full-backup").await;
    create_backup(cluster, &ns, "nightly");
    let backup = finished_backup(cluster, &ns, "nightly").await;

    let status = backup.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{status:?}");
    assert_eq!(status.main_steps_completed, Some(true));
    assert_eq!(status.api_manager_source_name.as_deref(), Some("example-apimanager"));
    assert_eq!(status.backup_persistent_volume_claim_name.as_deref(), Some("nightly"));
    assert_eq!(status.observed_generation, Some(1));
    let (started, completed) = (status.start_time.expect("startTime"), status.completion_time.expect("completionTime"));
    assert!(completed.0 >= started.0);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready condition");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "BackupCompleted"));
    assert_eq!(ready.message, "backup written to PersistentVolumeClaim nightly");
    assert!(!status.conditions.iter().any(|c| c.type_ == "Failed"));

    let admin = cluster.admin_client().await.expect("client");
    let root = cluster.volume(&ns, "nightly");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    for name in SECRETS {
        let file = format!("secrets/{name}.json");
        let written = read_json(&root.join(&file));
        assert_cleaned(&written, &file);
        let live = serde_json::to_value(secrets.get(name).await.expect("secret")).expect("JSON");
        assert_eq!(written["data"], live["data"], "{file} data");
        assert_eq!(written["metadata"]["name"], name);
        assert_eq!(written["kind"], "Secret");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(root.join(&file)).expect("meta").permissions());
        assert_eq!(mode & 0o777, 0o600, "{file} is readable by its owner only");
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    for name in CONFIG_MAPS {
        let file = format!("configmaps/{name}.json");
        let written = read_json(&root.join(&file));
        assert_cleaned(&written, &file);
        let live = serde_json::to_value(config_maps.get(name).await.expect("configmap")).expect("JSON");
        assert_eq!(written["data"], live["data"], "{file} data");
    }
    let apimanager = read_json(&root.join("apimanager/apimanager-backup.json"));
    assert_cleaned(&apimanager, "apimanager");
    assert_eq!(apimanager["kind"], "APIManager");
    assert_eq!(apimanager["spec"]["wildcardDomain"], "example.com", "fields the operator does not read are kept");
    assert_eq!(
        std::fs::read_to_string(root.join("system-filestorage-pvc/uploads/attachments.txt")).expect("copied file"),
        "developer portal attachment\n"
    );

    let manifest = Manifest::load(&root).expect("manifest.json");
    assert_eq!(manifest.namespace, ns);
    assert_eq!(manifest.api_manager.name, "example-apimanager");
    assert_eq!(manifest.backup.name, "nightly");
    assert_eq!(Some(&manifest.backup.uid), backup.metadata.uid.as_ref());
    assert_eq!(manifest.steps.keys().collect::<Vec<_>>(), ["copy-files", "export-objects"]);
    assert!(manifest.absent.is_empty(), "{:?}", manifest.absent);
    assert_eq!(manifest.files.len(), 13 + 2 + 1 + 2, "{:?}", manifest.files);
    for entry in &manifest.files {
        assert_eq!(
            &hash_file(&root.join(&entry.path), &entry.path).expect("hash"),
            entry,
            "manifest entry of {}",
            entry.path
        );
    }

    let claim: PersistentVolumeClaim = Api::namespaced(admin.clone(), &ns).get("nightly").await.expect("backup claim");
    assert!(claim.metadata.owner_references.is_none(), "the claim outlives the APIManagerBackup");
    let annotations = claim.metadata.annotations.expect("annotations");
    assert_eq!(annotations["apiManagerName"], "example-apimanager");
    assert_eq!(Some(&annotations["apiManagerBackupUID"]), backup.metadata.uid.as_ref());
    assert_eq!(annotations["apiManagerBackupName"], "nightly");
    let jobs: Api<Job> = Api::namespaced(admin, &ns);
    eventually(Duration::from_secs(30), "Jobs of a successful backup are deleted", || async {
        jobs.list(&ListParams::default()).await.expect("list jobs").items.is_empty()
    })
    .await;
    let events = kubectl_ok(
        cluster,
        &["-n", &ns, "get", "events", "--field-selector", "reason=BackupCompleted", "-o", "name"],
        "",
    );
    assert!(!events.trim().is_empty(), "a BackupCompleted event is published");
    let uid = backup.metadata.uid.clone().expect("uid");
    let created = kubectl_ok(
        cluster,
        &["-n", &ns, "get", "events", "--field-selector", "reason=JobCreated", "-o", "jsonpath={.items[*].message}"],
        "",
    );
    for job in [format!("export-objects-{uid}"), format!("copy-files-{uid}")] {
        assert!(created.contains(&format!("created Job {job}")), "a JobCreated event per Job: {created}");
    }
}

#[tokio::test]
async fn missing_optional_secret_is_recorded_absent() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "optional-secret").await;
    kubectl_ok(cluster, &["-n", &ns, "delete", "secret", "system-recaptcha"], "");
    create_backup(cluster, &ns, "b");
    let backup = finished_backup(cluster, &ns, "b").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
    let root = cluster.volume(&ns, "b");
    let manifest = Manifest::load(&root).expect("manifest");
    assert_eq!(manifest.absent.len(), 1);
    assert_eq!(manifest.absent[0].path, "secrets/system-recaptcha.json");
    assert_eq!(
        manifest.absent[0].reason,
        "optional Secret system-recaptcha does not exist in namespace optional-secret"
    );
    assert!(!root.join("secrets/system-recaptcha.json").exists());
}

#[tokio::test]
async fn failing_job_fails_the_backup_with_the_pod_message_and_keeps_the_job() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "failing-job").await;
    kubectl_ok(cluster, &["-n", &ns, "delete", "secret", "system-seed", "zync"], "");
    create_backup(cluster, &ns, "b");
    let backup = finished_backup(cluster, &ns, "b").await;
    let status = backup.status.clone().expect("status");
    assert_ne!(status.completed, Some(true));
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed condition");
    assert_eq!((failed.status.as_str(), failed.reason.as_str()), ("True", "JobFailed"));
    let uid = backup.metadata.uid.expect("uid");
    assert_eq!(
        failed.message,
        format!(
            "Job export-objects-{uid} failed (BackoffLimitExceeded): required objects missing in namespace failing-job: Secret system-seed, Secret zync; create them or fix the APIManager, then create a new APIManagerBackup"
        )
    );
    let admin = cluster.admin_client().await.expect("client");
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &ns);
    assert!(
        jobs.get_opt(&format!("export-objects-{uid}")).await.expect("get").is_some(),
        "the failed Job stays for debugging"
    );
    assert!(
        jobs.get_opt(&format!("copy-files-{uid}")).await.expect("get").is_none(),
        "no further step after a failure"
    );
    let events =
        kubectl_ok(cluster, &["-n", &ns, "get", "events", "--field-selector", "reason=JobFailed", "-o", "name"], "");
    assert!(!events.trim().is_empty(), "a JobFailed event is published");

    let backups: Api<apimanager_backup_operator::api::backup::APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
    backups.delete("b", &DeleteParams::background()).await.expect("delete backup");
    let export = format!("export-objects-{uid}");
    eventually(Duration::from_secs(30), "the Jobs go with the APIManagerBackup (garbage collection)", || async {
        jobs.get_opt(&export).await.expect("get").is_none()
    })
    .await;
}

#[tokio::test]
async fn s3_file_storage_is_reported_and_not_copied() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "s3-storage").await;
    let patch = r#"{"spec":{"system":{"fileStorage":{"simpleStorageService":{"configurationSecretRef":{"name":"aws-auth"}}}}}}"#;
    kubectl_ok(cluster, &["-n", &ns, "patch", "apimanager", "example-apimanager", "--type=merge", "-p", patch], "");
    let output = kubectl_run(
        cluster,
        &["-n", &ns, "create", "-f", "-"],
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: b\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n",
    );
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"Warning: APIManager "example-apimanager": System FileStorage is in S3, which backups do not copy; back up the bucket separately"#
    );
    let backup = finished_backup(cluster, &ns, "b").await;
    let status = backup.status.expect("status");
    assert_eq!(status.completed, Some(true));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(
        ready.message,
        "backup written to PersistentVolumeClaim b; System FileStorage is in S3, which backups do not copy; back up the bucket separately"
    );
    let root = cluster.volume(&ns, "b");
    assert!(!root.join("system-filestorage-pvc").exists());
    let manifest = Manifest::load(&root).expect("manifest");
    assert_eq!(manifest.steps.keys().collect::<Vec<_>>(), ["export-objects"]);
}

#[tokio::test]
async fn a_claim_holding_another_backup_is_never_overwritten() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "claim-in-use").await;
    create_backup(cluster, &ns, "weekly");
    let first = finished_backup(cluster, &ns, "weekly").await;
    assert_eq!(first.status.and_then(|s| s.completed), Some(true));
    let before = std::fs::read(cluster.volume(&ns, "weekly").join("manifest.json")).expect("manifest");
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanagerbackup", "weekly"], "");

    create_backup(cluster, &ns, "weekly");
    let second = finished_backup(cluster, &ns, "weekly").await;
    let status = second.status.expect("status");
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed condition");
    assert_eq!(failed.reason, "ClaimInUse");
    assert_eq!(
        failed.message,
        format!(
            "PersistentVolumeClaim weekly already exists and holds APIManagerBackup UID {}; it is never overwritten: delete it if it is no longer needed, or create this backup under another name",
            first.metadata.uid.expect("uid")
        )
    );
    assert_eq!(std::fs::read(cluster.volume(&ns, "weekly").join("manifest.json")).expect("manifest"), before);
}

#[test]
fn operator_service_account_cannot_read_secrets() {
    let cluster = shared();
    let sa = "system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator";
    let cases = [
        ("get", "secrets/system-seed", "no"),
        ("create", "jobs.batch", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/apimanager-backup-job", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/admin", "no"),
        ("delete", "persistentvolumeclaims", "no"),
    ];
    assert_can_i(cluster, "default", sa, &cases);
}

#[tokio::test]
async fn a_backup_with_the_longest_valid_name_completes_and_shows_its_events() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "long-name").await;
    let name = format!("{}.{}", "b".repeat(200), "n".repeat(52));
    assert_eq!(name.len(), 253, "the longest name Kubernetes accepts");
    create_backup(cluster, &ns, &name);
    let backup = finished_backup(cluster, &ns, &name).await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
    let selector = format!("involvedObject.name={name}");
    let reasons = || {
        kubectl_ok(
            cluster,
            &["-n", &ns, "get", "events", "--field-selector", &selector, "-o", "jsonpath={.items[*].reason}"],
            "",
        )
    };
    eventually(Duration::from_secs(30), "the backup's events are published", || async {
        let reasons = reasons();
        reasons.contains("BackupCompleted") && reasons.matches("JobCreated").count() == 2
    })
    .await;
}

#[test]
fn local_keeps_credentials_private() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = shared();
    let mode = |path: &Path| std::fs::metadata(path).expect("exists").permissions().mode() & 0o777;
    let credentials = cluster.plane.dir.join("credentials");
    assert_eq!(cluster.plane.admin_kubeconfig, credentials.join("admin.kubeconfig"));
    for folder in [&credentials, &cluster.plane.certs] {
        assert_eq!(mode(folder), 0o700, "{} is entered by its owner only", folder.display());
    }
    let certs = &cluster.plane.certs;
    for file in ["admin.kubeconfig", "operator.kubeconfig", "tokens.csv", "service-account.key"]
        .map(|name| credentials.join(name))
        .into_iter()
        .chain([certs.join("ca.key"), certs.join("tls.key")])
    {
        assert_eq!(mode(&file), 0o600, "{} is readable by its owner only", file.display());
    }
}
