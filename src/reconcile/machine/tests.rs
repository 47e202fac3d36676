//! The step machine, branch by branch, against the in-memory API server of [`super::super::fake_api`].

use super::*;
use crate::api::apimanager::APIManager;
use crate::api::backup::{APIManagerBackup, APIManagerBackupStatus};
use crate::reconcile::fake_api::{FakeApi, Fault};
use crate::reconcile::fixtures::{
    APIMANAGERS, BACKUP_UID, CLAIMS, NAMESPACE, PODS, ROLE_BINDINGS, ROLES, Watches, apimanager, backup, events,
    metric, pod_status, watched_context,
};
use crate::reconcile::{ErrorKind, ReconcileSettings, error_policy};
use serde_json::{Value, json};

const BACKUPS: &str = "/apis/apps.3scale.net/v1alpha1/namespaces/3scale/apimanagerbackups";

fn backup_job() -> String {
    format!("backup-{BACKUP_UID}")
}

/// The Pod of attempt `attempt` of the backup's step job.
fn backup_pod(attempt: u32) -> String {
    format!("backup-{BACKUP_UID}-{attempt}")
}

/// Pod `name` gets `status` from its node, and the Pod watch delivers it.
fn node(fake: &FakeApi, watches: &mut Watches, name: &str, status: Value) {
    pod_status(fake, name, status);
    watches.sees_pod(fake, name);
}

/// A Pod status of phase `phase` whose containers ended at `finished` (RFC 3339), with
/// `statuses` (init containers' and containers').
fn ended(phase: &str, finished: &str, statuses: Value) -> Value {
    let mut status = json!({"phase": phase, "conditions": [{"type": "Ready", "status": "False",
        "lastTransitionTime": finished}]});
    json_patch::merge(&mut status, &statuses);
    status
}

/// A time `seconds` ago, RFC 3339.
fn ago(seconds: i64) -> String {
    (Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(seconds)).to_string()
}

/// A fake API server holding backup `b` of 1Gi and APIManager `example` with `system` as its
/// `spec.system`, and a context talking to it.
fn cluster(system: Value) -> (FakeApi, Arc<Context>, Watches) {
    let (client, fake) = FakeApi::start();
    fake.put(
        BACKUPS,
        serde_json::to_value(backup(json!({"resources": {"requests": "1Gi"}}), json!({}))).expect("json"),
    );
    fake.put(APIMANAGERS, serde_json::to_value(apimanager(system)).expect("json"));
    let (context, watches) = watched_context(client);
    (fake, context, watches)
}

fn apimanager_named(name: &str) -> APIManager {
    let mut apimanager = apimanager(json!({}));
    apimanager.metadata.name = Some(name.to_owned());
    apimanager
}

/// The requests on APIManagers among `requests`.
fn apimanager_requests(requests: &[String]) -> Vec<String> {
    requests.iter().filter(|r| r.contains("/apimanagers")).cloned().collect()
}

/// One pass, starting from what the controller's cache holds (here: the stored object).
async fn pass(fake: &FakeApi, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    let stored: APIManagerBackup =
        serde_json::from_value(fake.get(&format!("{BACKUPS}/b")).expect("backup")).expect("a backup");
    reconcile(Arc::new(stored), ctx.clone()).await
}

fn status(fake: &FakeApi) -> APIManagerBackupStatus {
    let stored: APIManagerBackup =
        serde_json::from_value(fake.get(&format!("{BACKUPS}/b")).expect("backup")).expect("a backup");
    stored.status.unwrap_or_default()
}

/// `(status, reason, message)` of condition `type_`.
fn condition(fake: &FakeApi, type_: &str) -> (String, String, String) {
    let status = status(fake);
    let found = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_} condition"));
    (found.status.clone(), found.reason.clone(), found.message.clone())
}

