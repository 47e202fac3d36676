//! How often and how long to wait before trying a failed request again: bounded attempts,
//! exponential back-off with full jitter (a random wait between zero and the exponential bound,
//! so many clients throttled together do not come back together).

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Attempts and waits for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Bound of the wait after the first failure; doubled after each further one.
    pub base_delay: Duration,
    /// Largest bound of a wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, waits bounded by 200 ms, 400 ms, … up to 20 s (about 30 s in all at most).
    fn default() -> Self {
        Self { max_attempts: 6, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(20) }
    }
}

impl RetryPolicy {
    /// The bound of the wait after failed attempt `attempt` (1 for the first).
    pub fn bound(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait after failed attempt `attempt`, from `random` (uniform over `u64`): between
    /// zero and [`bound`](Self::bound).
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let bound = self.bound(attempt).as_nanos();
        if bound == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(random) % (bound + 1);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Whether another attempt follows failed attempt `attempt`.
    pub fn again(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// Sleeps the jittered wait after failed attempt `attempt`.
    pub async fn wait(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt, random())).await;
    }
}

/// A random number for jitter (not for secrets): the standard library's per-instance random
/// hash keys.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let bounds: Vec<u128> = (1..=9).map(|a| policy.bound(a).as_millis()).collect();
        assert_eq!(bounds, [200, 400, 800, 1600, 3200, 6400, 12800, 20000, 20000]);
        assert_eq!(policy.bound(200), Duration::from_secs(20));
    }

    #[test]
    fn delays_are_jittered_within_the_bound() {
        let policy =
            RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        assert_eq!(policy.delay(1, 0), Duration::ZERO);
        assert_eq!(policy.delay(1, 100_000_000), Duration::from_millis(100));
        assert!(policy.delay(2, u64::MAX) <= Duration::from_millis(200));
        let distinct: std::collections::BTreeSet<Duration> = (0..20).map(|_| policy.delay(3, random())).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
        assert!(distinct.iter().all(|d| *d <= Duration::from_millis(400)));
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
        assert!(policy.again(1) && policy.again(2));
        assert!(!policy.again(3));
        assert!(!RetryPolicy { max_attempts: 1, ..policy }.again(1));
    }
}
