//! The step machine: drives one operation (a backup or a restore) through its steps, each
//! idempotent and recorded in status, so a restarted operator continues where it stopped.
//!
//! # The seam
//! An operation is a namespaced custom resource implementing [`Operation`]: steps before the step
//! jobs ([`Operation::prepare`], e.g. resolve the APIManager, check the scope, create the claim),
//! then a sequence of job steps ([`Operation::job_steps`], each a [`JobStep`]; [`Operation::jobs`]
//! groups them into step jobs, by default one per step, or several steps in one Pod as init
//! containers), then the steps after them ([`Operation::after_jobs`], e.g. create an object and wait
//! until it is available), RBAC for the step Pods before the first one and removed at the end. A
//! job step may leave a [`StepReport`] in its container's termination message: once its Pod
//! succeeded, [`Operation::job_succeeded`] records it in status (once: [`Operation::report_pending`]
//! says whether it still has to) and may create what the next steps need; the steps are listed
//! again after it, so the step jobs that follow may depend on what was recorded. Each operation has
//! its own status type holding the [`Progress`] fields (`operation_status!` in [`crate::api::status`]
//! implements the accessors), its own [`JobStep`]s and [`Failure`] variants; `machine/tests.rs`
//! drives a test operation besides the backup and the restore. The machine does the rest the same
//! way for every operation:
//! - records the start first, so the timeout always applies;
//! - runs the step jobs one after the other, each attempt one Pod it creates itself
//!   (`<job name>-<attempt>`, see [`super::pods`]) with `activeDeadlineSeconds` = what is left of
//!   the timeout; after a failed attempt, the next one after a back-off of 10 s × 2^(failures − 1)
//!   (at most 6 min) from the failed Pod's end, until more than `--job-backoff-limit` failed. It
//!   reads the Pods from the watch-fed store (never polled): the step shown as running is a Pod's
//!   first until it is ready (every init container done), then its last; a failure names the
//!   failed step (when the Pod runs several) and its termination message; a Pod stopped at its
//!   deadline ends the operation as a timeout; a Pod the API server refuses (Pod Security,
//!   ResourceQuota, the admission fence) ends it as [`Failure::Refused`] at once;
//! - deletes the Pods of every attempt on success, after recording `mainStepsCompleted`; on failure
//!   they stay for `kubectl logs` and go with the operation;
//! - ends in one place: success ([`Run::succeed`]) or a typed [`Failure`] ([`Run::fail`]), each
//!   written to status, published as an event and recorded in the metrics once.
//!
//! Each pass works from the object as stored: from the controller's cache when it holds this
//! reconciler's last read or write, put off while the cache holds a version this reconciler's own
//! write replaced (the write's watch event starts the next pass), else read live ([`super::seen`]). It patches status with the object's
//! `resourceVersion`, so a stale pass gets a conflict instead of redoing or double-counting anything.

use super::ends::Announcement;
use super::events::{NotPublished, Published, end_event_name};
use super::outcome::{Failure, Stop};
use super::pods::{PodFailure, StepState, attempt_name, pod_failure, step_state, success_message};
use super::seen::{CATCH_UP, Freshness};
use super::step::{self, JobStep, StepJob, StepOwner};
use super::{Context, ReconcileError, ReconcileSettings};
use crate::api::status::{FAILED, OperationStatus, Progress, READY, Reason, set_condition};
use crate::job::report::StepReport;
use crate::metrics::{OperationEnd, Outcome};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The API server rejects event notes longer than this.
const EVENT_NOTE_MAX_BYTES: usize = 1024;

/// A namespaced object the API serves, which the machine reads, creates and deletes.
pub trait Namespaced:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned
{
}