fn assert_failed(fake: &FakeApi, ctx: &Context, reason: &str, message: &str) {
    assert_eq!(condition(fake, "Failed"), ("True".to_owned(), reason.to_owned(), message.to_owned()));
    assert_eq!(condition(fake, "Ready"), ("False".to_owned(), reason.to_owned(), message.to_owned()));
    assert!(metric(ctx, r#"apimanager_backups_total{outcome="failed"} 1"#), "counted once");
    assert!(metric(ctx, &format!(r#"apimanager_backup_failures_total{{reason="{reason}"}} 1"#)), "by reason");
    assert!(fake.names(ROLE_BINDINGS).is_empty() && fake.names(ROLES).is_empty(), "the step Pods' RBAC is removed");
    let warning = ("Warning".to_owned(), reason.to_owned(), "Backup".to_owned(), message.to_owned());
    assert!(events(fake).contains(&warning), "a Warning event: {:?}", events(fake));
}

#[tokio::test]
async fn a_new_backup_records_its_start_and_creates_claim_rbac_and_the_first_pod() {
    let (fake, ctx, _) = cluster(json!({}));
    let action = pass(&fake, &ctx).await.expect("pass");
    assert_eq!(action, Action::requeue(Duration::from_secs(3600)));
    let status = status(&fake);
    assert!(status.start_time.is_some());
    assert_eq!(status.api_manager_source_name.as_deref(), Some("example"));
    assert_eq!(status.backup_persistent_volume_claim_name.as_deref(), Some("b"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(fake.names(CLAIMS), ["b"]);
    assert_eq!(fake.names(PODS), [backup_pod(0)]);
    assert_eq!(fake.names(ROLES), [format!("apimanager-backup-{BACKUP_UID}")]);
    assert_eq!(fake.names(ROLE_BINDINGS).len(), 2);
    assert_eq!(
        condition(&fake, "Ready"),
        (
            "False".to_owned(),
            "ExportingObjects".to_owned(),
            format!("exporting Secrets, ConfigMaps and the APIManager (Pod {})", backup_pod(0))
        )
    );
    let pod = fake.get(&format!("{PODS}/{}", backup_pod(0))).expect("pod");
    assert_eq!(pod["metadata"]["labels"]["apps.3scale.net/step-job"], json!(backup_job()));
    assert_eq!(pod["spec"]["restartPolicy"], json!("Never"));
    let deadline = pod["spec"]["activeDeadlineSeconds"].clone();
    assert!(deadline.as_i64().is_some_and(|d| (3590..=3600).contains(&d)), "what is left of the timeout: {deadline}");
}

#[tokio::test]
async fn a_pass_over_a_running_pod_in_the_store_sends_no_request_on_pods_and_writes_nothing() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("first pass");
    node(&fake, &mut watches, &backup_pod(0), json!({"phase": "Pending"}));
    let before = fake.requests().len();
    pass(&fake, &ctx).await.expect("second pass");
    let requests = &fake.requests()[before..];
    let writes: Vec<&String> = requests.iter().filter(|r| !r.starts_with("GET ") && !r.contains("/events")).collect();
    assert!(writes.iter().all(|w| w.starts_with("POST ")), "no status write: {writes:?}");
    assert!(requests.iter().all(|r| !r.contains("/pods")), "the store answers: {requests:?}");
}

/// The Pod is ready: every init container is done, its last container runs.
fn pod_ready(fake: &FakeApi, watches: &mut Watches) {
    let ready = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    node(fake, watches, &backup_pod(0), ready);
}

#[tokio::test]
async fn the_copy_follows_the_export_in_one_pod_and_success_cleans_up_and_counts_once() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let pod = fake.get(&format!("{PODS}/{}", backup_pod(0))).expect("one Pod");
    let spec = &pod["spec"];
    assert_eq!(spec["initContainers"][0]["name"], json!("export-objects"));
    assert_eq!(spec["containers"][0]["name"], json!("copy-files"));
    assert_eq!(spec["automountServiceAccountToken"], json!(false));
    pod_ready(&fake, &mut watches);
    pass(&fake, &ctx).await.expect("copy");
    assert_eq!(fake.names(PODS), [backup_pod(0)], "still the one Pod");
    assert_eq!(
        condition(&fake, "Ready"),
        (
            "False".to_owned(),
            "CopyingFiles".to_owned(),
            format!("copying the System FileStorage (Pod {})", backup_pod(0))
        )
    );
    node(&fake, &mut watches, &backup_pod(0), backup_succeeded());
    assert_eq!(pass(&fake, &ctx).await.expect("success"), Action::await_change());
    let status = status(&fake);
    assert_eq!((status.completed, status.main_steps_completed), (Some(true), Some(true)));
    assert_eq!(status.bytes_written, Some(2048), "the last step's report");
    assert!(status.completion_time.is_some());
    assert_eq!(
        condition(&fake, "Ready"),
        ("True".to_owned(), "BackupCompleted".to_owned(), "backup written to PersistentVolumeClaim b".to_owned())
    );
    assert!(fake.names(PODS).is_empty(), "the Pod is deleted");
    assert!(fake.names(ROLES).is_empty() && fake.names(ROLE_BINDINGS).is_empty(), "the Pod's RBAC is deleted");
    assert_eq!(fake.names(CLAIMS), ["b"], "the claim stays: it is the backup");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 1"#));
    let published = events(&fake);
    let event = |type_: &str, reason: &str, action: &str, note: String| {
        (type_.to_owned(), reason.to_owned(), action.to_owned(), note)
    };
    let expected = [
        event("Normal", "JobCreated", "RunBackup", format!("created Pod {}", backup_pod(0))),
        event("Normal", "BackupCompleted", "Backup", "backup written to PersistentVolumeClaim b".to_owned()),
    ];
    assert_eq!(published, expected, "one JobCreated event for the one Pod");
    pass(&fake, &ctx).await.expect("a pass over a completed backup");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 1"#), "never counted twice");
}

fn fault(
    method: &'static str,
    path_suffix: &str,
    skip: usize,
    code: u16,
    reason: &'static str,
    message: &str,
) -> Fault {
    Fault { method, path_suffix: path_suffix.to_owned(), skip, code, reason, message: message.to_owned() }
}

#[tokio::test]
async fn a_conflict_on_the_final_write_is_retried_and_the_backup_counted_once() {
    let (fake, ctx, mut watches) = cluster(json!({"fileStorage": {"simpleStorageService": {}}}));
    pass(&fake, &ctx).await.expect("export");
    node(&fake, &mut watches, &backup_pod(0), backup_succeeded_at("backup-s3-files"));
    // bytesWritten and mainStepsCompleted are written; the write of `completed` then meets a
    // concurrent writer.
    fake.fail_once(fault("PATCH", "/apimanagerbackups/b/status", 2, 409, "Conflict", "the object has been modified"));
    let error = pass(&fake, &ctx).await.expect_err("the conflict is returned");
    assert_eq!(error.kind(), ErrorKind::Conflict);
    let retry = error_policy(Arc::new(backup(json!({}), json!({}))), &error, ctx.clone());
    assert_eq!(retry, Action::requeue(Duration::from_secs(1)), "a conflict is retried soon");
    assert!(metric(
        &ctx,
        r#"apimanager_backup_operator_reconcile_errors_total{controller="backup",reason="Conflict"} 1"#
    ));
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 0"#), "nothing counted on a failed write");
    assert_eq!((status(&fake).main_steps_completed, status(&fake).completed), (Some(true), None));
    pass(&fake, &ctx).await.expect("the retry");
    pass(&fake, &ctx).await.expect("a late pass");
    assert_eq!(status(&fake).completed, Some(true));
    assert_eq!(condition(&fake, "Ready").2, "backup written to PersistentVolumeClaim b", "no note: S3 is copied");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 1"#), "counted exactly once");
    assert!(metric(&ctx, r#"apimanager_backup_duration_seconds_count{outcome="succeeded"} 1"#));
}

/// One pass, starting from what the controller's cache holds of the stored object: of an ended
/// backup, little more than its name and times ([`crate::trim::backup`]).
async fn cached_pass(fake: &FakeApi, ctx: &Arc<Context>) -> Result<Action, ReconcileError> {
    let mut cached: APIManagerBackup =
        serde_json::from_value(fake.get(&format!("{BACKUPS}/b")).expect("backup")).expect("a backup");
    crate::trim::backup(&mut cached);
    reconcile(Arc::new(cached), ctx.clone()).await
}

/// The `BackupCompleted` events published.
fn completions(fake: &FakeApi) -> usize {
    events(fake).iter().filter(|(_, reason, _, _)| reason == "BackupCompleted").count()
}

// Paused time: the event's tries back off for 6 s in all, at once.
#[tokio::test(start_paused = true)]
async fn an_end_written_but_not_announced_is_announced_once_by_the_replica_taking_over() {
    let (fake, old, mut watches) = cluster(json!({}));
    pass(&fake, &old).await.expect("export");
    node(&fake, &mut watches, &backup_pod(0), backup_succeeded());
    // The final status lands; every try of its event fails, then the leader stops leading.
    for _ in 0..6 {
        fake.fail_once(fault("POST", "/events", 0, 503, "ServiceUnavailable", "etcd is unavailable"));
    }
    let error = pass(&fake, &old).await.expect_err("the end event was not taken");
    assert_eq!(error.kind(), ErrorKind::ServerError, "{error}");
    assert!(error.to_string().starts_with("publishing the BackupCompleted event: "), "{error}");
    assert_eq!(status(&fake).completed, Some(true), "the end is written");
    assert_eq!(completions(&fake), 0);
    let succeeded = r#"apimanager_backups_total{outcome="succeeded"} "#;
    assert!(metric(&old, &format!("{succeeded}0")), "not counted before its event is published");

    // The new leader's first pass over the backup finds it ended a moment ago, unannounced.
    let (new, _) = watched_context(old.client.clone());
    cached_pass(&fake, &new).await.expect("the new leader's pass");
    assert_eq!(
        events(&fake).last(),
        Some(&(
            "Normal".into(),
            "BackupCompleted".into(),
            "Backup".into(),
            "backup written to PersistentVolumeClaim b".into()
        )),
        "announced from the status as stored, not the little the cache keeps"
    );
    assert_eq!(completions(&fake), 1);
    assert!(metric(&new, &format!("{succeeded}1")), "counted by the replica that announced it");
    let before = fake.requests().len();
    cached_pass(&fake, &new).await.expect("a later pass");
    assert_eq!(fake.requests().len(), before, "looked at once");

    // The old leader leads again: what it owes is there already.
    cached_pass(&fake, &old).await.expect("the old leader's pass");
    assert_eq!(completions(&fake), 1, "one completion event");
    assert!(metric(&old, &format!("{succeeded}0")), "counted once over both replicas");
    let before = fake.requests().len();
    cached_pass(&fake, &old).await.expect("a later pass");
    assert_eq!(fake.requests().len(), before, "owed no more");
}

#[tokio::test]
async fn a_replica_looks_once_at_a_recent_end_and_never_at_an_old_one() {
    let (fake, ctx, _) = cluster(json!({}));
    let ended = |minutes: i64| {
        json!({"startTime": ago(minutes * 60 + 30), "completed": true, "completionTime": ago(minutes * 60),
            "conditions": [{"type": "Ready", "status": "True", "reason": "BackupCompleted", "message": "done",
            "lastTransitionTime": ago(minutes * 60)}]})
    };
    fake.put(BACKUPS, serde_json::to_value(backup(json!({}), ended(11))).expect("json"));
    let before = fake.requests().len();
    pass(&fake, &ctx).await.expect("pass");
    assert_eq!(fake.requests().len(), before, "an end of 11 minutes ago was announced long since");

    fake.put(BACKUPS, serde_json::to_value(backup(json!({}), ended(1))).expect("json"));
    pass(&fake, &ctx).await.expect("pass");
    assert_eq!(events(&fake), [("Normal".into(), "BackupCompleted".into(), "Backup".into(), "done".into())]);
    let name = fake.names("/apis/events.k8s.io/v1/namespaces/3scale/events");
    assert_eq!(name, [format!("b.end-{BACKUP_UID}")], "named after the backup alone");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 1"#));
}

#[tokio::test]
async fn a_refused_pod_fails_the_backup_as_refused() {
    let (fake, ctx, _) = cluster(json!({}));
    let quota = format!(
        "pods \"{}\" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0",
        backup_pod(0)
    );
    fake.fail_once(fault("POST", "/pods", 0, 403, "Forbidden", &quota));
    assert_eq!(pass(&fake, &ctx).await.expect("a final failure is not an error"), Action::await_change());
    assert_failed(&fake, &ctx, "Refused", &format!("creating Pod {}: {quota}", backup_pod(0)));
    assert!(fake.names(PODS).is_empty(), "no Pod");
    pass(&fake, &ctx).await.expect("a pass over a failed backup");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="failed"} 1"#), "never counted twice");
}

#[tokio::test]
async fn an_unavailable_api_is_retried_not_failed() {
    let (fake, ctx, _) = cluster(json!({}));
    fake.fail_once(fault("POST", "/pods", 0, 503, "ServiceUnavailable", "etcd is unavailable"));
    let error = pass(&fake, &ctx).await.expect_err("retried");
    assert_eq!(error.kind(), ErrorKind::ServerError);
    assert!(status(&fake).conditions.iter().all(|c| c.type_ != "Failed"));
    pass(&fake, &ctx).await.expect("the retry");
    assert_eq!(fake.names(PODS), [backup_pod(0)]);
}

#[tokio::test]
async fn passes_read_the_apimanager_from_the_watch_fed_store() {
    let (fake, ctx, mut cache) = cluster(json!({}));
    cache.sees(&fake, "example");
    pass(&fake, &ctx).await.expect("export");
    pass(&fake, &ctx).await.expect("a second pass");
    assert_eq!(apimanager_requests(&fake.requests()), Vec::<String>::new(), "the store answers");
    assert_eq!(status(&fake).api_manager_source_name.as_deref(), Some("example"));
}

#[tokio::test]
async fn passes_read_the_pods_from_the_watch_fed_store_and_confirm_one_it_lacks_by_its_create() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let on_pods =
        |requests: &[String]| -> Vec<String> { requests.iter().filter(|r| r.contains("/pods")).cloned().collect() };
    assert_eq!(on_pods(&fake.requests()), [format!("POST {PODS}")], "created without asking first");
    let before = fake.requests().len();
    pass(&fake, &ctx).await.expect("a pass before the watch delivered the Pod");
    let writes: Vec<String> =
        fake.requests()[before..].iter().filter(|r| !r.starts_with("GET ")).cloned().collect::<Vec<_>>();
    assert_eq!(on_pods(&fake.requests()[before..]), Vec::<String>::new(), "this reconciler created it a moment ago");
    assert_eq!(writes, Vec::<String>::new(), "nor are its RBAC objects created again");

    let (restarted, _) = watched_context(ctx.client.clone());
    let before = fake.requests().len();
    pass(&fake, &restarted).await.expect("a restarted operator's pass before its watch delivered the Pod");
    assert_eq!(
        on_pods(&fake.requests()[before..]),
        [format!("POST {PODS}"), format!("GET {PODS}/{}", backup_pod(0))],
        "AlreadyExists, then one read"
    );
    assert_eq!(events(&fake).len(), 1, "one JobCreated event: the second create found the Pod");
    watches.sees_pod(&fake, &backup_pod(0));
    let before = fake.requests().len();
    pass(&fake, &ctx).await.expect("a pass from the store");
    assert_eq!(on_pods(&fake.requests()[before..]), Vec::<String>::new(), "the store answers");
    node(&fake, &mut watches, &backup_pod(0), backup_succeeded());
    pass(&fake, &ctx).await.expect("success from the store's state");
    assert_eq!(status(&fake).completed, Some(true));
}

#[tokio::test]
async fn an_apimanager_the_store_has_not_seen_yet_is_read_once() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    assert_eq!(apimanager_requests(&fake.requests()), [format!("GET {APIMANAGERS}/example")]);
    assert_eq!(fake.names(PODS), [backup_pod(0)], "not failed: the live read found it");
}

#[tokio::test]
async fn an_apimanager_deleted_mid_backup_fails_it() {
    let (fake, ctx, mut cache) = cluster(json!({}));
    cache.sees(&fake, "example");
    pass(&fake, &ctx).await.expect("export");
    fake.put(APIMANAGERS, serde_json::to_value(apimanager_named("other")).expect("json"));
    cache.sees(&fake, "other");
    fake.remove(&format!("{APIMANAGERS}/example"));
    cache.sees_deleted("example");
    pass(&fake, &ctx).await.expect("pass");
    assert_failed(
        &fake,
        &ctx,
        "APIManagerNotFound",
        &format!("APIManager \"example\" does not exist in namespace \"{NAMESPACE}\" (there are: other)"),
    );
}

#[tokio::test]
async fn an_apimanager_leaving_the_scope_fails_the_backup() {
    let (fake, ctx, _) = cluster(json!({}));
    let mut internal = fake.get(&format!("{APIMANAGERS}/example")).expect("apimanager");
    internal["spec"]["externalComponents"]["backend"]["redis"] = json!(false);
    fake.put(APIMANAGERS, internal);
    pass(&fake, &ctx).await.expect("pass");
    assert_failed(
        &fake,
        &ctx,
        "OutOfScope",
        "APIManager \"example\" is outside the backup scope: its backend Redis is not external; backups need the \
system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)",
    );
    assert!(fake.names(CLAIMS).is_empty(), "no claim for a backup out of scope");
}

fn existing_claim(fake: &FakeApi, annotations: Value) {
    fake.put(CLAIMS, json!({"metadata": {"name": "b", "namespace": NAMESPACE, "annotations": annotations}}));
}

#[tokio::test]
async fn a_claim_holding_another_backup_is_never_written_to() {
    let (fake, ctx, _) = cluster(json!({}));
    existing_claim(&fake, json!({"apiManagerBackupUID": "earlier-uid"}));
    pass(&fake, &ctx).await.expect("pass");
    assert_failed(
        &fake,
        &ctx,
        "ClaimInUse",
        "PersistentVolumeClaim b already exists and holds APIManagerBackup UID earlier-uid; it is never overwritten: \
delete it if it is no longer needed, or create this backup under another name",
    );
    assert!(fake.names(PODS).is_empty(), "no Pod writes to it");
}

#[tokio::test]
async fn a_claim_without_the_ownership_annotation_is_never_written_to() {
    let (fake, ctx, _) = cluster(json!({}));
    existing_claim(&fake, json!({}));
    pass(&fake, &ctx).await.expect("pass");
    assert_eq!(condition(&fake, "Failed").1, "ClaimInUse");
    assert!(condition(&fake, "Failed").2.contains("holds something else"));
}

#[tokio::test]
async fn a_claim_left_by_an_earlier_pass_of_this_backup_is_used() {
    let (fake, ctx, _) = cluster(json!({}));
    existing_claim(&fake, json!({"apiManagerBackupUID": BACKUP_UID}));
    pass(&fake, &ctx).await.expect("pass");
    assert_eq!(fake.names(PODS), [backup_pod(0)]);
    assert_eq!(status(&fake).backup_persistent_volume_claim_name.as_deref(), Some("b"));
}

/// Every attempt the back-off limit (2) allows failed long ago, each with `statuses` (init
/// containers' and containers'), and the watch delivered them.
fn every_attempt_failed(fake: &FakeApi, watches: &mut Watches, statuses: &Value) {
    for attempt in 0..3 {
        if fake.get(&format!("{PODS}/{}", backup_pod(attempt))).is_none() {
            let mut pod = fake.get(&format!("{PODS}/{}", backup_pod(0))).expect("the first Pod");
            pod["metadata"]["name"] = json!(backup_pod(attempt));
            fake.put(PODS, pod);
        }
        node(fake, watches, &backup_pod(attempt), ended("Failed", &ago(3600), statuses.clone()));
    }
}

/// A backup Pod that succeeded, its last step (`last`) reporting what the backup wrote.
fn backup_succeeded_at(last: &str) -> Value {
    let report = crate::job::report::StepReport::BackupWritten { bytes: 2048 }.to_message();
    json!({"phase": "Succeeded", "containerStatuses": [container_status(last,
        json!({"terminated": {"exitCode": 0, "message": report}}))]})
}

/// [`backup_succeeded_at`] of a backup whose last step is the copy of a FileStorage claim.
fn backup_succeeded() -> Value {
    backup_succeeded_at("copy-files")
}

fn container_status(name: &str, state: Value) -> Value {
    json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": state})
}

#[tokio::test]
async fn a_failed_attempt_is_retried_after_its_backoff_and_success_deletes_every_attempt() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let failed = json!({"initContainerStatuses": [container_status("export-objects",
        json!({"terminated": {"exitCode": 1, "message": "connection refused", "finishedAt": ago(4)}}))]});
    node(&fake, &mut watches, &backup_pod(0), ended("Failed", &ago(4), failed));
    let action = pass(&fake, &ctx).await.expect("backing off");
    assert!(
        [Action::requeue(Duration::from_secs(6)), Action::requeue(Duration::from_secs(5))].contains(&action),
        "requeued when 10 s after the failure have passed: {action:?}"
    );
    assert_eq!(fake.names(PODS), [backup_pod(0)], "no new attempt before the back-off");
    assert_eq!(
        condition(&fake, "Ready").2,
        format!(
            "exporting Secrets, ConfigMaps and the APIManager (Pod {} failed; the next attempt starts 10s after its end)",
            backup_pod(0)
        )
    );
    node(&fake, &mut watches, &backup_pod(0), ended("Failed", &ago(11), json!({})));
    pass(&fake, &ctx).await.expect("the second attempt");
    assert_eq!(fake.names(PODS), [backup_pod(0), backup_pod(1)]);
    assert_eq!(
        condition(&fake, "Ready").2,
        format!("exporting Secrets, ConfigMaps and the APIManager (Pod {})", backup_pod(1))
    );
    let created: Vec<String> =
        events(&fake).into_iter().filter(|e| e.1 == "JobCreated").map(|(_, _, _, note)| note).collect();
    assert_eq!(created, [format!("created Pod {}", backup_pod(0)), format!("created Pod {}", backup_pod(1))]);
    node(&fake, &mut watches, &backup_pod(1), backup_succeeded());
    assert_eq!(pass(&fake, &ctx).await.expect("success"), Action::await_change());
    assert_eq!(status(&fake).completed, Some(true));
    assert!(fake.names(PODS).is_empty(), "every attempt's Pod is deleted");
}

#[tokio::test]
async fn the_second_failure_doubles_the_backoff() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    every_attempt_failed(&fake, &mut watches, &json!({}));
    let third = backup_pod(2);
    fake.remove(&format!("{PODS}/{third}"));
    watches.sees_pod_deleted(&third);
    node(&fake, &mut watches, &backup_pod(1), ended("Failed", &ago(15), json!({})));
    pass(&fake, &ctx).await.expect("backing off");
    assert!(condition(&fake, "Ready").2.ends_with("failed; the next attempt starts 20s after its end)"));
    assert_eq!(fake.names(PODS).len(), 2, "20 s after the second failure, not 10");
}

#[tokio::test]
async fn a_pod_failing_every_attempt_fails_the_backup_naming_the_failed_step_with_its_termination_message() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let missing = json!({"terminated": {"exitCode": 1, "message": "required objects missing: Secret system-seed"}});
    let statuses = json!({"initContainerStatuses": [container_status("export-objects", missing)],
        "containerStatuses": [container_status("copy-files", json!({"waiting": {"reason": "PodInitializing"}}))]});
    every_attempt_failed(&fake, &mut watches, &statuses);
    pass(&fake, &ctx).await.expect("pass");
    let message = format!(
        "Pod {} failed at step export-objects after 3 attempts: required objects missing: Secret system-seed",
        backup_pod(2)
    );
    assert_failed(&fake, &ctx, "JobFailed", &message);
    assert_eq!(fake.names(PODS), [backup_pod(0), backup_pod(1), backup_pod(2)], "the Pods stay for debugging");
}

#[tokio::test]
async fn a_failed_copy_is_named_after_a_successful_export() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let done = json!({"terminated": {"exitCode": 0}});
    let unreadable = json!({"terminated": {"exitCode": 1, "message": "cannot read uploads/a: permission denied"}});
    let statuses = json!({"initContainerStatuses": [container_status("export-objects", done)],
        "containerStatuses": [container_status("copy-files", unreadable)]});
    every_attempt_failed(&fake, &mut watches, &statuses);
    pass(&fake, &ctx).await.expect("pass");
    let message = format!(
        "Pod {} failed at step copy-files after 3 attempts: cannot read uploads/a: permission denied",
        backup_pod(2)
    );
    assert_failed(&fake, &ctx, "JobFailed", &message);
}

