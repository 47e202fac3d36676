//! Admission end to end: a real kube-apiserver calls the operator's webhooks, driven by `kubectl`
//! exactly as a user types it and by `kube::Client`.

mod support;

use apimanager_backup_operator::admission::AdmissionState;
use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::backup::admission::{MUTATE_PATH, VALIDATE_PATH};
use apimanager_backup_operator::health::Readiness;
use apimanager_backup_operator::informer::Informer;
use apimanager_backup_operator::lookup::cache::{CACHE_CHECK, CachedLookup};
use apimanager_backup_operator::lookup::{ApiManagerLookup, ClusterLookup};
use apimanager_backup_operator::metrics::Metrics;
use apimanager_backup_operator::scope::Namespaces;
use apimanager_backup_operator::{server, trim};
use kube::api::{Api, PostParams};
use std::time::Duration;
use support::admission::{create_review, sized_spec};
use support::cluster::{
    apimanager_yaml, assert_can_i, create_rejected, eventually, kubectl_ok, kubectl_run, namespace, shared,
};
use support::counting::counting_client;

/// A namespace holding one APIManager with external databases, named `example`.
fn namespace_with_apimanager(name: &str) -> String {
    let cluster = shared();
    let ns = namespace(cluster, name);
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml("example", true));
    ns
}

fn backup_yaml(name: &str, spec: &str) -> String {
    format!("apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

const SIZED: &str = "  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n";

#[test]
fn reference_examples_are_accepted_and_defaulted() {
    let cluster = shared();
    let ns = namespace_with_apimanager("examples");
    for (file, name) in [
        ("tests/fixtures/backup-pvc-size.yaml", "example-apimanagerbackup-pvc"),
        ("tests/fixtures/backup-pvc-volume-name.yaml", "example-apimanagerbackup-pvc-volumename"),
    ] {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let out = kubectl_ok(cluster, &["-n", &ns, "create", "-f", &path], "");
        assert_eq!(out.trim(), format!("apimanagerbackup.apps.3scale.net/{name} created"));
        let defaulted = kubectl_ok(
            cluster,
            &["-n", &ns, "get", "apimanagerbackup", name, "-o", "jsonpath={.spec.apiManagerName}"],
            "",
        );
        assert_eq!(defaulted, "example");
    }
}

#[test]
fn missing_destination_is_rejected() {
    let ns = namespace_with_apimanager("no-destination");
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", "  backupDestination: {}\n")),
        r#"The APIManagerBackup "b" is invalid: spec.backupDestination: Required value: exactly one backup destination must be set; supported: persistentVolumeClaim, s3"#
    );
}

#[test]
fn missing_requests_with_volume_name_is_rejected() {
    let ns = namespace_with_apimanager("no-requests");
    let spec = "  backupDestination:\n    persistentVolumeClaim:\n      volumeName: pv-1\n";
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", spec)),
        r#"The APIManagerBackup "b" is invalid: spec.backupDestination.persistentVolumeClaim.resources.requests: Required value: the backup claim's size must be set, also when volumeName is set (for example 10Gi)"#
    );
}

#[test]
fn bad_quantity_is_rejected() {
    let ns = namespace_with_apimanager("bad-quantity");
    let spec = "  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: ten gigs\n";
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", spec)),
        r#"The APIManagerBackup "b" is invalid: spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: "ten gigs": must be a Kubernetes quantity such as 10Gi or 500Mi"#
    );
}

#[test]
fn zero_size_is_rejected() {
    let ns = namespace_with_apimanager("zero-size");
    let spec = "  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: \"0\"\n";
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", spec)),
        r#"The APIManagerBackup "b" is invalid: spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: "0": must be greater than zero, for example 10Gi"#
    );
}

#[test]
fn invalid_storage_class_is_rejected() {
    let ns = namespace_with_apimanager("bad-class");
    let spec = "  backupDestination:\n    persistentVolumeClaim:\n      storageClass: Fast_SSD\n      resources:\n        requests: 1Gi\n";
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", spec)),
        r#"The APIManagerBackup "b" is invalid: spec.backupDestination.persistentVolumeClaim.storageClass: Invalid value: "Fast_SSD": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"#
    );
}

