//! Backup schedules end to end on the real control plane, with a schedule of every minute: the
//! first run fires on the minute after creation, never at creation; a suspended schedule runs
//! nothing and resuming it does not run at once; `Forbid` skips (and reports) a run while the
//! previous backup still runs; retention prunes to `keepLast`, the pruned backup's claim and data
//! gone; a leader killed just before a run, the standby runs it exactly once. Waiting for a
//! wall-clock minute is inherent; each wait is computed from the armed time, and the tests wait on
//! status and events, never on fixed sleeps.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::api::schedule::APIManagerBackupSchedule;
use apimanager_backup_operator::local::LocalCluster;
use apimanager_backup_operator::local::forwarder::Forwarder;
use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use apimanager_backup_operator::names::SCHEDULE_LABEL;
use apimanager_backup_operator::schedule::controller::backup_name;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::time::Duration;
use support::cluster::{
    client_as, create_rejected, eventually, kubectl_ok, namespace_with_installation, shared, start_cluster,
};
use support::https::{sample, scrape};

/// Longest a run may start after its minute (the controller's timer, a pass, the create).
const ON_THE_MINUTE: SignedDuration = SignedDuration::from_secs(10);
/// Longest a backup of the sample installation takes on a loaded machine.
const BACKUP_TIME: Duration = Duration::from_secs(90);

fn schedule_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackupSchedule\nmetadata:\n  name: {name}\nspec:\n  schedule: \"* * * * *\"\n  template:\n    backupDestination:\n      persistentVolumeClaim:\n        resources:\n          requests: 1Gi\n{extra}"
    )
}

async fn schedules(cluster: &LocalCluster, ns: &str) -> Api<APIManagerBackupSchedule> {
    Api::namespaced(cluster.admin_client().await.expect("admin client"), ns)
}

async fn backups(cluster: &LocalCluster, ns: &str) -> Api<APIManagerBackup> {
    Api::namespaced(cluster.admin_client().await.expect("admin client"), ns)
}

/// The names of the schedule's backups.
async fn backups_of(api: &Api<APIManagerBackup>, schedule: &str) -> Vec<String> {
    let selector = ListParams::default().labels(&format!("{SCHEDULE_LABEL}={schedule}"));
    let mut names: Vec<String> =
        api.list(&selector).await.expect("backups").items.iter().map(|b| b.name_any()).collect();
    names.sort();
    names
}

/// Polls `check` every 200 ms until it returns something, failing with `what` after `timeout`.
async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the wall clock to reach `at` (a minute boundary is inherent to a minute schedule).
async fn clock_reaches(at: Timestamp) {
    tokio::time::sleep(until(at)).await;
}

/// The schedule's armed time once its status for the current generation shows one.
async fn armed(api: &Api<APIManagerBackupSchedule>, name: &str) -> Timestamp {
    wait_for(Duration::from_secs(30), "the schedule is armed", || async move {
        let schedule = api.get(name).await.expect("schedule");
        let status = schedule.status.unwrap_or_default();
        let current = status.observed_generation == schedule.metadata.generation;
        status.next_schedule_time.map(|t| t.0).filter(|_| current)
    })
    .await
}

/// The events on the schedule with reason `reason`, their notes.
async fn events(cluster: &LocalCluster, ns: &str, schedule: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(cluster.admin_client().await.expect("admin client"), ns);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(schedule))
        .filter_map(|e| e.note)
        .collect()
}

/// The notes of `schedule`'s events of `reason` once there is at least one: the operator
/// records an event after the act it reports, so a test that saw the act waits for its event.
async fn recorded_events(
    cluster: &LocalCluster,
    ns: &str,
    schedule: &str,
    reason: &str,
    within: Duration,
) -> Vec<String> {
    wait_for(within, &format!("a {reason} event of {schedule}"), || async {
        Some(events(cluster, ns, schedule, reason).await).filter(|notes| !notes.is_empty())
    })
    .await
}

