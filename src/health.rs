//! Readiness: named checks that must all pass before `/readyz` answers 200.
//!
//! A cache marks its check from its own watch stream ([`Readiness::mark_synced`]), never by a
//! second waiter on `Store::wait_until_ready`: kube-runtime wakes only the last task that polled
//! it, so a Controller waiting on the same store leaves any other waiter asleep forever.

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The check that fails once the process is asked to stop (see
/// [`signals::stop_requested_and_drained`](crate::signals::stop_requested_and_drained)).
pub const SHUTDOWN: &str = "shutdown";

/// Shared readiness checks; clones see the same state.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<&'static str, bool>>>,
}

impl Readiness {
    /// Marks check `name` as passing or failing (an unknown name is added).
    pub fn set(&self, name: &'static str, ready: bool) {
        self.checks.write().unwrap_or_else(PoisonError::into_inner).insert(name, ready);
    }

    /// Names of the checks that do not pass yet.
    pub fn failing(&self) -> Vec<&'static str> {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        checks.iter().filter(|(_, ready)| !**ready).map(|(name, _)| *name).collect()
    }

    /// Registers check `name` as failing and passes `events` through unchanged, marking the check
    /// passing at the end of the first complete list (`InitDone`). Put it after the reflector that
    /// fills a cache, so the cache holds that list when the check passes; a later re-list keeps
    /// the check passing, as the cache keeps serving its last state meanwhile.
    pub fn mark_synced<K, S>(&self, name: &'static str, events: S) -> impl Stream<Item = S::Item> + use<K, S>
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    {
        self.set(name, false);
        let readiness = self.clone();
        events.inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                readiness.set(name, true);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_passes_once_its_first_list_is_complete() {
        let readiness = Readiness::default();
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply("a")),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Init),
        ]);
        let mut events = std::pin::pin!(readiness.mark_synced("cache", events));
        assert_eq!(readiness.failing(), ["cache"]);
        events.next().await;
        events.next().await;
        assert_eq!(readiness.failing(), ["cache"], "not ready in the middle of the first list");
        events.next().await;
        assert!(readiness.failing().is_empty(), "ready once the first list is complete");
        events.next().await;
        events.next().await;
        assert!(readiness.failing().is_empty(), "a watch error or a re-list keeps the cache serving");
    }
}