/// An operation the machine drives: a custom resource whose status holds a [`Progress`], running a
/// sequence of job steps on a claim.
pub trait Operation: Namespaced + StepOwner + Send + Sync + 'static {
    /// Its status type.
    type Status: OperationStatus;
    /// What [`Operation::prepare`] resolves for the job steps.
    type Plan: Send + Sync;
    /// Its noun in messages ("backup") and the `controller` label of the reconcile metrics.
    const NOUN: &'static str;
    /// The flag setting its timeout, named in the `Timeout` message.
    const TIMEOUT_FLAG: &'static str;
    /// The `Ready` message while the first steps run.
    const STARTING: &'static str;
    /// The `Ready` reason and event reason of success (a [`crate::api::status::Reason`]'s label).
    const SUCCEEDED: &'static str;
    /// The action of the event published when it ends.
    const END_ACTION: &'static str;

    /// Its status, if any.
    fn status(&self) -> Option<&Self::Status>;
    /// How long it may run after its start.
    fn timeout(settings: &ReconcileSettings) -> Duration;
    /// The steps before the step jobs, each idempotent; records what it found in `run.status`.
    fn prepare(run: &mut Run<Self>) -> impl Future<Output = Result<Self::Plan, Stop>> + Send;
    /// The job steps, in order.
    fn job_steps(&self, plan: &Self::Plan) -> Vec<JobStep>;
    /// The step jobs running those steps, in order: one per step unless the operation runs several
    /// steps in one step job (one Pod per attempt, the first steps as init containers).
    fn jobs(&self, plan: &Self::Plan) -> Vec<StepJob> {
        self.job_steps(plan).into_iter().map(StepJob::single).collect()
    }
    /// What the controller's cache keeps of it (see [`crate::trim`]): all but bookkeeping by default.
    fn cached(object: &mut Self) {
        crate::trim::metadata(object);
    }
    /// The steps after the step jobs (e.g. create an object, wait for it), each idempotent: `Some(action)`
    /// while waiting (the timeout still applies), `None` once done. None by default.
    fn after_jobs(run: &mut Run<Self>, plan: &Self::Plan) -> impl Future<Output = Result<Option<Action>, Stop>> + Send {
        let _ = (run, plan);
        async { Ok(None) }
    }
    /// Whether the report of job step `step`, which succeeded, is still to be recorded by
    /// [`Operation::job_succeeded`] (read from what that records in `status`). No step reports by
    /// default.
    fn report_pending(&self, status: &Self::Status, step: &JobStep) -> bool {
        let _ = (status, step);
        false
    }
    /// Records the report job step `step` left in the termination message of its succeeded Pod `pod`, in
    /// `run.status` (written right after, so it is recorded once), and may create what the next
    /// steps need (each may already exist). The job steps are listed again afterwards: they may
    /// depend on what it recorded.
    fn job_succeeded(
        run: &mut Run<Self>,
        step: &JobStep,
        pod: &str,
        report: StepReport,
    ) -> impl Future<Output = Result<(), Stop>> + Send {
        let _ = (run, step, pod, report);
        async { Ok(()) }
    }
    /// Creates what the step Pods need before the first one (RBAC); each object may already exist.
    fn before_jobs(run: &Run<Self>, plan: &Self::Plan) -> impl Future<Output = Result<(), ReconcileError>> + Send;
    /// Removes what only the step Pods needed, once the operation has ended; each may already be gone.
    fn after_end(run: &Run<Self>) -> impl Future<Output = Result<(), ReconcileError>> + Send;
    /// A note added to every `Ready` message (e.g. what is not copied).
    fn note(plan: &Self::Plan) -> Option<&'static str>;
    /// The `Ready` message and event note of success.
    fn success_message(run: &Run<Self>) -> String;
    /// Records the end in the metrics (called once per operation, `object` holding the status
    /// just written).
    fn record_end(ctx: &Context, object: &Self, end: &End<'_>);
}

/// How an operation ended, for [`Operation::record_end`].
#[derive(Debug)]
pub struct End<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Success, or the failure's reason.
    pub outcome: Result<(), Reason>,
    /// From its start to its end.
    pub seconds: f64,
    /// Its end, Unix time.
    pub ended_at_unix: f64,
}