#[tokio::test]
async fn a_pod_stopped_by_its_deadline_is_a_timeout() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let deadline = json!({"phase": "Failed", "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline"});
    node(&fake, &mut watches, &backup_pod(0), deadline);
    pass(&fake, &ctx).await.expect("pass");
    assert_failed(
        &fake,
        &ctx,
        "Timeout",
        "the backup did not finish within 1h (--backup-timeout); its Pods are kept for debugging",
    );
    assert_eq!(fake.names(PODS), [backup_pod(0)], "the Pod stays for debugging, not retried");
}

#[tokio::test]
async fn a_backup_running_past_its_timeout_fails() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let mut stored = fake.get(&format!("{BACKUPS}/b")).expect("backup");
    stored["status"]["startTime"] = json!("2020-01-01T00:00:00Z");
    fake.put(BACKUPS, stored);
    pass(&fake, &ctx).await.expect("pass");
    assert_eq!(condition(&fake, "Failed").1, "Timeout");
}

#[tokio::test]
async fn a_final_backup_in_the_cache_costs_no_request() {
    let (fake, ctx, _) = cluster(json!({}));
    let done = backup(json!({}), json!({"completed": true}));
    let before = fake.requests().len();
    let pass = reconcile(Arc::new(done), ctx.clone());
    // After a start the controller runs a task for every cached object at once (1,000 finished
    // backups: 1,000 tasks); unboxed, a pass's state made each about 9 KiB.
    let size = std::mem::size_of_val(&pass);
    assert!(size <= 256, "the pass of a skipped object holds {size} bytes");
    assert_eq!(pass.await.expect("pass"), Action::await_change());
    assert_eq!(fake.requests().len(), before);
    assert!(
        metric(&ctx, r#"apimanager_backup_operator_reconcile_duration_seconds_count{controller="backup"} 1"#),
        "every pass is timed"
    );
}

/// The seam: an operation other than a backup, driven by the same machine, with a step after its
/// step jobs that waits (as a restore waits for its APIManager).
mod seam {
    use super::*;
    use crate::api::status::{OperationStatus, operation_status};
    use crate::job::{CommonArgs, JobCommand, RestoreArgs};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    const DRILLS: &str = "/apis/test.example/v1/namespaces/3scale/drills";

    /// A test operation: one step Pod, then it waits until `spec.ready`. With `spec.reports`, its
    /// Pod reports, and once the report is recorded (condition `Reported`) a second step follows.
    #[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[kube(group = "test.example", version = "v1", kind = "Drill", namespaced, status = "DrillStatus")]
    pub struct DrillSpec {
        /// What the step after the step Pods waits for.
        pub ready: bool,
        /// Whether its first step reports.
        #[serde(default)]
        pub reports: bool,
    }

    const REPORTED: &str = "Reported";

    /// Only the shared fields.
    #[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
    #[serde(rename_all = "camelCase")]
    pub struct DrillStatus {
        completed: Option<bool>,
        start_time: Option<Time>,
        completion_time: Option<Time>,
        main_steps_completed: Option<bool>,
        #[serde(default)]
        conditions: Vec<Condition>,
        observed_generation: Option<i64>,
    }

    operation_status!(DrillStatus);

    impl StepOwner for Drill {
        const UID_LABEL: &'static str = "test.example/drill-uid";
    }

    impl Operation for Drill {
        type Status = DrillStatus;
        type Plan = ();
        const NOUN: &'static str = "drill";
        const TIMEOUT_FLAG: &'static str = "--drill-timeout";
        const STARTING: &'static str = "starting";
        const SUCCEEDED: &'static str = "DrillCompleted";
        const END_ACTION: &'static str = "Drill";

        fn status(&self) -> Option<&DrillStatus> {
            self.status.as_ref()
        }

        fn timeout(settings: &ReconcileSettings) -> Duration {
            settings.backup_timeout
        }

        async fn prepare(_: &mut Run<Self>) -> Result<(), Stop> {
            Ok(())
        }

        fn job_steps(&self, _: &()) -> Vec<JobStep> {
            let verify = JobStep {
                command: JobCommand::Verify(CommonArgs::at("/backup")),
                action: "Verify",
                reason: "Verifying",
                doing: "verifying",
                claims: Vec::new(),
                secrets: Vec::new(),
                service_account: "drill",
                api_access: false,
            };
            let reported = self.status.as_ref().is_some_and(|s| s.progress().is_true(REPORTED));
            let apply = JobStep {
                command: JobCommand::RestoreApimanager(RestoreArgs {
                    namespace: "3scale".to_owned(),
                    common: CommonArgs::at("/backup"),
                }),
                action: "Apply",
                reason: "Applying",
                ..verify.clone()
            };
            if reported { vec![verify, apply] } else { vec![verify] }
        }

        /// Each step a step job of its own, the one after the report named `apply`.
        fn jobs(&self, plan: &()) -> Vec<StepJob> {
            let job = |step: JobStep| match step.name() {
                "verify" => StepJob::single(step),
                _ => StepJob { name: "apply", action: step.action, init: Vec::new(), main: step },
            };
            self.job_steps(plan).into_iter().map(job).collect()
        }

        fn report_pending(&self, status: &DrillStatus, step: &JobStep) -> bool {
            self.spec.reports && step.name() == "verify" && !status.progress().is_true(REPORTED)
        }

        async fn job_succeeded(run: &mut Run<Self>, _: &JobStep, _: &str, report: StepReport) -> Result<(), Stop> {
            run.condition(REPORTED, true, "Recorded", &report.to_message());
            Ok(())
        }

        async fn after_jobs(run: &mut Run<Self>, _: &()) -> Result<Option<Action>, Stop> {
            if run.object.spec.ready {
                return Ok(None);
            }
            run.condition(READY, false, "Waiting", "waiting until ready");
            Ok(Some(Action::requeue(Duration::from_secs(10))))
        }

        async fn before_jobs(_: &Run<Self>, _: &()) -> Result<(), ReconcileError> {
            Ok(())
        }

        async fn after_end(_: &Run<Self>) -> Result<(), ReconcileError> {
            Ok(())
        }

        fn note(_: &()) -> Option<&'static str> {
            None
        }

        fn success_message(_: &Run<Self>) -> String {
            "drilled".to_owned()
        }

        fn record_end(_: &Context, _: &Self, _: &End<'_>) {}
    }

    /// Stores drill `d` (UID `drill-uid`) with `spec` and `status` (`null`: none yet).
    fn put_drill(fake: &FakeApi, spec: Value, status: Value) {
        fake.put(
            DRILLS,
            json!({"apiVersion": "test.example/v1", "kind": "Drill",
                "metadata": {"name": "d", "namespace": NAMESPACE, "uid": "drill-uid", "generation": 1},
                "spec": spec, "status": status}),
        );
    }

    fn stored(fake: &FakeApi) -> Drill {
        serde_json::from_value(fake.get(&format!("{DRILLS}/d")).expect("drill")).expect("a drill")
    }

    fn ready_reason(fake: &FakeApi) -> (String, String) {
        let status = stored(fake).status.unwrap_or_default().progress();
        let ready = status.conditions.iter().find(|c| c.type_ == READY).expect("Ready");
        (ready.status.clone(), ready.reason.clone())
    }

    const VERIFY_POD: &str = "verify-drill-uid-0";

    #[tokio::test]
    async fn another_operation_runs_its_pod_then_waits_in_its_step_after_the_jobs() {
        let (fake, ctx, mut watches) = cluster(json!({}));
        put_drill(&fake, json!({"ready": false}), Value::Null);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the Pod");
        assert_eq!(fake.names(PODS), [VERIFY_POD]);
        let pod = fake.get(&format!("{PODS}/{VERIFY_POD}")).expect("pod");
        assert_eq!(pod["metadata"]["labels"]["test.example/drill-uid"], json!("drill-uid"));
        assert_eq!(pod["metadata"]["labels"]["apps.3scale.net/step-job"], json!("verify-drill-uid"));
        assert_eq!(pod["spec"]["serviceAccountName"], json!("drill"));
        node(&fake, &mut watches, VERIFY_POD, json!({"phase": "Succeeded"}));

        let waiting = reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("waiting");
        assert_eq!(waiting, Action::requeue(Duration::from_secs(10)));
        assert_eq!(ready_reason(&fake), ("False".to_owned(), "Waiting".to_owned()));
        assert_eq!(stored(&fake).status.unwrap_or_default().progress().main_steps_completed, None);

        let mut ready = fake.get(&format!("{DRILLS}/d")).expect("drill");
        ready["spec"]["ready"] = json!(true);
        fake.put(DRILLS, ready);
        assert_eq!(reconcile(Arc::new(stored(&fake)), ctx).await.expect("done"), Action::await_change());
        assert_eq!(ready_reason(&fake), ("True".to_owned(), "DrillCompleted".to_owned()));
        assert!(fake.names(PODS).is_empty(), "its Pod is deleted");
    }

    #[tokio::test]
    async fn a_report_is_recorded_once_and_the_steps_after_it_follow_from_it() {
        let (fake, ctx, mut watches) = cluster(json!({}));
        put_drill(&fake, json!({"ready": true, "reports": true}), Value::Null);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the first Pod");
        let report = StepReport::RestoreFiles { files: 2, links: 0, verified: true };
        let succeeded = json!({"phase": "Succeeded", "containerStatuses": [{"name": "verify", "image": "i",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": report.to_message()}}}]});
        node(&fake, &mut watches, VERIFY_POD, succeeded);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the report and the second Pod");
        let status = stored(&fake).status.unwrap_or_default().progress();
        let reported = status.conditions.iter().find(|c| c.type_ == REPORTED).expect("the report is recorded");
        assert_eq!(reported.message, report.to_message());
        assert_eq!(fake.names(PODS), ["apply-drill-uid-0", VERIFY_POD], "a step that follows from the report");
        assert_eq!(ready_reason(&fake), ("False".to_owned(), "Applying".to_owned()));
        watches.sees_pod(&fake, "apply-drill-uid-0");
        let before = fake.requests().len();
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("a pass while the second Pod runs");
        let writes: Vec<String> =
            fake.requests()[before..].iter().filter(|r| !r.starts_with("GET ")).cloned().collect();
        assert_eq!(writes, Vec::<String>::new(), "a recorded report is never recorded again");
        node(&fake, &mut watches, "apply-drill-uid-0", json!({"phase": "Succeeded"}));
        assert_eq!(reconcile(Arc::new(stored(&fake)), ctx).await.expect("done"), Action::await_change());
        assert_eq!(ready_reason(&fake), ("True".to_owned(), "DrillCompleted".to_owned()));
        assert!(fake.names(PODS).is_empty(), "both Pods are deleted");
    }

    #[tokio::test]
    async fn a_pod_without_its_report_fails_the_operation() {
        let (fake, ctx, mut watches) = cluster(json!({}));
        put_drill(&fake, json!({"ready": true, "reports": true}), Value::Null);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the first Pod");
        node(&fake, &mut watches, VERIFY_POD, json!({"phase": "Succeeded"}));
        reconcile(Arc::new(stored(&fake)), ctx).await.expect("a final failure");
        assert_eq!(ready_reason(&fake), ("False".to_owned(), "Unreported".to_owned()));
        let failed = stored(&fake).status.unwrap_or_default().progress();
        let failed = failed.conditions.iter().find(|c| c.type_ == FAILED).expect("Failed");
        assert_eq!(
            failed.message,
            format!(
                "Pod {VERIFY_POD} succeeded without a readable report in its termination message (the Pod's image may \
not match this operator's version)"
            )
        );
        assert_eq!(fake.names(PODS), [VERIFY_POD], "no step after it, the Pod kept for debugging");
    }

    #[tokio::test]
    async fn waiting_after_the_jobs_ends_with_the_timeout() {
        let (fake, ctx, mut watches) = cluster(json!({}));
        put_drill(&fake, json!({"ready": false}), json!({"startTime": "2020-01-01T00:00:00Z"}));
        fake.put(
            PODS,
            json!({"metadata": {"name": VERIFY_POD, "namespace": NAMESPACE}, "status": {"phase": "Succeeded"}}),
        );
        watches.sees_pod(&fake, VERIFY_POD);
        reconcile(Arc::new(stored(&fake)), ctx).await.expect("a final failure");
        let status = stored(&fake).status.unwrap_or_default().progress();
        let failed = status.conditions.iter().find(|c| c.type_ == FAILED).expect("Failed");
        assert_eq!(
            (failed.reason.as_str(), failed.message.as_str()),
            ("Timeout", "the drill did not finish within 1h (--drill-timeout); its Pods are kept for debugging")
        );
    }
}

#[tokio::test]
async fn a_pass_on_a_cache_lagging_this_reconcilers_write_waits_for_it_without_a_request() {
    let (fake, ctx, _) = cluster(json!({}));
    let created: APIManagerBackup =
        serde_json::from_value(fake.get(&format!("{BACKUPS}/b")).expect("backup")).expect("a backup");
    pass(&fake, &ctx).await.expect("first pass: reads the backup live, then writes its status");
    let before = fake.requests().len();
    let action = reconcile(Arc::new(created), ctx.clone()).await.expect("a pass on the cache as it was");
    assert_eq!(fake.requests()[before..], [] as [String; 0], "neither read live nor redone");
    assert_eq!(action, Action::requeue(CATCH_UP), "comes back soon should the write's event be lost");
    let reads = |requests: &[String]| requests.iter().filter(|r| **r == format!("GET {BACKUPS}/b")).count();
    pass(&fake, &ctx).await.expect("a pass on the cache holding the write");
    assert_eq!(reads(&fake.requests()[before..]), 0, "the cache is current: no read");
}
