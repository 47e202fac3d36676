//! The schedules' controller (on the leader): each pass applies retention to the schedule's
//! finished backups, decides from the status what the schedule does now ([`plan::decide`]), does
//! it (create the run's backup, stop the running one for `Replace`), then writes the status with
//! the `resourceVersion` it read, so a stale pass gets a conflict instead of starting a run twice.
//! Events and run counters follow a successful status write, once per run.
//!
//! A pruned or replaced backup's data goes with it: its claim (named after the backup, holding the
//! backup's UID in its `apiManagerBackupUID` annotation; it has no owner, so deleting the backup
//! alone would leave it) is deleted first, then the backup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::plan::{self, Decision};
use super::retention::{self, Candidate, Outcome};
use super::spec::{self, Settings};
use crate::api::backup::APIManagerBackup;
use crate::api::schedule::{APIManagerBackupSchedule, APIManagerBackupScheduleStatus};
use crate::api::status::{FAILED, READY, set_condition};
use crate::informer::Informer;
use crate::metrics::{Metrics, RunOutcome, ScheduleGauge};
use crate::names::{
    BACKUP_PRUNED, BACKUP_REPLACED, CLAIM_BACKUP_UID, CONTROLLER, INVALID_SCHEDULE, MANAGED_BY, NO_NEXT_RUN,
    RUN_MISSED, RUN_SKIPPED, RUN_STARTED, SCHEDULE_LABEL, SCHEDULED, SCHEDULED_TIME, SUSPENDED,
};
use crate::reconcile::ReconcileError;
use crate::reconcile::events::EventPublisher;
use crate::scope::Namespaces;
use crate::trim;

/// The `controller` label of this controller's reconcile metrics.
pub const NOUN: &str = "schedule";

/// How many next firings the interval gauge looks at.
const INTERVAL_FIRINGS: usize = 16;

/// What the passes share.
pub struct Context {
    client: kube::Client,
    backups: Store<APIManagerBackup>,
    metrics: Arc<Metrics>,
    recorder: EventPublisher,
}

/// The name of the backup of the run scheduled at `scheduled`: `<schedule>-<yyyymmdd>-<hhmm>` (UTC).
pub fn backup_name(schedule: &str, scheduled: Timestamp) -> String {
    format!("{schedule}-{}", scheduled.strftime("%Y%m%d-%H%M"))
}

/// The backup of the run scheduled at `scheduled`: the template's spec, labelled with the
/// schedule's name and owned by it (so it goes when the schedule is deleted; its claim stays).
pub fn backup_for(schedule: &APIManagerBackupSchedule, scheduled: Timestamp) -> APIManagerBackup {
    let mut backup =
        APIManagerBackup::new(&backup_name(&schedule.name_any(), scheduled), schedule.spec.template.clone());
    let meta = &mut backup.metadata;
    meta.namespace = schedule.namespace();
    meta.labels = Some(BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (SCHEDULE_LABEL.to_owned(), schedule.name_any()),
    ]));
    meta.annotations = Some(BTreeMap::from([(SCHEDULED_TIME.to_owned(), scheduled.to_string())]));
    meta.owner_references = schedule.controller_owner_ref(&()).map(|owner| vec![owner]);
    backup
}

/// Whether `backup` is one of `schedule`'s (its label and its owner both say so).
pub fn belongs_to(backup: &APIManagerBackup, schedule: &APIManagerBackupSchedule) -> bool {
    backup.namespace() == schedule.namespace()
        && backup.labels().get(SCHEDULE_LABEL) == Some(&schedule.name_any())
        && schedule.uid().is_some_and(|uid| backup.owner_references().iter().any(|owner| owner.uid == uid))
}

/// Where a backup stands, for retention.
pub fn outcome(backup: &APIManagerBackup) -> Outcome {
    let status = backup.status.as_ref();
    if status.and_then(|s| s.completed) == Some(true) {
        Outcome::Completed
    } else if status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == FAILED && c.status == "True")) {
        Outcome::Failed
    } else {
        Outcome::Running
    }
}

/// The schedule a backup belongs to, by its label (what wakes the schedule when it changes).
fn schedule_of(backup: &APIManagerBackup) -> Option<ObjectRef<APIManagerBackupSchedule>> {
    let name = backup.labels().get(SCHEDULE_LABEL)?;
    Some(ObjectRef::new(name).within(&backup.namespace()?))
}

/// What a pass reports once its status is written.
struct Report {
    type_: EventType,
    reason: &'static str,
    note: String,
    runs: Vec<(RunOutcome, u64)>,
}

impl Report {
    /// An event that also counts `count` runs as `outcome`.
    fn runs(type_: EventType, reason: &'static str, note: String, outcome: RunOutcome, count: u64) -> Self {
        Report { type_, reason, note, runs: vec![(outcome, count)] }
    }
}