impl End<'_> {
    /// Its outcome and duration, as the metrics record them.
    pub fn metric(&self) -> OperationEnd {
        let outcome = match self.outcome {
            Ok(()) => Outcome::Succeeded,
            Err(reason) => Outcome::Failed(reason.label()),
        };
        OperationEnd { outcome, seconds: self.seconds }
    }
}

/// Reconciles one operation object. The controller runs each pass as a task of its own, and after
/// a start it triggers one for every object at once, most of them ended ones that are skipped here:
/// the state of a pass that does work (several KiB) is therefore boxed, so that the task of a
/// skipped object stays small (docs/design.md, "Memory").
pub async fn reconcile<O: Operation>(cached: Arc<O>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let _timer = ctx.metrics.time_reconcile(O::NOUN);
    if cached.status().is_some_and(|s| s.progress().is_final()) {
        ctx.seen.forget(cached.as_ref());
        Box::pin(settle(&ctx, cached.as_ref(), Written::Cached)).await?;
        return Ok(Action::await_change());
    }
    let uid = cached.uid().unwrap_or_default();
    let passed = Box::pin(work_on(cached, ctx.clone())).await;
    if passed.is_ok() {
        ctx.failures.succeeded(&uid);
    }
    passed
}

/// Reconciles one operation object that has not ended by the cache.
async fn work_on<O: Operation>(cached: Arc<O>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = cached.namespace().ok_or(ReconcileError::NotNamespaced)?;
    let object = match ctx.seen.freshness(cached.as_ref()) {
        Freshness::Current => cached.as_ref().clone(),
        // The watch event of this reconciler's own write starts the next pass once the cache has
        // it; the requeue only bounds the wait should that event be lost.
        Freshness::Behind => return Ok(Action::requeue(CATCH_UP)),
        Freshness::Unknown => {
            let api: Api<O> = Api::namespaced(ctx.client.clone(), &namespace);
            let name = cached.name_any();
            let what = format!("reading {} {name}", O::kind(&()));
            let Some(object) = api.get_opt(&name).await.map_err(api_error(what))? else {
                return Ok(Action::await_change());
            };
            ctx.seen.read(&object);
            object
        }
    };
    let status = object.status().cloned().unwrap_or_default();
    let progress = status.progress();
    if progress.is_final() {
        // A read of this pass: the cache's copy was not final.
        settle(&ctx, &object, Written::Whole).await?;
        return Ok(Action::await_change());
    }
    let mut run = Run { object: Arc::new(object), ctx, namespace, original: status.clone(), status, progress };
    match run.advance().await {
        Ok(action) => Ok(action),
        Err(Stop::Failed(failure)) => run.fail(failure).await,
        Err(Stop::Retry(error)) => Err(error),
    }
}

/// Wraps an API error with what was being done.
pub fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Api { what, source }
}

/// One pass over one operation object.
pub struct Run<O: Operation> {
    /// The object as stored (updated by each status write).
    pub object: Arc<O>,
    /// What every pass shares.
    pub ctx: Arc<Context>,
    /// The object's namespace.
    pub namespace: String,
    /// The status being written (its [`Progress`] is kept in `progress` until written).
    pub status: O::Status,
    /// The shared status fields being written.
    pub progress: Progress,
    original: O::Status,
}

