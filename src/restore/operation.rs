//! A restore as an [`Operation`] of the step machine (README, "Restores: APIManagerRestore"): the step jobs `verify`,
//! `restore-objects`, `restore-files` (when the backed-up APIManager keeps its files on a claim,
//! which is created first when missing) and `restore-apimanager`, each reporting what it did, then a
//! wait until the restored APIManager reports itself available; per-restore RBAC for the step
//! Pods' ServiceAccount.

use super::objects::{binding_name, role_binding, system_storage_claim};
use crate::api::apimanager::{APIManager, DEFAULT_SYSTEM_STORAGE_CLAIM};
use crate::api::restore::{APIManagerRestore, APIManagerRestoreStatus};
use crate::api::s3::S3BackupLocation;
use crate::api::status::{OperationStatus, READY, Reason};
use crate::job::report::{Checked, StepReport};
use crate::job::{CommonArgs, JobCommand, RestoreArgs, RestoreFilesArgs, RestoreS3FilesArgs};
use crate::layout::{BACKUP_MOUNT, FILE_STORAGE_MOUNT, MANIFEST_FILE};
use crate::lookup;
use crate::names::{RESTORE_OBJECTS, RESTORE_SERVICE_ACCOUNT, RESTORE_UID_LABEL, VERIFY};
use crate::plural::counted;
use crate::reconcile::machine::{End, Operation, Run};
use crate::reconcile::outcome::{Failure, Stop};
use crate::reconcile::s3;
use crate::reconcile::step::{self, ClaimMount, JobStep, StepOwner};
use crate::reconcile::{ReconcileError, ReconcileSettings};
use k8s_openapi::api::core::v1::LocalObjectReference;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use std::time::Duration;

/// Condition type, True (with this reason too) when the backup matched its manifest, False (reason
/// `NoManifest`) when it has none and is restored unchecked.
pub const VERIFIED: &str = "Verified";

/// The `Ready` reason while the restored APIManager is not available yet.
pub const WAITING: &str = "WaitingForAPIManager";

/// What the steps before the step jobs found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePlan {
    /// The backup claim, mounted read-only by every step Pod.
    pub claim: String,
    /// `--file-storage-group`, when given: the group the restored files get, whatever the backup's.
    pub file_storage_group: Option<i64>,
}

/// The unfinished restores of `apimanager` (the one each restored), reconciled again when it
/// changes or goes away: a restore waits for it to report itself available.
pub fn restores_of(store: &Store<APIManagerRestore>, apimanager: &APIManager) -> Vec<ObjectRef<APIManagerRestore>> {
    let name = apimanager.name_any();
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == apimanager.namespace())
        .filter_map(|r| Some((r, r.status.as_ref()?)))
        .filter(|(_, status)| !status.progress().is_final())
        .filter(|(_, status)| status.api_manager_to_restore_ref.as_ref().is_some_and(|r| r.name == name))
        .map(|(r, _)| ObjectRef::from_obj(r.as_ref()))
        .collect()
}

impl StepOwner for APIManagerRestore {
    const UID_LABEL: &'static str = RESTORE_UID_LABEL;
}

impl Operation for APIManagerRestore {
    type Status = APIManagerRestoreStatus;
    type Plan = RestorePlan;
    const NOUN: &'static str = "restore";
    const TIMEOUT_FLAG: &'static str = "--restore-timeout";
    const STARTING: &'static str = "starting the restore";
    const SUCCEEDED: &'static str = Reason::RestoreCompleted.label();
    const END_ACTION: &'static str = "Restore";

    fn status(&self) -> Option<&APIManagerRestoreStatus> {
        self.status.as_ref()
    }

    fn timeout(settings: &ReconcileSettings) -> Duration {
        settings.restore_timeout
    }

    async fn prepare(run: &mut Run<Self>) -> Result<RestorePlan, Stop> {
        let claim = run.object.spec.restore_source.claim_name().unwrap_or_default().to_owned();
        Ok(RestorePlan { claim, file_storage_group: run.ctx.settings.jobs.file_storage_group })
    }

