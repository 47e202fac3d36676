//! The status vocabulary shared by every operation (a backup, a restore): the fields the step
//! machine keeps ([`Progress`]), the standard `Ready` and `Failed` conditions, what makes an
//! operation final, and every reason an operation ends with ([`Reason`]). It sits with the API types,
//! so whatever reads a status (metrics, the observer, the caches' trimming) needs no reconciler.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Condition type: the operation finished (True) or is not finished (False, with the current step).
pub const READY: &str = "Ready";
/// Condition type: the operation failed and will not be retried.
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

/// The status fields every operation has (3scale-operator's and the standard ones), which the step
/// machine reads and writes; the operation's own fields stay in its status type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// `true` once the operation finished successfully.
    pub completed: Option<bool>,
    /// When it started.
    pub start_time: Option<Time>,
    /// When it completed.
    pub completion_time: Option<Time>,
    /// `true` once every job step finished.
    pub main_steps_completed: Option<bool>,
    /// `Ready` and `Failed`.
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the status describes.
    pub observed_generation: Option<i64>,
}

impl Progress {
    /// Whether condition `type_` is True.
    pub fn is_true(&self, type_: &str) -> bool {
        self.conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
    }

    /// An operation that completed or failed is never worked on again.
    pub fn is_final(&self) -> bool {
        self.completed == Some(true) || self.is_true(FAILED)
    }

    /// An operation that started and is not final.
    pub fn in_progress(&self) -> bool {
        self.start_time.is_some() && !self.is_final()
    }

    /// The reason of a True `Failed` condition.
    pub fn failure_reason(&self) -> Option<&str> {
        self.conditions.iter().find(|c| c.type_ == FAILED && c.status == "True").map(|c| c.reason.as_str())
    }

    /// When a final operation ended and how many seconds it ran, from its status alone (so the
    /// same rule serves operations this operator runs and those another controller runs):
    /// `completed` with its `completionTime`, or a True `Failed` condition at its transition time;
    /// counted from `startTime` (0 without it). `None` while not final.
    pub fn ended(&self) -> Option<(Timestamp, f64)> {
        let ended = if self.completed == Some(true) {
            self.completion_time.as_ref()?.0
        } else {
            self.conditions.iter().find(|c| c.type_ == FAILED && c.status == "True")?.last_transition_time.0
        };
        let seconds = self.start_time.as_ref().map_or(0.0, |start| (ended - start.0).get_seconds().max(0) as f64);
        Some((ended, seconds))
    }
}

/// The status type of an operation: it holds a [`Progress`] among its own fields.
pub trait OperationStatus: Clone + Debug + Default + PartialEq + Serialize + DeserializeOwned + Send + Sync {
    /// The shared fields.
    fn progress(&self) -> Progress;
    /// Writes the shared fields.
    fn set_progress(&mut self, progress: Progress);
}

/// Implements [`OperationStatus`] for a status type holding the [`Progress`] fields under their
/// names (`completed`, `start_time`, `completion_time`, `main_steps_completed`, `conditions`,
/// `observed_generation`), as the 3scale-operator's status types do.
macro_rules! operation_status {
    ($status:ty) => {
        impl $crate::api::status::OperationStatus for $status {
            fn progress(&self) -> $crate::api::status::Progress {
                $crate::api::status::Progress {
                    completed: self.completed,
                    start_time: self.start_time.clone(),
                    completion_time: self.completion_time.clone(),
                    main_steps_completed: self.main_steps_completed,
                    conditions: self.conditions.clone(),
                    observed_generation: self.observed_generation,
                }
            }

            fn set_progress(&mut self, progress: $crate::api::status::Progress) {
                self.completed = progress.completed;
                self.start_time = progress.start_time;
                self.completion_time = progress.completion_time;
                self.main_steps_completed = progress.main_steps_completed;
                self.conditions = progress.conditions;
                self.observed_generation = progress.observed_generation;
            }
        }
    };
}
pub(crate) use operation_status;

/// Which kind of operation a [`Reason`] ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// An `APIManagerBackup`.
    Backup,
    /// An `APIManagerRestore`.
    Restore,
}

