//! A backup as an [`Operation`] of the step machine (README, "Backups: APIManagerBackup"): resolve the APIManager,
//! check its scope, create the backup claim, then one step job whose Pod runs the step `export-objects`
//! and after it `copy-files` when System FileStorage is a claim, or `backup-s3-files` when it is an
//! S3 bucket, with per-backup RBAC for their ServiceAccount.
//! When System FileStorage is a claim and no `--file-storage-group` is given, a read-only step
//! `inspect-files` runs first and finds the group owning the claim's root, which the copy's Pod then
//! joins.

use super::objects;
use crate::api::apimanager::{APIManager, FileStorage};
use crate::api::backup::{APIManagerBackup, APIManagerBackupStatus};
use crate::api::s3::{S3BackupLocation, S3Bucket, backup_path};
use crate::api::status::{OperationStatus, Reason};
use crate::job::report::StepReport;
use crate::job::{CommonArgs, CopyArgs, ExportArgs, InspectArgs, JobCommand, S3FilesArgs};
use crate::layout::{BACKUP_MOUNT, FILE_STORAGE_MOUNT};
use crate::lookup;
use crate::metrics::Destination;
use crate::names::{
    BACKUP_JOB, BACKUP_UID_LABEL, CLAIM_BACKUP_STATE, CLAIM_BACKUP_UID, CLAIM_COMPLETED, INSPECT_FILES,
    JOB_SERVICE_ACCOUNT, TERMINATION_LOG,
};
use crate::reconcile::machine::{End, Operation, Run, api_error};
use crate::reconcile::outcome::{ClaimHolder, Failure, Stop};
use crate::reconcile::s3;
use crate::reconcile::step::{ClaimMount, JobStep, StepJob, StepOwner};
use crate::reconcile::{ReconcileError, ReconcileSettings};
use crate::rules;
use crate::trim;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use std::time::Duration;

/// What the steps before the step job found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPlan {
    /// The APIManager backed up.
    pub apimanager: String,
    /// Where its System FileStorage lives.
    pub storage: FileStorage,
    /// `--file-storage-group`, when given: the System FileStorage group, not looked for.
    pub file_storage_group: Option<i64>,
    /// The Secrets it references, which the step Pods may read by name.
    pub secrets: Vec<String>,
}

impl BackupPlan {
    /// The plan for `apimanager` with its files in `storage`, their group looked for, no referenced Secret.
    pub fn new(apimanager: impl Into<String>, storage: FileStorage) -> Self {
        Self { apimanager: apimanager.into(), storage, file_storage_group: None, secrets: Vec::new() }
    }
}

impl StepOwner for APIManagerBackup {
    const UID_LABEL: &'static str = BACKUP_UID_LABEL;
}

impl Operation for APIManagerBackup {
    type Status = APIManagerBackupStatus;
    type Plan = BackupPlan;
    const NOUN: &'static str = "backup";
    const TIMEOUT_FLAG: &'static str = "--backup-timeout";
    const STARTING: &'static str = "resolving the APIManager";
    const SUCCEEDED: &'static str = Reason::BackupCompleted.label();
    const END_ACTION: &'static str = "Backup";

    fn status(&self) -> Option<&APIManagerBackupStatus> {
        self.status.as_ref()
    }

    fn timeout(settings: &ReconcileSettings) -> Duration {
        settings.backup_timeout
    }

    async fn prepare(run: &mut Run<Self>) -> Result<BackupPlan, Stop> {
        // Step 1: the APIManager (the one named, or the one resolved by an earlier pass).
        let named = run.object.spec.api_manager_name.clone().filter(|name| !name.is_empty());
        let named = named.or_else(|| run.status.api_manager_source_name.clone());
        let apimanager = resolve_apimanager(run, named.as_deref()).await?;
        run.status.api_manager_source_name = Some(apimanager.name_any());

        // Step 2: still in the backup scope (the APIManager may have changed since admission).
        let storage = rules::in_scope(&apimanager).map_err(Failure::from)?;

        // Step 3: the backup claim, or the backup's place in its bucket.
        if let Some(bucket) = &run.object.spec.backup_destination.s3 {
            run.status.s3 = Some(bucket_location(&run.object, bucket));
        } else if run.status.backup_persistent_volume_claim_name.is_none() {
            ensure_claim(run, &apimanager).await?;
            run.status.backup_persistent_volume_claim_name = Some(run.object.name_any());
        }
        let file_storage_group = run.ctx.settings.jobs.file_storage_group;
        if file_storage_group.is_some() {
            run.status.file_storage_group = file_storage_group;
        }
        let secrets = apimanager.referenced_secrets().into_keys().collect();
        Ok(BackupPlan { apimanager: apimanager.name_any(), storage, file_storage_group, secrets })
    }

