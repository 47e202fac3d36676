//! A restore's steps against the in-memory API server of [`crate::reconcile::fake_api`]: each step Pod
//! in turn, the reports they leave, the claim, the wait for the APIManager and every way it ends.

use super::*;
use crate::api::apimanager::SystemStorageClaim;
use crate::job::report::BackedUpApiManager;
use crate::names::{RESTORE_APIMANAGER, RESTORE_FILES, RESTORE_JOB_CLUSTER_ROLE};
use crate::reconcile::Context;
use crate::reconcile::fake_api::FakeApi;
use crate::reconcile::fixtures::{
    APIMANAGERS, CLAIMS, NAMESPACE, PODS, RESTORE_UID, ROLE_BINDINGS, Watches, events, metric, pod_status, restore,
    watched_context,
};
use crate::reconcile::machine::reconcile;
use serde_json::{Value, json};
use std::sync::Arc;

const RESTORES: &str = "/apis/apps.3scale.net/v1alpha1/namespaces/3scale/apimanagerrestores";
const SERVICE_ACCOUNTS: &str = "/api/v1/namespaces/3scale/serviceaccounts";

/// The Pod of the first attempt of step `step`.
fn job(step: &str) -> String {
    format!("{step}-{RESTORE_UID}-0")
}

/// A fake API server holding restore `r` of claim `nightly`, a context talking to it and its watches.
fn cluster() -> (FakeApi, Arc<Context>, Watches) {
    let (client, fake) = FakeApi::start();
    fake.put(RESTORES, serde_json::to_value(restore(json!({}))).expect("json"));
    let (context, watches) = watched_context(client);
    (fake, context, watches)
}

fn stored(fake: &FakeApi) -> APIManagerRestore {
    serde_json::from_value(fake.get(&format!("{RESTORES}/r")).expect("restore")).expect("a restore")
}

/// One pass, starting from the stored object.
async fn pass(fake: &FakeApi, ctx: &Arc<Context>) -> Action {
    reconcile(Arc::new(stored(fake)), ctx.clone()).await.expect("a pass")
}

fn status(fake: &FakeApi) -> APIManagerRestoreStatus {
    stored(fake).status.unwrap_or_default()
}

/// `(status, reason, message)` of condition `type_`.
fn condition(fake: &FakeApi, type_: &str) -> (String, String, String) {
    let status = status(fake);
    let found = status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_} condition"));
    (found.status.clone(), found.reason.clone(), found.message.clone())
}

fn ready(fake: &FakeApi) -> (String, String) {
    let (status, reason, _) = condition(fake, READY);
    (status, reason)
}

/// Step `step`'s Pod succeeded, leaving `report` (if any) in its termination message, and the watch
/// delivered it.
fn succeed(fake: &FakeApi, watches: &mut Watches, step: &str, report: Option<&StepReport>) {
    let message = report.map(StepReport::to_message).unwrap_or_default();
    pod(fake, watches, step, "Succeeded", 0, &message);
}