impl<O: Operation> Run<O> {
    /// The API of kind `K` in the object's namespace.
    pub fn api<K: Namespaced>(&self) -> Api<K> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    async fn advance(&mut self) -> Result<Action, Stop> {
        if self.progress.start_time.is_none() {
            self.progress.start_time = Some(Time(Timestamp::now()));
            self.progress.observed_generation = self.object.meta().generation;
            self.condition(READY, false, "Started", O::STARTING);
            self.patch_status().await?;
        }
        let plan = O::prepare(self).await?;
        if self.progress.main_steps_completed != Some(true) {
            let remaining = self.time_left();
            let mut index = 0;
            // Listed again at each step job: a recorded report may change the step jobs that follow.
            while let Some(step_job) = self.object.jobs(&plan).into_iter().nth(index) {
                let Some(waiting) = self.step_job(&step_job, index == 0, &plan, remaining).await? else {
                    index += 1;
                    continue;
                };
                let (step, doing, action) = match waiting {
                    Waiting::Running { pod, ready } => {
                        let step = step_job.running_step(ready);
                        (step, format!("{} (Pod {pod})", step.doing), Action::requeue(remaining))
                    }
                    Waiting::BackingOff { failed, backoff, wait } => {
                        let step = step_job.running_step(false);
                        let backoff = humantime::format_duration(backoff);
                        let doing = format!(
                            "{} (Pod {failed} failed; the next attempt starts {backoff} after its end)",
                            step.doing
                        );
                        (step, doing, Action::requeue(wait.min(remaining)))
                    }
                };
                self.condition(READY, false, step.reason, &with_note(doing, O::note(&plan)));
                self.patch_if_changed().await?;
                return Ok(action);
            }
            if let Some(action) = O::after_jobs(self, &plan).await? {
                if remaining.is_zero() {
                    return Err(self.timeout().into());
                }
                self.patch_if_changed().await?;
                return Ok(action);
            }
            self.progress.main_steps_completed = Some(true);
            self.patch_status().await?;
        }
        self.delete_pods(&self.object.jobs(&plan)).await?;
        let message = with_note(O::success_message(self), O::note(&plan));
        Ok(self.succeed(message).await?)
    }

    /// What is left of the operation's timeout since its start (zero once spent).
    pub fn time_left(&self) -> Duration {
        let started = self.progress.start_time.clone().unwrap_or_else(|| Time(Timestamp::now()));
        O::timeout(&self.ctx.settings).saturating_sub(elapsed_since(&started))
    }

    /// Advances step job `step_job` (`first`: the operation's first) from its attempts' Pods:
    /// `None` once it succeeded (its reports recorded), else what it waits for, having created the
    /// attempt that was due; a final failure when it failed for good, ran into its deadline or the
    /// timeout is spent.
    async fn step_job(
        &mut self,
        step_job: &StepJob,
        first: bool,
        plan: &O::Plan,
        remaining: Duration,
    ) -> Result<Option<Waiting>, Stop> {
        let name = step_job.job_name(self.object.as_ref());
        let mut attempts = self.attempts(&name);
        loop {
            match step_state(&attempts, self.ctx.settings.jobs.backoff_limit, Timestamp::now()) {
                StepState::Succeeded(pod) => {
                    for step in step_job.steps() {
                        if self.object.report_pending(&self.status, step) {
                            self.record_report(step, &pod).await?;
                        }
                    }
                    return Ok(None);
                }
                // A Pod's deadline is what was left of the timeout: the same event.
                StepState::DeadlineExceeded => return Err(self.timeout().into()),
                StepState::Failed { pod, attempts } => return Err(job_failed(step_job, &pod, attempts).into()),
                _ if remaining.is_zero() => return Err(self.timeout().into()),
                StepState::Create { attempt } => {
                    if first && attempt == 0 {
                        O::before_jobs(self, plan).await?;
                    }
                    match self.create_pod(step_job, attempt, remaining).await? {
                        Some(existing) => attempts.push(Arc::new(existing)),
                        None => return Ok(Some(Waiting::Running { pod: attempt_name(&name, attempt), ready: false })),
                    }
                }
                StepState::Running { pod, ready } => return Ok(Some(Waiting::Running { pod, ready })),
                StepState::BackingOff { failed, backoff, wait } => {
                    return Ok(Some(Waiting::BackingOff { failed, backoff, wait }));
                }
            }
        }
    }