    /// `verify` first; the others once its report is recorded (`restore-files` only when the
    /// backed-up APIManager keeps its files on a claim, `restore-s3-files` only when the backup
    /// holds its S3 bucket's objects), the APIManager last.
    fn job_steps(&self, plan: &RestorePlan) -> Vec<JobStep> {
        let (backup_claims, common, secrets) = match &self.spec.restore_source.s3 {
            Some(source) => {
                let access = s3::access(&source.bucket, &source.backup_path, None);
                (Vec::new(), CommonArgs { s3: access.args, ..CommonArgs::at(BACKUP_MOUNT) }, access.secrets)
            }
            None => {
                let claim = ClaimMount::new("backup", plan.claim.clone(), BACKUP_MOUNT, true);
                let key_secret = self.spec.restore_source.persistent_volume_claim.as_ref().and_then(|c| c.key_secret());
                // No key: the clear layout (no arguments, no Secret).
                let access = key_secret.map(|secret| s3::claim_access(secret, None)).unwrap_or_default();
                (vec![claim], CommonArgs { s3: access.args, ..CommonArgs::at(BACKUP_MOUNT) }, access.secrets)
            }
        };
        let namespace = self.namespace().unwrap_or_default();
        let verify = JobStep {
            command: JobCommand::Verify(common.clone()),
            action: "Verify",
            reason: "Verifying",
            doing: "verifying the backup against its manifest",
            claims: backup_claims.clone(),
            secrets,
            service_account: RESTORE_SERVICE_ACCOUNT,
            // It reads files only: no API token in its Pod.
            api_access: false,
        };
        let status = self.status.as_ref().filter(|s| s.api_manager_to_restore_ref.is_some());
        let Some(status) = status else { return vec![verify] };
        let objects = JobStep {
            command: JobCommand::RestoreObjects(RestoreArgs { namespace: namespace.clone(), common: common.clone() }),
            action: "RestoreObjects",
            reason: "RestoringObjects",
            doing: "creating the backed-up Secrets and ConfigMaps",
            api_access: true,
            ..verify.clone()
        };
        let mut steps = vec![verify.clone(), objects];
        if let Some(claim) = &status.system_storage_claim_name {
            let group = plan.file_storage_group.or(status.file_storage_group);
            steps.push(JobStep {
                command: JobCommand::RestoreFiles(RestoreFilesArgs {
                    target: FILE_STORAGE_MOUNT.into(),
                    group: group.and_then(|group| u32::try_from(group).ok()),
                    common: common.clone(),
                }),
                action: "RestoreFiles",
                reason: "RestoringFiles",
                doing: "copying the System FileStorage back",
                claims: backup_claims
                    .iter()
                    .cloned()
                    .chain([ClaimMount {
                        group,
                        ..ClaimMount::new("system-storage", claim.clone(), FILE_STORAGE_MOUNT, false)
                    }])
                    .collect(),
                ..verify.clone()
            });
        }
        if let Some(secret) = &status.file_storage_s3_secret_name {
            steps.push(JobStep {
                command: JobCommand::RestoreS3Files(RestoreS3FilesArgs {
                    secret: secret.clone(),
                    overwrite: self.spec.overwrite_file_storage_objects == Some(true),
                    common: common.clone(),
                }),
                action: "RestoreS3Files",
                reason: "RestoringS3Files",
                doing: "writing the System FileStorage objects back into its bucket",
                ..verify.clone()
            });
        }
        steps.push(JobStep {
            command: JobCommand::RestoreApimanager(RestoreArgs { namespace, common }),
            action: "RestoreAPIManager",
            reason: "RestoringAPIManager",
            doing: "creating the backed-up APIManager",
            api_access: true,
            ..verify
        });
        steps
    }

    fn report_pending(&self, status: &APIManagerRestoreStatus, step: &JobStep) -> bool {
        match step.name() {
            VERIFY => status.api_manager_to_restore_ref.is_none(),
            RESTORE_OBJECTS => status.kept_objects.is_none(),
            _ => false,
        }
    }

