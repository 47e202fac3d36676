//! Backups that meet trouble while in progress: the operator killed and restarted, the APIManager
//! deleted or changed, the backup timeout, an API server failing every Pod create. These tests
//! pause the node stand-in and restart the operator, so they share a control plane of their own
//! and run one at a time.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::local::faults::FaultSpec;
use apimanager_backup_operator::local::node::PauseGuard;
use apimanager_backup_operator::local::{LocalCluster, process};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::cluster::{
    assert_can_i, create_backup, eventually, finished_backup, kubectl_ok, kubectl_run, namespace_never_available,
    namespace_with_installation, start_cluster_with,
};
use support::https;
use support::restore::{create_restore, event_reasons, finished_restore, restore_when, sample};
use support::threescale_backup::threescale_operator_backup_claim;
use tokio::sync::{Mutex, MutexGuard};

/// The cluster of this binary, one test at a time (an async lock: tests hold it across awaits).
async fn cluster() -> MutexGuard<'static, LocalCluster> {
    static CLUSTER: OnceLock<Mutex<LocalCluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| {
        let (cluster, dir) = start_cluster_with("resilience", &[FILE_STORAGE_GROUP_FLAG]);
        process::remove_at_exit(&dir);
        Mutex::new(cluster)
    });
    cluster.lock().await
}

/// The operator of these tests is given the System FileStorage group (the override), so a backup is
/// one Pod from its start, as these tests of a Pod in progress take it.
const FILE_STORAGE_GROUP_FLAG: &str = "--file-storage-group=1001";

/// The operator's arguments: [`FILE_STORAGE_GROUP_FLAG`] and `extra`.
fn operator_args(extra: &[&str]) -> Vec<String> {
    std::iter::once(FILE_STORAGE_GROUP_FLAG).chain(extra.iter().copied()).map(str::to_owned).collect()
}