    /// Reads the report `step` left in the succeeded Pod `pod` and has the operation record it.
    async fn record_report(&mut self, step: &JobStep, pod: &Pod) -> Result<(), Stop> {
        let name = pod.name_any();
        let report = success_message(pod, step.name())
            .as_deref()
            .and_then(StepReport::from_message)
            .ok_or_else(|| Failure::Unreported { pod: name.clone() })?;
        O::job_succeeded(self, step, &name, report).await?;
        Ok(self.patch_status().await?)
    }

    /// The operation's timeout, naming the last transient API error its passes met since the
    /// last one that succeeded.
    fn timeout(&self) -> Failure {
        let last_error = self.ctx.failures.last_error(&self.object.uid().unwrap_or_default());
        Failure::Timeout {
            operation: O::NOUN,
            flag: O::TIMEOUT_FLAG,
            limit: O::timeout(&self.ctx.settings),
            last_error,
        }
    }

    /// The attempts of step job `job` the Pod store holds, or this reconciler created a moment ago
    /// (see [`super::seen`]), attempt 0 first (up to the first of neither).
    fn attempts(&self, job: &str) -> Vec<Arc<Pod>> {
        let attempts = u32::try_from(self.ctx.settings.jobs.backoff_limit).unwrap_or(0).saturating_add(1);
        (0..attempts)
            .map_while(|attempt| {
                let name = attempt_name(job, attempt);
                let stored = self.ctx.pods.get(&ObjectRef::new(&name).within(&self.namespace));
                stored.or_else(|| self.ctx.created_pods.get(&self.namespace, &name))
            })
            .collect()
    }

