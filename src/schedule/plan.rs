//! What a schedule does now, decided from its spec, its status and a clock. Pure.
//!
//! The status is the schedule's memory, so a restarted operator or a new leader decides exactly as
//! the old one would have:
//! - `nextScheduleTime` is the *armed* run. It is armed (set to the first firing strictly after
//!   the moment the controller looks) when the schedule is new, when it is resumed, and when its
//!   spec changed (`observedGeneration` behind `generation`). So neither creating nor resuming a
//!   schedule starts a run at once: the first run is the next firing after that moment.
//! - While `suspend` is true nothing is armed (`nextScheduleTime` is cleared).
//! - When the armed time has come, the run taken is the latest firing at or before now (after
//!   downtime, one run, not one per missed firing), and only if now is within
//!   `startingDeadlineSeconds` of it; then the next firing after now is armed.
//! - A run's backup is named from its scheduled time, so starting it again after a crash (before
//!   the status said so) finds the backup already there: no run is lost or done twice.

use jiff::{SignedDuration, Timestamp};

use super::calendar::Calendar;

/// How many missed firings are counted one by one after downtime before the count saturates.
const MISSED_COUNT_CAP: u32 = 1000;

/// What to do when a run is due while the schedule's previous backup still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Skip the run (and report it).
    Forbid,
    /// Stop the running backup, then start the run.
    Replace,
}

/// The parts of a schedule's spec and status that decide what happens now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `status.nextScheduleTime`: the armed run.
    pub next_schedule_time: Option<Timestamp>,
    /// `spec.startingDeadlineSeconds`: how late a run may still start; `None` is no limit.
    pub starting_deadline: Option<SignedDuration>,
    /// `spec.concurrencyPolicy`.
    pub concurrency: Concurrency,
    /// Whether a backup of this schedule is still running.
    pub active: bool,
}

/// What the controller does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Suspended: clear `nextScheduleTime`, start nothing.
    Suspended,
    /// Arm (or re-arm) `nextScheduleTime`; start nothing.
    Arm {
        /// The first firing after now.
        next: Timestamp,
    },
    /// Armed and not yet due: look again at `next`.
    Wait {
        /// The armed time.
        next: Timestamp,
    },
    /// Start the run scheduled at `scheduled` (stopping the running backup first when `replace`).
    Start {
        /// The firing this run belongs to (names the backup; becomes `lastScheduleTime`).
        scheduled: Timestamp,
        /// Stop the schedule's running backup first (`Replace`).
        replace: bool,
        /// Earlier firings passed over while the operator was not looking.
        missed: u32,
        /// The next firing to arm.
        next: Timestamp,
    },
    /// `Forbid` and the previous backup still runs: this run is skipped.
    Skip {
        /// The firing skipped.
        scheduled: Timestamp,
        /// Earlier firings passed over while the operator was not looking.
        missed: u32,
        /// The next firing to arm.
        next: Timestamp,
    },
    /// The due firings are all older than `startingDeadlineSeconds`: nothing starts.
    Missed {
        /// The latest firing that was due.
        scheduled: Timestamp,
        /// How many firings were missed (saturating at 1000).
        missed: u32,
        /// The next firing to arm.
        next: Timestamp,
    },
    /// The expression has no firing left in the supported range.
    Exhausted,
}

/// Decides what the schedule does at `now`.
pub fn decide(calendar: &Calendar, state: &State, now: Timestamp) -> Decision {
    if state.suspend {
        return Decision::Suspended;
    }
    let Some(next) = calendar.next_after(now) else { return Decision::Exhausted };
    let armed = match state.next_schedule_time {
        Some(armed) if state.observed_generation == Some(state.generation) => armed,
        _ => return Decision::Arm { next },
    };
    if armed > now {
        return Decision::Wait { next: armed };
    }
    let (scheduled, due) = due_firings(calendar, armed, now);
    let too_late = state.starting_deadline.is_some_and(|deadline| now.duration_since(scheduled) > deadline);
    if too_late {
        return Decision::Missed { scheduled, missed: due, next };
    }
    let missed = due.saturating_sub(1);
    match (state.active, state.concurrency) {
        (true, Concurrency::Forbid) => Decision::Skip { scheduled, missed, next },
        (active, concurrency) => {
            Decision::Start { scheduled, replace: active && concurrency == Concurrency::Replace, missed, next }
        }
    }
}

