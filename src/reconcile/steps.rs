//! One reconciliation of an APIManagerBackup: the seven steps of DESIGN §4, each idempotent and
//! recorded in status, so a restarted operator continues where it stopped.
//!
//! Each pass works from the object as stored (not the controller's cache, which may not show this
//! operator's last write yet) and patches status with its `resourceVersion`, so a stale pass gets
//! a conflict instead of redoing or double-counting anything.

use super::builders::{self, Step};
use super::jobs::{JobState, job_state, termination_message};
use super::status::{FAILED, READY, is_final, set_condition};
use super::{Context, ReconcileError};
use crate::api::apimanager::{APIManager, FileStorage};
use crate::api::backup::{APIManagerBackup, APIManagerBackupStatus};
use crate::metrics::Outcome;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// The API server rejects event notes longer than this.
const EVENT_NOTE_MAX_BYTES: usize = 1024;

/// Reconciles one backup.
pub async fn reconcile(cached: Arc<APIManagerBackup>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if cached.status.as_ref().is_some_and(is_final) {
        return Ok(Action::await_change());
    }
    let namespace = cached.namespace().ok_or(ReconcileError::NotNamespaced)?;
    let backups: Api<APIManagerBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = cached.name_any();
    let Some(backup) = backups.get_opt(&name).await.map_err(api_error(format!("reading APIManagerBackup {name}")))?
    else {
        return Ok(Action::await_change());
    };
    let status = backup.status.clone().unwrap_or_default();
    if is_final(&status) {
        return Ok(Action::await_change());
    }
    let mut run = Run { backup: Arc::new(backup), ctx, namespace, original: status.clone(), status };
    match run.advance().await {
        Err(error) => match error.refusal() {
            Some(message) => run.fail("Refused", message).await,
            None => Err(error),
        },
        done => done,
    }
}

/// The state of one reconciliation.
struct Run {
    backup: Arc<APIManagerBackup>,
    ctx: Arc<Context>,
    namespace: String,
    /// The status as stored, to patch only when something changed.
    original: APIManagerBackupStatus,
    status: APIManagerBackupStatus,
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ReconcileError {
    let what = what.into();
    move |source| ReconcileError::Api { what, source }
}

impl Run {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    async fn advance(&mut self) -> Result<Action, ReconcileError> {
        // The start is recorded before anything can fail, so the timeout always applies.
        if self.status.start_time.is_none() {
            self.status.start_time = Some(Time(Timestamp::now()));
            self.status.observed_generation = self.backup.metadata.generation;
            self.condition(READY, false, "Started", "resolving the APIManager");
            self.patch_status().await?;
        }
        let started = self.status.start_time.clone().unwrap_or_else(|| Time(Timestamp::now()));

        // Step 1: the APIManager.
        let apimanager = match self.resolve_apimanager().await? {
            Ok(apimanager) => apimanager,
            Err(message) => return self.fail("APIManagerNotFound", message).await,
        };
        self.status.api_manager_source_name = Some(apimanager.name_any());

        // Step 2: still in the backup scope (the APIManager may have changed since admission).
        let internal = apimanager.internal_databases();
        if !internal.is_empty() {
            let message = format!(
                "APIManager {:?} is outside the backup scope; these databases are not external: {}",
                apimanager.name_any(),
                internal.join(", ")
            );
            return self.fail("OutOfScope", message).await;
        }
        let file_storage = apimanager.file_storage();

        // Step 3: the backup claim.
        if self.status.backup_persistent_volume_claim_name.is_none() {
            if let Err(message) = self.ensure_claim(&apimanager).await? {
                return self.fail("ClaimInUse", message).await;
            }
            self.status.backup_persistent_volume_claim_name = Some(self.backup.name_any());
        }
        if self.status.main_steps_completed != Some(true) {
            // Steps 4 to 6: RBAC and the Jobs, one after the other (the claim is ReadWriteOnce).
            let remaining = self.ctx.settings.backup_timeout.saturating_sub(elapsed_since(&started));
            let mut steps = vec![Step::ExportObjects];
            if let FileStorage::Claim(_) = file_storage {
                steps.push(Step::CopyFiles);
            }
            for step in steps {
                let job = step.job_name(&self.backup);
                let state = self.job(&job).await?;
                match state {
                    Some(JobState::Succeeded) => continue,
                    // A Job's deadline is what was left of the backup timeout: the same event.
                    Some(JobState::Failed { reason, .. }) if reason == "DeadlineExceeded" => {
                        return self.fail("Timeout", self.timeout_message()).await;
                    }
                    Some(JobState::Failed { reason, message }) => {
                        let pods: Api<Pod> = self.api();
                        let detail = termination_message(&pods, &job)
                            .await
                            .map_err(api_error(format!("reading the Pods of Job {job}")))?
                            .unwrap_or(message);
                        return self.fail("JobFailed", format!("Job {job} failed ({reason}): {detail}")).await;
                    }
                    Some(JobState::Running) | None if remaining.is_zero() => {
                        return self.fail("Timeout", self.timeout_message()).await;
                    }
                    None => self.create_job(step, &apimanager, &file_storage, remaining).await?,
                    Some(JobState::Running) => {}
                }
                self.progress(step, &file_storage).await?;
                return Ok(Action::requeue(remaining));
            }
            self.status.main_steps_completed = Some(true);
            self.patch_status().await?;
        }
        // Step 7: success.
        self.delete_jobs().await?;
        self.succeed(&file_storage).await
    }