/// Waits until backup `name` exists and returns it.
async fn created(api: &Api<APIManagerBackup>, name: &str, within: Duration) -> APIManagerBackup {
    wait_for(within, &format!("backup {name} is created"), || async move { api.get_opt(name).await.expect("backup") })
        .await
}

/// Waits until backup `name` completed.
async fn completed(api: &Api<APIManagerBackup>, name: &str) {
    eventually(BACKUP_TIME, &format!("backup {name} completes"), || async move {
        api.get(name).await.expect("backup").status.and_then(|s| s.completed) == Some(true)
    })
    .await;
}

/// How long until `at` (at least a moment).
fn until(at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default() + Duration::from_millis(100)
}

/// The first whole minute strictly after `t`.
fn next_minute(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second().div_euclid(60) * 60 + 60).expect("time")
}

#[tokio::test]
async fn fires_on_the_minute_not_at_creation_and_prunes_to_keep_last_with_the_data_gone() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "schedule-fires").await;
    let (schedules, backups) = (schedules(cluster, &ns).await, backups(cluster, &ns).await);
    kubectl_ok(
        cluster,
        &["-n", &ns, "create", "-f", "-"],
        &schedule_yaml("every-minute", "  retention:\n    keepLast: 1\n"),
    );
    let created_at = schedules.get("every-minute").await.expect("schedule").creation_timestamp().expect("created").0;

    // Armed for the next minute after the controller saw it; nothing started at creation.
    let first = armed(&schedules, "every-minute").await;
    assert!(first > created_at, "armed {first} after the creation at {created_at}");
    assert_eq!(first.as_second() % 60, 0, "on a minute: {first}");
    assert!(first <= next_minute(created_at) + SignedDuration::from_mins(1), "{first}");
    assert_eq!(backups_of(&backups, "every-minute").await, Vec::<String>::new(), "no run at creation");
    assert!(events(cluster, &ns, "every-minute", "RunStarted").await.is_empty());

    // The run fires on the minute, named after its scheduled time.
    let first_name = backup_name("every-minute", first);
    let backup = created(&backups, &first_name, until(first) + Duration::from_secs(30)).await;
    let started = backup.creation_timestamp().expect("created").0;
    assert!(
        started >= first - SignedDuration::from_secs(1) && started < first + ON_THE_MINUTE,
        "{started} for {first}"
    );
    completed(&backups, &first_name).await;
    let schedule = schedules.get("every-minute").await.expect("schedule");
    let status = schedule.status.expect("status");
    assert_eq!(status.last_schedule_time.map(|t| t.0), Some(first));
    eventually(Duration::from_secs(30), "lastSuccessfulTime follows the completed backup", || async {
        schedules.get("every-minute").await.expect("schedule").status.and_then(|s| s.last_successful_time).is_some()
    })
    .await;
    let notes = recorded_events(cluster, &ns, "every-minute", "RunStarted", Duration::from_secs(30)).await;
    assert_eq!(notes, [format!("created APIManagerBackup {first_name} for the run scheduled at {first}")]);
    // The leader's metrics: the run counted, the last success and the interval the alert compares
    // (the next run may have started and ended meanwhile on a slow machine).
    let last_success = |schedule: APIManagerBackupSchedule| {
        let time = schedule.status.and_then(|s| s.last_successful_time).expect("lastSuccessfulTime");
        time.0.as_second() as f64
    };
    let before = last_success(schedules.get("every-minute").await.expect("schedule"));
    let metrics = scrape(cluster.operator.address(), &cluster.plane.certs.join("ca.crt")).await;
    let after = last_success(schedules.get("every-minute").await.expect("schedule"));
    let series = |name: &str| format!("{name}{{namespace=\"{ns}\",schedule=\"every-minute\"}}");
    let started = format!(
        "apimanager_backup_schedule_runs_total{{namespace=\"{ns}\",outcome=\"started\",schedule=\"every-minute\"}}"
    );
    assert!(sample(&metrics, &started).is_some_and(|runs| runs >= 1.0), "{metrics}");
    let gauge = sample(&metrics, &series("apimanager_backup_schedule_last_success_timestamp_seconds"));
    assert!(gauge.is_some_and(|at| at >= before && at <= after), "{gauge:?} in [{before}, {after}]");
    assert_eq!(sample(&metrics, &series("apimanager_backup_schedule_interval_seconds")), Some(60.0));

    // The next run completes; keepLast 1 prunes the first backup, its claim and its data.
    let second = first + SignedDuration::from_mins(1);
    let second_name = backup_name("every-minute", second);
    created(&backups, &second_name, until(second) + Duration::from_secs(30)).await;
    completed(&backups, &second_name).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin_client().await.expect("client"), &ns);
    let folder = cluster.volume(&ns, &first_name);
    eventually(Duration::from_secs(30), "the first backup, its claim and its files are gone", || {
        let (backups, claims, folder, first_name) = (&backups, &claims, &folder, &first_name);
        async move {
            backups.get_opt(first_name).await.expect("backup").is_none()
                && claims.get_opt(first_name).await.expect("claim").is_none()
                && !folder.exists()
        }
    })
    .await;
    assert!(backups.get_opt(&second_name).await.expect("backup").is_some(), "the newest completed backup stays");
    assert!(cluster.volume(&ns, &second_name).join("manifest.json").exists(), "its data stays");
    let pruned = recorded_events(cluster, &ns, "every-minute", "BackupPruned", Duration::from_secs(30)).await;
    assert!(
        pruned.contains(&format!("deleted APIManagerBackup {first_name} and its data: no retention rule keeps it")),
        "{pruned:?}"
    );
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanagerbackupschedule", "every-minute"], "");
}

