//! The step machine, branch by branch, against the in-memory API server of [`super::super::fake_api`].

use super::*;
use crate::api::apimanager::APIManager;
use crate::api::backup::{APIManagerBackup, APIManagerBackupStatus};
use crate::reconcile::fake_api::{FakeApi, Fault};
use crate::reconcile::fixtures::{
    APIMANAGERS, BACKUP_UID, CLAIMS, JOBS, NAMESPACE, PODS, ROLE_BINDINGS, ROLES, Watches, apimanager, backup, events,
    finish_job, metric, watched_context,
};
use crate::reconcile::{ErrorKind, ReconcileSettings, error_policy};
use serde_json::{Value, json};

const BACKUPS: &str = "/apis/apps.3scale.net/v1alpha1/namespaces/3scale/apimanagerbackups";

fn backup_job() -> String {
    format!("backup-{BACKUP_UID}")
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
    assert!(fake.names(ROLE_BINDINGS).is_empty() && fake.names(ROLES).is_empty(), "the Jobs' RBAC is removed");
    let warning = ("Warning".to_owned(), reason.to_owned(), "Backup".to_owned(), message.to_owned());
    assert!(events(fake).contains(&warning), "a Warning event: {:?}", events(fake));
}

#[tokio::test]
async fn a_new_backup_records_its_start_and_creates_claim_rbac_and_the_backup_job() {
    let (fake, ctx, _) = cluster(json!({}));
    let action = pass(&fake, &ctx).await.expect("pass");
    assert_eq!(action, Action::requeue(Duration::from_secs(3600)));
    let status = status(&fake);
    assert!(status.start_time.is_some());
    assert_eq!(status.api_manager_source_name.as_deref(), Some("example"));
    assert_eq!(status.backup_persistent_volume_claim_name.as_deref(), Some("b"));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(fake.names(CLAIMS), ["b"]);
    assert_eq!(fake.names(JOBS), [backup_job()]);
    assert_eq!(fake.names(ROLES), [format!("apimanager-backup-{BACKUP_UID}")]);
    assert_eq!(fake.names(ROLE_BINDINGS).len(), 2);
    assert_eq!(
        condition(&fake, "Ready"),
        (
            "False".to_owned(),
            "ExportingObjects".to_owned(),
            format!("exporting Secrets, ConfigMaps and the APIManager (Job {})", backup_job())
        )
    );
    let deadline = fake.get(&format!("{JOBS}/{}", backup_job())).expect("job")["spec"]["activeDeadlineSeconds"].clone();
    assert!(deadline.as_i64().is_some_and(|d| (3590..=3600).contains(&d)), "what is left of the timeout: {deadline}");
}

#[tokio::test]
async fn a_pass_over_a_running_job_creates_nothing_and_writes_nothing() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("first pass");
    let before = fake.requests().len();
    pass(&fake, &ctx).await.expect("second pass");
    let writes: Vec<String> = fake.requests()[before..]
        .iter()
        .filter(|r| !r.starts_with("GET ") && !r.contains("/events"))
        .cloned()
        .collect();
    let posts: Vec<&String> = writes.iter().filter(|r| r.starts_with("POST ")).collect();
    assert!(writes.iter().all(|w| w.starts_with("POST ")), "no status write: {writes:?}");
    assert!(posts.iter().all(|p| !p.ends_with("/jobs")), "the Job exists already: {posts:?}");
}

/// The Job controller counts the Job's Pod ready: every init container is done.
fn pod_ready(fake: &FakeApi) {
    let mut job = fake.get(&format!("{JOBS}/{}", backup_job())).expect("the backup Job");
    job["status"] = json!({"active": 1, "ready": 1});
    fake.put(JOBS, job);
}