    fn timeout_message(&self) -> String {
        format!(
            "the backup did not finish within {} (--backup-timeout); its Jobs and Pods are kept for debugging",
            humantime::format_duration(self.ctx.settings.backup_timeout)
        )
    }

    /// The APIManager named by the spec (or the only one of the namespace); `Err` with the reason
    /// when there is none to back up.
    async fn resolve_apimanager(&self) -> Result<Result<APIManager, String>, ReconcileError> {
        let api: Api<APIManager> = self.api();
        let named = self.backup.spec.api_manager_name.clone().filter(|n| !n.is_empty());
        let name = match named.or_else(|| self.status.api_manager_source_name.clone()) {
            Some(name) => name,
            None => {
                let list = api.list(&Default::default()).await.map_err(api_error("listing APIManagers"))?;
                match list.items.as_slice() {
                    [only] => only.name_any(),
                    other => {
                        return Ok(Err(format!(
                            "spec.apiManagerName is empty and namespace {:?} has {} APIManagers; create a new \
APIManagerBackup naming one",
                            self.namespace,
                            other.len()
                        )));
                    }
                }
            }
        };
        let found = api.get_opt(&name).await.map_err(api_error(format!("reading APIManager {name}")))?;
        Ok(found.ok_or_else(|| format!("APIManager {name:?} does not exist in namespace {:?}", self.namespace)))
    }

    /// Creates the backup claim; one left by an earlier pass of this backup is fine, one holding
    /// another backup is never written to (`Err` with the reason).
    async fn ensure_claim(&self, apimanager: &APIManager) -> Result<Result<(), String>, ReconcileError> {
        if self.create(builders::backup_claim(&self.backup, apimanager)).await? {
            return Ok(Ok(()));
        }
        let name = self.backup.name_any();
        let claims: Api<PersistentVolumeClaim> = self.api();
        let claim = claims.get(&name).await.map_err(api_error(format!("reading PersistentVolumeClaim {name}")))?;
        let holder = claim.annotations().get("apiManagerBackupUID").cloned().unwrap_or_default();
        if Some(&holder) == self.backup.uid().as_ref() {
            return Ok(Ok(()));
        }
        let holder =
            if holder.is_empty() { "something else".to_owned() } else { format!("APIManagerBackup UID {holder}") };
        Ok(Err(format!(
            "PersistentVolumeClaim {name} already exists and holds {holder}; it is never overwritten: \
delete it if it is no longer needed, or create this backup under another name"
        )))
    }

    /// The state of Job `name`, `None` when it does not exist.
    async fn job(&self, name: &str) -> Result<Option<JobState>, ReconcileError> {
        let jobs: Api<Job> = self.api();
        let job = jobs.get_opt(name).await.map_err(api_error(format!("reading Job {name}")))?;
        Ok(job.as_ref().map(job_state))
    }

    /// Creates the Job of `step` (and, before the first one, the Jobs' RBAC).
    async fn create_job(
        &self,
        step: Step,
        apimanager: &APIManager,
        storage: &FileStorage,
        remaining: Duration,
    ) -> Result<(), ReconcileError> {
        if step == Step::ExportObjects {
            self.create(builders::job_service_account(&self.namespace)).await?;
            self.create(builders::apimanager_role(&self.backup, &apimanager.name_any())).await?;
            self.create(builders::apimanager_role_binding(&self.backup)).await?;
            self.create(builders::data_role_binding(&self.backup)).await?;
        }
        let claim = match storage {
            FileStorage::Claim(claim) => claim.as_str(),
            FileStorage::S3 => "",
        };
        let deadline = i64::try_from(remaining.as_secs()).unwrap_or(i64::MAX);
        let job = builders::job(&self.backup, &apimanager.name_any(), step, claim, &self.ctx.settings.jobs, deadline);
        let name = step.job_name(&self.backup);
        if self.create(job).await? {
            tracing::info!(job = %name, "created backup Job");
            self.publish(EventType::Normal, "JobCreated", step.action(), format!("created Job {name}")).await;
        }
        Ok(())
    }

    /// Creates `object`; returns `false` when it already exists (from an earlier pass).
    async fn create<K>(&self, object: K) -> Result<bool, ReconcileError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Debug
            + Serialize
            + DeserializeOwned,
    {
        let api: Api<K> = self.api();
        let what = format!("creating {} {}", K::kind(&()), object.name_any());
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
            Err(source) => Err(ReconcileError::Api { what, source }),
        }
    }

