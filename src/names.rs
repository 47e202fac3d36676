//! The names other programs see, each spelled once: the job steps (subcommand, container name,
//! manifest key) and the backup job's name prefix, the annotations on a
//! backup claim, the labels on what the operator creates (among them the step job of a Pod), the
//! accounts the step Pods run as, and where a step Pod leaves its failure reason. Writers and
//! readers use these constants, so a typo cannot split them. (The reasons an operation ends with
//! are [`crate::api::status::Reason`].)

/// The `job` subcommand, container name and manifest key of the step exporting Secrets,
/// ConfigMaps and the APIManager.
pub const EXPORT_OBJECTS: &str = "export-objects";
/// The `job` subcommand, container name and manifest key of the step copying System FileStorage.
pub const COPY_FILES: &str = "copy-files";
/// The `job` subcommand, container name and manifest key of the step copying an S3 System
/// FileStorage bucket into the backup.
pub const BACKUP_S3_FILES: &str = "backup-s3-files";
/// The `job` subcommand and step job name prefix of the restore step writing the backed-up S3
/// System FileStorage objects into the restored installation's bucket.
pub const RESTORE_S3_FILES: &str = "restore-s3-files";
/// The `job` subcommand and step job name prefix of the read-only backup step telling who owns the
/// System FileStorage claim's root (so the copy can join its group).
pub const INSPECT_FILES: &str = "inspect-files";
/// The name prefix of a backup's one step job (`backup-<backup uid>`, its Pods
/// `backup-<backup uid>-<attempt>`), whose Pod runs [`EXPORT_OBJECTS`] as an init container, then
/// [`COPY_FILES`] (or only the export).
pub const BACKUP_JOB: &str = "backup";

/// The `job` subcommand and step job name prefix of the restore step checking the backup against its
/// manifest.
pub const VERIFY: &str = "verify";
/// The `job` subcommand and step job name prefix of the restore step creating Secrets and ConfigMaps.
pub const RESTORE_OBJECTS: &str = "restore-objects";
/// The `job` subcommand and step job name prefix of the restore step copying System FileStorage back.
pub const RESTORE_FILES: &str = "restore-files";
/// The `job` subcommand and step job name prefix of the restore step creating the APIManager.
pub const RESTORE_APIMANAGER: &str = "restore-apimanager";

/// Label on everything the operator creates (and the selector of the Pods it watches).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", CONTROLLER);
/// The label selector of [`MANAGED_BY`]: everything the operator created.
pub fn managed_by_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Label holding the UID of the APIManagerBackup an object belongs to (a UID always fits a label
/// value; a name of up to 253 characters does not).
pub const BACKUP_UID_LABEL: &str = "apps.3scale.net/apimanagerbackup-uid";
/// Label holding the UID of the APIManagerRestore an object belongs to.
pub const RESTORE_UID_LABEL: &str = "apps.3scale.net/apimanagerrestore-uid";
/// Label on each attempt's Pod of a step job, holding the step job's name (`<prefix>-<owner uid>`;
/// its Pods are `<step job>-<attempt>`): `kubectl get pods -l apps.3scale.net/step-job=<name>`.
pub const STEP_JOB_LABEL: &str = "apps.3scale.net/step-job";

/// Annotation on a backup claim: the backed-up APIManager's name (3scale-operator's key).
pub const CLAIM_APIMANAGER_NAME: &str = "apiManagerName";
/// Annotation on a backup claim: the backed-up APIManager's UID (3scale-operator's key).
pub const CLAIM_APIMANAGER_UID: &str = "apiManagerUID";
/// Annotation on a backup claim: the name of the APIManagerBackup that wrote it.
pub const CLAIM_BACKUP_NAME: &str = "apiManagerBackupName";
/// Annotation on a backup claim: the UID of the APIManagerBackup that wrote it. It decides who owns
/// the claim: a claim whose value differs holds another backup and is never written to.
pub const CLAIM_BACKUP_UID: &str = "apiManagerBackupUID";

/// Annotation on a backup claim of this operator (3scale-operator sets none): where the backup it
/// holds stands, [`CLAIM_IN_PROGRESS`] from the claim's creation, [`CLAIM_COMPLETED`] once the backup
/// completed. A restore refuses a claim that carries it with any other value: the backup failed, was
/// interrupted or still runs.
pub const CLAIM_BACKUP_STATE: &str = "apps.3scale.net/backup-state";
/// [`CLAIM_BACKUP_STATE`] while the backup has not completed.
pub const CLAIM_IN_PROGRESS: &str = "InProgress";
/// [`CLAIM_BACKUP_STATE`] once the backup completed.
pub const CLAIM_COMPLETED: &str = "Completed";

/// ServiceAccount the backup step Pods run as.
pub const JOB_SERVICE_ACCOUNT: &str = "apimanager-backup";
/// ClusterRole (shipped in `manifests/rbac.yaml`) that reads exactly the backed-up Secrets and
/// ConfigMaps by name; the operator binds it per backup and never reads them itself.
pub const JOB_DATA_CLUSTER_ROLE: &str = "apimanager-backup-job";

/// ServiceAccount the restore step Pods run as.
pub const RESTORE_SERVICE_ACCOUNT: &str = "apimanager-restore";
/// ClusterRole (shipped in `manifests/rbac.yaml`) that lets the restore step Pods create the Secrets,
/// ConfigMaps and the APIManager; the operator binds it per restore and never holds it itself.
pub const RESTORE_JOB_CLUSTER_ROLE: &str = "apimanager-restore-job";

/// Where a step Pod's container writes why it failed; Kubernetes reports the file's content as the
/// container's termination message, which the reconciler quotes in the `Failed` condition.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// The operator's name: the `managed-by` label value and the reporter of its events.
pub const CONTROLLER: &str = "apimanager-backup-operator";

/// Label on each APIManagerBackup a schedule creates: the APIManagerBackupSchedule's name
/// (`kubectl get apimanagerbackups -l apps.3scale.net/apimanagerbackupschedule=<name>`); names of
/// schedules are limited to 63 characters so that they fit.
pub const SCHEDULE_LABEL: &str = "apps.3scale.net/apimanagerbackupschedule";
/// Annotation on each APIManagerBackup a schedule creates: the run's scheduled time (RFC 3339, UTC).
pub const SCHEDULED_TIME: &str = "apps.3scale.net/scheduled-time";

/// Event reason on a schedule: a run started a backup.
pub const RUN_STARTED: &str = "RunStarted";
/// Event reason on a schedule: a run was skipped, the previous backup still running (`Forbid`).
pub const RUN_SKIPPED: &str = "RunSkipped";
/// Event reason on a schedule: runs were missed (operator not running, or past the deadline).
pub const RUN_MISSED: &str = "RunMissed";
/// Event reason on a schedule: a running backup was stopped for a new run (`Replace`).
pub const BACKUP_REPLACED: &str = "BackupReplaced";
/// Event reason on a schedule: retention deleted a backup and its data.
pub const BACKUP_PRUNED: &str = "BackupPruned";
/// `Ready` reason of a schedule waiting for its next run.
pub const SCHEDULED: &str = "Scheduled";
/// `Ready` reason of a suspended schedule.
pub const SUSPENDED: &str = "Suspended";
/// `Ready` reason (False) of a schedule whose spec does not read (admission normally refuses it).
pub const INVALID_SCHEDULE: &str = "InvalidSchedule";
/// `Ready` reason (False) of a schedule with no firing left (past the year 9999).
pub const NO_NEXT_RUN: &str = "NoNextRun";