#[test]
fn no_apimanager_is_rejected() {
    let ns = namespace(shared(), "no-apimanager");
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", SIZED)),
        r#"The APIManagerBackup "b" is invalid: spec.apiManagerName: Required value: no APIManager exists in namespace "no-apimanager"; create the APIManager to back up first"#
    );
}

#[test]
fn two_apimanagers_are_rejected_until_one_is_named() {
    let cluster = shared();
    let ns = namespace(cluster, "two-apimanagers");
    for name in ["first", "second"] {
        kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml(name, true));
    }
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", SIZED)),
        r#"The APIManagerBackup "b" is invalid: spec.apiManagerName: Required value: namespace "two-apimanagers" has 2 APIManagers (first, second); set spec.apiManagerName to the one to back up"#
    );
    let named = backup_yaml("b", &format!("  apiManagerName: second\n{SIZED}"));
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &named);
}

#[test]
fn apimanager_with_internal_databases_is_rejected() {
    let cluster = shared();
    let ns = namespace(cluster, "internal-databases");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml("example", false));
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", SIZED)),
        r#"The APIManagerBackup "b" is invalid: spec.apiManagerName: Invalid value: "example": APIManager "example" is outside the backup scope: its system database, system Redis and backend Redis are not external; backups need the system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)"#
    );
}

#[test]
fn several_violations_are_listed_together() {
    let ns = namespace(shared(), "several");
    let spec = "  apiManagerName: gone\n  backupDestination:\n    persistentVolumeClaim:\n      storageClass: Bad\n      resources:\n        requests: \"0\"\n";
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", spec)),
        "The APIManagerBackup \"b\" is invalid: \n\
* spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: \"0\": must be greater than zero, for example 10Gi\n\
* spec.backupDestination.persistentVolumeClaim.storageClass: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')\n\
* spec.apiManagerName: Invalid value: \"gone\": APIManager \"gone\" does not exist in namespace \"several\" (there are none)"
    );
}

#[test]
fn s3_destination_violations_are_listed_together() {
    let ns = namespace_with_apimanager("s3-several");
    let spec = "  backupDestination:\n    s3:\n      bucket: Backups\n      prefix: /prod\n      region: us-east-1\n      endpoint: http://s3.example.com:9000\n      credentialsSecretRef:\n        name: Backup-S3\n      encryption:\n        keySecretRef:\n          name: backup-key\n";
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", spec)),
        "The APIManagerBackup \"b\" is invalid: \n\
* spec.backupDestination.s3.bucket: Invalid value: \"Backups\": must consist of lowercase letters, digits, '.' and '-'\n\
* spec.backupDestination.s3.prefix: Invalid value: \"/prod\": a prefix is '/'-separated segments of letters, digits and the characters !-_.*'() (no empty, '.' or '..' segment, no leading or trailing '/')\n\
* spec.backupDestination.s3.endpoint: Invalid value: \"http://s3.example.com:9000\": plain http sends the backup's traffic unprotected; use https, or set allowHttp: true (a test server only)\n\
* spec.backupDestination.s3.credentialsSecretRef.name: Invalid value: \"Backup-S3\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
    );
}

#[test]
fn an_unencrypted_s3_destination_warns() {
    let cluster = shared();
    let ns = namespace_with_apimanager("s3-clear");
    let spec = "  backupDestination:\n    s3:\n      bucket: backups\n      region: us-east-1\n      credentialsSecretRef:\n        name: backup-s3\n      encryption:\n        disabled: true\n";
    let output = kubectl_run(cluster, &["-n", &ns, "create", "--dry-run=server", "-f", "-"], &backup_yaml("b", spec));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "Warning: spec.backupDestination.s3.encryption.disabled is true: the backup is stored in clear, and whoever can read the bucket reads the installation's Secrets (database passwords, keys); set encryption.keySecretRef instead"
    );
}

/// The operator's ServiceAccount.
const OPERATOR_SA: &str = "system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator";

/// A bucket destination naming the Secrets `s3-creds`, `s3-ca` and `backup-key`.
const INTO_BUCKET: &str = "  backupDestination:\n    s3:\n      bucket: backups\n      region: us-east-1\n      endpoint: https://s3.example.com\n      credentialsSecretRef:\n        name: s3-creds\n      caBundleSecretRef:\n        name: s3-ca\n        key: ca.crt\n      encryption:\n        keySecretRef:\n          name: backup-key\n";