    /// Deletes `name` of kind `K`; one already gone is fine.
    async fn delete<K>(&self, name: &str, params: &DeleteParams) -> Result<(), ReconcileError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
    {
        let api: Api<K> = self.api();
        match api.delete(name, params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(source) => Err(ReconcileError::Api { what: format!("deleting {} {name}", K::kind(&())), source }),
        }
    }

    async fn delete_jobs(&self) -> Result<(), ReconcileError> {
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        for step in [Step::ExportObjects, Step::CopyFiles] {
            self.delete::<Job>(&step.job_name(&self.backup), &params).await?;
        }
        Ok(())
    }

    /// Removes the Jobs' access to the installation once the backup has ended.
    async fn delete_job_rbac(&self) -> Result<(), ReconcileError> {
        let params = DeleteParams::default();
        self.delete::<RoleBinding>(&builders::data_binding_name(&self.backup), &params).await?;
        self.delete::<RoleBinding>(&builders::rbac_name(&self.backup), &params).await?;
        self.delete::<Role>(&builders::rbac_name(&self.backup), &params).await
    }

    async fn progress(&mut self, step: Step, storage: &FileStorage) -> Result<(), ReconcileError> {
        let (reason, doing) = match step {
            Step::ExportObjects => ("ExportingObjects", "exporting Secrets, ConfigMaps and the APIManager"),
            Step::CopyFiles => ("CopyingFiles", "copying the System FileStorage"),
        };
        let message = format!("{doing} (Job {}){}", step.job_name(&self.backup), s3_note(storage));
        self.condition(READY, false, reason, &message);
        if self.status != self.original { self.patch_status().await } else { Ok(()) }
    }

    async fn succeed(&mut self, storage: &FileStorage) -> Result<Action, ReconcileError> {
        self.delete_job_rbac().await?;
        let now = Time(Timestamp::now());
        let claim = self.status.backup_persistent_volume_claim_name.clone().unwrap_or_default();
        let message = format!("backup written to PersistentVolumeClaim {claim}{}", s3_note(storage));
        self.status.completed = Some(true);
        self.status.completion_time = Some(now.clone());
        self.condition(READY, true, "BackupCompleted", &message);
        self.patch_status().await?;
        let seconds = self.observe(Outcome::Succeeded);
        tracing::info!(claim = %claim, seconds, "backup completed");
        self.publish(EventType::Normal, "BackupCompleted", "Backup", message).await;
        Ok(Action::await_change())
    }

    async fn fail(&mut self, reason: &str, message: String) -> Result<Action, ReconcileError> {
        self.delete_job_rbac().await?;
        self.condition(FAILED, true, reason, &message);
        self.condition(READY, false, reason, &message);
        self.patch_status().await?;
        let seconds = self.observe(Outcome::Failed);
        tracing::warn!(reason, message = %message, seconds, "backup failed");
        self.publish(EventType::Warning, reason, "Backup", message).await;
        Ok(Action::await_change())
    }

    /// Records the backup's end in the metrics; returns its duration in seconds.
    fn observe(&self, outcome: Outcome) -> f64 {
        let ended = self.status.completion_time.as_ref().map_or_else(Timestamp::now, |t| t.0);
        let seconds = self.status.start_time.as_ref().map(|s| (ended - s.0).get_seconds() as f64).unwrap_or_default();
        let name = self.backup.name_any();
        self.ctx.metrics.observe_backup(&self.namespace, &name, outcome, seconds, ended.as_second() as f64);
        seconds
    }

    fn condition(&mut self, type_: &str, value: bool, reason: &str, message: &str) {
        let generation = self.backup.metadata.generation;
        let now = Time(Timestamp::now());
        set_condition(&mut self.status.conditions, type_, value, reason, message, generation, &now);
    }

    /// Writes the status, on the condition that the object is still the one this pass read.
    async fn patch_status(&mut self) -> Result<(), ReconcileError> {
        let api: Api<APIManagerBackup> = self.api();
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": self.backup.resource_version() },
            "status": self.status,
        });
        let written = api
            .patch_status(&self.backup.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("updating the status"))?;
        self.backup = Arc::new(written);
        self.original = self.status.clone();
        Ok(())
    }

    async fn publish(&self, type_: EventType, reason: &str, action: &str, mut note: String) {
        if note.len() > EVENT_NOTE_MAX_BYTES {
            note.truncate(note.floor_char_boundary(EVENT_NOTE_MAX_BYTES - 3));
            note.push_str("...");
        }
        let event =
            Event { type_, reason: reason.to_owned(), note: Some(note), action: action.to_owned(), secondary: None };
        if let Err(error) = self.ctx.recorder.publish(&event, &self.backup.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish an event");
        }
    }
}

fn s3_note(storage: &FileStorage) -> &'static str {
    match storage {
        FileStorage::S3 => "; System FileStorage is in S3 and is not backed up",
        FileStorage::Claim(_) => "",
    }
}

fn elapsed_since(start: &Time) -> Duration {
    let seconds = (Timestamp::now() - start.0).get_seconds();
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}
