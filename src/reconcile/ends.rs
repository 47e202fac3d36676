//! Ends being written: an operation's end (its metrics and its event) is announced once its
//! status write is known to have landed. A write whose answer was lost (a dropped connection) may
//! have landed all the same; the end is kept here, and the next pass that finds the operation
//! ended announces it then, so a lost answer loses neither the event nor the count, and a write
//! that did not land is made again by the next pass, which replaces the kept end.

use super::outcome::Failure;
use kube::runtime::events::EventType;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// One end to announce.
#[derive(Clone, Debug)]
pub struct PendingEnd {
    /// Success, or the failure.
    pub outcome: Result<(), Failure>,
    /// The event's type.
    pub type_: EventType,
    /// The event's reason.
    pub reason: String,
    /// The event's note.
    pub message: String,
}

/// Ends not yet announced, by object UID.
#[derive(Debug, Default)]
pub struct PendingEnds(Mutex<HashMap<String, PendingEnd>>);

impl PendingEnds {
    /// Keeps `end` of the object `uid` until it is announced (replacing one kept before).
    pub fn keep(&self, uid: &str, end: PendingEnd) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(uid.to_owned(), end);
    }

    /// The end kept for the object `uid`, now to be announced (at most once).
    pub fn take(&self, uid: &str) -> Option<PendingEnd> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_end_is_taken_once_and_the_last_kept_wins() {
        let ends = PendingEnds::default();
        let end = |reason: &str| PendingEnd {
            outcome: Ok(()),
            type_: EventType::Normal,
            reason: reason.to_owned(),
            message: String::new(),
        };
        assert!(ends.take("a").is_none());
        ends.keep("a", end("first"));
        ends.keep("a", end("again"));
        assert_eq!(ends.take("a").map(|e| e.reason).as_deref(), Some("again"));
        assert!(ends.take("a").is_none(), "announced once");
    }
}