/// The latest firing in `[armed, now]` and how many there are (`armed` itself counts; the count
/// saturates at [`MISSED_COUNT_CAP`]).
fn due_firings(calendar: &Calendar, armed: Timestamp, now: Timestamp) -> (Timestamp, u32) {
    let mut latest = armed;
    let mut count = 1;
    while count < MISSED_COUNT_CAP {
        match calendar.next_after(latest) {
            Some(next) if next <= now => {
                latest = next;
                count += 1;
            }
            _ => return (latest, count),
        }
    }
    (calendar.latest_at_or_before(now).unwrap_or(latest).max(latest), count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::calendar::time_zone;
    use crate::schedule::cron::Cron;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// A run started without replacing one.
    fn start(scheduled: &str, missed: u32, next: &str) -> Decision {
        Decision::Start { scheduled: at(scheduled), replace: false, missed, next: at(next) }
    }

    fn minutely() -> Calendar {
        Calendar::new(Cron::parse("* * * * *").unwrap(), time_zone(None).unwrap())
    }

    fn armed(next: &str) -> State {
        State {
            generation: 3,
            observed_generation: Some(3),
            suspend: false,
            next_schedule_time: Some(at(next)),
            starting_deadline: None,
            concurrency: Concurrency::Forbid,
            active: false,
        }
    }

    #[test]
    fn a_new_schedule_arms_the_next_firing_and_starts_nothing() {
        let new = State { observed_generation: None, next_schedule_time: None, ..armed("2026-12-06T05:42:00Z") };
        // Created exactly on a firing: that firing is not taken.
        assert_eq!(
            decide(&minutely(), &new, at("2026-12-06T05:42:00Z")),
            Decision::Arm { next: at("2026-12-06T05:43:00Z") }
        );
        assert_eq!(
            decide(&minutely(), &new, at("2026-12-06T05:42:59.9Z")),
            Decision::Arm { next: at("2026-12-06T05:43:00Z") }
        );
    }

    #[test]
    fn suspended_then_resumed_arms_from_the_resume_without_catching_up() {
        let suspended = State { suspend: true, ..armed("2026-12-06T05:42:00Z") };
        assert_eq!(decide(&minutely(), &suspended, at("2026-12-06T06:00:00Z")), Decision::Suspended);
        // Resuming bumps the generation; the controller cleared nextScheduleTime while suspended.
        let resumed = State { generation: 4, next_schedule_time: None, ..armed("2026-12-06T05:42:00Z") };
        assert_eq!(
            decide(&minutely(), &resumed, at("2026-12-06T07:00:30Z")),
            Decision::Arm { next: at("2026-12-06T07:01:00Z") }
        );
        // Even if the armed time survived (suspended and resumed while no operator ran).
        let resumed = State { generation: 5, ..armed("2026-12-06T05:42:00Z") };
        assert_eq!(
            decide(&minutely(), &resumed, at("2026-12-06T07:00:30Z")),
            Decision::Arm { next: at("2026-12-06T07:01:00Z") }
        );
    }

    #[test]
    fn armed_and_not_due_waits_for_the_armed_time() {
        assert_eq!(
            decide(&minutely(), &armed("2026-12-06T05:43:00Z"), at("2026-12-06T05:42:59.999Z")),
            Decision::Wait { next: at("2026-12-06T05:43:00Z") }
        );
    }

    #[test]
    fn due_starts_the_armed_run_and_arms_the_next() {
        assert_eq!(
            decide(&minutely(), &armed("2026-12-06T05:43:00Z"), at("2026-12-06T05:43:00.2Z")),
            start("2026-12-06T05:43:00Z", 0, "2026-12-06T05:44:00Z")
        );
    }

    #[test]
    fn the_same_status_decides_the_same_on_another_replica() {
        // A leader that crashed after creating the backup but before writing status: the standby
        // decides the same scheduled time, so it finds the same backup name.
        let state = armed("2026-12-06T05:43:00Z");
        let first = decide(&minutely(), &state, at("2026-12-06T05:43:00.1Z"));
        let standby = decide(&minutely(), &state, at("2026-12-06T05:43:20Z"));
        let scheduled = |d: &Decision| match d {
            Decision::Start { scheduled, .. } => Some(*scheduled),
            _ => None,
        };
        assert_eq!(scheduled(&first), Some(at("2026-12-06T05:43:00Z")));
        assert_eq!(scheduled(&first), scheduled(&standby));
    }

    #[test]
    fn after_downtime_one_run_for_the_latest_firing() {
        let hourly = Calendar::new(Cron::parse("@hourly").unwrap(), time_zone(None).unwrap());
        assert_eq!(
            decide(&hourly, &armed("2026-12-06T01:00:00Z"), at("2026-12-06T05:10:00Z")),
            start("2026-12-06T05:00:00Z", 4, "2026-12-06T06:00:00Z")
        );
    }

    #[test]
    fn past_the_starting_deadline_the_run_is_missed() {
        let state = State { starting_deadline: Some(SignedDuration::from_secs(300)), ..armed("2026-12-06T05:00:00Z") };
        let hourly = Calendar::new(Cron::parse("@hourly").unwrap(), time_zone(None).unwrap());
        assert_eq!(
            decide(&hourly, &state, at("2026-12-06T05:05:00Z")),
            start("2026-12-06T05:00:00Z", 0, "2026-12-06T06:00:00Z")
        );
        assert_eq!(
            decide(&hourly, &state, at("2026-12-06T05:05:00.001Z")),
            Decision::Missed { scheduled: at("2026-12-06T05:00:00Z"), missed: 1, next: at("2026-12-06T06:00:00Z") }
        );
        // Downtime over several firings, the latest within the deadline: that one runs.
        let earlier = State { next_schedule_time: Some(at("2026-12-06T01:00:00Z")), ..state };
        assert_eq!(
            decide(&hourly, &earlier, at("2026-12-06T05:04:00Z")),
            start("2026-12-06T05:00:00Z", 4, "2026-12-06T06:00:00Z")
        );
    }

    #[test]
    fn forbid_skips_and_replace_replaces() {
        let running = State { active: true, ..armed("2026-12-06T05:43:00Z") };
        assert_eq!(
            decide(&minutely(), &running, at("2026-12-06T05:43:01Z")),
            Decision::Skip { scheduled: at("2026-12-06T05:43:00Z"), missed: 0, next: at("2026-12-06T05:44:00Z") }
        );
        let replace = State { concurrency: Concurrency::Replace, ..running };
        assert_eq!(
            decide(&minutely(), &replace, at("2026-12-06T05:43:01Z")),
            Decision::Start {
                scheduled: at("2026-12-06T05:43:00Z"),
                replace: true,
                missed: 0,
                next: at("2026-12-06T05:44:00Z")
            }
        );
    }

    proptest::proptest! {
        /// A controller that looks at random moments (never a minute apart) and crashes at random
        /// between creating a run's backup and writing the status: every firing gets its backup
        /// (creates are idempotent by name), and no run starts again once the status recorded it.
        #[test]
        fn no_run_lost_or_started_again_across_crashes(
            passes in proptest::collection::vec((1i64..59_000, proptest::bool::ANY), 1..200),
        ) {
            let calendar = minutely();
            let created = at("2026-12-06T05:42:10Z");
            let mut now = created;
            let mut state = State { observed_generation: None, next_schedule_time: None, ..armed("2026-12-06T05:42:00Z") };
            let mut recorded: Option<Timestamp> = None;
            let mut backups = std::collections::BTreeSet::new();
            let mut first_armed = None;
            for (gap, crash) in passes {
                now = now.checked_add(SignedDuration::from_millis(gap)).unwrap();
                match decide(&calendar, &state, now) {
                    Decision::Arm { next } => {
                        first_armed.get_or_insert(next);
                        state.next_schedule_time = Some(next);
                        state.observed_generation = Some(state.generation);
                    }
                    Decision::Start { scheduled, next, .. } => {
                        proptest::prop_assert!(scheduled <= now);
                        proptest::prop_assert!(recorded.is_none_or(|r| scheduled > r), "{scheduled} started again");
                        backups.insert(scheduled);
                        if !crash {
                            recorded = Some(scheduled);
                            state.next_schedule_time = Some(next);
                        }
                    }
                    Decision::Wait { .. } => {}
                    other => proptest::prop_assert!(false, "{other:?}"),
                }
            }
            let Some(mut firing) = first_armed else { return Ok(()) };
            proptest::prop_assert!(firing > created, "nothing at creation");
            while firing <= now.checked_sub(SignedDuration::from_mins(1)).unwrap() {
                proptest::prop_assert!(backups.contains(&firing), "the run at {firing} was lost");
                firing = calendar.next_after(firing).unwrap();
            }
        }
    }

    #[test]
    fn a_long_downtime_counts_missed_runs_up_to_the_cap_and_takes_the_latest() {
        let state = State { starting_deadline: Some(SignedDuration::from_secs(10)), ..armed("2026-11-01T00:00:00Z") };
        assert_eq!(
            decide(&minutely(), &state, at("2026-12-06T05:43:05Z")),
            start("2026-12-06T05:43:00Z", MISSED_COUNT_CAP - 1, "2026-12-06T05:44:00Z")
        );
    }
}
