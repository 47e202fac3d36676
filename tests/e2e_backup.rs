//! Backups end to end: the operator (as its ServiceAccount) reconciles and creates the step Pods,
//! the node stand-in runs them (as their ServiceAccount), and the files land in the folder standing
//! in for the backup claim.

mod support;

use apimanager_backup_operator::job::export::SERVER_METADATA;
use apimanager_backup_operator::job::manifest::{BackupState, Manifest, hash_file};
use apimanager_backup_operator::layout::CONFIG_MAPS;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::cluster::{
    SAMPLE_REFERENCED_SECRETS, assert_can_i, create_backup, eventually, finished_backup, kubectl_ok, kubectl_run,
    namespace_with_installation, sample_secret_names, shared,
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
    // The 13 Secrets and the 5 the APIManager references.
    for name in sample_secret_names() {
        let name = name.as_str();
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
    assert_eq!(manifest.files.len(), 13 + 5 + 2 + 1 + 2, "{:?}", manifest.files);
    assert_eq!(manifest.state, BackupState::Complete, "the copy, the last step, marked it complete");
    let referenced: Vec<&str> = manifest.referenced_secrets.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(referenced, SAMPLE_REFERENCED_SECRETS);
    let policy = &manifest.referenced_secrets[1];
    assert_eq!(
        serde_json::to_value(policy).expect("json"),
        serde_json::json!({"name": "apicast-custom-policy", "path": "secrets/apicast-custom-policy.json",
            "references": [{"field": "spec.apicast.productionSpec.customPolicies[0].secretRef", "role": "apicastCustomPolicy"}]})
    );
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
    let pods: Api<Pod> = Api::namespaced(admin, &ns);
    let step_pods = ListParams::default().labels("app.kubernetes.io/managed-by=apimanager-backup-operator");
    eventually(Duration::from_secs(30), "the Pods of a successful backup are deleted", || async {
        pods.list(&step_pods).await.expect("list pods").items.is_empty()
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
    let mut created: Vec<&str> = created.split("created Pod ").map(str::trim).filter(|p| !p.is_empty()).collect();
    created.sort_unstable();
    assert_eq!(
        created,
        [format!("backup-{uid}-0"), format!("inspect-files-{uid}-0")],
        "the read-only inspection, then one Pod running both steps"
    );
    assert_eq!(backup.status.and_then(|s| s.file_storage_group), Some(1001), "the group owning the claim's root");
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
async fn a_failing_step_fails_the_backup_with_the_pod_message_and_keeps_the_pods() {
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
            "Pod backup-{uid}-0 failed at step export-objects after 1 attempt: required objects missing in namespace failing-job: Secret system-seed, Secret zync; create them or fix the APIManager, then create a new APIManagerBackup"
        )
    );
    let admin = cluster.admin_client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    let job = format!("backup-{uid}");
    let attempts = pods.list(&ListParams::default().labels(&format!("apps.3scale.net/step-job={job}"))).await;
    let mut attempts = attempts.expect("pods").items;
    assert_eq!(attempts.len(), 1, "--job-backoff-limit=0: one attempt, kept for debugging");
    let pod = attempts.pop().expect("the Pod");
    assert_eq!(pod.metadata.name, Some(format!("{job}-0")));
    let copy = pod.status.and_then(|s| s.container_statuses).expect("container statuses");
    let waiting = copy[0].state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
    assert_eq!((copy[0].name.as_str(), waiting), ("copy-files", Some("PodInitializing")), "no step after a failure");
    assert!(!cluster.volume(&ns, "b").join("system-filestorage-pvc").exists(), "nothing copied");
    let events =
        kubectl_ok(cluster, &["-n", &ns, "get", "events", "--field-selector", "reason=JobFailed", "-o", "name"], "");
    assert!(!events.trim().is_empty(), "a JobFailed event is published");

    let backups: Api<apimanager_backup_operator::api::backup::APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
    backups.delete("b", &DeleteParams::background()).await.expect("delete backup");
    // kube-controller-manager's garbage collector rediscovers resources every 30 s: shortly after the
    // CRDs are installed it may not resolve the backup as an owner yet, so allow it a few periods.
    eventually(Duration::from_secs(90), "the Pod goes with the APIManagerBackup (garbage collection)", || async {
        pods.get_opt(&format!("{job}-0")).await.expect("get").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_fails_the_backup_at_once_with_its_message() {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "no-pods").await;
    let admin = cluster.admin_client().await.expect("client");
    let quotas: Api<ResourceQuota> = Api::namespaced(admin.clone(), &ns);
    let quota: ResourceQuota =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}))
            .expect("quota");
    quotas.create(&Default::default(), &quota).await.expect("quota");
    // The quota is enforced once kube-controller-manager has computed its status.
    eventually(Duration::from_secs(30), "the quota is in force", || async {
        let quota = quotas.get("no-pods").await.expect("quota");
        quota.status.and_then(|s| s.hard).is_some_and(|hard| hard.contains_key("pods"))
    })
    .await;
    create_backup(cluster, &ns, "b");
    let backup = finished_backup(cluster, &ns, "b").await;
    let uid = backup.metadata.uid.clone().expect("uid");
    let status = backup.status.expect("status");
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed condition");
    let message = format!(
        "creating Pod inspect-files-{uid}-0: pods \"inspect-files-{uid}-0\" is forbidden: exceeded quota: no-pods, \
requested: pods=1, used: pods=0, limited: pods=0"
    );
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str(), failed.message.as_str()),
        ("True", "Refused", &*message)
    );
    let started = status.start_time.expect("startTime").0;
    let ended = failed.last_transition_time.0;
    assert!((ended - started).get_seconds() < 30, "at once, not after retries until the timeout");
    let events = kubectl_ok(
        cluster,
        &["-n", &ns, "get", "events", "--field-selector", "reason=Refused", "-o", "jsonpath={.items[*].message}"],
        "",
    );
    assert_eq!(events.trim(), message, "a Refused event");
    let pods: Api<Pod> = Api::namespaced(admin, &ns);
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=apimanager-backup-operator");
    assert!(pods.list(&managed).await.expect("pods").items.is_empty(), "no Pod");
}