/// Grants the operator `get` on the Secrets of `ns` as README shows (a Role and RoleBinding of the
/// namespace) and waits until the API server's authorizer applies it.
async fn let_the_operator_read_secrets(ns: &str) {
    let cluster = shared();
    let yaml = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: apimanager-backup-operator-secret-existence\nrules:\n  - apiGroups: [\"\"]\n    resources: [secrets]\n    verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: apimanager-backup-operator-secret-existence\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: apimanager-backup-operator-secret-existence\nsubjects:\n  - kind: ServiceAccount\n    name: apimanager-backup-operator\n    namespace: apimanager-backup-operator\n";
    kubectl_ok(cluster, &["-n", ns, "create", "-f", "-"], yaml);
    eventually(Duration::from_secs(20), "the operator may get Secrets", || async {
        let output = kubectl_run(cluster, &["-n", ns, "auth", "can-i", "get", "secrets", "--as", OPERATOR_SA], "");
        String::from_utf8_lossy(&output.stdout).trim() == "yes"
    })
    .await;
}

/// A backup into the bucket of [`INTO_BUCKET`] passes admission in `ns` (a server dry run).
fn assert_bucket_backup_admitted(ns: &str) {
    let yaml = backup_yaml("b", INTO_BUCKET);
    let out = kubectl_ok(shared(), &["-n", ns, "create", "--dry-run=server", "-f", "-"], &yaml);
    assert_eq!(out.trim(), "apimanagerbackup.apps.3scale.net/b created (server dry run)");
}

#[tokio::test]
async fn a_bucket_naming_missing_secrets_is_refused_where_the_operator_may_read_secrets() {
    let cluster = shared();
    let ns = namespace_with_apimanager("s3-secrets");
    let_the_operator_read_secrets(&ns).await;
    let not_found = |field: &str, name: &str| {
        format!(r#"{field}: Not found: "{name}": no Secret of this name in namespace "s3-secrets"; create it first"#)
    };
    assert_eq!(
        create_rejected(&ns, &backup_yaml("b", INTO_BUCKET)),
        format!(
            "The APIManagerBackup \"b\" is invalid: \n* {}\n* {}\n* {}",
            not_found("spec.backupDestination.s3.credentialsSecretRef.name", "s3-creds"),
            not_found("spec.backupDestination.s3.caBundleSecretRef.name", "s3-ca"),
            not_found("spec.backupDestination.s3.encryption.keySecretRef.name", "backup-key"),
        )
    );
    let schedule = format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackupSchedule\nmetadata:\n  name: nightly\nspec:\n  schedule: \"@daily\"\n  template:\n{}",
        INTO_BUCKET.lines().map(|line| format!("  {line}\n")).collect::<String>()
    );
    let refused = create_rejected(&ns, &schedule);
    assert!(
        refused.contains(&not_found("spec.template.backupDestination.s3.credentialsSecretRef.name", "s3-creds")),
        "{refused}"
    );

    // The kube client sees the restore's 422 with one cause per missing Secret.
    let client = cluster.admin_client().await.expect("client");
    let restores: Api<APIManagerRestore> = Api::namespaced(client, &ns);
    let restore: APIManagerRestore = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerRestore", "metadata": {"name": "r"},
        "spec": {"restoreSource": {"s3": {"bucket": "backups", "region": "us-east-1",
            "credentialsSecretRef": {"name": "s3-creds"}, "encryption": {"disabled": true},
            "backupPath": "3scale/nightly-4b1d2c3e-0000-4000-8000-000000000000"}}}}))
    .expect("restore");
    match restores.create(&PostParams::default(), &restore).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
            assert_eq!(
                status.message,
                format!(
                    r#"admission webhook "vapimanagerrestore.apps.3scale.net" denied the request: APIManagerRestore.apps.3scale.net "r" is invalid: {}"#,
                    not_found("spec.restoreSource.s3.credentialsSecretRef.name", "s3-creds")
                )
            );
        }
        other => panic!("expected a 422 Invalid, got {other:?}"),
    }

    for (secret, key) in [("s3-creds", "AWS_ACCESS_KEY_ID"), ("s3-ca", "ca.crt"), ("backup-key", "2026-12")] {
        kubectl_ok(
            cluster,
            &["-n", &ns, "create", "secret", "generic", secret, &format!("--from-literal={key}=x")],
            "",
        );
    }
    assert_bucket_backup_admitted(&ns);
}