/// One pass over one schedule.
struct Pass {
    ctx: Arc<Context>,
    schedule: Arc<APIManagerBackupSchedule>,
    namespace: String,
}

impl Pass {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// The schedule's backups, from the shared cache of backups.
    fn backups(&self) -> Vec<Arc<APIManagerBackup>> {
        self.ctx.backups.state().into_iter().filter(|b| belongs_to(b, &self.schedule)).collect()
    }

    /// Deletes backup `name` (of UID `uid`) and its data: its claim first, then the backup.
    /// Returns whether the backup was still there (a pass after a conflict finds it gone).
    async fn delete_backup(&self, name: &str, uid: &str) -> Result<bool, ReconcileError> {
        let claims: Api<PersistentVolumeClaim> = self.api();
        let claim = claims.get_opt(name).await.map_err(api_error(format!("reading PersistentVolumeClaim {name}")))?;
        if let Some(claim) = claim.filter(|c| c.annotations().get(CLAIM_BACKUP_UID).map(String::as_str) == Some(uid)) {
            let params = DeleteParams { preconditions: Some(uid_precondition(claim.uid())), ..DeleteParams::default() };
            deleted(claims.delete(name, &params).await.map(drop))
                .map_err(api_error(format!("deleting PersistentVolumeClaim {name}")))?;
        }
        let backups: Api<APIManagerBackup> = self.api();
        let params =
            DeleteParams { preconditions: Some(uid_precondition(Some(uid.to_owned()))), ..DeleteParams::default() };
        deleted(backups.delete(name, &params).await.map(drop))
            .map_err(api_error(format!("deleting APIManagerBackup {name}")))
    }

    /// Creates the backup of the run scheduled at `scheduled`; one already there from an earlier
    /// pass (this schedule's) counts as created. Returns its name.
    async fn create_backup(&self, scheduled: Timestamp) -> Result<String, ReconcileError> {
        let backup = backup_for(&self.schedule, scheduled);
        let name = backup.name_any();
        let backups: Api<APIManagerBackup> = self.api();
        match backups.create(&PostParams::default(), &backup).await {
            Ok(_) => Ok(name),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing =
                    backups.get(&name).await.map_err(api_error(format!("reading APIManagerBackup {name}")))?;
                if belongs_to(&existing, &self.schedule) {
                    Ok(name)
                } else {
                    Err(ReconcileError::Api {
                        what: format!(
                            "creating APIManagerBackup {name}: an APIManagerBackup of that name that this schedule did not create exists"
                        ),
                        source: kube::Error::Api(status),
                    })
                }
            }
            Err(error) => Err(api_error(format!("creating APIManagerBackup {name}"))(error)),
        }
    }

    /// Writes `status` if it differs from the stored one, with the `resourceVersion` read.
    async fn write_status(&self, status: &APIManagerBackupScheduleStatus) -> Result<(), ReconcileError> {
        let mut fields = serde_json::to_value(status).unwrap_or_default();
        if let Some(fields) = fields.as_object_mut() {
            // A merge patch keeps what it does not mention: name every field, null to clear it.
            for key in ["lastScheduleTime", "lastSuccessfulTime", "nextScheduleTime", "active", "conditions"] {
                fields.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": self.schedule.resource_version() },
            "status": fields,
        });
        let schedules: Api<APIManagerBackupSchedule> = self.api();
        let name = self.schedule.name_any();
        schedules
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(api_error(format!("writing the status of APIManagerBackupSchedule {name}")))
    }

    async fn publish(&self, type_: EventType, reason: &str, note: String) {
        let regarding: ObjectReference = self.schedule.object_ref(&());
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Schedule".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.ctx.recorder.publish(&event, &regarding).await {
            tracing::warn!(%error, reason, "could not publish an event on the schedule");
        }
    }
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> ReconcileError {
    move |source| ReconcileError::Api { what, source }
}

fn uid_precondition(uid: Option<String>) -> Preconditions {
    Preconditions { uid, resource_version: None }
}