#[tokio::test]
async fn the_node_stops_a_pod_at_its_active_deadline_as_a_kubelet_does() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "pod-deadline").await;
    let admin = cluster.admin_client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(admin, &ns);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleeper", "labels": {"app.kubernetes.io/managed-by": "apimanager-backup-operator"}},
        "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": 2, "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "sleep", "image": "busybox:1.36", "command": ["sleep", "120"],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}))
    .expect("pod");
    pods.create(&Default::default(), &pod).await.expect("pod");
    // Its command would run for 2 minutes.
    eventually(Duration::from_secs(30), "the Pod fails at its deadline", || async {
        let status = pods.get("sleeper").await.expect("pod").status.unwrap_or_default();
        status.phase.as_deref() == Some("Failed")
    })
    .await;
    let status = pods.get("sleeper").await.expect("pod").status.expect("status");
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (Some("DeadlineExceeded"), Some("Pod was active on the node longer than the specified deadline"))
    );
}

#[tokio::test]
async fn s3_file_storage_is_admitted_silently_and_a_missing_s3_secret_fails_the_backup_naming_it() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "s3-storage").await;
    // The S3 configuration Secret the APIManager references is backed up with the others.
    kubectl_ok(
        cluster,
        &["-n", &ns, "create", "secret", "generic", "aws-auth", "--from-literal=AWS_BUCKET=uploads"],
        "",
    );
    let patch = r#"{"spec":{"system":{"fileStorage":{"simpleStorageService":{"configurationSecretRef":{"name":"aws-auth"}}}}}}"#;
    kubectl_ok(cluster, &["-n", &ns, "patch", "apimanager", "example-apimanager", "--type=merge", "-p", patch], "");
    let output = kubectl_run(
        cluster,
        &["-n", &ns, "create", "-f", "-"],
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: b\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n",
    );
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end(), "", "no warning: the backup copies the bucket");
    let backup = finished_backup(cluster, &ns, "b").await;
    let status = backup.status.expect("status");
    assert_ne!(status.completed, Some(true));
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed condition");
    let uid = backup.metadata.uid.expect("uid");
    assert_eq!(
        failed.message,
        format!(
            "Pod backup-{uid}-0 failed at step backup-s3-files after 1 attempt: System FileStorage S3 Secret aws-auth: AWS_ACCESS_KEY_ID is missing"
        )
    );
    let root = cluster.volume(&ns, "b");
    assert!(!root.join("system-filestorage-pvc").exists());
    assert!(!root.join("system-filestorage-s3").exists());
    let manifest = Manifest::load(&root).expect("manifest");
    assert_eq!(manifest.steps.keys().collect::<Vec<_>>(), ["export-objects"]);
    assert_eq!(manifest.system_file_storage_s3, None);
    assert_eq!(manifest.state, BackupState::InProgress, "the copy of the bucket, the last step, failed");
    let s3 = manifest.referenced_secrets.iter().find(|entry| entry.name == "aws-auth").expect("aws-auth listed");
    assert_eq!(s3.references[0].field, "spec.system.fileStorage.simpleStorageService.configurationSecretRef");
    assert!(root.join("secrets/aws-auth.json").is_file(), "exported with the others");
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
        ("create", "pods", "yes"),
        ("delete", "pods", "yes"),
        ("watch", "pods", "yes"),
        ("create", "jobs.batch", "no"),
        ("get", "jobs.batch", "no"),
        ("update", "pods", "no"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/apimanager-backup-job", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/apimanager-restore-job", "yes"),
        ("bind", "clusterroles.rbac.authorization.k8s.io/admin", "no"),
        // A schedule's retention deletes a pruned backup's claim; the fence narrows it to the
        // claims the operator labelled (`the_admission_policy_fences_the_operator_service_account`).
        ("delete", "persistentvolumeclaims", "yes"),
        ("create", "secrets", "no"),
        ("create", "configmaps", "no"),
        ("create", "apimanagers.apps.3scale.net", "no"),
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