#[test]
fn without_permission_on_secrets_a_bucket_naming_missing_secrets_is_admitted() {
    let cluster = shared();
    let ns = namespace_with_apimanager("s3-secrets-unread");
    assert_can_i(cluster, &ns, OPERATOR_SA, &[("get", "secrets", "no")]);
    assert_bucket_backup_admitted(&ns);
}

#[test]
fn storage_class_with_volume_name_warns() {
    let cluster = shared();
    let ns = namespace_with_apimanager("warning");
    let spec = "  backupDestination:\n    persistentVolumeClaim:\n      volumeName: pv-1\n      storageClass: fast\n      resources:\n        requests: 1Gi\n";
    let output = kubectl_run(cluster, &["-n", &ns, "create", "-f", "-"], &backup_yaml("b", spec));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"Warning: spec.backupDestination.persistentVolumeClaim.storageClass is ignored because volumeName is set: the claim binds to PersistentVolume "pv-1""#
    );
}

#[test]
fn spec_updates_are_rejected_and_label_updates_allowed() {
    let cluster = shared();
    let ns = namespace_with_apimanager("immutable");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_yaml("b", SIZED));
    let patch = r#"{"spec":{"backupDestination":{"persistentVolumeClaim":{"resources":{"requests":"2Gi"}}}}}"#;
    let output = kubectl_run(cluster, &["-n", &ns, "patch", "apimanagerbackup", "b", "--type=merge", "-p", patch], "");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"The APIManagerBackup "b" is invalid: spec: Forbidden: spec is immutable once the backup is created; create a new APIManagerBackup to take another backup"#
    );
    let out = kubectl_ok(cluster, &["-n", &ns, "label", "apimanagerbackup", "b", "team=platform"], "");
    assert_eq!(out.trim(), "apimanagerbackup.apps.3scale.net/b labeled");
}

#[tokio::test]
async fn kube_client_sees_defaulting_and_a_422_invalid() {
    let cluster = shared();
    let ns = namespace_with_apimanager("client");
    let client = cluster.admin_client().await.expect("client");
    let api: Api<APIManagerBackup> = Api::namespaced(client, &ns);
    let good: APIManagerBackup = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup", "metadata": {"name": "good"},
        "spec": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "5Gi"}}}}}))
    .expect("backup");
    let created = api.create(&PostParams::default(), &good).await.expect("created");
    assert_eq!(created.spec.api_manager_name.as_deref(), Some("example"));

    let mut bad = good.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.api_manager_name = Some("missing".into());
    match api.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert_eq!(status.reason, "Invalid");
            assert_eq!(
                status.message,
                r#"admission webhook "vapimanagerbackup.apps.3scale.net" denied the request: APIManagerBackup.apps.3scale.net "bad" is invalid: spec.apiManagerName: Invalid value: "missing": APIManager "missing" does not exist in namespace "client" (there are: example)"#
            );
        }
        other => panic!("expected a 422 Invalid, got {other:?}"),
    }
}

#[test]
fn operator_service_account_has_only_what_admission_needs() {
    let sa = "system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator";
    let cases = [
        ("list", "apimanagers.apps.3scale.net", "yes"),
        ("watch", "apimanagerbackups.apps.3scale.net", "yes"),
        ("delete", "apimanagers.apps.3scale.net", "no"),
        ("list", "secrets", "no"),
        // Admission checks a bucket's Secrets exist only where a namespace grants this (README).
        ("get", "secrets", "no"),
        // A schedule's runs; the fence admits only backups a schedule controls (tests/e2e_schedule.rs).
        ("create", "apimanagerbackups.apps.3scale.net", "yes"),
        ("update", "apimanagerbackups.apps.3scale.net", "no"),
        ("update", "apimanagerbackupschedules.apps.3scale.net", "no"),
    ];
    assert_can_i(shared(), "default", sa, &cases);
}