/// Waits for the first attempt's Pod of backup `name` and returns it.
async fn backup_pod(cluster: &LocalCluster, namespace: &str, name: &str) -> Pod {
    let admin = cluster.admin_client().await.expect("client");
    let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(admin, namespace);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let uid = backups.get(name).await.expect("backup").metadata.uid.expect("uid");
        if let Some(pod) = pods.get_opt(&format!("backup-{uid}-0")).await.expect("get pod") {
            return pod;
        }
        assert!(Instant::now() < deadline, "the backup Pod is created");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failed_condition(backup: &APIManagerBackup) -> (String, String) {
    let status = backup.status.clone().expect("status");
    assert_ne!(status.completed, Some(true));
    let failed =
        status.conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True").expect("Failed condition");
    (failed.reason.clone(), failed.message.clone())
}

/// The step Pods of `namespace`.
fn step_pods() -> ListParams {
    ListParams::default().labels("app.kubernetes.io/managed-by=apimanager-backup-operator")
}

/// The restarted operator's own count of finished reconcile passes of `controller` (`backup`,
/// `restore`), scraped from its `/metrics`.
async fn reconcile_passes(cluster: &LocalCluster, controller: &str) -> u64 {
    let addr = cluster.operator.url.trim_start_matches("https://").parse().expect("operator address");
    let ca = cluster.plane.certs.join("ca.crt");
    let scrape = https::request(addr, https::client_config(&[&ca]), "GET", "/metrics", b"").await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let sample =
        format!(r#"apimanager_backup_operator_reconcile_duration_seconds_count{{controller="{controller}"}} "#);
    scrape.body.lines().find_map(|line| line.strip_prefix(&sample)).map_or(0, |n| n.parse().expect("a count"))
}

/// Restarts the operator, then waits until the new process has made its pass over every object of
/// kind `K`: it reconciles each one of its first list once, so once it has finished as many passes
/// of `controller` as there are objects, it has made its own pass over the one under test.
async fn restart_and_wait_for_a_pass_over_each<K>(cluster: &mut LocalCluster, controller: &str)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    cluster.restart_operator(&operator_args(&[])).await.expect("operator restarts");
    let cluster: &LocalCluster = cluster;
    let all: Api<K> = Api::all(cluster.admin_client().await.expect("client"));
    let count = all.list(&ListParams::default()).await.expect("list").items.len() as u64;
    let what = format!("the restarted operator reconciles every {controller}");
    eventually(Duration::from_secs(30), &what, || async { reconcile_passes(cluster, controller).await >= count }).await;
}

#[tokio::test]
async fn operator_restarted_mid_backup_finishes_it_without_duplicate_pods() {
    let mut cluster = cluster().await;
    let ns = namespace_with_installation(&cluster, "restart").await;
    let pod_before = {
        let _paused = cluster.node.pause();
        create_backup(&cluster, &ns, "b");
        let pod = backup_pod(&cluster, &ns, "b").await;
        let admin = cluster.admin_client().await.expect("client");
        let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
        let started = backups.get("b").await.expect("backup").status.and_then(|s| s.start_time).expect("startTime");

        restart_and_wait_for_a_pass_over_each::<APIManagerBackup>(&mut cluster, "backup").await;
        let pods: Api<Pod> = Api::namespaced(admin, &ns);
        let listed = pods.list(&step_pods()).await.expect("pods").items;
        let names: Vec<Option<String>> = listed.iter().map(|p| p.metadata.name.clone()).collect();
        assert_eq!(names, std::slice::from_ref(&pod.metadata.name), "still the one backup Pod");
        assert_eq!(listed[0].metadata.uid, pod.metadata.uid, "the same Pod uid, not a new one");
        let after = backups.get("b").await.expect("backup").status.and_then(|s| s.start_time).expect("startTime");
        assert_eq!(after, started, "the backup is continued, not restarted");
        pod
    };
    let backup = finished_backup(&cluster, &ns, "b").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
    let manifest =
        apimanager_backup_operator::job::manifest::Manifest::load(&cluster.volume(&ns, "b")).expect("manifest");
    assert_eq!(
        manifest.files.len(),
        23,
        "18 Secrets (5 of them referenced by the APIManager), 2 ConfigMaps, the APIManager, 2 files"
    );
    let backup_uid = backup.metadata.uid.expect("uid");
    assert_eq!(pod_before.metadata.name, Some(format!("backup-{backup_uid}-0")));
    assert_eq!(manifest.backup.uid, backup_uid, "the files are this backup's");
}

/// A backup `b` in a new namespace `name`, held in progress (its Pod created, not run)
/// while the returned guard lives.
async fn backup_in_progress(cluster: &LocalCluster, name: &str) -> (String, PauseGuard) {
    let ns = namespace_with_installation(cluster, name).await;
    let paused = cluster.node.pause();
    create_backup(cluster, &ns, "b");
    backup_pod(cluster, &ns, "b").await;
    (ns, paused)
}

#[tokio::test]
async fn apimanager_deleted_mid_backup_fails_it() {
    let cluster = cluster().await;
    let (ns, _paused) = backup_in_progress(&cluster, "apimanager-gone").await;
    kubectl_ok(&cluster, &["-n", &ns, "delete", "apimanager", "example-apimanager"], "");
    let backup = finished_backup(&cluster, &ns, "b").await;
    assert_eq!(
        failed_condition(&backup),
        (
            "APIManagerNotFound".to_owned(),
            format!("APIManager \"example-apimanager\" does not exist in namespace \"{ns}\" (there are none)")
        )
    );
}

#[tokio::test]
async fn apimanager_leaving_the_scope_mid_backup_fails_it() {
    let cluster = cluster().await;
    let (ns, _paused) = backup_in_progress(&cluster, "out-of-scope").await;
    let patch = r#"{"spec":{"externalComponents":{"system":{"redis":false}}}}"#;
    kubectl_ok(&cluster, &["-n", &ns, "patch", "apimanager", "example-apimanager", "--type=merge", "-p", patch], "");
    let backup = finished_backup(&cluster, &ns, "b").await;
    assert_eq!(
        failed_condition(&backup),
        (
            "OutOfScope".to_owned(),
            "APIManager \"example-apimanager\" is outside the backup scope: its system Redis is not external; backups need \
the system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)"
                .to_owned()
        )
    );
}

#[tokio::test]
async fn a_backup_past_its_timeout_fails_and_keeps_its_pod_with_its_deadline() {
    let mut cluster = cluster().await;
    cluster.restart_operator(&operator_args(&["--backup-timeout=3s"])).await.expect("operator with a short timeout");
    let ns = namespace_with_installation(&cluster, "timeout").await;
    let outcome = {
        let _paused = cluster.node.pause();
        create_backup(&cluster, &ns, "b");
        let pod = backup_pod(&cluster, &ns, "b").await;
        let backup = finished_backup(&cluster, &ns, "b").await;
        let admin = cluster.admin_client().await.expect("client");
        let pods: Api<Pod> = Api::namespaced(admin, &ns);
        let kept = pods.get_opt(&pod.metadata.name.clone().expect("name")).await.expect("get").is_some();
        (failed_condition(&backup), kept, pod.spec.and_then(|s| s.active_deadline_seconds))
    };
    cluster.restart_operator(&operator_args(&[])).await.expect("operator with the default timeout");
    let ((reason, message), kept, deadline) = outcome;
    assert_eq!(reason, "Timeout");
    assert_eq!(message, "the backup did not finish within 3s (--backup-timeout); its Pods are kept for debugging");
    assert!(kept, "the Pod stays for debugging");
    assert!(deadline.is_some_and(|d| (1..=3).contains(&d)), "Pods end with the backup's timeout: {deadline:?}");
}

/// A backup whose every Pod create the API server fails (a 500 from the fault proxy between it and
/// the operator) fails at its timeout naming that error, not as a bare timeout; once the API
/// server answers again, the same operator completes a new backup.
#[tokio::test]
async fn a_persistent_api_error_fails_the_backup_at_its_timeout_naming_the_error() {
    let mut cluster = cluster().await;
    let direct = cluster.operator.kubeconfig.clone();
    let failing: FaultSpec = "errors=100%,kinds=500,on=create:pods".parse().expect("fault spec");
    let proxy = cluster.fault_proxy(None, failing).await.expect("fault proxy");
    let via = cluster.kubeconfig_via(&proxy.url, "operator-persistent-error").expect("kubeconfig");
    let args = operator_args(&["--backup-timeout=10s"]);
    cluster.restart_operator_via(&via, &args).await.expect("the operator behind the proxy, with a short timeout");
    let ns = namespace_with_installation(&cluster, "persistent-error").await;
    // The operator has just started behind the proxy: its webhooks may answer "try again" while
    // their first live read of the new namespace's APIManagers is slow.
    let backup = "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: b\nspec:\n  \
backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n";
    eventually(Duration::from_secs(30), "the backup is admitted", || async {
        kubectl_run(&cluster, &["-n", &ns, "create", "-f", "-"], backup).status.success()
    })
    .await;
    let failed = finished_backup(&cluster, &ns, "b").await;
    let failures = proxy.counts().internal_errors;
    proxy.set(FaultSpec::default());
    create_backup(&cluster, &ns, "after");
    let after = finished_backup(&cluster, &ns, "after").await;
    cluster.restart_operator_via(&direct, &operator_args(&[])).await.expect("the operator as before");

    let uid = failed.metadata.uid.clone().expect("uid");
    assert_eq!(
        failed_condition(&failed),
        (
            "Timeout".to_owned(),
            format!(
                "the backup did not finish within 10s (--backup-timeout); its Pods are kept for debugging; the last \
error was: creating Pod backup-{uid}-0: the API server answered 500 Internal Server Error (ServerError)"
            )
        )
    );
    assert!(failures >= 2, "every Pod create failed, retried with back-off: {failures} failed");
    let status = after.status.expect("status");
    assert_eq!(status.completed, Some(true), "a backup after the fault completes: {:?}", status.conditions);
}

#[tokio::test]
async fn job_service_account_reads_exactly_the_backed_up_objects_while_the_backup_runs() {
    let cluster = cluster().await;
    let sa = "system:serviceaccount:job-rbac:apimanager-backup";
    let allowed = [
        ("get", "secrets/system-seed", "yes"),
        ("get", "secrets/system-redis", "yes"),
        ("get", "configmaps/apicast-environment", "yes"),
        ("get", "apimanagers.apps.3scale.net/example-apimanager", "yes"),
        ("get", "secrets/unrelated", "no"),
        ("list", "secrets", "no"),
        ("get", "apimanagers.apps.3scale.net/other", "no"),
        ("delete", "secrets/system-seed", "no"),
        ("get", "configmaps/kube-root-ca.crt", "no"),
    ];
    let ns = {
        let (ns, _paused) = backup_in_progress(&cluster, "job-rbac").await;
        kubectl_ok(&cluster, &["-n", &ns, "create", "secret", "generic", "unrelated", "--from-literal=k=v"], "");
        assert_can_i(&cluster, &ns, sa, &allowed);
        assert_can_i(&cluster, "default", sa, &[("get", "secrets/system-seed", "no")]);
        ns
    };
    let backup = finished_backup(&cluster, &ns, "b").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
    let revoked: Vec<(&str, &str, &str)> = allowed.iter().map(|(verb, resource, _)| (*verb, *resource, "no")).collect();
    assert_can_i(&cluster, &ns, sa, &revoked);
}

#[tokio::test]
async fn a_started_operator_becomes_ready_within_10s_and_stays_ready() {
    let mut cluster = cluster().await;
    let (ns, paused) = backup_in_progress(&cluster, "ready").await;
    // The API server answers already: only the operator's own start counts.
    cluster.operator.respawn(&operator_args(&[])).expect("operator starts");
    cluster.operator.wait_until_ready(Duration::from_secs(10)).await.expect("ready within 10 s of starting");
    let probe = cluster.operator.readyz_probe().expect("probe");
    for poll in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(probe.check().await, Ok(()), "still ready at poll {poll}");
    }
    drop(paused);
    let backup = finished_backup(&cluster, &ns, "b").await;
    assert_eq!(backup.status.expect("status").completed, Some(true), "the ready operator reconciles");
}