/// Declares [`Reason`] from one list of variants: its [`Reason::ALL`] and [`Reason::label`] (the
/// variant's name, as Kubernetes reasons are spelled) are derived from that list, never kept beside it.
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident,)*) => {
        /// Every reason an operation ends with: the reason of its `Ready` condition (and on failure
        /// of its `Failed` condition), of the event published at its end and the `reason` label of
        /// the end metrics.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in the order of the README.
            pub const ALL: &[Self] = &[$(Self::$variant,)*];

            /// The reason as Kubernetes objects and metrics spell it.
            pub const fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

reasons! {
    /// A backup succeeded.
    BackupCompleted,
    /// A restore succeeded.
    RestoreCompleted,
    /// The backup means no APIManager of its namespace.
    APIManagerNotFound,
    /// The APIManager is outside the backup scope.
    OutOfScope,
    /// The claim to write holds something else.
    ClaimInUse,
    /// A step job failed for good.
    JobFailed,
    /// A step's Pod succeeded without the report its step must leave.
    Unreported,
    /// The APIManager a restore created went away while the restore waited for it.
    APIManagerDeleted,
    /// The API server refused an object for good.
    Refused,
    /// The operation did not finish in time.
    Timeout,
}

impl Reason {
    /// Whether the operation ended successfully with this reason.
    pub const fn succeeded(self) -> bool {
        matches!(self, Self::BackupCompleted | Self::RestoreCompleted)
    }

    /// The kinds of operation that can end with this reason.
    pub const fn kinds(self) -> &'static [OperationKind] {
        use OperationKind::{Backup, Restore};
        match self {
            Self::BackupCompleted | Self::APIManagerNotFound | Self::OutOfScope | Self::ClaimInUse => &[Backup],
            Self::RestoreCompleted | Self::Unreported | Self::APIManagerDeleted => &[Restore],
            Self::JobFailed | Self::Refused | Self::Timeout => &[Backup, Restore],
        }
    }

    /// Every reason an operation of `kind` can fail with, in the order of the README (the label
    /// values of its failure metrics, all present from the start).
    pub fn failures(kind: OperationKind) -> impl Iterator<Item = Self> {
        Self::ALL.iter().copied().filter(move |reason| !reason.succeeded() && reason.kinds().contains(&kind))
    }

    /// The reason spelled `label`, if it is one.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|reason| reason.label() == label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::APIManagerBackupStatus;

    #[test]
    fn every_reason_is_listed_once_and_spelled_as_its_variant() {
        // Adding a variant without listing it fails to compile here (the match is exhaustive).
        let listed = |reason: Reason| match reason {
            Reason::BackupCompleted
            | Reason::RestoreCompleted
            | Reason::APIManagerNotFound
            | Reason::OutOfScope
            | Reason::ClaimInUse
            | Reason::JobFailed
            | Reason::Unreported
            | Reason::APIManagerDeleted
            | Reason::Refused
            | Reason::Timeout => Reason::ALL.iter().filter(|r| **r == reason).count(),
        };
        for reason in Reason::ALL {
            assert_eq!(listed(*reason), 1, "{reason:?}");
            assert_eq!(format!("{reason:?}"), reason.label());
            assert_eq!(Reason::from_label(reason.label()), Some(*reason));
        }
        assert_eq!(Reason::from_label("Other"), None);
    }

    #[test]
    fn each_kind_fails_with_the_reasons_of_the_readme() {
        let labels = |kind| Reason::failures(kind).map(Reason::label).collect::<Vec<_>>();
        assert_eq!(
            labels(OperationKind::Backup),
            ["APIManagerNotFound", "OutOfScope", "ClaimInUse", "JobFailed", "Refused", "Timeout"]
        );
        assert_eq!(
            labels(OperationKind::Restore),
            ["JobFailed", "Unreported", "APIManagerDeleted", "Refused", "Timeout"]
        );
        assert!(Reason::BackupCompleted.succeeded() && Reason::RestoreCompleted.succeeded());
    }

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
    fn the_end_comes_from_the_status_fields() {
        let mut progress = Progress { start_time: Some(at(100)), ..Progress::default() };
        assert_eq!(progress.ended(), None, "running");
        progress.completed = Some(true);
        assert_eq!(progress.ended(), None, "completed without completionTime is not an end yet");
        progress.completion_time = Some(at(142));
        assert_eq!(progress.ended(), Some((at(142).0, 42.0)));
        assert_eq!(progress.failure_reason(), None);
        let mut failed = Progress { start_time: Some(at(100)), ..Progress::default() };
        set_condition(&mut failed.conditions, FAILED, true, "JobFailed", "x", None, &at(107));
        assert_eq!(failed.ended(), Some((at(107).0, 7.0)));
        assert_eq!(failed.failure_reason(), Some("JobFailed"));
    }

    #[test]
    fn final_states() {
        let mut status = Progress::default();
        assert!(!status.is_final() && !status.in_progress());
        status.start_time = Some(at(1));
        assert!(status.in_progress());
        set_condition(&mut status.conditions, FAILED, true, "JobFailed", "x", None, &at(2));
        assert!(status.is_final() && !status.in_progress());
        let done = Progress { completed: Some(true), ..Progress::default() };
        assert!(done.is_final());
    }

    #[test]
    fn backup_status_round_trips_its_progress() {
        let progress = Progress {
            completed: Some(true),
            start_time: Some(at(1)),
            completion_time: Some(at(2)),
            main_steps_completed: Some(true),
            conditions: Vec::new(),
            observed_generation: Some(3),
        };
        let mut status = APIManagerBackupStatus { api_manager_source_name: Some("a".into()), ..Default::default() };
        status.set_progress(progress.clone());
        assert_eq!(status.progress(), progress);
        assert_eq!(status.api_manager_source_name.as_deref(), Some("a"), "its own fields are kept");
    }
}
