//! Which of a schedule's backups to keep and which to prune. Pure.
//!
//! The rules (restic's and K8up's `keep-*` semantics):
//! - Only the schedule's own backups are candidates (the caller passes no others).
//! - A running backup is never pruned.
//! - Completed backups: `keepLast` keeps the newest n; `keepHourly`, `keepDaily`, `keepWeekly`
//!   (ISO weeks), `keepMonthly`, `keepYearly` each keep the newest backup of each of the newest n
//!   hours, days, weeks, months, years that have one, the buckets cut on the schedule's wall clock.
//!   A backup kept by any rule is kept. With no `keep*` rule set, every completed backup is kept.
//!   `maxAge` then prunes any completed backup taken longer ago than that, whatever kept it.
//! - The newest completed backup is never pruned, whatever the rules say.
//! - Failed backups: the newest `keepFailed` are kept (for their reports), older ones pruned.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A schedule's retention rules (absent counts are unused rules; the default keeps every completed
/// backup and no failed one, where the CRD's default `keepFailed` is 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest n completed backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the newest n hours.
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the newest n days.
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the newest n ISO weeks.
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the newest n months.
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the newest n years.
    pub keep_yearly: Option<u32>,
    /// Prune completed backups taken longer ago than this.
    pub max_age: Option<SignedDuration>,
    /// Keep the newest n failed backups.
    pub keep_failed: u32,
}

impl Policy {
    /// The most completed backups the rules can keep (`None`: no `keep*` rule, so no bound).
    pub fn most_kept(&self) -> Option<u64> {
        let rules = self.rules();
        rules
            .iter()
            .any(|(_, count)| count.is_some())
            .then(|| rules.iter().filter_map(|(_, count)| count.map(u64::from)).sum::<u64>().max(1))
    }

    fn rules(&self) -> [(Bucket, Option<u32>); 6] {
        [
            (Bucket::Each, self.keep_last),
            (Bucket::Hour, self.keep_hourly),
            (Bucket::Day, self.keep_daily),
            (Bucket::Week, self.keep_weekly),
            (Bucket::Month, self.keep_monthly),
            (Bucket::Year, self.keep_yearly),
        ]
    }
}

/// Where a backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Neither completed nor failed yet.
    Running,
    /// `status.completed`.
    Completed,
    /// Ended with a `Failed` condition.
    Failed,
}

/// One of the schedule's backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The backup's name.
    pub name: String,
    /// When it was taken (its creation).
    pub taken: Timestamp,
    /// Where it stands.
    pub outcome: Outcome,
}

/// Why a backup is pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `keep*` rule keeps it.
    NotKept,
    /// Taken longer ago than `maxAge`.
    TooOld,
    /// A failed backup beyond the newest `keepFailed`.
    FailedBeyondKeepFailed,
}

impl Reason {
    /// The phrase used in events.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NotKept => "no retention rule keeps it",
            Reason::TooOld => "older than maxAge",
            Reason::FailedBeyondKeepFailed => "a failed backup beyond keepFailed",
        }
    }
}

/// A backup to delete, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prune {
    /// The backup's name.
    pub name: String,
    /// Why.
    pub reason: Reason,
}

/// The calendar bucket a rule keeps one backup of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Each,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    /// The bucket's key for an instant on the zone's wall clock; `Each` puts every backup apart.
    fn key(self, at: Timestamp, zone: &TimeZone, index: usize) -> (i64, i64) {
        let civil = zone.to_datetime(at);
        let (year, month, day, hour) =
            (i64::from(civil.year()), i64::from(civil.month()), i64::from(civil.day()), i64::from(civil.hour()));
        match self {
            Bucket::Each => (i64::try_from(index).unwrap_or(i64::MAX), 0),
            Bucket::Hour => (year * 10_000 + month * 100 + day, hour),
            Bucket::Day => (year * 10_000 + month * 100 + day, 0),
            Bucket::Week => {
                let week = civil.date().iso_week_date();
                (i64::from(week.year()), i64::from(week.week()))
            }
            Bucket::Month => (year, month),
            Bucket::Year => (year, 0),
        }
    }
}

/// The backups to prune at `now`, newest first.
pub fn prune(policy: &Policy, zone: &TimeZone, now: Timestamp, candidates: &[Candidate]) -> Vec<Prune> {
    let mut ordered: Vec<&Candidate> = candidates.iter().collect();
    // Newest first; equal times by name, so the result never depends on the input's order.
    ordered.sort_by(|a, b| b.taken.cmp(&a.taken).then_with(|| b.name.cmp(&a.name)));
    let completed: Vec<&Candidate> = ordered.iter().copied().filter(|c| c.outcome == Outcome::Completed).collect();
    let kept = kept_by_rules(policy, zone, &completed);
    let mut pruned = Vec::new();
    let mut failed_seen = 0u32;
    for candidate in ordered {
        let reason = match candidate.outcome {
            Outcome::Running => None,
            Outcome::Failed => {
                failed_seen = failed_seen.saturating_add(1);
                (failed_seen > policy.keep_failed).then_some(Reason::FailedBeyondKeepFailed)
            }
            Outcome::Completed if completed.first().is_some_and(|newest| newest.name == candidate.name) => None,
            Outcome::Completed => {
                let too_old = policy.max_age.is_some_and(|max_age| now.duration_since(candidate.taken) > max_age);
                if too_old {
                    Some(Reason::TooOld)
                } else if !kept.contains(&candidate.name.as_str()) {
                    Some(Reason::NotKept)
                } else {
                    None
                }
            }
        };
        if let Some(reason) = reason {
            pruned.push(Prune { name: candidate.name.clone(), reason });
        }
    }
    pruned
}

/// The completed backups (newest first) that some `keep*` rule keeps; all of them when no rule
/// is set.
fn kept_by_rules<'a>(policy: &Policy, zone: &TimeZone, completed: &[&'a Candidate]) -> Vec<&'a str> {
    if policy.most_kept().is_none() {
        return completed.iter().map(|c| c.name.as_str()).collect();
    }
    let mut kept = Vec::new();
    for (bucket, count) in policy.rules() {
        let Some(mut left) = count else { continue };
        let mut last_key = None;
        for (index, candidate) in completed.iter().enumerate() {
            if left == 0 {
                break;
            }
            let key = bucket.key(candidate.taken, zone, index);
            if last_key != Some(key) {
                last_key = Some(key);
                left -= 1;
                if !kept.contains(&candidate.name.as_str()) {
                    kept.push(candidate.name.as_str());
                }
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests;