    fn job_steps(&self, plan: &BackupPlan) -> Vec<JobStep> {
        let (backup_claims, common, secrets) = match &self.spec.backup_destination.s3 {
            Some(bucket) => {
                let location = bucket_location(self, bucket);
                let access = s3::access(bucket, &location.path, self.uid().as_deref());
                (Vec::new(), CommonArgs { s3: access.args, ..CommonArgs::at(BACKUP_MOUNT) }, access.secrets)
            }
            None => {
                let claim = ClaimMount::new("backup", self.name_any(), BACKUP_MOUNT, false);
                let key_secret =
                    self.spec.backup_destination.persistent_volume_claim.as_ref().and_then(|c| c.key_secret());
                // No key: the clear layout, as 3scale-operator writes it (no arguments, no Secret).
                let access =
                    key_secret.map(|secret| s3::claim_access(secret, self.uid().as_deref())).unwrap_or_default();
                (vec![claim], CommonArgs { s3: access.args, ..CommonArgs::at(BACKUP_MOUNT) }, access.secrets)
            }
        };
        let export = JobStep {
            command: JobCommand::ExportObjects(ExportArgs {
                namespace: self.namespace().unwrap_or_default(),
                apimanager: plan.apimanager.clone(),
                backup_name: self.name_any(),
                backup_uid: self.uid().unwrap_or_default(),
                last_step: false,
                common: common.clone(),
            }),
            action: "ExportObjects",
            reason: "ExportingObjects",
            doing: "exporting Secrets, ConfigMaps and the APIManager",
            claims: backup_claims.clone(),
            secrets: secrets.clone(),
            service_account: JOB_SERVICE_ACCOUNT,
            api_access: true,
        };
        let mut steps = vec![export];
        if let FileStorage::S3 { secret } = &plan.storage {
            steps.push(JobStep {
                command: JobCommand::BackupS3Files(S3FilesArgs {
                    secret: secret.clone().unwrap_or_default(),
                    last_step: false,
                    common: common.clone(),
                }),
                action: "BackupS3Files",
                reason: "CopyingS3Files",
                doing: "copying the System FileStorage bucket",
                claims: backup_claims.clone(),
                // A backup into a bucket: that bucket's Secrets as volumes, beside the FileStorage
                // bucket's Secret in the environment.
                secrets: secrets.clone(),
                service_account: JOB_SERVICE_ACCOUNT,
                // The FileStorage bucket's Secret comes through the Pod's environment: no API token.
                api_access: false,
            });
        }
        if let FileStorage::Claim(claim) = &plan.storage {
            steps.push(JobStep {
                command: JobCommand::CopyFiles(CopyArgs {
                    source: FILE_STORAGE_MOUNT.into(),
                    last_step: false,
                    common,
                }),
                action: "CopyFiles",
                reason: "CopyingFiles",
                doing: "copying the System FileStorage",
                claims: backup_claims
                    .into_iter()
                    .chain([ClaimMount {
                        group: plan.file_storage_group.or_else(|| self.status.as_ref()?.file_storage_group),
                        ..ClaimMount::new("system-storage", claim.clone(), FILE_STORAGE_MOUNT, true)
                    }])
                    .collect(),
                secrets,
                service_account: JOB_SERVICE_ACCOUNT,
                // The copy reads files only: no API token in its Pod.
                api_access: false,
            });
        }
        // Whichever step ends the backup marks its manifest complete.
        if let Some(last) = steps.last_mut() {
            last.command.make_last_step();
        }
        steps
    }