#[tokio::test]
async fn operator_killed_mid_restore_resumes_it_and_completes_it_once() {
    let mut cluster = cluster().await;
    let ns = namespace_with_installation(&cluster, "restore-killed").await;
    create_backup(&cluster, &ns, "nightly");
    assert_eq!(finished_backup(&cluster, &ns, "nightly").await.status.and_then(|s| s.completed), Some(true));
    kubectl_ok(&cluster, &["-n", &ns, "delete", "apimanager", "example-apimanager"], "");
    kubectl_ok(&cluster, &["-n", &ns, "delete", "secret", "zync"], "");
    let admin = cluster.admin_client().await.expect("client");
    let restores: Api<APIManagerRestore> = Api::namespaced(admin.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    {
        let _paused = cluster.node.pause();
        create_restore(&cluster, &ns, "back", "nightly");
        let started = restore_when(&cluster, &ns, "back", |status| status.start_time.is_some()).await;
        let verify = format!("verify-{}-0", started.metadata.uid.clone().expect("uid"));
        eventually(Duration::from_secs(30), "the verify Pod is created", || async {
            pods.get_opt(&verify).await.expect("get pod").is_some()
        })
        .await;
        let pod = pods.get(&verify).await.expect("verify Pod");

        cluster.operator.kill();
        restart_and_wait_for_a_pass_over_each::<APIManagerRestore>(&mut cluster, "restore").await;
        let listed = pods.list(&step_pods()).await.expect("pods").items;
        let restore_pods: Vec<_> =
            listed.iter().filter(|p| p.metadata.name.as_deref() == Some(verify.as_str())).collect();
        assert_eq!(listed.len(), 1, "still the one verify Pod: {listed:?}");
        assert_eq!(restore_pods[0].metadata.uid, pod.metadata.uid, "the same Pod uid, not a new one");
        let after = restores.get("back").await.expect("restore").status.and_then(|s| s.start_time);
        assert_eq!(after, started.status.and_then(|s| s.start_time), "the restore is continued, not restarted");
    }
    let restore = finished_restore(&cluster, &ns, "back").await;
    assert_eq!(restore.status.clone().and_then(|s| s.completed), Some(true), "{:?}", restore.status);
    let reasons = event_reasons(&cluster, &ns, "back");
    assert_eq!(reasons.iter().filter(|r| *r == "JobCreated").count(), 4, "each Pod created once: {reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "RestoreCompleted").count(), 1, "{reasons:?}");
    let series = r#"apimanager_restores_total{outcome="succeeded",reason="RestoreCompleted"}"#;
    assert_eq!(sample(&cluster, series).await, 1.0, "the restarted operator counts it once");
    let secrets: Api<Secret> = Api::namespaced(admin, &ns);
    assert!(secrets.get_opt("zync").await.expect("get").is_some(), "restored by the resumed restore");
}

#[tokio::test]
async fn a_restore_whose_apimanager_never_becomes_available_fails_at_its_timeout() {
    let mut cluster = cluster().await;
    cluster.restart_operator(&operator_args(&["--restore-timeout=20s"])).await.expect("operator with a short timeout");
    let ns = namespace_never_available(&cluster, "restore-timeout");
    threescale_operator_backup_claim(&cluster, &ns, "threescale-nightly").await;
    create_restore(&cluster, &ns, "back", "threescale-nightly");
    let waiting = restore_when(&cluster, &ns, "back", |status| {
        status.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "WaitingForAPIManager")
    })
    .await;
    assert_eq!(waiting.status.and_then(|s| s.main_steps_completed), None);
    // Nothing changes from here on: only the requeue at the deadline ends the wait.
    let restore = finished_restore(&cluster, &ns, "back").await;
    cluster.restart_operator(&operator_args(&[])).await.expect("operator with the default timeout");
    let failed = restore.status.clone().expect("status");
    let failed = failed.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed condition");
    assert_eq!(
        (failed.reason.as_str(), failed.message.as_str()),
        ("Timeout", "the restore did not finish within 20s (--restore-timeout); its Pods are kept for debugging")
    );
    let uid = restore.metadata.uid.clone().expect("uid");
    let pods = kubectl_ok(
        &cluster,
        &["-n", &ns, "get", "pods", "-l", &format!("apps.3scale.net/step-job=verify-{uid}"), "-o", "name"],
        "",
    );
    assert_eq!(pods.trim(), format!("pod/verify-{uid}-0"), "the Pods stay for debugging");
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_its_backoff_and_the_second_attempt_completes_the_backup() {
    let mut cluster = cluster().await;
    cluster.restart_operator(&operator_args(&["--job-backoff-limit=1"])).await.expect("operator allowing one retry");
    let ns = namespace_with_installation(&cluster, "retry").await;
    let admin = cluster.admin_client().await.expect("client");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let seed = secrets.get("system-seed").await.expect("system-seed");
    secrets.delete("system-seed", &Default::default()).await.expect("delete system-seed");
    create_backup(&cluster, &ns, "b");
    let first = backup_pod(&cluster, &ns, "b").await;
    let first_name = first.metadata.name.clone().expect("name");
    let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
    let ready_message = || async {
        let status = backups.get("b").await.expect("backup").status.unwrap_or_default();
        status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default()
    };
    let backing_off = format!(
        "exporting Secrets, ConfigMaps and the APIManager (Pod {first_name} failed; the next attempt starts 10s after its end)"
    );
    eventually(Duration::from_secs(30), "the backup waits out the back-off after the failed attempt", || async {
        ready_message().await == backing_off
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(admin, &ns);
    let failed = pods.get(&first_name).await.expect("the failed attempt's Pod");
    assert_eq!(failed.status.and_then(|s| s.phase).as_deref(), Some("Failed"));
    let mut restored = Secret { data: seed.data, type_: seed.type_, ..Default::default() };
    restored.metadata.name = Some("system-seed".to_owned());
    secrets.create(&Default::default(), &restored).await.expect("system-seed again");

    let backup = finished_backup(&cluster, &ns, "b").await;
    let outcome = (backup.status.clone().and_then(|s| s.completed), event_reasons(&cluster, &ns, "b"));
    let remaining = pods.list(&step_pods()).await.expect("pods").items.len();
    cluster.restart_operator(&operator_args(&[])).await.expect("operator with the default back-off limit");
    let (completed, reasons) = outcome;
    assert_eq!(completed, Some(true), "{:?}", backup.status);
    let created = reasons.iter().filter(|r| *r == "JobCreated").count();
    assert_eq!(created, 2, "attempt 0, then attempt 1: {reasons:?}");
    assert_eq!(remaining, 0, "both attempts' Pods are deleted once the backup has completed");
    let manifest =
        apimanager_backup_operator::job::manifest::Manifest::load(&cluster.volume(&ns, "b")).expect("manifest");
    assert!(manifest.files.iter().any(|f| f.path == "secrets/system-seed.json"), "the second attempt exported it");
}
