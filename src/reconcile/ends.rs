//! Ends announced once: an operation's end (its metrics and its event) is announced after its
//! final status write, from that status, under an event name every replica gives it
//! ([`super::events::end_event_name`]), so whoever creates that event announces the end and
//! counts it, and anyone finding it there does neither.
//!
//! A replica owes the announcement of each end it writes until it is made: a write whose answer
//! was lost (a dropped connection) may have landed all the same, and an event the API server did
//! not take is tried again, so the next pass that finds the operation ended announces it then. A
//! replica that takes over from one that died or lost its leadership between the write and the
//! announcement owes nothing; it looks, once, at each end written within [`ANNOUNCE_WITHIN`] and
//! announces those whose event it does not find (docs/faults.md, "Ends announced once").

use crate::api::status::{FAILED, Progress, READY, Reason};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::events::EventType;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How long after an end a replica that did not write it still looks whether it was announced:
/// long enough for a new leader to take over and make its first passes, and well within the hour
/// the API server keeps events (its `--event-ttl`), so that an event that expired is never taken
/// for an end not announced.
pub const ANNOUNCE_WITHIN: SignedDuration = SignedDuration::from_mins(10);

/// Looked-at ends remembered before those older than [`ANNOUNCE_WITHIN`] are forgotten.
const LOOKED_AT_KEPT: usize = 512;

/// What announcing an ended operation says, read from its final status alone, so that every
/// replica announces one end the same way.
#[derive(Clone, Debug, PartialEq)]
pub struct Announcement {
    /// Success, or the failure's reason.
    pub outcome: Result<(), Reason>,
    /// The event's type.
    pub type_: EventType,
    /// The event's reason: the `Ready` reason of a success, the `Failed` reason of a failure.
    pub reason: String,
    /// The event's note: that condition's message.
    pub message: String,
}

impl Announcement {
    /// The announcement of the end `progress` records: a success when `completed`, else a failure
    /// with the reason of its `Failed` condition. `None` while it has not ended, or for a failure
    /// reason no operation of this operator has (another controller's).
    pub fn of(progress: &Progress) -> Option<Self> {
        let condition = |type_: &str| progress.conditions.iter().find(|c| c.type_ == type_ && c.status == "True");
        if progress.completed == Some(true) {
            let ready = condition(READY)?;
            return Some(Self {
                outcome: Ok(()),
                type_: EventType::Normal,
                reason: ready.reason.clone(),
                message: ready.message.clone(),
            });
        }
        let failed = condition(FAILED)?;
        Some(Self {
            outcome: Err(Reason::from_label(&failed.reason)?),
            type_: EventType::Warning,
            reason: failed.reason.clone(),
            message: failed.message.clone(),
        })
    }
}

/// The ends this replica owes or has looked at.
#[derive(Debug, Default)]
struct State {
    /// By object UID, the ends this replica wrote and has not announced yet, each with whether
    /// an event create of it was tried already (and may have landed).
    owed: HashMap<String, bool>,
    /// By object UID, the ends this replica announced or looked at, with their time.
    looked_at: HashMap<String, Timestamp>,
}

/// The ends a replica owes, and those it looked at.
#[derive(Debug, Default)]
pub struct PendingEnds(Mutex<State>);

impl PendingEnds {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that this replica is writing the end of object `uid` and owes its announcement.
    pub fn owe(&self, uid: &str) {
        self.state().owed.entry(uid.to_owned()).or_insert(false);
    }

    /// Notes that the announcement of the end of `uid` was tried, may have landed, and is owed
    /// still.
    pub fn tried(&self, uid: &str) {
        self.state().owed.insert(uid.to_owned(), true);
    }

    /// What this replica owes for object `uid`, now to be announced (at most once): whether an
    /// event create of it was tried already.
    pub fn take(&self, uid: &str) -> Option<bool> {
        self.state().owed.remove(uid)
    }

    /// Whether the end of object `uid`, at `ended`, is one to look at now: written within
    /// [`ANNOUNCE_WITHIN`] before `now`, and not looked at by this replica yet. It is remembered
    /// as looked at from now on.
    pub fn first_look(&self, uid: &str, ended: Timestamp, now: Timestamp) -> bool {
        if now.duration_since(ended) >= ANNOUNCE_WITHIN {
            return false;
        }
        let mut state = self.state();
        if state.looked_at.len() >= LOOKED_AT_KEPT {
            state.looked_at.retain(|_, ended| now.duration_since(*ended) < ANNOUNCE_WITHIN);
        }
        state.looked_at.insert(uid.to_owned(), ended).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::set_condition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(time: &str) -> Timestamp {
        time.parse().expect("a timestamp")
    }

    #[test]
    fn an_owed_end_is_taken_once_and_remembers_a_try() {
        let ends = PendingEnds::default();
        assert_eq!(ends.take("a"), None);
        ends.owe("a");
        ends.owe("a");
        assert_eq!(ends.take("a"), Some(false));
        assert_eq!(ends.take("a"), None, "announced once");
        ends.owe("a");
        ends.tried("a");
        ends.owe("a");
        assert_eq!(ends.take("a"), Some(true), "a try that may have landed is not forgotten");
    }

    #[test]
    fn a_recent_end_is_looked_at_once_and_an_old_one_never() {
        let ends = PendingEnds::default();
        let now = at("2026-12-06T12:00:00Z");
        assert!(ends.first_look("a", at("2026-12-06T11:55:00Z"), now));
        assert!(!ends.first_look("a", at("2026-12-06T11:55:00Z"), now), "once");
        assert!(!ends.first_look("b", at("2026-12-06T11:50:00Z"), now), "ten minutes ago: announced long since");
        assert!(ends.first_look("c", at("2026-12-06T12:00:01Z"), now), "a clock ahead of ours: recent");
    }

    #[test]
    fn looked_at_ends_past_the_window_are_forgotten() {
        let ends = PendingEnds::default();
        let ended = at("2026-12-06T12:00:00Z");
        for n in 0..LOOKED_AT_KEPT {
            assert!(ends.first_look(&format!("u-{n}"), ended, ended));
        }
        let later = at("2026-12-06T12:10:00Z");
        assert!(ends.first_look("recent", at("2026-12-06T12:09:00Z"), later));
        assert_eq!(ends.state().looked_at.len(), 1, "only the recent one is kept");
    }

    #[test]
    fn an_announcement_is_read_from_the_final_status() {
        let now = Time(at("2026-12-06T12:00:00Z"));
        let mut progress = Progress::default();
        assert_eq!(Announcement::of(&progress), None, "not ended");
        set_condition(&mut progress.conditions, READY, false, "Timeout", "too slow", Some(1), &now);
        set_condition(&mut progress.conditions, FAILED, true, "Timeout", "too slow", Some(1), &now);
        assert_eq!(
            Announcement::of(&progress),
            Some(Announcement {
                outcome: Err(Reason::Timeout),
                type_: EventType::Warning,
                reason: "Timeout".into(),
                message: "too slow".into()
            })
        );
        let mut other = progress.clone();
        set_condition(&mut other.conditions, FAILED, true, "SomethingElse", "theirs", Some(1), &now);
        assert_eq!(Announcement::of(&other), None, "another controller's failure");
        let mut done = Progress { completed: Some(true), ..Progress::default() };
        set_condition(&mut done.conditions, READY, true, "BackupCompleted", "backup written", Some(1), &now);
        assert_eq!(
            Announcement::of(&done),
            Some(Announcement {
                outcome: Ok(()),
                type_: EventType::Normal,
                reason: "BackupCompleted".into(),
                message: "backup written".into()
            })
        );
    }
}
