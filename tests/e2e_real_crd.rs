//! Backups and restores with 3scale-operator's real APIManager CRD installed instead of the
//! development one (`tests/fixtures/3scale-operator/`): the sample installation, whose APIManager
//! references an APIcast custom policy, a custom environment, an HTTPS certificate, an OpenTelemetry
//! configuration and an image pull Secret, is stored as the real schema keeps it; its backup exports
//! every referenced Secret and its restore brings each back before the APIManager, which then
//! becomes available; a missing referenced Secret fails the backup naming the field; the claim of
//! that failed backup is refused by a restore before anything is written; a backup of
//! 3scale-operator still restores.

mod support;

use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::api::referenced_secrets::SecretRole;
use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::job::manifest::Manifest;
use apimanager_backup_operator::local::{LocalCluster, install, process};
use apimanager_backup_operator::names::{CLAIM_BACKUP_STATE, CLAIM_COMPLETED, CLAIM_IN_PROGRESS};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;
use support::cluster::{
    OPERATOR, SAMPLE_REFERENCED_SECRETS, create_backup, delete_restorable, eventually, finished_backup, kubectl_ok,
    kubectl_run, namespace, namespace_with_installation, sample_secret_names, start_cluster,
};
use support::restore::{create_restore, finished_restore, restore_yaml};
use support::threescale_backup::threescale_operator_backup_claim;

/// 3scale-operator's APIManager CRD, unchanged.
const REAL_CRD: &str = include_str!("fixtures/3scale-operator/apps.3scale.net_apimanagers.yaml");

/// The control plane of this binary, its APIManager CRD replaced by the real one before any test
/// runs.
fn cluster() -> &'static LocalCluster {
    static CLUSTER: OnceLock<LocalCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let (cluster, dir) = start_cluster("real-crd");
        process::remove_at_exit(&dir);
        let admin_kubeconfig = cluster.plane.admin_kubeconfig.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(install_real_crd(&admin_kubeconfig));
        })
        .join()
        .expect("the real CRD is installed");
        cluster
    })
}

/// Replaces the development CRD with the real one and waits until the API server applies the real
/// schema: it then refuses an APIManager whose APIcast replicas are text (the development CRD
/// keeps any value under `spec.apicast`).
async fn install_real_crd(admin_kubeconfig: &std::path::Path) {
    let kubeconfig = kube::config::Kubeconfig::read_from(admin_kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    let admin = kube::Client::try_from(config).expect("client");
    install::replace_apimanager_crd(&admin, REAL_CRD).await.expect("CRD replaced");
    let probe: DynamicObject = serde_json::from_value(json!({"apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManager", "metadata": {"name": "schema-probe"},
        "spec": {"wildcardDomain": "example.com", "apicast": {"productionSpec": {"replicas": "many"}}}}))
    .expect("probe");
    let api: Api<DynamicObject> = Api::namespaced_with(admin, "default", &ApiResource::erase::<APIManager>(&()));
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    eventually(Duration::from_secs(30), "the API server applies the real APIManager schema", || async {
        matches!(api.create(&dry_run, &probe).await, Err(kube::Error::Api(status)) if status.code == 422)
    })
    .await;
}

/// `kubectl create` of `yaml` in `namespace` that must fail; what kubectl printed on stderr.
fn create_rejected(namespace: &str, yaml: &str) -> String {
    let output = kubectl_run(cluster(), &["-n", namespace, "create", "-f", "-"], yaml);
    assert!(!output.status.success(), "accepted: {yaml}");
    String::from_utf8_lossy(&output.stderr).trim_end().to_owned()
}

/// The value of annotation [`CLAIM_BACKUP_STATE`] on claim `name`.
async fn claim_state(admin: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let claim = Api::<PersistentVolumeClaim>::namespaced(admin.clone(), namespace).get(name).await.expect("claim");
    claim.metadata.annotations.unwrap_or_default().get(CLAIM_BACKUP_STATE).cloned()
}

/// The restore's condition `type_` as `(status, reason, message)`.
fn condition(restore: &APIManagerRestore, type_: &str) -> (String, String, String) {
    let status = restore.status.clone().expect("status");
    let found = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_} condition"));
    (found.status.clone(), found.reason.clone(), found.message.clone())
}