/// Whether a delete deleted something (`false`: already gone, 404).
fn deleted(result: Result<(), kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// One pass over `schedule`.
pub async fn reconcile(schedule: Arc<APIManagerBackupSchedule>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.time_reconcile(NOUN);
    if schedule.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = schedule.namespace().ok_or(ReconcileError::NotNamespaced)?;
    let pass = Pass { ctx, schedule, namespace };
    let now = Timestamp::now();
    let stored = pass.schedule.status.clone().unwrap_or_default();
    let mut status = stored.clone();
    let generation = pass.schedule.meta().generation;
    status.observed_generation = generation;
    let condition_time = Time(now);
    let settings = match spec::settings(&pass.schedule.spec) {
        Ok(settings) => settings,
        Err(errors) => {
            let message: Vec<String> = errors.iter().map(|e| format!("{}: {e}", e.field())).collect();
            status.next_schedule_time = None;
            set_condition(
                &mut status.conditions,
                READY,
                false,
                INVALID_SCHEDULE,
                &message.join("; "),
                generation,
                &condition_time,
            );
            if status != stored {
                pass.write_status(&status).await?;
            }
            return Ok(Action::await_change());
        }
    };
    let mut reports = Vec::new();
    let running = prune(&pass, &settings, now, &mut status).await?;
    let state = plan::State {
        generation: generation.unwrap_or_default(),
        observed_generation: stored.observed_generation,
        suspend: pass.schedule.spec.suspend,
        next_schedule_time: stored.next_schedule_time.as_ref().map(|t| t.0),
        starting_deadline: settings.starting_deadline,
        concurrency: settings.concurrency,
        active: !running.is_empty(),
    };
    status.active = running;
    let decision = plan::decide(&settings.calendar, &state, now);
    act(&pass, decision, &mut status, &mut reports).await?;
    let (ready, reason, message) = match status.next_schedule_time.as_ref() {
        _ if pass.schedule.spec.suspend => {
            (true, SUSPENDED, "suspended: no run starts until spec.suspend is false".to_owned())
        }
        Some(next) => (true, SCHEDULED, format!("next run at {}", next.0)),
        None => (false, NO_NEXT_RUN, "the schedule has no run left before the year 9999".to_owned()),
    };
    set_condition(&mut status.conditions, READY, ready, reason, &message, generation, &condition_time);
    if status != stored {
        pass.write_status(&status).await?;
    }
    let (namespace, name) = (pass.namespace.as_str(), pass.schedule.name_any());
    for report in reports {
        for (outcome, count) in report.runs {
            pass.ctx.metrics.schedule_runs(namespace, &name, outcome, count);
        }
        tracing::info!(schedule = %name, reason = report.reason, note = %report.note, "schedule");
        pass.publish(report.type_, report.reason, report.note).await;
    }
    Ok(match status.next_schedule_time {
        Some(next) => Action::requeue(until(now, next.0)),
        None => Action::await_change(),
    })
}

/// How long from `now` to `then` (nothing when it has passed).
fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Applies retention to the schedule's backups; updates `lastSuccessfulTime`. Returns the names of
/// the backups still running.
async fn prune(
    pass: &Pass,
    settings: &Settings,
    now: Timestamp,
    status: &mut APIManagerBackupScheduleStatus,
) -> Result<Vec<String>, ReconcileError> {
    let backups = pass.backups();
    let candidates: Vec<Candidate> = backups
        .iter()
        .filter_map(|b| {
            let taken = b.creation_timestamp()?.0;
            Some(Candidate { name: b.name_any(), taken, outcome: outcome(b) })
        })
        .collect();
    let newest_success = backups
        .iter()
        .filter(|b| outcome(b) == Outcome::Completed)
        .filter_map(|b| b.status.as_ref()?.completion_time.clone())
        .max_by_key(|t| t.0);
    status.last_successful_time = later(status.last_successful_time.take(), newest_success);
    for pruned in retention::prune(&settings.policy, settings.calendar.zone(), now, &candidates) {
        let uid = backups.iter().find(|b| b.name_any() == pruned.name).and_then(|b| b.uid()).unwrap_or_default();
        if !pass.delete_backup(&pruned.name, &uid).await? {
            continue;
        }
        let note = format!("deleted APIManagerBackup {} and its data: {}", pruned.name, pruned.reason.describe());
        pass.publish(EventType::Normal, BACKUP_PRUNED, note).await;
    }
    Ok(candidates.into_iter().filter(|c| c.outcome == Outcome::Running).map(|c| c.name).collect())
}

/// The later of two optional times.
fn later(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 > a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Does what `decision` says; records it in `status` and what to report in `reports`.
async fn act(
    pass: &Pass,
    decision: Decision,
    status: &mut APIManagerBackupScheduleStatus,
    reports: &mut Vec<Report>,
) -> Result<(), ReconcileError> {
    let missed_report = |missed: u32| {
        let note = format!("{missed} run(s) missed while the operator was not running");
        Report::runs(EventType::Warning, RUN_MISSED, note, RunOutcome::Missed, u64::from(missed))
    };
    match decision {
        Decision::Suspended | Decision::Exhausted => status.next_schedule_time = None,
        Decision::Arm { next } | Decision::Wait { next } => status.next_schedule_time = Some(Time(next)),
        Decision::Start { scheduled, replace, missed, next } => {
            if replace {
                for name in std::mem::take(&mut status.active) {
                    let uid = pass.backups().iter().find(|b| b.name_any() == name).and_then(|b| b.uid());
                    if !pass.delete_backup(&name, &uid.unwrap_or_default()).await? {
                        continue;
                    }
                    let note = format!(
                        "stopped APIManagerBackup {name} and deleted its data for the run scheduled at {scheduled} (concurrencyPolicy Replace)"
                    );
                    reports.push(Report { type_: EventType::Normal, reason: BACKUP_REPLACED, note, runs: Vec::new() });
                }
            }
            let name = pass.create_backup(scheduled).await?;
            if !status.active.contains(&name) {
                status.active.push(name.clone());
            }
            status.last_schedule_time = Some(Time(scheduled));
            status.next_schedule_time = Some(Time(next));
            if missed > 0 {
                reports.push(missed_report(missed));
            }
            let note = format!("created APIManagerBackup {name} for the run scheduled at {scheduled}");
            reports.push(Report::runs(EventType::Normal, RUN_STARTED, note, RunOutcome::Started, 1));
        }
        Decision::Skip { scheduled, missed, next } => {
            status.next_schedule_time = Some(Time(next));
            if missed > 0 {
                reports.push(missed_report(missed));
            }
            let note = format!(
                "skipped the run scheduled at {scheduled}: APIManagerBackup {} is still running (concurrencyPolicy Forbid)",
                status.active.join(", ")
            );
            reports.push(Report::runs(EventType::Warning, RUN_SKIPPED, note, RunOutcome::Skipped, 1));
        }
        Decision::Missed { scheduled, missed, next } => {
            status.next_schedule_time = Some(Time(next));
            let note =
                format!("{missed} run(s) missed, the latest scheduled at {scheduled}: past startingDeadlineSeconds");
            reports.push(Report {
                type_: EventType::Warning,
                reason: RUN_MISSED,
                note,
                runs: vec![(RunOutcome::Missed, u64::from(missed))],
            });
        }
    }
    Ok(())
}

/// The schedule gauges of the schedules in `store` that are not suspended.
fn gauges(store: &Store<APIManagerBackupSchedule>) -> Vec<ScheduleGauge> {
    let now = Timestamp::now();
    store
        .state()
        .iter()
        .filter(|s| !s.spec.suspend)
        .filter_map(|schedule| {
            let settings = spec::settings(&schedule.spec).ok()?;
            let interval = settings.calendar.longest_interval(now, INTERVAL_FIRINGS)?;
            let success = schedule.status.as_ref().and_then(|s| s.last_successful_time.clone());
            let last_success = success.or_else(|| schedule.creation_timestamp())?;
            Some(ScheduleGauge {
                schedule: (schedule.namespace()?, schedule.name_any()),
                last_success: last_success.0.as_millisecond() as f64 / 1000.0,
                interval: interval.as_secs_f64(),
            })
        })
        .collect()
}

/// Clears the schedule gauges' source when the controller stops (this replica no longer leads).
struct GaugesGuard(Arc<Metrics>);

impl Drop for GaugesGuard {
    fn drop(&mut self) {
        self.0.compute_schedule_gauges_with(None);
    }
}

/// Runs the schedules' controller in `namespaces` until `shutdown` resolves (or the task running
/// it is dropped, when this replica stops leading), its events reported by replica `instance`. The
/// schedules' watch is its own; the backups come from the process's shared watch.
pub async fn run(
    client: kube::Client,
    namespaces: Namespaces,
    metrics: Arc<Metrics>,
    backups: Informer<APIManagerBackup>,
    instance: &str,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (schedules, watch) = Informer::watch(&client, &namespaces, trim::metadata, metrics.clone());
    let store = schedules.store();
    let gauge_store = store.clone();
    metrics.compute_schedule_gauges_with(Some(Box::new(move || gauges(&gauge_store))));
    let _guard = GaugesGuard(metrics.clone());
    let recorder = EventPublisher::new(client.clone(), CONTROLLER, instance);
    let context = Arc::new(Context { client, backups: backups.store(), metrics: metrics.clone(), recorder });
    let controller = Controller::for_shared_stream(schedules.subscribe(), store)
        .watches_shared_stream(backups.subscribe(), |backup| schedule_of(&backup))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|_| std::future::ready(()));
    tokio::select! {
        () = controller => {}
        () = watch.for_each(|_| std::future::ready(())) => {}
    }
    tracing::info!("schedule controller stopped");
}

/// Counts a failed pass and retries after its kind's delay.
fn error_policy(schedule: Arc<APIManagerBackupSchedule>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics.reconcile_error(NOUN, kind.label());
    tracing::warn!(schedule = %ObjectRef::from_obj(schedule.as_ref()), %error, "schedule pass failed; retrying");
    // No count of failures in a row here: every retry waits the first delay of its kind.
    Action::requeue(kind.retry_after(1))
}

#[cfg(test)]
mod tests;