#[tokio::test]
async fn a_suspended_schedule_runs_nothing_and_resuming_does_not_run_at_once() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "schedule-suspend").await;
    let (schedules, backups) = (schedules(cluster, &ns).await, backups(cluster, &ns).await);
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &schedule_yaml("paused", "  suspend: true\n"));
    eventually(Duration::from_secs(30), "the schedule reports it is suspended", || async {
        let status = schedules.get("paused").await.expect("schedule").status.unwrap_or_default();
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
        ready.is_some_and(|c| c.reason == "Suspended") && status.next_schedule_time.is_none()
    })
    .await;
    // A whole minute boundary passes: no run.
    clock_reaches(next_minute(Timestamp::now()) + SignedDuration::from_secs(5)).await;
    assert_eq!(backups_of(&backups, "paused").await, Vec::<String>::new(), "nothing runs while suspended");

    // Resumed: armed for the next minute after the resume, nothing at once.
    let patch = serde_json::json!({"spec": {"suspend": false}});
    schedules.patch("paused", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("resume");
    let resumed = Timestamp::now();
    let next = armed(&schedules, "paused").await;
    assert!(next > resumed - SignedDuration::from_secs(1) && next.as_second() % 60 == 0, "{next} after {resumed}");
    assert_eq!(backups_of(&backups, "paused").await, Vec::<String>::new(), "resuming runs nothing at once");
    let name = backup_name("paused", next);
    created(&backups, &name, until(next) + Duration::from_secs(30)).await;
    assert_eq!(backups_of(&backups, "paused").await, std::slice::from_ref(&name));
    completed(&backups, &name).await;
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanagerbackupschedule", "paused"], "");
}