#[tokio::test]
async fn every_referenced_secret_is_backed_up_and_restored_before_the_apimanager_which_becomes_available() {
    let cluster = cluster();
    let ns = namespace_with_installation(cluster, "real-crd-round-trip").await;
    let admin = cluster.admin_client().await.expect("client");
    let apimanagers: Api<APIManager> = Api::namespaced(admin.clone(), &ns);
    let stored = apimanagers.get("example-apimanager").await.expect("APIManager");
    let referenced: Vec<String> = stored.referenced_secrets().into_keys().collect();
    assert_eq!(referenced, SAMPLE_REFERENCED_SECRETS, "the real schema keeps every reference of the sample");

    create_backup(cluster, &ns, "nightly");
    let backup = finished_backup(cluster, &ns, "nightly").await;
    let status = backup.status.expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(claim_state(&admin, &ns, "nightly").await.as_deref(), Some(CLAIM_COMPLETED));
    let manifest = Manifest::load(&cluster.volume(&ns, "nightly")).expect("manifest");
    let listed: Vec<(&str, &str, Vec<SecretRole>)> = manifest
        .referenced_secrets
        .iter()
        .map(|entry| (entry.name.as_str(), entry.path.as_str(), entry.references.iter().map(|r| r.role).collect()))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "apicast-custom-environment",
                "secrets/apicast-custom-environment.json",
                vec![SecretRole::ApicastCustomEnvironment]
            ),
            ("apicast-custom-policy", "secrets/apicast-custom-policy.json", vec![SecretRole::ApicastCustomPolicy]),
            (
                "apicast-https-certificate",
                "secrets/apicast-https-certificate.json",
                vec![SecretRole::ApicastHttpsCertificate]
            ),
            (
                "apicast-tracing-config",
                "secrets/apicast-tracing-config.json",
                vec![SecretRole::ApicastOpenTelemetryConfig]
            ),
            ("registry-pull-secret", "secrets/registry-pull-secret.json", vec![SecretRole::ImagePull]),
        ]
    );
    assert!(manifest.files.iter().any(|f| f.path == "secrets/apicast-custom-policy.json"), "hashed like the others");

    // Everything the restore brings back goes; the database Secrets stay (a restore never makes them).
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let mut originals = Vec::new();
    for name in sample_secret_names() {
        originals.push(secrets.get(&name).await.expect("Secret"));
    }
    let original_spec =
        Api::<DynamicObject>::namespaced_with(admin.clone(), &ns, &ApiResource::erase::<APIManager>(&()))
            .get("example-apimanager")
            .await
            .expect("APIManager")
            .data["spec"]
            .clone();
    delete_restorable(cluster, &ns).await;

    create_restore(cluster, &ns, "back", "nightly");
    let restore = finished_restore(cluster, &ns, "back").await;
    assert_eq!(restore.status.clone().and_then(|s| s.completed), Some(true), "{:?}", restore.status);
    assert_eq!(
        condition(&restore, "Ready").2,
        "APIManager example-apimanager restored from PersistentVolumeClaim nightly and available"
    );
    for original in &originals {
        let name = original.metadata.name.clone().expect("name");
        let restored = secrets.get(&name).await.unwrap_or_else(|e| panic!("Secret {name} restored: {e}"));
        assert_eq!((&restored.type_, &restored.data), (&original.type_, &original.data), "Secret {name}");
    }
    let restored = apimanagers.get("example-apimanager").await.expect("restored APIManager");
    assert!(restored.is_available(), "{:?}", restored.status);
    let restored_spec = Api::<DynamicObject>::namespaced_with(admin, &ns, &ApiResource::erase::<APIManager>(&()))
        .get("example-apimanager")
        .await
        .expect("APIManager")
        .data["spec"]
        .clone();
    assert_eq!(restored_spec, original_spec);
}