/// The operator's ServiceAccount, as the API server names it.
const OPERATOR_USER: &str = "system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator";

/// The 403 the admission policy gives, ending with `message`.
/// The Secret volumes of `pod`: (volume, Secret).
fn secret_volumes(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter_map(|v| Some((v.name.clone(), v.secret.as_ref()?.secret_name.clone()?)))
        .collect()
}

fn assert_fenced<T: std::fmt::Debug>(result: Result<T, kube::Error>, message: &str, what: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{what}: {status:?}");
            let prefix = "ValidatingAdmissionPolicy 'apimanager-backup-operator-fence' with binding \
'apimanager-backup-operator-fence' denied request: ";
            assert!(status.message.ends_with(&format!("{prefix}{message}")), "{what}: {}", status.message);
        }
        other => panic!("{what}: expected the policy to refuse, got {other:?}"),
    }
}

#[tokio::test]
async fn the_admission_policy_fences_the_operator_service_account() {
    use apimanager_backup_operator::api::apimanager::FileStorage;
    use apimanager_backup_operator::backup::objects as builders;
    use apimanager_backup_operator::backup::operation::BackupPlan;
    use apimanager_backup_operator::reconcile::machine::Operation;
    use apimanager_backup_operator::reconcile::step::{self, JobSettings};
    use apimanager_backup_operator::restore::objects as restore;
    use apimanager_backup_operator::restore::operation::RestorePlan;
    use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
    use kube::ResourceExt;
    use kube::api::PostParams;
    use serde_json::json;

    let cluster = shared();
    let ns = namespace_with_installation(cluster, "fence").await;
    let admin = cluster.admin_client().await.expect("client");
    let operator = support::cluster::client_as(cluster, OPERATOR_USER).await;
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let delete_dry_run = DeleteParams { dry_run: true, ..DeleteParams::default() };
    // Pod Security is not enforced here, so the fence alone refuses what it refuses.
    kubectl_ok(
        cluster,
        &["label", "namespace", &ns, "--overwrite", "pod-security.kubernetes.io/enforce=privileged"],
        "",
    );
    // Pods are admitted only with their ServiceAccount in place (the operator creates it first).
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    for account in [builders::job_service_account(&ns), step::service_account(&ns, "apimanager-restore")] {
        accounts.create(&PostParams::default(), &account).await.expect("ServiceAccount");
    }
    let (pods, roles, bindings): (Api<Pod>, Api<Role>, Api<RoleBinding>) = (
        Api::namespaced(operator.clone(), &ns),
        Api::namespaced(operator.clone(), &ns),
        Api::namespaced(operator, &ns),
    );

    // What the operator really sends for a backup: every object is admitted.
    let mut backup: apimanager_backup_operator::api::backup::APIManagerBackup =
        serde_json::from_value(json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
            "metadata": {"name": "fenced", "namespace": ns, "uid": "0b5e8f3c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"},
            "spec": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}}}))
        .expect("backup");
    backup.metadata.namespace = Some(ns.clone());
    let plan = BackupPlan {
        secrets: vec!["apicast-custom-policy".into(), "registry-pull-secret".into()],
        ..BackupPlan::new("example-apimanager", FileStorage::Claim("system-storage".into()))
    };
    let settings = JobSettings {
        image: apimanager_backup_operator::local::job_image(),
        command: "apimanager-backup-operator".into(),
        backoff_limit: 0,
        file_storage_group: None,
        platform: apimanager_backup_operator::platform::Platform::Kubernetes,
    };
    let backup_jobs = backup.jobs(&plan);
    let names: Vec<&str> = backup_jobs.iter().map(|job| job.name).collect();
    assert_eq!(names, ["inspect-files", "backup"], "the inspection, then export and copy in one Pod");
    assert_eq!(backup_jobs[1].steps().count(), 2, "export and copy in one Pod");
    let export_pod = step::pod(&backup, &backup_jobs[1], 0, &settings, 60);
    // The policy takes effect once the API server has loaded it.
    let mut foreign = serde_json::to_value(&export_pod).expect("json");
    foreign["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    let foreign: Pod = serde_json::from_value(foreign).expect("pod");
    eventually(Duration::from_secs(30), "the admission policy is in force", || async {
        pods.create(&dry_run, &foreign).await.is_err()
    })
    .await;
    let s3 = BackupPlan { storage: FileStorage::S3 { secret: Some("fs-s3".into()) }, ..plan.clone() };
    for (attempt, job) in backup_jobs.iter().chain(&backup.jobs(&s3)).enumerate() {
        let attempt = u32::try_from(attempt).expect("attempt");
        pods.create(&dry_run, &step::pod(&backup, job, attempt, &settings, 60))
            .await
            .expect("the operator's Pods are admitted");
    }
    // The Role is created for real, as binding it is checked against what it allows (the referenced
    // Secrets, which the operator cannot read: it creates and binds the Role through escalate and
    // bind); without its owner (this backup does not exist), so the garbage collector leaves it.
    let mut role = builders::apimanager_role(&backup, &plan.apimanager, &plan.secrets);
    role.metadata.owner_references = None;
    roles.create(&PostParams::default(), &role).await.expect("its Role is admitted");
    for binding in [builders::apimanager_role_binding(&backup), builders::data_role_binding(&backup)] {
        bindings.create(&dry_run, &binding).await.expect("its RoleBindings are admitted");
    }
    roles.delete(&role.name_any(), &DeleteParams::default()).await.expect("deleting its Role is admitted");

    // Pods that do anything else are refused, one rule at a time.
    let image = apimanager_backup_operator::local::job_image();
    let pod_with = |change: &dyn Fn(&mut Value)| -> Pod {
        let mut pod = serde_json::to_value(&export_pod).expect("json");
        change(&mut pod);
        serde_json::from_value(pod).expect("pod")
    };
    let only_image = format!(
        "the apimanager-backup-operator ServiceAccount may create only Pods of one container (and at most one init container) running image {image} with command [apimanager-backup-operator] and arguments job <step>"
    );
    let only_accounts = "the apimanager-backup-operator ServiceAccount may create only Pods running a backup step as ServiceAccount apimanager-backup or a restore step as ServiceAccount apimanager-restore";
    let sources = "the apimanager-backup-operator ServiceAccount may create only Pods whose volumes are PersistentVolumeClaims, the ServiceAccount's token (with the cluster's CA and the namespace, as Kubernetes mounts it) or, when every container is a step of a backup in S3 (--s3-bucket), the Secret volumes s3-credentials, s3-ca-bundle (its one key as ca.crt) and encryption-keys or, when every container is a step of a sealed backup on a claim (--encryption-keys), the Secret volume encryption-keys, mounted read-only at /var/run/apimanager-backup/<volume>, and whose environment comes from no Secret or ConfigMap but, for the S3 System FileStorage steps, 3scale's S3 keys of the Secret their --secret argument names";
    let cases: Vec<(&str, Pod, String)> = vec![
        ("another image", foreign, only_image.clone()),
        (
            "another command",
            pod_with(&|j| j["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c"])),
            only_image.clone(),
        ),
        (
            "a second container",
            pod_with(&|j| {
                let first = j["spec"]["containers"][0].clone();
                let mut second = first.clone();
                second["name"] = json!("second");
                j["spec"]["containers"] = json!([first, second]);
            }),
            only_image.clone(),
        ),
        (
            "another ServiceAccount",
            pod_with(&|j| j["spec"]["serviceAccountName"] = json!("default")),
            only_accounts.into(),
        ),
        (
            "no managed-by label",
            pod_with(&|j| j["metadata"]["labels"] = json!({"team": "other"})),
            "the apimanager-backup-operator ServiceAccount may create only objects labelled app.kubernetes.io/managed-by=apimanager-backup-operator".into(),
        ),
        (
            "a Secret volume",
            pod_with(&|j| {
                j["spec"]["volumes"]
                    .as_array_mut()
                    .expect("volumes")
                    .push(json!({"name": "seed", "secret": {"secretName": "system-seed"}}))
            }),
            sources.into(),
        ),
        (
            "a Secret in the token's volume",
            pod_with(&|j| {
                let volumes = j["spec"]["volumes"].as_array_mut().expect("volumes");
                let token = volumes.iter_mut().find(|v| v.get("projected").is_some()).expect("the token volume");
                token["projected"]["sources"][1] = json!({"secret": {"name": "system-seed"}});
            }),
            sources.into(),
        ),
        (
            "a token for another audience",
            pod_with(&|j| {
                let volumes = j["spec"]["volumes"].as_array_mut().expect("volumes");
                let token = volumes.iter_mut().find(|v| v.get("projected").is_some()).expect("the token volume");
                token["projected"]["sources"][0]["serviceAccountToken"]["audience"] = json!("vault");
            }),
            sources.into(),
        ),
        (
            "an init container of another image",
            pod_with(&|j| j["spec"]["initContainers"][0]["image"] = json!("busybox:1.36")),
            only_image.clone(),
        ),
        (
            "an environment variable from a Secret",
            pod_with(&|j| {
                j["spec"]["containers"][0]["env"] = json!([{"name": "SEED",
                    "valueFrom": {"secretKeyRef": {"name": "system-seed", "key": "ADMIN_PASSWORD"}}}])
            }),
            sources.into(),
        ),
        (
            "the node's process namespace",
            pod_with(&|j| j["spec"]["hostPID"] = json!(true)),
            "the apimanager-backup-operator ServiceAccount may create only Pods without host namespaces, privileged containers or added capabilities".into(),
        ),
        (
            "a Pod restarting its containers",
            pod_with(&|j| j["spec"]["restartPolicy"] = json!("OnFailure")),
            "the apimanager-backup-operator ServiceAccount may create only Pods with restartPolicy Never".into(),
        ),
    ];
    // The S3 FileStorage step gets 3scale's S3 keys of the Secret its --secret argument names, and
    // nothing else from a Secret.
    let s3_pod = step::pod(&backup, &backup.jobs(&s3)[0], 0, &settings, 60);
    let s3_pod_with = |change: &dyn Fn(&mut Value)| -> Pod {
        let mut pod = serde_json::to_value(&s3_pod).expect("json");
        change(&mut pod);
        serde_json::from_value(pod).expect("pod")
    };
    let s3_cases: Vec<(&str, Pod, String)> = vec![
        (
            "an S3 key from another Secret than the step names",
            s3_pod_with(&|j| {
                j["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] = json!("system-seed")
            }),
            sources.into(),
        ),
        (
            "another key of the S3 Secret",
            s3_pod_with(&|j| {
                j["spec"]["containers"][0]["env"][0] = json!({"name": "MASTER_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "fs-s3", "key": "MASTER_PASSWORD"}}})
            }),
            sources.into(),
        ),
        (
            "an S3 key under another name",
            s3_pod_with(&|j| j["spec"]["containers"][0]["env"][0]["name"] = json!("LD_PRELOAD")),
            sources.into(),
        ),
        (
            "the S3 Secret in the export's container",
            s3_pod_with(&|j| {
                j["spec"]["initContainers"][0]["env"] = j["spec"]["containers"][0]["env"].clone();
            }),
            sources.into(),
        ),
        (
            "the whole S3 Secret as environment",
            s3_pod_with(&|j| j["spec"]["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "fs-s3"}}])),
            sources.into(),
        ),
    ];
    // A backup into an S3 bucket: its Pod mounts the bucket's credentials, CA bundle and keys
    // read-only, and nothing wider is admitted.
    let mut to_bucket = backup.clone();
    to_bucket.spec.backup_destination = serde_json::from_value(json!({"s3": {"bucket": "backups",
        "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"},
        "caBundleSecretRef": {"name": "s3-ca", "key": "bundle.pem"},
        "encryption": {"keySecretRef": {"name": "backup-key"}}}}))
    .expect("an S3 destination");
    let bucket_jobs = to_bucket.jobs(&plan);
    let bucket_pod = step::pod(&to_bucket, &bucket_jobs[1], 0, &settings, 60);
    assert_eq!(
        secret_volumes(&bucket_pod),
        [
            ("s3-credentials".to_owned(), "backup-s3".to_owned()),
            ("s3-ca-bundle".to_owned(), "s3-ca".to_owned()),
            ("encryption-keys".to_owned(), "backup-key".to_owned())
        ]
    );
    for (attempt, job) in bucket_jobs.iter().enumerate() {
        let attempt = u32::try_from(attempt).expect("attempt");
        pods.create(&dry_run, &step::pod(&to_bucket, job, attempt, &settings, 60))
            .await
            .unwrap_or_else(|e| panic!("the S3 backup Pod {} is admitted: {e}", job.name));
    }
    // An S3 FileStorage backed up into the bucket: its step gets both, the FileStorage Secret's
    // keys in its environment and the bucket's Secret volumes.
    let files_to_bucket = step::pod(&to_bucket, &to_bucket.jobs(&s3)[0], 0, &settings, 60);
    let main = files_to_bucket.spec.as_ref().map(|spec| &spec.containers[0]).expect("the S3 files container");
    let env_secrets: Vec<&str> = main
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some(e.value_from.as_ref()?.secret_key_ref.as_ref()?.name.as_str()))
        .collect();
    assert_eq!((main.name.as_str(), env_secrets.len(), env_secrets[0]), ("backup-s3-files", 8, "fs-s3"));
    let mounts: Vec<&str> = main.volume_mounts.iter().flatten().map(|m| m.name.as_str()).collect();
    assert_eq!(mounts, ["s3-credentials", "s3-ca-bundle", "encryption-keys"]);
    pods.create(&dry_run, &files_to_bucket)
        .await
        .expect("the S3 FileStorage step of a backup into a bucket is admitted");
    // A sealed backup on a claim: its Pods mount the key Secret only, read-only, and nothing wider
    // is admitted.
    let mut sealed_claim = backup.clone();
    sealed_claim.spec.backup_destination = serde_json::from_value(json!({"persistentVolumeClaim": {
        "resources": {"requests": "1Gi"}, "encryption": {"keySecretRef": {"name": "backup-key"}}}}))
    .expect("a sealed claim destination");
    let sealed_jobs = sealed_claim.jobs(&plan);
    let sealed_pod = step::pod(&sealed_claim, sealed_jobs.last().expect("the backup job"), 0, &settings, 60);
    assert_eq!(secret_volumes(&sealed_pod), [("encryption-keys".to_owned(), "backup-key".to_owned())]);
    for (attempt, job) in sealed_jobs.iter().enumerate() {
        let attempt = u32::try_from(attempt).expect("attempt");
        pods.create(&dry_run, &step::pod(&sealed_claim, job, attempt, &settings, 60))
            .await
            .unwrap_or_else(|e| panic!("the sealed claim's backup Pod {} is admitted: {e}", job.name));
    }
    let sealed_pod_with = |change: &dyn Fn(&mut Value)| -> Pod {
        let mut pod = serde_json::to_value(&sealed_pod).expect("json");
        change(&mut pod);
        serde_json::from_value(pod).expect("pod")
    };
    let without_keys_argument = |j: &mut Value| {
        for container in ["containers", "initContainers"] {
            let args = j["spec"][container][0]["args"].as_array_mut().expect("args");
            args.retain(|a| !a.as_str().is_some_and(|a| a.starts_with("--encryption-keys=")));
        }
    };
    let bucket_pod_with = |change: &dyn Fn(&mut Value)| -> Pod {
        let mut pod = serde_json::to_value(&bucket_pod).expect("json");
        change(&mut pod);
        serde_json::from_value(pod).expect("pod")
    };
    let volume = |j: &mut Value, name: &str| -> usize {
        j["spec"]["volumes"].as_array().expect("volumes").iter().position(|v| v["name"] == name).expect("volume")
    };
    let bucket_cases: Vec<(&str, Pod)> = vec![
        (
            "a Secret volume of another name",
            bucket_pod_with(&|j| {
                let at = volume(j, "encryption-keys");
                j["spec"]["volumes"][at]["name"] = json!("seed");
                for container in ["containers", "initContainers"] {
                    for mount in j["spec"][container][0]["volumeMounts"].as_array_mut().expect("mounts") {
                        if mount["name"] == "encryption-keys" {
                            mount["name"] = json!("seed");
                            mount["mountPath"] = json!("/var/run/apimanager-backup/seed");
                        }
                    }
                }
            }),
        ),
        (
            "the bucket's Secret in a Pod of a claim's backup",
            pod_with(&|j| {
                j["spec"]["volumes"]
                    .as_array_mut()
                    .expect("volumes")
                    .push(json!({"name": "s3-credentials", "secret": {"secretName": "system-seed"}}))
            }),
        ),
        ("the keys in a Pod of a claim's backup without --encryption-keys", sealed_pod_with(&without_keys_argument)),
        (
            "the bucket's credentials in a Pod of a sealed claim's backup",
            sealed_pod_with(&|j| {
                j["spec"]["volumes"]
                    .as_array_mut()
                    .expect("volumes")
                    .push(json!({"name": "s3-credentials", "secret": {"secretName": "backup-key"}}))
            }),
        ),
        (
            "the keys of a sealed claim mounted elsewhere",
            sealed_pod_with(&|j| {
                let mounts = j["spec"]["containers"][0]["volumeMounts"].as_array_mut().expect("mounts");
                let keys = mounts.iter_mut().find(|m| m["name"] == "encryption-keys").expect("keys mount");
                keys["mountPath"] = json!("/tmp/keys");
            }),
        ),
        (
            "the keys mounted writable",
            bucket_pod_with(&|j| {
                let mounts = j["spec"]["containers"][0]["volumeMounts"].as_array_mut().expect("mounts");
                let keys = mounts.iter_mut().find(|m| m["name"] == "encryption-keys").expect("keys mount");
                keys["readOnly"] = json!(false);
            }),
        ),
        (
            "the credentials mounted elsewhere",
            bucket_pod_with(&|j| {
                let mounts = j["spec"]["containers"][0]["volumeMounts"].as_array_mut().expect("mounts");
                let keys = mounts.iter_mut().find(|m| m["name"] == "s3-credentials").expect("credentials mount");
                keys["mountPath"] = json!("/tmp/credentials");
            }),
        ),
        (
            "a chosen key of the credentials Secret",
            bucket_pod_with(&|j| {
                let at = volume(j, "s3-credentials");
                j["spec"]["volumes"][at]["secret"]["items"] =
                    json!([{"key": "MASTER_PASSWORD", "path": "AWS_ACCESS_KEY_ID"}]);
            }),
        ),
    ];
    let bucket_cases = bucket_cases.into_iter().map(|(what, pod)| (what, pod, sources.to_owned()));
    for (what, pod, message) in cases.into_iter().chain(s3_cases).chain(bucket_cases) {
        assert_fenced(pods.create(&dry_run, &pod).await, &message, what);
    }

    // RoleBindings of anything but the step Pods' roles, or for anyone but their ServiceAccount.
    // The operator holds `get` on Pods cluster-wide, so RBAC itself would let it bind this role.
    let pod_reader: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "fence-pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}))
    .expect("role");
    Api::<ClusterRole>::all(admin.clone()).create(&PostParams::default(), &pod_reader).await.expect("cluster role");
    let binding_with = |change: &dyn Fn(&mut Value)| -> RoleBinding {
        let mut binding = serde_json::to_value(builders::data_role_binding(&backup)).expect("json");
        change(&mut binding);
        serde_json::from_value(binding).expect("binding")
    };
    let other_role = binding_with(&|b| b["roleRef"]["name"] = json!("fence-pod-reader"));
    let only_roles = "the apimanager-backup-operator ServiceAccount may bind only the ClusterRole apimanager-backup-job, a per-backup Role apimanager-backup-<uid> or the ClusterRole apimanager-restore-job";
    assert_fenced(bindings.create(&dry_run, &other_role).await, only_roles, "a binding of another ClusterRole");
    let other_subject = binding_with(&|b| b["subjects"][0]["name"] = json!("default"));
    let subject_message = "the apimanager-backup-operator ServiceAccount may bind the backup roles only to ServiceAccount apimanager-backup and the restore role only to ServiceAccount apimanager-restore, of the binding's namespace";
    assert_fenced(bindings.create(&dry_run, &other_subject).await, subject_message, "a binding for another account");
    let other_namespace = binding_with(&|b| b["subjects"][0]["namespace"] = json!("default"));
    assert_fenced(
        bindings.create(&dry_run, &other_namespace).await,
        subject_message,
        "a binding for another namespace",
    );
    let only_get = "the apimanager-backup-operator ServiceAccount may create only Roles allowing get on APIManagers and on Secrets by name";
    for (what, rules) in [
        ("a Role allowing more", json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])),
        ("a Role allowing every Secret", json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])),
        (
            "a Role allowing a Secret's change",
            json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["zync"], "verbs": ["get", "update"]}]),
        ),
    ] {
        let mut wide_role =
            serde_json::to_value(builders::apimanager_role(&backup, &plan.apimanager, &plan.secrets)).expect("json");
        wide_role["rules"] = rules;
        assert_fenced(roles.create(&dry_run, &serde_json::from_value(wide_role).expect("role")).await, only_get, what);
    }

    // Of a claim it made, the operator changes only the backup state annotation.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
    let mut claim = builders::backup_claim(
        &backup,
        &serde_json::from_value(json!({"apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManager", "metadata": {"name": "example-apimanager", "uid": "u"}, "spec": {}}))
        .expect("apimanager"),
    );
    claim.metadata.owner_references = None;
    claims.create(&PostParams::default(), &claim).await.expect("claim");
    let operator_claims: Api<PersistentVolumeClaim> =
        Api::namespaced(support::cluster::client_as(cluster, OPERATOR_USER).await, &ns);
    let patch_dry_run = kube::api::PatchParams { dry_run: true, ..Default::default() };
    let patch = |value: Value| kube::api::Patch::Merge(value);
    let completed = patch(json!({"metadata": {"annotations": {"apps.3scale.net/backup-state": "Completed"}}}));
    operator_claims
        .patch("fenced", &patch_dry_run, &completed)
        .await
        .expect("marking the backup completed is admitted");
    let only_state = "the apimanager-backup-operator ServiceAccount may change only the annotation apps.3scale.net/backup-state of PersistentVolumeClaims labelled app.kubernetes.io/managed-by=apimanager-backup-operator";
    for (what, change) in [
        ("another annotation", json!({"metadata": {"annotations": {"apiManagerBackupUID": "another"}}})),
        ("a label", json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}})),
    ] {
        assert_fenced(operator_claims.patch("fenced", &patch_dry_run, &patch(change)).await, only_state, what);
    }
    claims.delete("fenced", &DeleteParams::default()).await.expect("cleanup");

    // What the operator really sends for a restore: its four step Pods and its RoleBinding are admitted.
    let restore: apimanager_backup_operator::api::restore::APIManagerRestore = serde_json::from_value(json!({
        "apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerRestore",
        "metadata": {"name": "fenced", "namespace": ns, "uid": "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"},
        "spec": {"restoreSource": {"persistentVolumeClaim": {"claimSource": {"claimName": "nightly"}}}},
        "status": {"apiManagerToRestoreRef": {"name": "example-apimanager"}, "systemStorageClaimName": "system-storage"}}))
    .expect("restore");
    let restore_plan = RestorePlan { claim: "nightly".into(), file_storage_group: None };
    let restore_jobs = restore.jobs(&restore_plan);
    let step_names: Vec<&str> = restore_jobs.iter().map(|job| job.name).collect();
    assert_eq!(step_names, ["verify", "restore-objects", "restore-files", "restore-apimanager"], "a Pod per step");
    for job in &restore_jobs {
        pods.create(&dry_run, &step::pod(&restore, job, 0, &settings, 60))
            .await
            .unwrap_or_else(|e| panic!("the restore Pod {} is admitted: {e}", job.name));
    }
    // A restore from a bucket: its Pods mount the bucket's Secrets and no claim of a backup.
    let mut from_bucket = restore.clone();
    from_bucket.spec.restore_source = serde_json::from_value(json!({"s3": {"bucket": "backups",
        "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"},
        "encryption": {"keySecretRef": {"name": "backup-key"}},
        "backupPath": "fence/fenced-0b5e8f3c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"}}))
    .expect("an S3 source");
    for job in &from_bucket.jobs(&restore_plan) {
        let pod = step::pod(&from_bucket, job, 0, &settings, 60);
        let claims: Vec<&str> = pod
            .spec
            .iter()
            .flat_map(|spec| spec.volumes.iter().flatten())
            .filter_map(|v| Some(v.persistent_volume_claim.as_ref()?.claim_name.as_str()))
            .collect();
        assert!(!claims.contains(&"nightly"), "{}: {claims:?}", job.name);
        pods.create(&dry_run, &pod)
            .await
            .unwrap_or_else(|e| panic!("the S3 restore Pod {} is admitted: {e}", job.name));
    }
    let restore_binding = restore::role_binding(&restore);
    bindings.create(&dry_run, &restore_binding).await.expect("the restore RoleBinding is admitted");

    // A backup step as the restore account, a restore step as the backup account, and bindings
    // that cross the two accounts are refused.
    let as_account = |pod: &Pod, account: &str| -> Pod {
        let mut pod = serde_json::to_value(pod).expect("json");
        pod["spec"]["serviceAccountName"] = json!(account);
        serde_json::from_value(pod).expect("pod")
    };
    let restore_objects = step::pod(&restore, &restore_jobs[1], 0, &settings, 60);
    for (what, pod) in [
        ("a restore step as the backup account", as_account(&restore_objects, "apimanager-backup")),
        ("a backup step as the restore account", as_account(&export_pod, "apimanager-restore")),
        ("a restore step as another account", as_account(&restore_objects, "default")),
    ] {
        assert_fenced(pods.create(&dry_run, &pod).await, only_accounts, what);
    }
    let mut other_step = serde_json::to_value(&restore_objects).expect("json");
    other_step["spec"]["containers"][0]["args"][1] = json!("shell");
    assert_fenced(
        pods.create(&dry_run, &serde_json::from_value(other_step).expect("pod")).await,
        only_accounts,
        "a step the operator does not have",
    );
    let crossed = |binding: &RoleBinding, account: &str| -> RoleBinding {
        let mut binding = serde_json::to_value(binding).expect("json");
        binding["subjects"][0]["name"] = json!(account);
        serde_json::from_value(binding).expect("binding")
    };
    for (what, binding) in [
        ("the restore role for the backup account", crossed(&restore_binding, "apimanager-backup")),
        (
            "the backup data role for the restore account",
            crossed(&builders::data_role_binding(&backup), "apimanager-restore"),
        ),
        ("the restore role for another account", crossed(&restore_binding, "default")),
    ] {
        assert_fenced(bindings.create(&dry_run, &binding).await, subject_message, what);
    }

    // Deletes of what the operator did not make are refused; of what it made, admitted.
    let unlabelled: Role =
        serde_json::from_value(json!({"metadata": {"name": "someone-elses"}, "rules": []})).expect("role");
    let labelled: Role = serde_json::from_value(json!({"metadata": {"name": "the-operators",
        "labels": {"app.kubernetes.io/managed-by": "apimanager-backup-operator"}}, "rules": []}))
    .expect("role");
    let admin_roles: Api<Role> = Api::namespaced(admin.clone(), &ns);
    for role in [&unlabelled, &labelled] {
        admin_roles.create(&PostParams::default(), role).await.expect("role");
    }
    assert_fenced(
        roles.delete("someone-elses", &delete_dry_run).await,
        "the apimanager-backup-operator ServiceAccount may delete only objects labelled app.kubernetes.io/managed-by=apimanager-backup-operator",
        "deleting another's Role",
    );
    roles.delete("the-operators", &delete_dry_run).await.expect("deleting its own Role is admitted");
    // The same for claims, which a schedule's retention deletes: never one the operator did not make.
    let claim = |name: &str, labels: Value| -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}))
        .expect("claim")
    };
    let admin_claims: Api<PersistentVolumeClaim> = Api::namespaced(admin.clone(), &ns);
    for made in [
        claim("someone-elses-claim", json!({})),
        claim("the-operators-claim", json!({"app.kubernetes.io/managed-by": "apimanager-backup-operator"})),
    ] {
        admin_claims.create(&PostParams::default(), &made).await.expect("claim");
    }
    let claims: Api<PersistentVolumeClaim> =
        Api::namespaced(support::cluster::client_as(cluster, OPERATOR_USER).await, &ns);
    assert_fenced(
        claims.delete("someone-elses-claim", &delete_dry_run).await,
        "the apimanager-backup-operator ServiceAccount may delete only objects labelled app.kubernetes.io/managed-by=apimanager-backup-operator",
        "deleting another's claim",
    );
    claims.delete("the-operators-claim", &delete_dry_run).await.expect("deleting its own claim is admitted");

    // Nobody else is fenced: the administrator may create the foreign Pod.
    let mut anyones = serde_json::to_value(&export_pod).expect("json");
    anyones["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    let admin_pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    admin_pods
        .create(&dry_run, &serde_json::from_value(anyones).expect("pod"))
        .await
        .expect("the administrator is not fenced");
    Api::<ClusterRole>::all(admin).delete("fence-pod-reader", &DeleteParams::default()).await.expect("cleanup");
}
