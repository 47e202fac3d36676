//! Webhooks-only mode beside 3scale-operator, on the real control plane: the harness plays
//! 3scale-operator (it writes the backups' status the way 3scale-operator does), the operator
//! runs with the read-only ClusterRole of `manifests/components/webhooks-only`, admits backups,
//! never writes to them, and its metrics report what the other controller did.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::cluster::{create_backup, eventually, kubectl_ok, namespace_with_installation, start_cluster_with};
use support::https::{sample, scrape};

/// The field manager the harness writes status with, as 3scale-operator's client would.
const OTHER_CONTROLLER: &str = "3scale-operator";

/// The ClusterRole rules that `manifests/components/webhooks-only` puts in place.
fn read_only_rules() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/components/webhooks-only/kustomization.yaml");
    let component: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).expect("component")).expect("YAML");
    let patch = component["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .find(|p| p["target"]["kind"] == "ClusterRole")
        .and_then(|p| p["patch"].as_str())
        .expect("ClusterRole patch");
    let operations: Value = serde_saphyr::from_str(patch).expect("JSON patch");
    operations[0]["value"].clone()
}

/// Writes `status` as 3scale-operator does (a whole status through the status subresource).
async fn write_status(backups: &Api<APIManagerBackup>, name: &str, status: Value) {
    let params = PatchParams { field_manager: Some(OTHER_CONTROLLER.into()), ..PatchParams::default() };
    backups.patch_status(name, &params, &Patch::Merge(json!({ "status": status }))).await.expect("status written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_observe_the_backups_another_controller_runs_and_the_operator_never_writes_to_them() {
    let (cluster, dir) = start_cluster_with("webhooks-only", &["--mode=webhooks-only"]);
    let rules = serde_json::to_string(&json!([{ "op": "replace", "path": "/rules", "value": read_only_rules() }]))
        .expect("patch");
    kubectl_ok(&cluster, &["patch", "clusterrole", "apimanager-backup-operator", "--type=json", "-p", &rules], "");
    let admin = cluster.admin_client().await.expect("admin client");
    let ca = cluster.plane.certs.join("ca.crt");
    let address = cluster.operator.address();
    let scrape = || scrape(address, &ca);

    let ns = namespace_with_installation(&cluster, "beside-3scale").await;
    let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
    // The webhooks still admit and default.
    create_backup(&cluster, &ns, "b");
    let created = backups.get("b").await.expect("backup");
    assert_eq!(created.spec.api_manager_name.as_deref(), Some("example-apimanager"), "defaulted");

    // 3scale-operator starts the backup 42 s ago…
    let start = Timestamp::from_second(Timestamp::now().as_second() - 42).expect("start time");
    write_status(
        &backups,
        "b",
        json!({ "apiManagerSourceName": "example-apimanager", "startTime": start.to_string(),
                "backupPersistentVolumeClaimName": "b" }),
    )
    .await;
    let running = format!(
        r#"apimanager_backup_oldest_running_start_timestamp_seconds{{apimanager="example-apimanager",namespace="{ns}"}}"#
    );
    eventually(Duration::from_secs(30), "the running backup is observed", || async {
        let metrics = scrape().await;
        sample(&metrics, "apimanager_backups_in_progress") == Some(1.0)
            && sample(&metrics, &running) == Some(start.as_second() as f64)
    })
    .await;

    // …and completes it.
    let completion = start + SignedDuration::from_secs(42);
    write_status(&backups, "b", json!({ "mainStepsCompleted": true })).await;
    write_status(&backups, "b", json!({ "completed": true, "completionTime": completion.to_string() })).await;
    let last_success = format!(
        r#"apimanager_backup_last_success_timestamp_seconds{{apimanager="example-apimanager",namespace="{ns}"}}"#
    );
    eventually(Duration::from_secs(30), "the completed backup is observed", || async {
        let metrics = scrape().await;
        sample(&metrics, r#"apimanager_backups_total{outcome="succeeded"}"#) == Some(1.0)
    })
    .await;
    // Later changes of an ended backup are not counted again: once a second backup is seen
    // running, the label added to the first before it has been seen too (watch order).
    kubectl_ok(&cluster, &["-n", &ns, "label", "apimanagerbackup", "b", "checked=yes"], "");
    create_backup(&cluster, &ns, "c");
    let second_start = Timestamp::from_second(Timestamp::now().as_second()).expect("start time");
    write_status(&backups, "c", json!({ "startTime": second_start.to_string() })).await;
    eventually(Duration::from_secs(30), "the second backup is observed", || async {
        sample(&scrape().await, "apimanager_backups_in_progress") == Some(1.0)
    })
    .await;

    let metrics = scrape().await;
    assert_eq!(sample(&metrics, r#"apimanager_backups_total{outcome="succeeded"}"#), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, r#"apimanager_backups_total{outcome="failed"}"#), Some(0.0));
    assert_eq!(sample(&metrics, r#"apimanager_backup_duration_seconds_sum{outcome="succeeded"}"#), Some(42.0));
    assert_eq!(sample(&metrics, r#"apimanager_backup_duration_seconds_count{outcome="succeeded"}"#), Some(1.0));
    assert_eq!(sample(&metrics, &last_success), Some(completion.as_second() as f64));
    assert!(!metrics.contains("apimanager_backup_operator_leader"), "no leader election in this mode");

    // The operator wrote nothing: status only as 3scale-operator left it, no claim, no Pod, no Lease.
    let b = backups.get("b").await.expect("backup");
    let managers: Vec<String> =
        b.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    for manager in &managers {
        assert!(
            ["kubectl-create", "kubectl-label", OTHER_CONTROLLER].contains(&manager.as_str()),
            "{manager} wrote to the backup: {managers:?}"
        );
    }
    let status = serde_json::to_value(b.status.expect("status")).expect("status JSON");
    assert_eq!(
        status,
        json!({ "apiManagerSourceName": "example-apimanager", "startTime": start.to_string(),
                "backupPersistentVolumeClaimName": "b", "mainStepsCompleted": true, "completed": true,
                "completionTime": completion.to_string() })
    );
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
    assert!(claims.get_opt("b").await.expect("claim").is_none(), "no claim created");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    assert!(pods.list(&ListParams::default()).await.expect("pods").items.is_empty(), "no Pod created");
    let leases: Api<Lease> = Api::namespaced(admin, OPERATOR_NAMESPACE);
    assert!(leases.list(&ListParams::default()).await.expect("leases").items.is_empty(), "no Lease taken");

    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