    /// Creates attempt `attempt` of `step_job`, its deadline what is left of the timeout. `None`
    /// once created; the Pod as the API server holds it when an earlier pass created it already
    /// (the store has not seen it yet), read once.
    async fn create_pod(
        &self,
        step_job: &StepJob,
        attempt: u32,
        remaining: Duration,
    ) -> Result<Option<Pod>, ReconcileError> {
        let deadline = i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX);
        let pod = step::pod(self.object.as_ref(), step_job, attempt, &self.ctx.settings.jobs, deadline);
        let (name, metadata) = (pod.name_any(), pod.metadata.clone());
        if self.create(pod).await? {
            self.ctx.created_pods.created(&self.namespace, metadata);
            tracing::info!(pod = %name, "created Pod");
            self.publish(EventType::Normal, "JobCreated", step_job.action, format!("created Pod {name}")).await;
            return Ok(None);
        }
        let pods: Api<Pod> = self.api();
        // Gone since (deleted by someone): the watch wakes the pass that creates it again.
        pods.get_opt(&name).await.map_err(api_error(format!("reading Pod {name}")))
    }

    /// Creates `object`; returns `false` when it already exists (from an earlier pass).
    pub async fn create<K: Namespaced>(&self, object: K) -> Result<bool, ReconcileError> {
        let api: Api<K> = self.api();
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(source) => {
                Err(ReconcileError::Api { what: format!("creating {} {}", K::kind(&()), object.name_any()), source })
            }
        }
    }

    /// Deletes `name` of kind `K`; one already gone is fine.
    pub async fn delete<K: Namespaced>(&self, name: &str, params: &DeleteParams) -> Result<(), ReconcileError> {
        let api: Api<K> = self.api();
        match api.delete(name, params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(source) => Err(ReconcileError::Api { what: format!("deleting {} {name}", K::kind(&())), source }),
        }
    }

    /// Deletes every attempt's Pod of `jobs` the store holds (attempt 0 when it holds none); one
    /// already gone is fine.
    async fn delete_pods(&self, jobs: &[StepJob]) -> Result<(), ReconcileError> {
        for job in jobs {
            let name = job.job_name(self.object.as_ref());
            let attempts = u32::try_from(self.attempts(&name).len()).unwrap_or(u32::MAX).max(1);
            for attempt in 0..attempts {
                self.delete::<Pod>(&attempt_name(&name, attempt), &DeleteParams::default()).await?;
            }
        }
        Ok(())
    }

    /// Ends the operation successfully: status, metrics, event.
    async fn succeed(&mut self, message: String) -> Result<Action, ReconcileError> {
        O::after_end(self).await?;
        self.progress.completed = Some(true);
        self.progress.completion_time = Some(Time(Timestamp::now()));
        self.condition(READY, true, O::SUCCEEDED, &message);
        self.end().await
    }

    /// Ends the operation with `failure`: status, metrics, event.
    async fn fail(&mut self, failure: Failure) -> Result<Action, ReconcileError> {
        O::after_end(self).await?;
        let (reason, message) = (failure.reason().label(), failure.to_string());
        self.condition(FAILED, true, reason, &message);
        self.condition(READY, false, reason, &message);
        self.end().await
    }

    /// Writes the end into the status, then announces it (metrics, event) from the status
    /// written; owed until then, so a write whose answer is lost is announced by the next pass
    /// that finds it landed.
    async fn end(&mut self) -> Result<Action, ReconcileError> {
        self.ctx.ends.owe(&self.object.uid().unwrap_or_default());
        self.patch_status().await?;
        settle(&self.ctx, self.object.as_ref(), Written::Whole).await?;
        Ok(Action::await_change())
    }

    /// Sets condition `type_` of the status being written.
    pub fn condition(&mut self, type_: &str, value: bool, reason: &str, message: &str) {
        let generation = self.object.meta().generation;
        let now = Time(Timestamp::now());
        set_condition(&mut self.progress.conditions, type_, value, reason, message, generation, &now);
    }

    async fn patch_if_changed(&mut self) -> Result<(), ReconcileError> {
        let mut status = self.status.clone();
        status.set_progress(self.progress.clone());
        if status != self.original { self.patch_status().await } else { Ok(()) }
    }

    /// Writes the status, on the condition that the object is still the one this pass read.
    pub async fn patch_status(&mut self) -> Result<(), ReconcileError> {
        self.status.set_progress(self.progress.clone());
        let api: Api<O> = self.api();
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": self.object.resource_version() },
            "status": self.status,
        });
        let written = api
            .patch_status(&self.object.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("updating the status"))?;
        self.ctx.seen.wrote(self.object.resource_version(), &written);
        self.object = Arc::new(written);
        self.original = self.status.clone();
        Ok(())
    }

    async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        publish(&self.ctx, self.object.as_ref(), type_, reason, action, note).await;
    }
}

/// The event `type_`, `reason`, `action`, `note` cut to what an event holds.
fn event(type_: EventType, reason: &str, action: &str, mut note: String) -> Event {
    if note.len() > EVENT_NOTE_MAX_BYTES {
        note.truncate(note.floor_char_boundary(EVENT_NOTE_MAX_BYTES - 3));
        note.push_str("...");
    }
    Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None }
}

/// Publishes an event about `object`.
async fn publish<O: Operation>(ctx: &Context, object: &O, type_: EventType, reason: &str, action: &str, note: String) {
    if let Err(error) = ctx.recorder.publish(&event(type_, reason, action, note), &object.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish an event");
    }
}

/// Where the ended object a pass settles comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Written {
    /// The API server's answer to this pass (its write of the end, or its read): all of it.
    Whole,
    /// The cache's copy: it may be the little the cache keeps of an ended operation
    /// ([`crate::trim`]), without the conditions' messages.
    Cached,
}