#[tokio::test]
async fn forbid_skips_and_reports_a_run_while_the_previous_backup_runs() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "schedule-forbid").await;
    let (schedules, backups) = (schedules(cluster, &ns).await, backups(cluster, &ns).await);
    // The node holds this namespace's Pods: the first backup stays in progress.
    let paused = cluster.node.pause_in(&ns);
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &schedule_yaml("slow", ""));
    let first = armed(&schedules, "slow").await;
    let first_name = backup_name("slow", first);
    created(&backups, &first_name, until(first) + Duration::from_secs(30)).await;
    let second = first + SignedDuration::from_mins(1);
    let skipped = recorded_events(cluster, &ns, "slow", "RunSkipped", until(second) + Duration::from_secs(30)).await;
    assert_eq!(
        skipped,
        [format!(
            "skipped the run scheduled at {second}: APIManagerBackup {first_name} is still running (concurrencyPolicy Forbid)"
        )]
    );
    assert_eq!(backups_of(&backups, "slow").await, std::slice::from_ref(&first_name), "no second backup");
    let status = schedules.get("slow").await.expect("schedule").status.expect("status");
    assert_eq!(status.active, std::slice::from_ref(&first_name));
    assert_eq!(status.last_schedule_time.map(|t| t.0), Some(first), "a skipped run is not a scheduled one");
    drop(paused);
    completed(&backups, &first_name).await;
    kubectl_ok(
        cluster,
        &["-n", &ns, "patch", "apimanagerbackupschedule", "slow", "--type=merge", "-p", r#"{"spec":{"suspend":true}}"#],
        "",
    );
    eventually(Duration::from_secs(30), "the finished backup leaves status.active", || async {
        schedules.get("slow").await.expect("schedule").status.unwrap_or_default().active.is_empty()
    })
    .await;
}

#[tokio::test]
async fn replace_stops_the_running_backup_and_deletes_its_claim_for_the_new_run() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "schedule-replace").await;
    let (schedules, backups) = (schedules(cluster, &ns).await, backups(cluster, &ns).await);
    let paused = cluster.node.pause_in(&ns);
    kubectl_ok(
        cluster,
        &["-n", &ns, "create", "-f", "-"],
        &schedule_yaml("replacing", "  concurrencyPolicy: Replace\n"),
    );
    let first = armed(&schedules, "replacing").await;
    let first_name = backup_name("replacing", first);
    created(&backups, &first_name, until(first) + Duration::from_secs(30)).await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.admin_client().await.expect("client"), &ns);
    wait_for(Duration::from_secs(30), "the first backup's claim", || {
        let (claims, name) = (&claims, &first_name);
        async move { claims.get_opt(name).await.expect("claim") }
    })
    .await;
    let second = first + SignedDuration::from_mins(1);
    let second_name = backup_name("replacing", second);
    created(&backups, &second_name, until(second) + Duration::from_secs(30)).await;
    eventually(Duration::from_secs(30), "the replaced backup and its claim are gone", || {
        let (backups, claims, name) = (&backups, &claims, &first_name);
        async move {
            backups.get_opt(name).await.expect("backup").is_none()
                && claims.get_opt(name).await.expect("claim").is_none()
        }
    })
    .await;
    let replaced = recorded_events(cluster, &ns, "replacing", "BackupReplaced", Duration::from_secs(30)).await;
    assert_eq!(
        replaced,
        [format!(
            "stopped APIManagerBackup {first_name} and deleted its data for the run scheduled at {second} (concurrencyPolicy Replace)"
        )]
    );
    kubectl_ok(
        cluster,
        &[
            "-n",
            &ns,
            "patch",
            "apimanagerbackupschedule",
            "replacing",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
        "",
    );
    drop(paused);
    completed(&backups, &second_name).await;
}

#[tokio::test]
async fn admission_refuses_a_bad_schedule_with_every_violation_at_once() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "schedule-admission").await;
    let yaml = "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackupSchedule\nmetadata:\n  name: bad\nspec:\n  schedule: \"61 * * * *\"\n  timeZone: Mars/Olympus\n  template:\n    backupDestination:\n      persistentVolumeClaim:\n        resources:\n          requests: 1Gi\n  retention:\n    maxAge: soon\n";
    let refused = create_rejected(&ns, yaml);
    for part in [
        r#"spec.schedule: Invalid value: "61 * * * *": minute field: 61 is out of range 0-59"#,
        r#"spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone: use an IANA name such as Europe/Madrid or UTC"#,
        r#"spec.retention.maxAge: Invalid value: "soon": must be a positive duration such as 720h, 30d or 2w"#,
    ] {
        assert!(refused.contains(part), "{part} in {refused}");
    }
    // The sample `local` applies is admitted.
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/dev/sample-schedule.yaml"))
        .expect("sample schedule");
    kubectl_ok(cluster, &["-n", &ns, "create", "--dry-run=server", "-f", "-"], &sample);
}

