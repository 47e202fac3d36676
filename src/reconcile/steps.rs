//! One reconciliation of an APIManagerBackup: the seven steps of DESIGN §4, each idempotent and
//! recorded in status, so a restarted operator continues where it stopped.

use super::builders::{self, Step};
use super::jobs::{JobState, job_state, termination_message};
use super::status::{FAILED, READY, in_progress, is_final, set_condition};
use super::{Context, ReconcileError};
use crate::api::apimanager::{APIManager, FileStorage};
use crate::api::backup::{APIManagerBackup, APIManagerBackupStatus};
use crate::metrics::Outcome;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
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

/// Reconciles one backup.
pub async fn reconcile(backup: Arc<APIManagerBackup>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let in_flight = ctx.store.state().iter().filter(|b| b.status.as_ref().is_some_and(in_progress)).count();
    ctx.metrics.set_in_progress(in_flight);
    let status = backup.status.clone().unwrap_or_default();
    if is_final(&status) {
        return Ok(Action::await_change());
    }
    let namespace = backup.namespace().ok_or(ReconcileError::NotNamespaced)?;
    let mut run = Run { backup, ctx, namespace, original: status.clone(), status };
    run.advance().await
}

/// The state of one reconciliation.
struct Run {
    backup: Arc<APIManagerBackup>,
    ctx: Arc<Context>,
    namespace: String,
    /// The status as read, to patch only when something changed.
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
        // Step 1: the APIManager.
        let apimanager = match self.resolve_apimanager().await? {
            Ok(apimanager) => apimanager,
            Err(message) => return self.fail("APIManagerNotFound", message).await,
        };
        let now = Time(Timestamp::now());
        let started = self.status.start_time.get_or_insert_with(|| now.clone()).clone();
        self.status.api_manager_source_name = Some(apimanager.name_any());
        self.status.observed_generation = self.backup.metadata.generation;
        let elapsed = elapsed_since(&started);
        if elapsed >= self.ctx.settings.backup_timeout {
            let message = format!(
                "the backup did not finish within {} (--backup-timeout); its Jobs and Pods are kept for debugging",
                humantime::format_duration(self.ctx.settings.backup_timeout)
            );
            return self.fail("Timeout", message).await;
        }
        let remaining = self.ctx.settings.backup_timeout - elapsed;

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
            self.create(builders::backup_claim(&self.backup, &apimanager)).await?;
            self.status.backup_persistent_volume_claim_name = Some(self.backup.name_any());
        }
        if self.status.main_steps_completed != Some(true) {
            // Steps 4 to 6: RBAC and the Jobs, one after the other (the claim is ReadWriteOnce).
            let mut steps = vec![Step::ExportObjects];
            if let FileStorage::Claim(_) = file_storage {
                steps.push(Step::CopyFiles);
            }
            for step in steps {
                match self.run_step(step, &apimanager, &file_storage).await? {
                    JobState::Succeeded => continue,
                    JobState::Running => {
                        self.progress(step, &file_storage).await?;
                        return Ok(Action::requeue(remaining));
                    }
                    JobState::Failed { reason, message } => {
                        let job = step.job_name(&self.backup);
                        let pods: Api<Pod> = self.api();
                        let detail = termination_message(&pods, &job)
                            .await
                            .map_err(api_error(format!("reading the Pods of Job {job}")))?
                            .unwrap_or(message);
                        return self.fail("JobFailed", format!("Job {job} failed ({reason}): {detail}")).await;
                    }
                }
            }
            self.status.main_steps_completed = Some(true);
            self.patch_status().await?;
        }
        // Step 7: success.
        self.delete_jobs().await?;
        self.succeed(&file_storage, &started).await
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

    /// Creates the Job of `step` (and, before the first one, the Jobs' RBAC) or returns its state.
    async fn run_step(
        &self,
        step: Step,
        apimanager: &APIManager,
        storage: &FileStorage,
    ) -> Result<JobState, ReconcileError> {
        let jobs: Api<Job> = self.api();
        let name = step.job_name(&self.backup);
        if let Some(job) = jobs.get_opt(&name).await.map_err(api_error(format!("reading Job {name}")))? {
            return Ok(job_state(&job));
        }
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
        let job = builders::job(&self.backup, &apimanager.name_any(), step, claim, &self.ctx.settings.jobs);
        self.create(job).await?;
        tracing::info!(job = %name, "created backup Job");
        self.publish(EventType::Normal, "JobCreated", step.action(), format!("created Job {name}")).await;
        Ok(JobState::Running)
    }

    /// Creates `object`; one that already exists (from an earlier pass) is fine.
    async fn create<K>(&self, object: K) -> Result<(), ReconcileError>
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
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
            Err(source) => Err(ReconcileError::Api { what, source }),
        }
    }

    async fn delete_jobs(&self) -> Result<(), ReconcileError> {
        let jobs: Api<Job> = self.api();
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        for step in [Step::ExportObjects, Step::CopyFiles] {
            let name = step.job_name(&self.backup);
            match jobs.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(source) => return Err(ReconcileError::Api { what: format!("deleting Job {name}"), source }),
            }
        }
        Ok(())
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

    async fn succeed(&mut self, storage: &FileStorage, started: &Time) -> Result<Action, ReconcileError> {
        let now = Time(Timestamp::now());
        let claim = self.status.backup_persistent_volume_claim_name.clone().unwrap_or_default();
        let message = format!("backup written to PersistentVolumeClaim {claim}{}", s3_note(storage));
        self.status.completed = Some(true);
        self.status.completion_time = Some(now.clone());
        self.condition(READY, true, "BackupCompleted", &message);
        self.patch_status().await?;
        let seconds = (now.0 - started.0).get_seconds() as f64;
        self.ctx.metrics.observe_backup(
            &self.namespace,
            &self.backup.name_any(),
            Outcome::Succeeded,
            seconds,
            now.0.as_second() as f64,
        );
        tracing::info!(claim = %claim, seconds, "backup completed");
        self.publish(EventType::Normal, "BackupCompleted", "Backup", message).await;
        Ok(Action::await_change())
    }

    async fn fail(&mut self, reason: &str, message: String) -> Result<Action, ReconcileError> {
        self.condition(FAILED, true, reason, &message);
        self.condition(READY, false, reason, &message);
        self.patch_status().await?;
        let now = Timestamp::now();
        let seconds = self.status.start_time.as_ref().map(|s| (now - s.0).get_seconds() as f64).unwrap_or_default();
        self.ctx.metrics.observe_backup(
            &self.namespace,
            &self.backup.name_any(),
            Outcome::Failed,
            seconds,
            now.as_second() as f64,
        );
        tracing::warn!(reason, message = %message, "backup failed");
        self.publish(EventType::Warning, reason, "Backup", message).await;
        Ok(Action::await_change())
    }

    fn condition(&mut self, type_: &str, value: bool, reason: &str, message: &str) {
        let generation = self.backup.metadata.generation;
        let now = Time(Timestamp::now());
        set_condition(&mut self.status.conditions, type_, value, reason, message, generation, &now);
    }

    async fn patch_status(&mut self) -> Result<(), ReconcileError> {
        let api: Api<APIManagerBackup> = self.api();
        let patch = serde_json::json!({ "status": self.status });
        api.patch_status(&self.backup.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error("updating the status"))?;
        self.original = self.status.clone();
        Ok(())
    }

    async fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
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