    /// An ended backup keeps little more than its name (see [`trim::backup`]).
    fn cached(object: &mut Self) {
        trim::backup(object);
    }

    /// One step job: the export as an init container, then the copy (the steps share the
    /// ReadWriteOnce backup claim, and one Pod per attempt is half the work of two); before it,
    /// when the copy's group is to be found, the inspection of the System FileStorage claim (a Pod
    /// of its own: a Pod's groups are set when it is made).
    fn jobs(&self, plan: &BackupPlan) -> Vec<StepJob> {
        let mut init = self.job_steps(plan);
        let Some(main) = init.pop() else { return Vec::new() };
        let backup = StepJob { name: BACKUP_JOB, action: "RunBackup", init, main };
        match (&plan.storage, plan.file_storage_group) {
            (FileStorage::Claim(claim), None) => vec![StepJob::single(inspect_step(claim)), backup],
            _ => vec![backup],
        }
    }

    fn report_pending(&self, status: &APIManagerBackupStatus, step: &JobStep) -> bool {
        match step.name() {
            INSPECT_FILES => status.file_storage_group.is_none(),
            _ => step.command.is_last_step() && status.bytes_written.is_none(),
        }
    }

    /// Records the group owning the System FileStorage claim's root, which the copy's Pod joins.
    async fn job_succeeded(run: &mut Run<Self>, step: &JobStep, pod: &str, report: StepReport) -> Result<(), Stop> {
        match report {
            StepReport::InspectFiles(owner) if step.name() == INSPECT_FILES => {
                run.status.file_storage_group = Some(i64::from(owner.gid));
                Ok(())
            }
            StepReport::BackupWritten { bytes } if step.command.is_last_step() => {
                run.status.bytes_written = Some(i64::try_from(bytes).unwrap_or(i64::MAX));
                Ok(())
            }
            _ => Err(Failure::Unreported { pod: pod.to_owned() }.into()),
        }
    }

    async fn before_jobs(run: &Run<Self>, plan: &BackupPlan) -> Result<(), ReconcileError> {
        run.create(objects::job_service_account(&run.namespace)).await?;
        run.create(objects::apimanager_role(&run.object, &plan.apimanager, &plan.secrets)).await?;
        run.create(objects::apimanager_role_binding(&run.object)).await?;
        run.create(objects::data_role_binding(&run.object)).await?;
        Ok(())
    }

    /// Marks the claim as holding a completed backup, once every step succeeded and before the
    /// backup is recorded completed: a restore admits this operator's claims only so marked.
    async fn after_jobs(run: &mut Run<Self>, _plan: &BackupPlan) -> Result<Option<Action>, Stop> {
        if run.object.spec.backup_destination.s3.is_some() {
            // manifest.json, written last by the last step, marks the backup in the bucket complete.
            return Ok(None);
        }
        let name = run.status.backup_persistent_volume_claim_name.clone().unwrap_or_else(|| run.object.name_any());
        let claims: Api<PersistentVolumeClaim> = run.api();
        let patch = serde_json::json!({"metadata": {"annotations": {CLAIM_BACKUP_STATE: CLAIM_COMPLETED}}});
        let what = format!("marking PersistentVolumeClaim {name} as holding a completed backup");
        claims.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(api_error(what))?;
        Ok(None)
    }

    /// Removes the step Pods' access to the installation.
    async fn after_end(run: &Run<Self>) -> Result<(), ReconcileError> {
        let params = DeleteParams::default();
        run.delete::<RoleBinding>(&objects::data_binding_name(&run.object), &params).await?;
        run.delete::<RoleBinding>(&objects::rbac_name(&run.object), &params).await?;
        run.delete::<Role>(&objects::rbac_name(&run.object), &params).await
    }