    async fn job_succeeded(run: &mut Run<Self>, step: &JobStep, pod: &str, report: StepReport) -> Result<(), Stop> {
        match report {
            StepReport::Verify { checked, api_manager } if step.name() == VERIFY => {
                if run.object.spec.restore_source.s3.is_some() {
                    // A claim's backup names its APIManager to admission; a bucket's only now.
                    refuse_live_apimanager(run, &api_manager.name).await?;
                }
                if let Some(wanted) = &api_manager.system_storage {
                    // An existing claim is used as it is: it belongs to the installation.
                    run.create(system_storage_claim(&run.namespace, wanted)).await?;
                    run.status.system_storage_claim_name = Some(DEFAULT_SYSTEM_STORAGE_CLAIM.to_owned());
                }
                let (verified, reason, message) = match checked {
                    Checked::Verified { files, links } => {
                        let (files, links) =
                            (counted(files as u64, "file", "files"), counted(links as u64, "link", "links"));
                        (true, VERIFIED, format!("the backup matches {MANIFEST_FILE}: {files} and {links}"))
                    }
                    Checked::NoManifest => (
                        false,
                        "NoManifest",
                        format!(
                            "the backup has no {MANIFEST_FILE} (3scale-operator's layout), so it could not be verified; \
it is restored unchecked"
                        ),
                    ),
                };
                run.condition(VERIFIED, verified, reason, &message);
                let found = api_manager.file_storage_group.map(i64::from);
                run.status.file_storage_group = run.ctx.settings.jobs.file_storage_group.or(found);
                run.status.file_storage_s3_secret_name = api_manager.file_storage_s3_secret;
                run.status.api_manager_to_restore_ref = Some(LocalObjectReference { name: api_manager.name });
                Ok(())
            }
            StepReport::RestoreObjects { kept, .. } if step.name() == RESTORE_OBJECTS => {
                run.status.kept_objects = Some(kept);
                Ok(())
            }
            _ => Err(Failure::Unreported { pod: pod.to_owned() }.into()),
        }
    }

    /// Waits until the restored APIManager reports itself available (3scale-operator deploys it),
    /// woken by the watch on APIManagers, read from that watch's store (one GET when the store has
    /// not seen it yet, e.g. just after `restore-apimanager` created it); the timeout still applies.
    async fn after_jobs(run: &mut Run<Self>, _: &RestorePlan) -> Result<Option<Action>, Stop> {
        let Some(name) = run.status.api_manager_to_restore_ref.as_ref().map(|r| r.name.clone()) else {
            return Ok(None);
        };
        let named =
            |known: &[APIManager]| known.iter().find(|apimanager| apimanager.name_any() == name).cloned().ok_or(());
        let found = lookup::cache_first(&run.ctx.apimanagers, &run.namespace, Some(&name), named).await;
        let Ok(apimanager) = found.map_err(ReconcileError::from)? else {
            return Err(Failure::APIManagerDeleted { name }.into());
        };
        if apimanager.is_available() {
            return Ok(None);
        }
        let message = format!("waiting until APIManager {name} reports itself Available");
        run.condition(READY, false, WAITING, &message);
        Ok(Some(Action::requeue(run.time_left())))
    }

    async fn before_jobs(run: &Run<Self>, _: &RestorePlan) -> Result<(), ReconcileError> {
        run.create(step::service_account(&run.namespace, RESTORE_SERVICE_ACCOUNT)).await?;
        run.create(role_binding(&run.object)).await?;
        Ok(())
    }

    /// Removes the step Pods' access to the namespace.
    async fn after_end(run: &Run<Self>) -> Result<(), ReconcileError> {
        run.delete::<RoleBinding>(&binding_name(&run.object), &DeleteParams::default()).await
    }

    fn note(_: &RestorePlan) -> Option<&'static str> {
        None
    }

    fn success_message(run: &Run<Self>) -> String {
        let name = run.status.api_manager_to_restore_ref.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
        let source = match &run.object.spec.restore_source.s3 {
            Some(source) => {
                let bucket = &source.bucket;
                let location = S3BackupLocation {
                    bucket: bucket.bucket.clone(),
                    prefix: bucket.prefix().to_owned(),
                    path: source.backup_path.clone(),
                };
                location.url()
            }
            None => {
                format!("PersistentVolumeClaim {}", run.object.spec.restore_source.claim_name().unwrap_or_default())
            }
        };
        let mut message = format!("APIManager {name} restored from {source} and available");
        if let Some(kept) = run.status.kept_objects.as_ref().filter(|kept| !kept.is_empty()) {
            message.push_str(&format!("; these existed already and were left as they were: {}", kept.join(", ")));
        }
        message
    }

    fn record_end(ctx: &crate::reconcile::Context, _: &Self, end: &End<'_>) {
        ctx.metrics.observe_restore(end.metric());
    }
}

/// Fails the restore when APIManager `name` lives in the restore's namespace: a restore never
/// writes over a live installation.
async fn refuse_live_apimanager(run: &Run<APIManagerRestore>, name: &str) -> Result<(), Stop> {
    let absent = |known: &[APIManager]| if known.iter().any(|am| am.name_any() == name) { Err(()) } else { Ok(()) };
    match lookup::cache_first(&run.ctx.apimanagers, &run.namespace, Some(name), absent).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err(Failure::LiveApiManager { name: name.to_owned(), namespace: run.namespace.clone() }.into()),
        Err(error) => Err(ReconcileError::from(error).into()),
    }
}

#[cfg(test)]
mod tests;
