//! The `APIManagerBackupSchedule` custom resource (`apps.3scale.net/v1alpha1`): an
//! `APIManagerBackup` made on a cron schedule, with retention of the backups it made.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::backup::APIManagerBackupSpec;

/// Message of the CRD's CEL rule on a schedule's name: it is the value of a label on each backup the
/// schedule creates, and label values have at most 63 characters.
pub const NAME_TOO_LONG: &str =
    "metadata.name must be no more than 63 characters: it labels each backup the schedule creates";

/// Desired state of an `APIManagerBackupSchedule`: when to back up, how, and what to keep.
// Clippy reads two printer columns of the same type as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "apps.3scale.net",
    version = "v1alpha1",
    kind = "APIManagerBackupSchedule",
    plural = "apimanagerbackupschedules",
    namespaced,
    status = "APIManagerBackupScheduleStatus",
    doc = "APIManagerBackupSchedule creates an APIManagerBackup on a cron schedule and prunes the backups it created by its retention rules.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(name = "Last Success", type_ = "date", json_path = ".status.lastSuccessfulTime"),
    printcolumn(name = "Next", type_ = "string", json_path = ".status.nextScheduleTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 63").message(NAME_TOO_LONG).reason(Reason::FieldValueInvalid)
)]
#[serde(rename_all = "camelCase")]
pub struct APIManagerBackupScheduleSpec {
    /// When to back up: a 5-field cron expression (`minute hour day-of-month month day-of-week`)
    /// or one of `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`.
    pub schedule: String,
    /// The IANA time zone the schedule and the retention buckets are read in.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// `true` stops new runs; resuming does not start the runs missed meanwhile.
    #[serde(default)]
    pub suspend: bool,
    /// What to do when a run is due while the schedule's previous backup still runs.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// How many seconds late a run may still start (after an operator outage); unset: however
    /// late (at most one late run starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// The spec of each APIManagerBackup the schedule creates.
    pub template: APIManagerBackupSpec,
    /// Which of the schedule's backups to keep.
    #[serde(default)]
    pub retention: Retention,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// What to do when a run is due while the previous backup still runs.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConcurrencyPolicy {
    /// Skip the run and report it.
    #[default]
    Forbid,
    /// Stop the running backup (deleting it and its data) and start the run.
    Replace,
}

/// Which of the schedule's backups are kept; every other one is deleted with its data. Unset
/// counts are unused; with no `keep*` count set, every completed backup is kept (up to `maxAge`).
/// The newest completed backup is never deleted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Keep the newest n completed backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_last: Option<u32>,
    /// Keep the newest completed backup of each of the newest n hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest completed backup of each of the newest n days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_daily: Option<u32>,
    /// Keep the newest completed backup of each of the newest n ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest completed backup of each of the newest n months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest completed backup of each of the newest n years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub keep_yearly: Option<u32>,
    /// Delete completed backups taken longer ago than this (for example `720h` or `30d`), even
    /// when a `keep*` count would keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Keep the newest n failed backups (for their reports); older failed ones are deleted.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub keep_failed: u32,
}

fn one() -> u32 {
    1
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: None,
            keep_hourly: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
            keep_yearly: None,
            max_age: None,
            keep_failed: one(),
        }
    }
}

/// Observed state of an `APIManagerBackupSchedule`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct APIManagerBackupScheduleStatus {
    /// The scheduled time of the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the newest backup of the schedule completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next run (the armed one); unset while suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// The schedule's backups still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// Standard conditions: `Ready` (the schedule is valid and armed or suspended) with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