    fn note(_: &BackupPlan) -> Option<&'static str> {
        None
    }

    fn success_message(run: &Run<Self>) -> String {
        if let Some(location) = &run.status.s3 {
            return format!("backup written to {}", location.url());
        }
        let claim = run.status.backup_persistent_volume_claim_name.clone().unwrap_or_else(|| run.object.name_any());
        format!("backup written to PersistentVolumeClaim {claim}")
    }

    fn record_end(ctx: &crate::reconcile::Context, backup: &Self, end: &End<'_>) {
        let metrics = &ctx.metrics;
        metrics.observe_backup(end.metric());
        let destination = match backup.spec.backup_destination.s3 {
            Some(_) => Destination::S3,
            None => Destination::PersistentVolumeClaim,
        };
        let bytes = backup.status.as_ref().and_then(|s| s.bytes_written).and_then(|bytes| u64::try_from(bytes).ok());
        metrics.observe_backup_destination(destination, end.metric().outcome, bytes);
    }
}

/// Where the backup is in `bucket`: `<prefix>/<namespace>/<name>-<uid>/`.
fn bucket_location(backup: &APIManagerBackup, bucket: &S3Bucket) -> S3BackupLocation {
    let path =
        backup_path(&backup.namespace().unwrap_or_default(), &backup.name_any(), &backup.uid().unwrap_or_default());
    S3BackupLocation { bucket: bucket.bucket.clone(), prefix: bucket.prefix().to_owned(), path }
}

/// The read-only step telling who owns the root of System FileStorage claim `claim`: no API token,
/// nothing written.
fn inspect_step(claim: &str) -> JobStep {
    JobStep {
        command: JobCommand::InspectFiles(InspectArgs {
            source: FILE_STORAGE_MOUNT.into(),
            termination_log: TERMINATION_LOG.into(),
        }),
        action: "InspectFiles",
        reason: "InspectingFiles",
        doing: "finding the group that owns the System FileStorage",
        claims: vec![ClaimMount::new("system-storage", claim, FILE_STORAGE_MOUNT, true)],
        secrets: Vec::new(),
        service_account: JOB_SERVICE_ACCOUNT,
        api_access: false,
    }
}

/// The unfinished backups of `apimanager`, reconciled again when it changes or goes away.
pub fn backups_of(store: &Store<APIManagerBackup>, apimanager: &APIManager) -> Vec<ObjectRef<APIManagerBackup>> {
    let name = apimanager.name_any();
    store
        .state()
        .iter()
        .filter(|b| b.namespace() == apimanager.namespace())
        .filter(|b| b.status.as_ref().is_none_or(|s| !s.progress().is_final()))
        .filter(|b| {
            let source = b.status.as_ref().and_then(|s| s.api_manager_source_name.as_deref());
            b.spec.api_manager_name.as_deref() == Some(name.as_str()) || source == Some(name.as_str())
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// The APIManager `named` (or the only one of the namespace), from the reconciler's watch-fed
/// store; when the store's answer would fail the backup (an APIManager created a moment ago, not
/// yet seen), from the API server: one GET of the named one, or a LIST without a name.
async fn resolve_apimanager(run: &Run<APIManagerBackup>, named: Option<&str>) -> Result<APIManager, Stop> {
    let meant = |known: &[APIManager]| rules::apimanager_meant(named, &run.namespace, known).cloned();
    let decided = lookup::cache_first(&run.ctx.apimanagers, &run.namespace, named, meant).await;
    Ok(decided.map_err(ReconcileError::from)?.map_err(Failure::from)?)
}

/// Creates the backup claim; one left by an earlier pass of this backup is fine, one holding
/// another backup is never written to ([`Failure::ClaimInUse`]).
async fn ensure_claim(run: &Run<APIManagerBackup>, apimanager: &APIManager) -> Result<(), Stop> {
    if run.create(objects::backup_claim(&run.object, apimanager)).await? {
        return Ok(());
    }
    let name = run.object.name_any();
    let claims: Api<PersistentVolumeClaim> = run.api();
    let claim = claims.get(&name).await.map_err(api_error(format!("reading PersistentVolumeClaim {name}")))?;
    let holder = match claim.annotations().get(CLAIM_BACKUP_UID).filter(|uid| !uid.is_empty()) {
        Some(uid) if Some(uid) == run.object.uid().as_ref() => return Ok(()),
        Some(uid) => ClaimHolder::Backup(uid.clone()),
        None => ClaimHolder::Unknown,
    };
    Err(Failure::ClaimInUse { claim: name, holder }.into())
}

#[cfg(test)]
mod tests;