#[tokio::test]
async fn the_fence_lets_the_operator_create_only_backups_a_schedule_controls() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "schedule-fence").await;
    let operator =
        client_as(cluster, "system:serviceaccount:apimanager-backup-operator:apimanager-backup-operator").await;
    let backups: Api<APIManagerBackup> = Api::namespaced(operator, &ns);
    let yaml = "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: own\n  labels:\n    app.kubernetes.io/managed-by: apimanager-backup-operator\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n";
    let backup: APIManagerBackup = serde_saphyr::from_str(yaml).expect("backup");
    let refused = backups.create(&kube::api::PostParams::default(), &backup).await.expect_err("refused");
    let kube::Error::Api(status) = refused else { panic!("{refused}") };
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status.message.contains(
            "the apimanager-backup-operator ServiceAccount may create only APIManagerBackups controlled by an APIManagerBackupSchedule"
        ),
        "{}",
        status.message
    );
}

async fn lease_holder(admin: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    leases.get_opt("apimanager-backup-operator").await.expect("Lease")?.spec?.holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_just_before_a_run_the_standby_runs_it_exactly_once() {
    let (mut cluster, dir) = start_cluster("schedule-replicas");
    let ca = cluster.plane.certs.join("ca.crt");
    let mut second = cluster.start_replica(&[]).expect("second replica");
    let forwarder = Forwarder::start(&[cluster.operator.address(), second.address()], &ca).await.expect("forwarder");
    cluster.register_webhooks_at(&forwarder.url).await.expect("webhooks through the forwarder");
    let admin = cluster.admin_client().await.expect("admin client");
    let leader = wait_for(Duration::from_secs(60), "one replica leads", || lease_holder(&admin)).await;
    let first_leads = leader == cluster.operator.name();

    let ns = namespace_with_installation(&cluster, "schedule-takeover").await;
    let (schedules, backups) = (schedules(&cluster, &ns).await, backups(&cluster, &ns).await);
    kubectl_ok(&cluster, &["-n", &ns, "create", "-f", "-"], &schedule_yaml("takeover", ""));
    let mut run = armed(&schedules, "takeover").await;
    // Leave the leader at least 3 seconds before a run: kill it then.
    if run.duration_since(Timestamp::now()) < SignedDuration::from_secs(4) {
        let name = backup_name("takeover", run);
        created(&backups, &name, until(run) + Duration::from_secs(30)).await;
        run += SignedDuration::from_mins(1);
    }
    clock_reaches(run - SignedDuration::from_secs(3)).await;
    if first_leads {
        cluster.operator.kill();
    } else {
        second.kill();
    }
    let killed = Timestamp::now();
    let name = backup_name("takeover", run);
    assert!(backups.get_opt(&name).await.expect("backup").is_none(), "the killed leader did not start the run");
    // The standby takes the Lease after it expires (15 s) and starts the run, once.
    let backup = created(&backups, &name, until(run) + Duration::from_secs(40)).await;
    let started = backup.creation_timestamp().expect("created").0;
    assert!(started > killed + SignedDuration::from_secs(10), "started by the standby after the lease: {started}");
    completed(&backups, &name).await;
    let notes = events(&cluster, &ns, "takeover", "RunStarted").await;
    let for_run = format!("created APIManagerBackup {name} for the run scheduled at {run}");
    assert_eq!(notes.iter().filter(|n| **n == for_run).count(), 1, "{notes:?}");
    let status = schedules.get("takeover").await.expect("schedule").status.expect("status");
    assert!(status.last_schedule_time.as_ref().is_some_and(|t| t.0 >= run), "{status:?}");
    let names = backups_of(&backups, "takeover").await;
    assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{names:?}");
    assert!(names.iter().all(|n| *n <= backup_name("takeover", run + SignedDuration::from_mins(1))), "{names:?}");

    drop(forwarder);
    drop(second);
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