#[tokio::test]
async fn the_copy_follows_the_export_in_one_job_and_success_cleans_up_and_counts_once() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let job = fake.get(&format!("{JOBS}/{}", backup_job())).expect("one Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], json!("export-objects"));
    assert_eq!(pod["containers"][0]["name"], json!("copy-files"));
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    pod_ready(&fake);
    pass(&fake, &ctx).await.expect("copy");
    assert_eq!(fake.names(JOBS), [backup_job()], "still the one Job");
    assert_eq!(
        condition(&fake, "Ready"),
        (
            "False".to_owned(),
            "CopyingFiles".to_owned(),
            format!("copying the System FileStorage (Job {})", backup_job())
        )
    );
    finish_job(&fake, &backup_job(), json!([{"type": "SuccessCriteriaMet", "status": "True"}]));
    pass(&fake, &ctx).await.expect("the Job controller still releases the Pod");
    assert_eq!(fake.names(JOBS), [backup_job()], "not deleted before it is Complete");
    assert_eq!(status(&fake).completed, None);
    let complete = json!([{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]);
    finish_job(&fake, &backup_job(), complete);
    assert_eq!(pass(&fake, &ctx).await.expect("success"), Action::await_change());
    let status = status(&fake);
    assert_eq!((status.completed, status.main_steps_completed), (Some(true), Some(true)));
    assert!(status.completion_time.is_some());
    assert_eq!(
        condition(&fake, "Ready"),
        ("True".to_owned(), "BackupCompleted".to_owned(), "backup written to PersistentVolumeClaim b".to_owned())
    );
    assert!(fake.names(JOBS).is_empty(), "the Job is deleted");
    assert!(fake.names(ROLES).is_empty() && fake.names(ROLE_BINDINGS).is_empty(), "the Job's RBAC is deleted");
    assert_eq!(fake.names(CLAIMS), ["b"], "the claim stays: it is the backup");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 1"#));
    let published = events(&fake);
    let event = |type_: &str, reason: &str, action: &str, note: String| {
        (type_.to_owned(), reason.to_owned(), action.to_owned(), note)
    };
    let expected = [
        event("Normal", "JobCreated", "RunBackup", format!("created Job {}", backup_job())),
        event("Normal", "BackupCompleted", "Backup", "backup written to PersistentVolumeClaim b".to_owned()),
    ];
    assert_eq!(published, expected, "one JobCreated event for the one Job");
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
    let (fake, ctx, _) = cluster(json!({"fileStorage": {"simpleStorageService": {}}}));
    pass(&fake, &ctx).await.expect("export");
    finish_job(&fake, &backup_job(), json!([{"type": "Complete", "status": "True"}]));
    // mainStepsCompleted is written; the write of `completed` then meets a concurrent writer.
    fake.fail_once(fault("PATCH", "/apimanagerbackups/b/status", 1, 409, "Conflict", "the object has been modified"));
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
    assert_eq!(
        condition(&fake, "Ready").2,
        "backup written to PersistentVolumeClaim b; System FileStorage is in S3, which backups do not copy; back up \
the bucket separately"
    );
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="succeeded"} 1"#), "counted exactly once");
    assert!(metric(&ctx, r#"apimanager_backup_duration_seconds_count{outcome="succeeded"} 1"#));
}

#[tokio::test]
async fn a_refused_job_fails_the_backup_as_refused() {
    let (fake, ctx, _) = cluster(json!({}));
    let quota = "jobs.batch is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1";
    fake.fail_once(fault("POST", "/jobs", 0, 403, "Forbidden", quota));
    assert_eq!(pass(&fake, &ctx).await.expect("a final failure is not an error"), Action::await_change());
    assert_failed(&fake, &ctx, "Refused", &format!("creating Job {}: {quota}", backup_job()));
    pass(&fake, &ctx).await.expect("a pass over a failed backup");
    assert!(metric(&ctx, r#"apimanager_backups_total{outcome="failed"} 1"#), "never counted twice");
}

#[tokio::test]
async fn an_unavailable_api_is_retried_not_failed() {
    let (fake, ctx, _) = cluster(json!({}));
    fake.fail_once(fault("POST", "/jobs", 0, 503, "ServiceUnavailable", "etcd is unavailable"));
    let error = pass(&fake, &ctx).await.expect_err("retried");
    assert_eq!(error.kind(), ErrorKind::Api);
    assert!(status(&fake).conditions.iter().all(|c| c.type_ != "Failed"));
    pass(&fake, &ctx).await.expect("the retry");
    assert_eq!(fake.names(JOBS), [backup_job()]);
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
async fn passes_read_the_job_from_the_watch_fed_store_and_a_job_it_lacks_live() {
    let (fake, ctx, mut watches) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let job_path = format!("{JOBS}/{}", backup_job());
    let read_live = |requests: &[String]| requests.iter().filter(|r| **r == format!("GET {job_path}")).count();
    assert_eq!(read_live(&fake.requests()), 1, "the first pass asks the API server: the store lacks it");
    watches.sees_job(&fake, &backup_job());
    let before = fake.requests().len();
    pass(&fake, &ctx).await.expect("a pass from the store");
    assert_eq!(read_live(&fake.requests()[before..]), 0, "the store answers");
    finish_job(&fake, &backup_job(), json!([{"type": "Complete", "status": "True"}]));
    watches.sees_job(&fake, &backup_job());
    pass(&fake, &ctx).await.expect("success from the store's state");
    assert_eq!(status(&fake).completed, Some(true));
}

#[tokio::test]
async fn an_apimanager_the_store_has_not_seen_yet_is_read_once() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    assert_eq!(apimanager_requests(&fake.requests()), [format!("GET {APIMANAGERS}/example")]);
    assert_eq!(fake.names(JOBS), [backup_job()], "not failed: the live read found it");
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
    assert!(fake.names(JOBS).is_empty(), "no Job writes to it");
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
    assert_eq!(fake.names(JOBS), [backup_job()]);
    assert_eq!(status(&fake).backup_persistent_volume_claim_name.as_deref(), Some("b"));
}

/// The backup Job failed for good, its Pod with `statuses` (init containers' and containers').
fn job_failed_with(fake: &FakeApi, statuses: Value) {
    finish_job(
        fake,
        &backup_job(),
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
    );
    let mut pod = json!({"metadata": {"name": "p1", "namespace": NAMESPACE,
        "labels": {"batch.kubernetes.io/job-name": backup_job()}}, "status": {"phase": "Failed"}});
    json_patch::merge(&mut pod["status"], &statuses);
    fake.put(PODS, pod);
}

fn container_status(name: &str, state: Value) -> Value {
    json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": state})
}

#[tokio::test]
async fn a_failed_job_fails_the_backup_naming_the_failed_step_with_its_termination_message() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let missing = json!({"terminated": {"exitCode": 1, "message": "required objects missing: Secret system-seed"}});
    job_failed_with(
        &fake,
        json!({"initContainerStatuses": [container_status("export-objects", missing)],
            "containerStatuses": [container_status("copy-files", json!({"waiting": {"reason": "PodInitializing"}}))]}),
    );
    pass(&fake, &ctx).await.expect("pass");
    let message = format!(
        "Job {} failed (BackoffLimitExceeded) in step export-objects: required objects missing: Secret system-seed",
        backup_job()
    );
    assert_failed(&fake, &ctx, "JobFailed", &message);
    assert_eq!(fake.names(JOBS), [backup_job()], "the Job stays for debugging");
}

#[tokio::test]
async fn a_failed_copy_is_named_after_a_successful_export() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    let done = json!({"terminated": {"exitCode": 0}});
    let unreadable = json!({"terminated": {"exitCode": 1, "message": "cannot read uploads/a: permission denied"}});
    job_failed_with(
        &fake,
        json!({"initContainerStatuses": [container_status("export-objects", done)],
            "containerStatuses": [container_status("copy-files", unreadable)]}),
    );
    pass(&fake, &ctx).await.expect("pass");
    let message = format!(
        "Job {} failed (BackoffLimitExceeded) in step copy-files: cannot read uploads/a: permission denied",
        backup_job()
    );
    assert_failed(&fake, &ctx, "JobFailed", &message);
}

#[tokio::test]
async fn a_job_stopped_by_its_deadline_is_a_timeout() {
    let (fake, ctx, _) = cluster(json!({}));
    pass(&fake, &ctx).await.expect("export");
    finish_job(&fake, &backup_job(), json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]));
    pass(&fake, &ctx).await.expect("pass");
    assert_failed(
        &fake,
        &ctx,
        "Timeout",
        "the backup did not finish within 1h (--backup-timeout); its Jobs and Pods are kept for debugging",
    );
    assert_eq!(fake.names(JOBS), [backup_job()], "the Job stays for debugging");
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
    assert_eq!(reconcile(Arc::new(done), ctx.clone()).await.expect("pass"), Action::await_change());
    assert_eq!(fake.requests().len(), before);
    assert!(
        metric(&ctx, r#"apimanager_backup_operator_reconcile_duration_seconds_count{controller="backup"} 1"#),
        "every pass is timed"
    );
}

/// The seam: an operation other than a backup, driven by the same machine, with a step after its
/// Job that waits (as a restore waits for its APIManager).
mod seam {
    use super::*;
    use crate::reconcile::status::{OperationStatus, operation_status};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::CustomResource;
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    const DRILLS: &str = "/apis/test.example/v1/namespaces/3scale/drills";

    /// A test operation: one Job, then it waits until `spec.ready`. With `spec.reports`, its Job
    /// reports, and once the report is recorded (condition `Reported`) a second Job follows.
    #[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
    #[kube(group = "test.example", version = "v1", kind = "Drill", namespaced, status = "DrillStatus")]
    pub struct DrillSpec {
        /// What the step after the Job waits for.
        pub ready: bool,
        /// Whether its first Job reports.
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

    impl Operation for Drill {
        type Status = DrillStatus;
        type Plan = ();
        const NOUN: &'static str = "drill";
        const UID_LABEL: &'static str = "test.example/drill-uid";
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
                name: "verify",
                action: "Verify",
                reason: "Verifying",
                doing: "verifying",
                args: Vec::new(),
                claims: Vec::new(),
                service_account: "drill",
                api_access: false,
            };
            let reported = self.status.as_ref().is_some_and(|s| s.progress().is_true(REPORTED));
            let apply = JobStep { name: "apply", action: "Apply", reason: "Applying", ..verify.clone() };
            if reported { vec![verify, apply] } else { vec![verify] }
        }

        fn report_pending(&self, status: &DrillStatus, step: &JobStep) -> bool {
            self.spec.reports && step.name == "verify" && !status.progress().is_true(REPORTED)
        }

        async fn job_succeeded(run: &mut Run<Self>, _: &JobStep, report: StepReport) -> Result<(), Stop> {
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

        fn record_end(_: &Metrics, _: &End<'_>) {}
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

    #[tokio::test]
    async fn another_operation_runs_its_job_then_waits_in_its_step_after_the_jobs() {
        let (fake, ctx, _) = cluster(json!({}));
        put_drill(&fake, json!({"ready": false}), Value::Null);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the Job");
        assert_eq!(fake.names(JOBS), ["verify-drill-uid"]);
        let job = fake.get(&format!("{JOBS}/verify-drill-uid")).expect("job");
        assert_eq!(job["metadata"]["labels"]["test.example/drill-uid"], json!("drill-uid"));
        assert_eq!(job["spec"]["template"]["spec"]["serviceAccountName"], json!("drill"));
        finish_job(&fake, "verify-drill-uid", json!([{"type": "Complete", "status": "True"}]));

        let waiting = reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("waiting");
        assert_eq!(waiting, Action::requeue(Duration::from_secs(10)));
        assert_eq!(ready_reason(&fake), ("False".to_owned(), "Waiting".to_owned()));
        assert_eq!(stored(&fake).status.unwrap_or_default().progress().main_steps_completed, None);

        let mut ready = fake.get(&format!("{DRILLS}/d")).expect("drill");
        ready["spec"]["ready"] = json!(true);
        fake.put(DRILLS, ready);
        assert_eq!(reconcile(Arc::new(stored(&fake)), ctx).await.expect("done"), Action::await_change());
        assert_eq!(ready_reason(&fake), ("True".to_owned(), "DrillCompleted".to_owned()));
        assert!(fake.names(JOBS).is_empty(), "its Job is deleted");
    }

    #[tokio::test]
    async fn a_report_is_recorded_once_and_the_steps_after_it_follow_from_it() {
        let (fake, ctx, _) = cluster(json!({}));
        put_drill(&fake, json!({"ready": true, "reports": true}), Value::Null);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the first Job");
        finish_job(&fake, "verify-drill-uid", json!([{"type": "Complete", "status": "True"}]));
        let report = StepReport::RestoreFiles { files: 2, links: 0, verified: true };
        fake.put(
            PODS,
            json!({"metadata": {"name": "verify-pod", "namespace": NAMESPACE,
                "labels": {"batch.kubernetes.io/job-name": "verify-drill-uid"}},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "verify", "image": "i", "imageID": "",
                "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": report.to_message()}}}]}}),
        );
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the report and the second Job");
        let status = stored(&fake).status.unwrap_or_default().progress();
        let reported = status.conditions.iter().find(|c| c.type_ == REPORTED).expect("the report is recorded");
        assert_eq!(reported.message, report.to_message());
        assert_eq!(fake.names(JOBS), ["apply-drill-uid", "verify-drill-uid"], "a step that follows from the report");
        assert_eq!(ready_reason(&fake), ("False".to_owned(), "Applying".to_owned()));
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("a pass while the second Job runs");
        let pod_lists = fake.requests().iter().filter(|r| r.starts_with(&format!("GET {PODS}"))).count();
        assert_eq!(pod_lists, 1, "a recorded report is never read again");
        finish_job(&fake, "apply-drill-uid", json!([{"type": "Complete", "status": "True"}]));
        assert_eq!(reconcile(Arc::new(stored(&fake)), ctx).await.expect("done"), Action::await_change());
        assert_eq!(ready_reason(&fake), ("True".to_owned(), "DrillCompleted".to_owned()));
        assert!(fake.names(JOBS).is_empty(), "both Jobs are deleted");
    }

    #[tokio::test]
    async fn a_job_without_its_report_fails_the_operation() {
        let (fake, ctx, _) = cluster(json!({}));
        put_drill(&fake, json!({"ready": true, "reports": true}), Value::Null);
        reconcile(Arc::new(stored(&fake)), ctx.clone()).await.expect("the first Job");
        finish_job(&fake, "verify-drill-uid", json!([{"type": "Complete", "status": "True"}]));
        reconcile(Arc::new(stored(&fake)), ctx).await.expect("a final failure");
        assert_eq!(ready_reason(&fake), ("False".to_owned(), "Unreported".to_owned()));
        assert_eq!(fake.names(JOBS), ["verify-drill-uid"], "no step after it, the Job kept for debugging");
    }

    #[tokio::test]
    async fn waiting_after_the_jobs_ends_with_the_timeout() {
        let (fake, ctx, _) = cluster(json!({}));
        put_drill(&fake, json!({"ready": false}), json!({"startTime": "2020-01-01T00:00:00Z"}));
        fake.put(
            JOBS,
            json!({"metadata": {"name": "verify-drill-uid", "namespace": NAMESPACE},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
        );
        reconcile(Arc::new(stored(&fake)), ctx).await.expect("a final failure");
        let status = stored(&fake).status.unwrap_or_default().progress();
        let failed = status.conditions.iter().find(|c| c.type_ == FAILED).expect("Failed");
        assert_eq!(
            (failed.reason.as_str(), failed.message.as_str()),
            (
                "Timeout",
                "the drill did not finish within 1h (--drill-timeout); its Jobs and Pods are kept for debugging"
            )
        );
    }
}