/// Announces the end of `object`, whose status shows it ended, if this replica owes it (it wrote
/// it, see [`PendingEnds`](super::ends::PendingEnds)), or if it ended a moment ago and this
/// replica looks at it for the first time: the replica that wrote it may have died or lost its
/// leadership before announcing it. The end is read from the object as stored, unless this pass
/// holds it whole.
async fn settle<O: Operation>(ctx: &Context, object: &O, written: Written) -> Result<(), ReconcileError> {
    let uid = object.uid().unwrap_or_default();
    let progress = object.status().map(OperationStatus::progress).unwrap_or_default();
    let Some((ended, seconds)) = progress.ended() else { return Ok(()) };
    let first_look = ctx.ends.first_look(&uid, ended, Timestamp::now());
    let tried = match ctx.ends.take(&uid) {
        Some(tried) => tried,
        None if first_look => false,
        None => return Ok(()),
    };
    let (name, namespace) = (object.name_any(), object.namespace().unwrap_or_default());
    let owe_again = || if tried { ctx.ends.tried(&uid) } else { ctx.ends.owe(&uid) };
    let stored = match written {
        Written::Whole => None,
        Written::Cached => {
            let api: Api<O> = Api::namespaced(ctx.client.clone(), &namespace);
            match api.get_opt(&name).await {
                Ok(Some(stored)) => Some(stored),
                // Deleted since: nothing left to announce.
                Ok(None) => return Ok(()),
                Err(error) => {
                    owe_again();
                    return Err(api_error(format!("reading {} {name}", O::kind(&())))(error));
                }
            }
        }
    };
    let object = stored.as_ref().unwrap_or(object);
    let progress = object.status().map(OperationStatus::progress).unwrap_or_default();
    let Some(end) = Announcement::of(&progress) else { return Ok(()) };
    let event = event(end.type_, &end.reason, O::END_ACTION, end.message.clone());
    let announced =
        match ctx.recorder.publish_named(&event, &object.object_ref(&()), &end_event_name(&name, &uid)).await {
            Ok(Published::Created) => true,
            // This replica's earlier try landed, its answer lost; else another replica announced it.
            Ok(Published::Existed) => tried,
            Err(NotPublished { source, maybe_created }) if crate::client::is_transient(&source) => {
                if maybe_created {
                    ctx.ends.tried(&uid)
                } else {
                    owe_again()
                }
                return Err(api_error(format!("publishing the {} event", end.reason))(source));
            }
            Err(error) => {
                tracing::warn!(%error, reason = %end.reason, "could not publish an event");
                true
            }
        };
    if !announced {
        tracing::debug!(reason = %end.reason, "{} end announced by another replica", O::NOUN);
        return Ok(());
    }
    let record = End {
        namespace: &namespace,
        name: &name,
        outcome: end.outcome,
        seconds,
        ended_at_unix: ended.as_second() as f64,
    };
    O::record_end(ctx, object, &record);
    match end.outcome {
        Ok(()) => tracing::info!(seconds, "{} completed", O::NOUN),
        Err(_) => tracing::warn!(reason = %end.reason, message = %end.message, seconds, "{} failed", O::NOUN),
    }
    Ok(())
}

/// What an unfinished step job waits for.
enum Waiting {
    /// Its attempt `pod` runs; `ready`: its last container runs.
    Running { pod: String, ready: bool },
    /// Its attempt `failed` failed; the next one starts `backoff` after that failure's end, in
    /// `wait`.
    BackingOff { failed: String, backoff: Duration, wait: Duration },
}

/// The failure of step job `step_job` whose last attempt `pod` failed after `attempts` attempts: the
/// step whose container failed (named when the Pod runs several) and what it said.
fn job_failed(step_job: &StepJob, pod: &Pod, attempts: u32) -> Failure {
    let PodFailure { container, detail } = pod_failure(pod);
    Failure::JobFailed { pod: pod.name_any(), step: container.filter(|_| !step_job.init.is_empty()), attempts, detail }
}

fn with_note(message: String, note: Option<&str>) -> String {
    match note {
        Some(note) => format!("{message}; {note}"),
        None => message,
    }
}

fn elapsed_since(start: &Time) -> Duration {
    let seconds = (Timestamp::now() - start.0).get_seconds();
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests;
