//! What a fault proxy did, counted as it happens, so a test can report and check the faults it
//! ran under.

use super::spec::FaultKind;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one proxy.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    passed: AtomicU64,
    delayed: AtomicU64,
    too_many_requests: AtomicU64,
    internal_errors: AtomicU64,
    unavailable: AtomicU64,
    resets: AtomicU64,
    stalls: AtomicU64,
    lost_answers: AtomicU64,
    gone: AtomicU64,
    watches_dropped: AtomicU64,
    partitioned: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultCounts {
    /// Requests received.
    pub requests: u64,
    /// Requests passed to the API server (lost answers included).
    pub passed: u64,
    /// Requests given a delay.
    pub delayed: u64,
    /// Answered 429.
    pub too_many_requests: u64,
    /// Answered 500.
    pub internal_errors: u64,
    /// Answered 503.
    pub unavailable: u64,
    /// Connections closed before the request was passed.
    pub resets: u64,
    /// Requests stalled, then their connection closed.
    pub stalls: u64,
    /// Requests passed whose answer was dropped.
    pub lost_answers: u64,
    /// Resuming watches answered 410 Gone.
    pub gone: u64,
    /// Watch streams cut at the end of their period.
    pub watches_dropped: u64,
    /// Requests, connections and streams cut or held by a partition.
    pub partitioned: u64,
}

impl FaultCounts {
    /// Every fault injected: failed requests, 410s, cut watches and partitioned requests (delays
    /// are not faults).
    pub fn injected(&self) -> u64 {
        self.too_many_requests
            + self.internal_errors
            + self.unavailable
            + self.resets
            + self.stalls
            + self.lost_answers
            + self.gone
            + self.watches_dropped
            + self.partitioned
    }

    /// `self` minus `earlier`, counter by counter: what happened in between.
    pub fn since(&self, earlier: &Self) -> Self {
        self.zip(earlier, u64::saturating_sub)
    }

    /// `self` plus `other`, counter by counter (several proxies together).
    pub fn plus(&self, other: &Self) -> Self {
        self.zip(other, u64::saturating_add)
    }

    fn zip(&self, other: &Self, f: fn(u64, u64) -> u64) -> Self {
        Self {
            requests: f(self.requests, other.requests),
            passed: f(self.passed, other.passed),
            delayed: f(self.delayed, other.delayed),
            too_many_requests: f(self.too_many_requests, other.too_many_requests),
            internal_errors: f(self.internal_errors, other.internal_errors),
            unavailable: f(self.unavailable, other.unavailable),
            resets: f(self.resets, other.resets),
            stalls: f(self.stalls, other.stalls),
            lost_answers: f(self.lost_answers, other.lost_answers),
            gone: f(self.gone, other.gone),
            watches_dropped: f(self.watches_dropped, other.watches_dropped),
            partitioned: f(self.partitioned, other.partitioned),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// A request arrived.
    pub fn request(&self) {
        bump(&self.requests);
    }

    /// A request went on to the API server.
    pub fn passed(&self) {
        bump(&self.passed);
    }

    /// A request was delayed.
    pub fn delayed(&self) {
        bump(&self.delayed);
    }

    /// A request failed with `kind`.
    pub fn fault(&self, kind: FaultKind) {
        bump(match kind {
            FaultKind::TooManyRequests => &self.too_many_requests,
            FaultKind::InternalError => &self.internal_errors,
            FaultKind::Unavailable => &self.unavailable,
            FaultKind::Reset => &self.resets,
            FaultKind::Stall => &self.stalls,
            FaultKind::LostAnswer => &self.lost_answers,
        });
    }

    /// A resuming watch was answered 410 Gone.
    pub fn gone(&self) {
        bump(&self.gone);
    }

    /// A watch stream was cut at the end of its period.
    pub fn watch_dropped(&self) {
        bump(&self.watches_dropped);
    }

    /// A request, connection or stream met a partition.
    pub fn partitioned(&self) {
        bump(&self.partitioned);
    }

    /// The counts now.
    pub fn snapshot(&self) -> FaultCounts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        FaultCounts {
            requests: get(&self.requests),
            passed: get(&self.passed),
            delayed: get(&self.delayed),
            too_many_requests: get(&self.too_many_requests),
            internal_errors: get(&self.internal_errors),
            unavailable: get(&self.unavailable),
            resets: get(&self.resets),
            stalls: get(&self.stalls),
            lost_answers: get(&self.lost_answers),
            gone: get(&self.gone),
            watches_dropped: get(&self.watches_dropped),
            partitioned: get(&self.partitioned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_counts_once_under_its_kind_and_delays_are_not_faults() {
        let counters = Counters::default();
        counters.request();
        counters.delayed();
        counters.passed();
        for kind in FaultKind::ALL {
            counters.request();
            counters.fault(kind);
        }
        counters.gone();
        counters.watch_dropped();
        counters.partitioned();
        let counts = counters.snapshot();
        assert_eq!(counts.requests, 7);
        assert_eq!((counts.passed, counts.delayed), (1, 1));
        assert_eq!(counts.injected(), 9);
        assert_eq!(counts.since(&counts), FaultCounts::default());
        assert_eq!(counts.plus(&counts).injected(), 18);
        assert_eq!(counts.plus(&counts).since(&counts), counts);
    }
}