#[tokio::test]
async fn a_missing_referenced_secret_fails_the_backup_and_its_claim_is_never_restored() {
    let cluster = cluster();
    let ns = namespace_with_installation(cluster, "real-crd-missing").await;
    let admin = cluster.admin_client().await.expect("client");
    kubectl_ok(cluster, &["-n", &ns, "delete", "secret", "apicast-custom-policy"], "");

    create_backup(cluster, &ns, "b");
    let backup = finished_backup(cluster, &ns, "b").await;
    let status = backup.status.expect("status");
    assert_eq!(status.completed, None);
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed");
    assert!(
        failed.message.ends_with(&format!(
            "failed at step export-objects after 1 attempt: required objects missing in namespace {ns}: Secret \
apicast-custom-policy (referenced by spec.apicast.productionSpec.customPolicies[0].secretRef); create them or fix the \
APIManager, then create a new APIManagerBackup"
        )),
        "{}",
        failed.message
    );

    // The claim holds an unfinished backup: its annotation and its manifest say so.
    assert_eq!(claim_state(&admin, &ns, "b").await.as_deref(), Some(CLAIM_IN_PROGRESS));
    let root = cluster.volume(&ns, "b");
    let verified = std::process::Command::new(OPERATOR).arg("verify").arg(&root).output().expect("verify runs");
    assert_eq!(
        (verified.status.code(), String::from_utf8_lossy(&verified.stdout).into_owned()),
        (
            Some(3),
            "not verified: manifest.json says the backup is in progress: it did not finish (its APIManagerBackup \
failed, was interrupted or is still running), so it cannot be restored\n"
                .to_owned()
        )
    );

    // A restore from it is refused at admission, naming the claim and what to do.
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanager", "example-apimanager"], "");
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "b")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "b": the PersistentVolumeClaim holds an unfinished backup (annotation apps.3scale.net/backup-state is "InProgress"): APIManagerBackup "b" failed, was interrupted or is still running; restore from the claim of a completed backup"#
    );

    // With the annotation gone (admission cannot tell), the restore's verify step refuses the
    // unfinished manifest before anything is written.
    kubectl_ok(cluster, &["-n", &ns, "annotate", "pvc", "b", &format!("{CLAIM_BACKUP_STATE}-")], "");
    kubectl_ok(cluster, &["-n", &ns, "delete", "secret", "zync"], "");
    create_restore(cluster, &ns, "r", "b");
    let restore = finished_restore(cluster, &ns, "r").await;
    let uid = restore.metadata.uid.clone().expect("uid");
    let (status, reason, message) = condition(&restore, "Failed");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "JobFailed"));
    assert_eq!(
        message,
        format!(
            "Pod verify-{uid}-0 failed after 1 attempt: the backup did not finish: manifest.json says it is in \
progress (its APIManagerBackup failed, was interrupted or is still running); nothing was restored; restore from a \
completed backup"
        )
    );
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    assert!(secrets.get_opt("zync").await.expect("get").is_none(), "nothing was written");
    let apimanagers: Api<APIManager> = Api::namespaced(admin, &ns);
    assert!(apimanagers.get_opt("example-apimanager").await.expect("get").is_none(), "nothing was written");
}

#[tokio::test]
async fn a_backup_of_3scale_operator_still_restores() {
    let cluster = cluster();
    let ns = namespace(cluster, "real-crd-3scale-backup");
    threescale_operator_backup_claim(cluster, &ns, "threescale-nightly").await;
    create_restore(cluster, &ns, "back", "threescale-nightly");
    let restore = finished_restore(cluster, &ns, "back").await;
    assert_eq!(restore.status.clone().and_then(|s| s.completed), Some(true), "{:?}", restore.status);
    assert_eq!(condition(&restore, "Verified").1, "NoManifest");
    let admin = cluster.admin_client().await.expect("client");
    let restored = Api::<APIManager>::namespaced(admin.clone(), &ns).get("example-apimanager").await.expect("restored");
    assert!(restored.is_available());
    let secrets: Api<Secret> = Api::namespaced(admin, &ns);
    assert!(secrets.get_opt("system-seed").await.expect("get").is_some(), "its Secrets are restored");
}