/// The webhooks answering from `lookup`, in process.
fn webhooks<L: ApiManagerLookup>(lookup: L) -> axum::Router {
    let metrics = std::sync::Arc::new(Metrics::new().expect("metrics"));
    server::router(AdmissionState { lookup, metrics }, Readiness::default(), &server::Limits::default())
}

/// Posts `body` to `path` of `app` and returns the AdmissionReview's response.
async fn admit(app: &axum::Router, path: &str, body: Vec<u8>) -> serde_json::Value {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("router answers");
    assert_eq!(response.status(), http::StatusCode::OK);
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let review: serde_json::Value = serde_json::from_slice(&bytes).expect("AdmissionReview");
    review["response"].clone()
}

#[tokio::test]
async fn a_warm_cache_answers_admission_without_api_requests() {
    let cluster = shared();
    let ns = namespace_with_apimanager("warm-cache");
    let (client, requests) = counting_client(&cluster.operator.kubeconfig).await;
    let readiness = Readiness::default();
    let metrics = std::sync::Arc::new(Metrics::new().expect("metrics"));
    let (apimanagers, events) = Informer::watch(&client, &Namespaces::All, trim::metadata::<APIManager>, metrics);
    let live = ClusterLookup::new(client.clone());
    let (lookup, fill) = CachedLookup::watch(&apimanagers, events, Namespaces::All, live, &readiness);
    assert_eq!(readiness.failing(), [CACHE_CHECK], "not ready before the first list");
    let filling = tokio::spawn(fill);
    eventually(Duration::from_secs(20), "the APIManager cache syncs", || async { readiness.failing().is_empty() })
        .await;
    let app = webhooks(lookup);
    let before = requests.not_watches();
    for _ in 0..25 {
        let defaulted = admit(&app, MUTATE_PATH, create_review(&ns, sized_spec(None))).await;
        assert_eq!((&defaulted["allowed"], &defaulted["patchType"]), (&true.into(), &"JSONPatch".into()));
        let validated = admit(&app, VALIDATE_PATH, create_review(&ns, sized_spec(Some("example")))).await;
        assert_eq!(validated["allowed"], true, "{validated}");
    }
    assert_eq!(requests.not_watches(), before, "an admission request sent API requests");
    filling.abort();
}

#[tokio::test]
async fn what_the_cache_has_not_seen_is_confirmed_live_before_a_refusal() {
    let cluster = shared();
    let ns = namespace_with_apimanager("lagging-cache");
    let (client, requests) = counting_client(&cluster.operator.kubeconfig).await;
    // A cache that has not seen the namespace's APIManager yet (as right after it was created).
    let (store, _writer) = kube::runtime::reflector::store::<APIManager>();
    let app = webhooks(CachedLookup::from_store(store, ClusterLookup::new(client)));
    let apimanagers = format!("/apis/apps.3scale.net/v1alpha1/namespaces/{ns}/apimanagers");

    let validated = admit(&app, VALIDATE_PATH, create_review(&ns, sized_spec(Some("example")))).await;
    assert_eq!(validated["allowed"], true, "{validated}");
    assert_eq!(requests.not_watches(), [format!("GET {apimanagers}/example")], "one live GET");

    let defaulted = admit(&app, MUTATE_PATH, create_review(&ns, sized_spec(None))).await;
    assert_eq!(defaulted["patchType"], "JSONPatch", "defaulted from a live list: {defaulted}");
    let sent = requests.not_watches();
    assert_eq!(sent.len(), 2);
    assert!(sent[1].starts_with(&format!("GET {apimanagers}?")), "a live list: {sent:?}");

    let refused = admit(&app, VALIDATE_PATH, create_review(&ns, sized_spec(Some("gone")))).await;
    assert_eq!(refused["allowed"], false);
    assert!(
        refused["status"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(r#"spec.apiManagerName: Invalid value: "gone": APIManager "gone" does not exist in namespace "lagging-cache" (there are none)"#)),
        "{refused}"
    );
    assert_eq!(requests.not_watches().last(), Some(&format!("GET {apimanagers}/gone")));
}