/// Step `step`'s Pod ended in `phase`, its container with `code` and `message`, and the watch
/// delivered it.
fn pod(fake: &FakeApi, watches: &mut Watches, step: &str, phase: &str, code: i32, message: &str) {
    let status = json!({"phase": phase, "containerStatuses": [{"name": step, "image": "i", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": code, "message": message}}}]});
    pod_status(fake, &job(step), status);
    watches.sees_pod(fake, &job(step));
}

fn verified(system_storage: Option<SystemStorageClaim>) -> StepReport {
    StepReport::Verify {
        checked: Checked::Verified { files: 18, links: 1 },
        api_manager: BackedUpApiManager {
            name: "example".into(),
            system_storage,
            file_storage_group: Some(1001),
            file_storage_s3_secret: None,
        },
    }
}

fn nfs_2gi() -> SystemStorageClaim {
    SystemStorageClaim { storage_class_name: Some("nfs".into()), requests: Some("2Gi".into()), volume_name: None }
}

/// The claims `(volume, claim, read-only)` and whether its container mounts a token (the Pod
/// automounts none), of step `step`'s Pod.
fn mounts(fake: &FakeApi, step: &str) -> (Vec<(String, String, bool)>, bool) {
    let stored = fake.get(&format!("{PODS}/{}", job(step))).unwrap_or_else(|| panic!("Pod {step}"));
    let pod = &stored["spec"];
    assert_eq!(pod["automountServiceAccountToken"], json!(false));
    let volumes = pod["volumes"].as_array().expect("volumes");
    let claims = volumes
        .iter()
        .filter(|v| v.get("persistentVolumeClaim").is_some())
        .map(|v| {
            let claim = &v["persistentVolumeClaim"];
            let name = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (name(&v["name"]), name(&claim["claimName"]), claim["readOnly"] == json!(true))
        })
        .collect();
    let token_volumes: Vec<&Value> = volumes
        .iter()
        .filter(|v| v["projected"]["sources"][0].get("serviceAccountToken").is_some())
        .map(|v| &v["name"])
        .collect();
    let mounted = pod["containers"][0]["volumeMounts"].as_array().expect("mounts");
    (claims, mounted.iter().any(|m| token_volumes.contains(&&m["name"])))
}

fn apimanager_available(fake: &FakeApi, available: &str) {
    fake.put(
        APIMANAGERS,
        json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager",
            "metadata": {"name": "example", "namespace": NAMESPACE}, "spec": {},
            "status": {"conditions": [{"type": "Available", "status": available}]}}),
    );
}

#[tokio::test]
async fn a_restore_runs_its_four_step_pods_in_turn_then_waits_for_the_apimanager() {
    let (fake, ctx, mut watches) = cluster();
    pass(&fake, &ctx).await;
    assert_eq!(fake.names(PODS), [job(VERIFY)], "verify first, alone");
    assert_eq!(ready(&fake), ("False".to_owned(), "Verifying".to_owned()));
    assert_eq!(mounts(&fake, VERIFY), (vec![("backup".into(), "nightly".into(), true)], false));
    assert_eq!(fake.names(SERVICE_ACCOUNTS), [RESTORE_SERVICE_ACCOUNT]);
    let binding = fake.get(&format!("{ROLE_BINDINGS}/apimanager-restore-{RESTORE_UID}")).expect("binding");
    assert_eq!(binding["roleRef"]["name"], json!(RESTORE_JOB_CLUSTER_ROLE));
    assert_eq!(binding["subjects"][0]["name"], json!(RESTORE_SERVICE_ACCOUNT));

    succeed(&fake, &mut watches, VERIFY, Some(&verified(Some(nfs_2gi()))));
    pass(&fake, &ctx).await;
    let recorded = status(&fake);
    assert_eq!(recorded.api_manager_to_restore_ref.map(|r| r.name).as_deref(), Some("example"));
    assert_eq!(recorded.system_storage_claim_name.as_deref(), Some("system-storage"));
    assert_eq!(
        condition(&fake, VERIFIED),
        ("True".to_owned(), "Verified".to_owned(), "the backup matches manifest.json: 18 files and 1 link".to_owned())
    );
    let claim = fake.get(&format!("{CLAIMS}/system-storage")).expect("the system-storage claim");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], json!("2Gi"));
    assert_eq!(claim["spec"]["storageClassName"], json!("nfs"));
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteMany"]));
    assert_eq!(claim["metadata"].get("ownerReferences"), None, "the claim belongs to the installation");
    assert_eq!(ready(&fake), ("False".to_owned(), "RestoringObjects".to_owned()));
    assert_eq!(mounts(&fake, RESTORE_OBJECTS), (vec![("backup".into(), "nightly".into(), true)], true));

    let objects =
        StepReport::RestoreObjects { created: vec!["Secret system-seed".into()], kept: vec!["Secret zync".into()] };
    succeed(&fake, &mut watches, RESTORE_OBJECTS, Some(&objects));
    pass(&fake, &ctx).await;
    assert_eq!(status(&fake).kept_objects, Some(vec!["Secret zync".to_owned()]));
    assert_eq!(ready(&fake), ("False".to_owned(), "RestoringFiles".to_owned()));
    let files_mounts =
        vec![("backup".into(), "nightly".into(), true), ("system-storage".into(), "system-storage".into(), false)];
    assert_eq!(mounts(&fake, RESTORE_FILES), (files_mounts, false), "the files step gets no token");

    succeed(&fake, &mut watches, RESTORE_FILES, None);
    pass(&fake, &ctx).await;
    assert_eq!(ready(&fake), ("False".to_owned(), "RestoringAPIManager".to_owned()));
    assert!(mounts(&fake, RESTORE_APIMANAGER).1, "the APIManager step gets a token");

    succeed(&fake, &mut watches, RESTORE_APIMANAGER, None);
    apimanager_available(&fake, "False");
    let waiting = pass(&fake, &ctx).await;
    assert!(waiting != Action::await_change(), "the timeout still applies while waiting");
    assert_eq!(
        condition(&fake, READY),
        (
            "False".to_owned(),
            WAITING.to_owned(),
            "waiting until APIManager example reports itself Available".to_owned()
        )
    );
    assert_eq!(status(&fake).main_steps_completed, None);
    assert_eq!(fake.names(PODS).len(), 4, "the Pods stay until the end");

    apimanager_available(&fake, "True");
    assert_eq!(pass(&fake, &ctx).await, Action::await_change());
    let done = status(&fake);
    assert_eq!((done.completed, done.main_steps_completed), (Some(true), Some(true)));
    let message = "APIManager example restored from PersistentVolumeClaim nightly and available; these existed \
already and were left as they were: Secret zync";
    assert_eq!(condition(&fake, READY), ("True".to_owned(), "RestoreCompleted".to_owned(), message.to_owned()));
    assert!(fake.names(PODS).is_empty(), "the Pods are deleted");
    assert!(fake.names(ROLE_BINDINGS).is_empty(), "the Pods' access is removed");
    assert_eq!(fake.names(CLAIMS), ["system-storage"], "the claim stays");
    assert!(metric(&ctx, r#"apimanager_restores_total{outcome="succeeded",reason="RestoreCompleted"} 1"#));
    assert!(metric(&ctx, r#"apimanager_restore_duration_seconds_count{outcome="succeeded"} 1"#));
    let completed = ("Normal".to_owned(), "RestoreCompleted".to_owned(), "Restore".to_owned(), message.to_owned());
    assert!(events(&fake).contains(&completed), "{:?}", events(&fake));
    let created: Vec<String> = events(&fake).into_iter().filter(|e| e.1 == "JobCreated").map(|e| e.2).collect();
    assert_eq!(created, ["Verify", "RestoreObjects", "RestoreFiles", "RestoreAPIManager"]);

    pass(&fake, &ctx).await;
    assert!(metric(&ctx, r#"apimanager_restores_total{outcome="succeeded",reason="RestoreCompleted"} 1"#), "once");
}

#[tokio::test]
async fn each_report_is_read_once_and_a_restart_continues_from_status() {
    let (fake, ctx, mut watches) = cluster();
    pass(&fake, &ctx).await;
    succeed(&fake, &mut watches, VERIFY, Some(&verified(None)));
    pass(&fake, &ctx).await;
    assert_eq!(status(&fake).api_manager_to_restore_ref.map(|r| r.name).as_deref(), Some("example"));
    // A new operator (another context, nothing remembered) goes on from status and its watches.
    let (restarted, mut rewatched) = watched_context(ctx.client.clone());
    for pod in fake.names(PODS) {
        rewatched.sees_pod(&fake, &pod);
    }
    let before = fake.requests().len();
    pass(&fake, &restarted).await;
    pass(&fake, &restarted).await;
    let writes: Vec<String> = fake.requests()[before..].iter().filter(|r| !r.starts_with("GET ")).cloned().collect();
    assert_eq!(writes, Vec::<String>::new(), "recorded reports are never recorded again, nothing created twice");
    assert_eq!(fake.names(PODS), [job(RESTORE_OBJECTS), job(VERIFY)]);
    let creates = fake.requests().iter().filter(|r| *r == &format!("POST {PODS}")).count();
    assert_eq!(creates, 2, "each Pod created once");
}

#[tokio::test]
async fn a_backup_without_manifest_in_s3_is_restored_unchecked_and_without_a_files_step() {
    let (fake, ctx, mut watches) = cluster();
    pass(&fake, &ctx).await;
    let report = StepReport::Verify {
        checked: Checked::NoManifest,
        api_manager: BackedUpApiManager {
            name: "example".into(),
            system_storage: None,
            file_storage_group: None,
            file_storage_s3_secret: None,
        },
    };
    succeed(&fake, &mut watches, VERIFY, Some(&report));
    pass(&fake, &ctx).await;
    assert_eq!(
        condition(&fake, VERIFIED),
        (
            "False".to_owned(),
            "NoManifest".to_owned(),
            "the backup has no manifest.json (3scale-operator's layout), so it could not be verified; it is restored \
unchecked"
                .to_owned()
        )
    );
    assert!(fake.names(CLAIMS).is_empty(), "no claim for files in S3");
    succeed(&fake, &mut watches, RESTORE_OBJECTS, Some(&StepReport::RestoreObjects { created: vec![], kept: vec![] }));
    pass(&fake, &ctx).await;
    assert_eq!(fake.names(PODS), [job(RESTORE_APIMANAGER), job(RESTORE_OBJECTS), job(VERIFY)], "no files step");
    succeed(&fake, &mut watches, RESTORE_APIMANAGER, None);
    apimanager_available(&fake, "True");
    pass(&fake, &ctx).await;
    assert_eq!(
        condition(&fake, READY).2,
        "APIManager example restored from PersistentVolumeClaim nightly and available"
    );
}

#[tokio::test]
async fn an_existing_system_storage_claim_is_used_as_it_is() {
    let (fake, ctx, mut watches) = cluster();
    fake.put(
        CLAIMS,
        json!({"metadata": {"name": "system-storage", "namespace": NAMESPACE},
        "spec": {"resources": {"requests": {"storage": "5Gi"}}}}),
    );
    pass(&fake, &ctx).await;
    succeed(&fake, &mut watches, VERIFY, Some(&verified(Some(nfs_2gi()))));
    pass(&fake, &ctx).await;
    let claim = fake.get(&format!("{CLAIMS}/system-storage")).expect("claim");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], json!("5Gi"), "never changed");
    assert_eq!(status(&fake).system_storage_claim_name.as_deref(), Some("system-storage"));
}

fn assert_failed(fake: &FakeApi, ctx: &Context, reason: &str, message: &str) {
    assert_eq!(condition(fake, "Failed"), ("True".to_owned(), reason.to_owned(), message.to_owned()));
    assert_eq!(condition(fake, READY), ("False".to_owned(), reason.to_owned(), message.to_owned()));
    assert!(metric(ctx, &format!(r#"apimanager_restores_total{{outcome="failed",reason="{reason}"}} 1"#)));
    assert!(fake.names(ROLE_BINDINGS).is_empty(), "the Pods' access is removed");
    let warning = ("Warning".to_owned(), reason.to_owned(), "Restore".to_owned(), message.to_owned());
    assert!(events(fake).contains(&warning), "{:?}", events(fake));
}

#[tokio::test]
async fn a_backup_failing_verification_fails_the_restore_before_anything_is_written() {
    let (fake, ctx, mut watches) = cluster();
    pass(&fake, &ctx).await;
    let detail = "the backup does not match manifest.json; nothing was restored: system-filestorage-pvc/a.txt: sha256 \
1f…, manifest.json says 9a…";
    let limit = ctx.settings.jobs.backoff_limit;
    let mut attempts = Vec::new();
    for attempt in 0..=limit {
        let name = format!("{VERIFY}-{RESTORE_UID}-{attempt}");
        let mut failed = fake.get(&format!("{PODS}/{}", job(VERIFY))).expect("the first attempt");
        failed["metadata"]["name"] = json!(name);
        failed["status"] = json!({"phase": "Failed", "conditions": [{"type": "Ready", "status": "False",
            "lastTransitionTime": "2020-01-01T00:00:00Z"}], "containerStatuses": [{"name": VERIFY, "image": "i",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "message": detail}}}]});
        fake.put(PODS, failed);
        watches.sees_pod(&fake, &name);
        attempts.push(name);
    }
    pass(&fake, &ctx).await;
    let last = attempts.last().expect("attempts");
    let tries = attempts.len();
    assert_failed(&fake, &ctx, "JobFailed", &format!("Pod {last} failed after {tries} attempts: {detail}"));
    assert_eq!(fake.names(PODS), attempts, "no other step, the Pods kept for debugging");
    assert!(fake.names(CLAIMS).is_empty());
    assert_eq!(status(&fake).api_manager_to_restore_ref, None);
}

#[tokio::test]
async fn a_step_succeeding_without_its_report_fails_the_restore() {
    let (fake, ctx, mut watches) = cluster();
    pass(&fake, &ctx).await;
    succeed(&fake, &mut watches, VERIFY, None);
    pass(&fake, &ctx).await;
    assert_failed(
        &fake,
        &ctx,
        "Unreported",
        &format!(
            "Pod {} succeeded without a readable report in its termination message (the Pod's image may not match \
this operator's version)",
            job(VERIFY)
        ),
    );
}

/// Restore `r` whose step Pods all succeeded, waiting for APIManager `example`.
async fn waiting(fake: &FakeApi, ctx: &Arc<Context>, watches: &mut Watches) {
    pass(fake, ctx).await;
    succeed(fake, watches, VERIFY, Some(&verified(None)));
    pass(fake, ctx).await;
    succeed(fake, watches, RESTORE_OBJECTS, Some(&StepReport::RestoreObjects { created: vec![], kept: vec![] }));
    pass(fake, ctx).await;
    succeed(fake, watches, RESTORE_APIMANAGER, None);
    apimanager_available(fake, "False");
    pass(fake, ctx).await;
    assert_eq!(ready(fake).1, WAITING);
}

#[tokio::test]
async fn the_apimanager_deleted_while_waiting_fails_the_restore() {
    let (fake, ctx, mut watches) = cluster();
    waiting(&fake, &ctx, &mut watches).await;
    fake.remove(&format!("{APIMANAGERS}/example"));
    pass(&fake, &ctx).await;
    assert_failed(
        &fake,
        &ctx,
        "APIManagerDeleted",
        "APIManager example was deleted while the restore waited for it to become available; create a new \
APIManagerRestore to restore it again",
    );
}

#[tokio::test]
async fn an_apimanager_never_available_ends_with_the_restore_timeout() {
    let (fake, ctx, mut watches) = cluster();
    waiting(&fake, &ctx, &mut watches).await;
    let mut late = fake.get(&format!("{RESTORES}/r")).expect("restore");
    late["status"]["startTime"] = json!("2020-01-01T00:00:00Z");
    fake.put(RESTORES, late);
    pass(&fake, &ctx).await;
    assert_failed(
        &fake,
        &ctx,
        "Timeout",
        "the restore did not finish within 30m (--restore-timeout); its Pods are kept for debugging",
    );
}
