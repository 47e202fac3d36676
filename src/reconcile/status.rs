//! Status bookkeeping: the standard `Ready` and `Failed` conditions and what makes a backup final.

use crate::api::backup::APIManagerBackupStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the backup finished (True) or is not finished (False, with the current step).
pub const READY: &str = "Ready";
/// Condition type: the backup failed and will not be retried.
pub const FAILED: &str = "Failed";

/// Sets condition `type_` (keeping its transition time when its status does not change).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Whether condition `type_` is True.
pub fn is_true(status: &APIManagerBackupStatus, type_: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// A backup that completed or failed is never worked on again.
pub fn is_final(status: &APIManagerBackupStatus) -> bool {
    status.completed == Some(true) || is_true(status, FAILED)
}

/// A backup that started and is not final.
pub fn in_progress(status: &APIManagerBackupStatus) -> bool {
    status.start_time.is_some() && !is_final(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut conditions = Vec::new();
        set_condition(&mut conditions, READY, false, "ExportingObjects", "a", Some(1), &at(10));
        set_condition(&mut conditions, READY, false, "CopyingFiles", "b", Some(1), &at(20));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "CopyingFiles");
        assert_eq!(conditions[0].last_transition_time, at(10));
        set_condition(&mut conditions, READY, true, "BackupCompleted", "c", Some(1), &at(30));
        assert_eq!(conditions[0].last_transition_time, at(30));
    }

    #[test]
    fn final_states() {
        let mut status = APIManagerBackupStatus::default();
        assert!(!is_final(&status) && !in_progress(&status));
        status.start_time = Some(at(1));
        assert!(in_progress(&status));
        set_condition(&mut status.conditions, FAILED, true, "JobFailed", "x", None, &at(2));
        assert!(is_final(&status) && !in_progress(&status));
        let done = APIManagerBackupStatus { completed: Some(true), ..APIManagerBackupStatus::default() };
        assert!(is_final(&done));
    }
}
