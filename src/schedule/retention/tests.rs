use super::*;
use crate::schedule::calendar::time_zone;
use proptest::prelude::*;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn completed(name: &str, taken: &str) -> Candidate {
    Candidate { name: name.to_owned(), taken: at(taken), outcome: Outcome::Completed }
}

fn with(outcome: Outcome, name: &str, taken: &str) -> Candidate {
    Candidate { name: name.to_owned(), taken: at(taken), outcome }
}

fn zone(name: &str) -> TimeZone {
    time_zone(Some(name)).unwrap()
}

/// The pruned names, newest first, each with its reason.
fn pruned(policy: &Policy, zone_name: &str, now: &str, candidates: &[Candidate]) -> Vec<(String, Reason)> {
    prune(policy, &zone(zone_name), at(now), candidates).into_iter().map(|p| (p.name, p.reason)).collect()
}

fn names(list: &[(&str, Reason)]) -> Vec<(String, Reason)> {
    list.iter().map(|(name, reason)| ((*name).to_owned(), *reason)).collect()
}

const NOW: &str = "2026-12-06T06:00:00Z";

#[test]
fn keep_last_keeps_the_newest_n_completed() {
    let policy = Policy { keep_last: Some(3), ..Policy::default() };
    let backups = [
        completed("d1", "2026-12-01T02:00:00Z"),
        completed("d2", "2026-12-02T02:00:00Z"),
        completed("d3", "2026-12-03T02:00:00Z"),
        completed("d4", "2026-12-04T02:00:00Z"),
        completed("d5", "2026-12-05T02:00:00Z"),
    ];
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("d2", Reason::NotKept), ("d1", Reason::NotKept)]));
}

#[test]
fn only_completed_backups_count_as_keepers() {
    let policy = Policy { keep_last: Some(2), keep_failed: 1, ..Policy::default() };
    let backups = [
        completed("old", "2026-12-01T02:00:00Z"),
        completed("good1", "2026-12-02T02:00:00Z"),
        completed("good2", "2026-12-03T02:00:00Z"),
        with(Outcome::Failed, "failed1", "2026-12-04T02:00:00Z"),
        with(Outcome::Failed, "failed2", "2026-12-05T02:00:00Z"),
        with(Outcome::Running, "running", "2026-12-06T02:00:00Z"),
    ];
    assert_eq!(
        pruned(&policy, "UTC", NOW, &backups),
        names(&[("failed1", Reason::FailedBeyondKeepFailed), ("old", Reason::NotKept)])
    );
}

#[test]
fn keep_failed_zero_prunes_every_failed_backup_and_no_rule_keeps_every_completed_one() {
    let policy = Policy::default();
    let backups = [
        completed("c1", "2020-01-01T00:00:00Z"),
        completed("c2", "2026-12-01T00:00:00Z"),
        with(Outcome::Failed, "f1", "2026-12-02T00:00:00Z"),
        with(Outcome::Running, "r1", "2026-12-03T00:00:00Z"),
    ];
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("f1", Reason::FailedBeyondKeepFailed)]));
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let policy = Policy { keep_daily: Some(2), ..Policy::default() };
    let backups = [
        completed("mon-a", "2026-11-30T01:00:00Z"),
        completed("tue-a", "2026-12-01T01:00:00Z"),
        completed("tue-b", "2026-12-01T13:00:00Z"),
        completed("wed-a", "2026-12-02T01:00:00Z"),
        completed("wed-b", "2026-12-02T13:00:00Z"),
    ];
    assert_eq!(
        pruned(&policy, "UTC", NOW, &backups),
        names(&[("wed-a", Reason::NotKept), ("tue-a", Reason::NotKept), ("mon-a", Reason::NotKept)])
    );
}

#[test]
fn days_are_cut_on_the_schedules_wall_clock() {
    // 22:30 and 23:30 UTC on the 28th of March are one UTC day, but two days in Madrid
    // (23:30 on the 28th, and 00:30 on the 29th, the day the clocks jump).
    let policy = Policy { keep_daily: Some(2), ..Policy::default() };
    let backups = [completed("a", "2026-03-28T22:30:00Z"), completed("b", "2026-03-28T23:30:00Z")];
    assert_eq!(pruned(&policy, "Europe/Madrid", NOW, &backups), names(&[]));
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("a", Reason::NotKept)]));
}

#[test]
fn the_repeated_autumn_hour_is_one_hourly_bucket() {
    // 02:10 CEST and 02:10 CET on 2026-10-25 in Madrid: the same wall-clock hour.
    let policy = Policy { keep_hourly: Some(5), ..Policy::default() };
    let backups = [
        completed("first-0210", "2026-10-25T00:10:00Z"),
        completed("second-0210", "2026-10-25T01:10:00Z"),
        completed("0310", "2026-10-25T02:10:00Z"),
    ];
    assert_eq!(pruned(&policy, "Europe/Madrid", NOW, &backups), names(&[("first-0210", Reason::NotKept)]));
    // In UTC they are three hours.
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[]));
}

#[test]
fn the_short_spring_day_is_one_daily_bucket() {
    // 2026-03-29 in Madrid has 23 hours; both backups are on it.
    let policy = Policy { keep_daily: Some(1), ..Policy::default() };
    let backups = [completed("early", "2026-03-28T23:00:00Z"), completed("late", "2026-03-29T21:59:00Z")];
    assert_eq!(pruned(&policy, "Europe/Madrid", NOW, &backups), names(&[("early", Reason::NotKept)]));
}

#[test]
fn iso_weeks_cross_the_year_boundary() {
    // 2026-12-28 (Mon) .. 2027-01-03 (Sun) is ISO week 2026-W53; 2027-01-04 starts 2027-W01.
    let policy = Policy { keep_weekly: Some(2), ..Policy::default() };
    let backups = [
        completed("w52", "2026-12-27T12:00:00Z"),
        completed("w53-mon", "2026-12-28T12:00:00Z"),
        completed("w53-thu", "2026-12-31T12:00:00Z"),
        completed("w53-fri", "2027-01-01T12:00:00Z"),
        completed("w01-mon", "2027-01-04T12:00:00Z"),
    ];
    assert_eq!(
        pruned(&policy, "UTC", "2027-01-05T00:00:00Z", &backups),
        names(&[("w53-thu", Reason::NotKept), ("w53-mon", Reason::NotKept), ("w52", Reason::NotKept)])
    );
}

#[test]
fn years_and_months_on_the_wall_clock_and_leap_days() {
    // 23:30 UTC on New Year's Eve is already next year in Madrid.
    let policy = Policy { keep_yearly: Some(1), ..Policy::default() };
    let backups = [completed("eve", "2026-12-31T22:30:00Z"), completed("new-year", "2026-12-31T23:30:00Z")];
    assert_eq!(pruned(&policy, "Europe/Madrid", NOW, &backups), names(&[("eve", Reason::NotKept)]));
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("eve", Reason::NotKept)]));
    let policy = Policy { keep_yearly: Some(2), ..Policy::default() };
    assert_eq!(pruned(&policy, "Europe/Madrid", NOW, &backups), names(&[]));
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("eve", Reason::NotKept)]));
    // The 29th of February is February's bucket.
    let policy = Policy { keep_monthly: Some(2), ..Policy::default() };
    let backups = [
        completed("feb-28", "2028-02-28T12:00:00Z"),
        completed("feb-29", "2028-02-29T12:00:00Z"),
        completed("mar-01", "2028-03-01T12:00:00Z"),
    ];
    assert_eq!(pruned(&policy, "UTC", "2028-03-02T00:00:00Z", &backups), names(&[("feb-28", Reason::NotKept)]));
}

#[test]
fn rules_combine_and_a_backup_kept_by_any_rule_is_kept() {
    let policy = Policy { keep_last: Some(1), keep_monthly: Some(3), ..Policy::default() };
    let backups = [
        completed("sep", "2026-09-30T00:00:00Z"),
        completed("oct-1", "2026-10-01T00:00:00Z"),
        completed("oct-31", "2026-10-31T00:00:00Z"),
        completed("nov", "2026-11-15T00:00:00Z"),
        completed("dec-1", "2026-12-01T00:00:00Z"),
        completed("dec-5", "2026-12-05T00:00:00Z"),
    ];
    assert_eq!(
        pruned(&policy, "UTC", NOW, &backups),
        names(&[("dec-1", Reason::NotKept), ("oct-1", Reason::NotKept), ("sep", Reason::NotKept)])
    );
}

#[test]
fn max_age_prunes_what_rules_keep_but_never_the_newest_completed() {
    let policy = Policy {
        keep_last: Some(10),
        max_age: Some(SignedDuration::from_hours(24 * 7)),
        keep_failed: 1,
        ..Policy::default()
    };
    let backups = [
        completed("old", "2026-11-20T00:00:00Z"),
        completed("recent", "2026-12-01T00:00:00Z"),
        with(Outcome::Failed, "failed", "2026-12-05T00:00:00Z"),
    ];
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("old", Reason::TooOld)]));
    // Everything completed is too old: the newest stays, the only good backup there is.
    assert_eq!(pruned(&policy, "UTC", "2027-06-01T00:00:00Z", &backups), names(&[("old", Reason::TooOld)]));
    // maxAge alone (no keep rule) prunes only by age.
    let policy = Policy { max_age: Some(SignedDuration::from_hours(24 * 7)), keep_failed: 1, ..Policy::default() };
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("old", Reason::TooOld)]));
}

#[test]
fn equal_times_are_ordered_by_name() {
    let policy = Policy { keep_last: Some(1), ..Policy::default() };
    let backups = [completed("b", "2026-12-01T00:00:00Z"), completed("a", "2026-12-01T00:00:00Z")];
    assert_eq!(pruned(&policy, "UTC", NOW, &backups), names(&[("a", Reason::NotKept)]));
    let reversed = [backups[1].clone(), backups[0].clone()];
    assert_eq!(pruned(&policy, "UTC", NOW, &reversed), names(&[("a", Reason::NotKept)]));
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![Just(Outcome::Running), Just(Outcome::Completed), Just(Outcome::Completed), Just(Outcome::Failed)]
}

fn policy() -> impl Strategy<Value = Policy> {
    let count = || prop::option::of(0u32..6);
    (count(), count(), count(), count(), count(), count(), prop::option::of(0i64..2_000_000), 0u32..4).prop_map(
        |(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, max_age, keep_failed)| Policy {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            max_age: max_age.map(SignedDuration::from_secs),
            keep_failed,
        },
    )
}

fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
    // Up to 40 backups over about a year and a half, some at equal times.
    prop::collection::vec((0i64..50_000_000, outcome()), 0..40).prop_map(|list| {
        list.into_iter()
            .enumerate()
            .map(|(i, (offset, outcome))| Candidate {
                name: format!("backup-{i}"),
                taken: Timestamp::from_second(1_767_225_600 + offset - offset % 3600).unwrap(),
                outcome,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn never_prunes_the_newest_completed_nor_a_running_backup_and_keeps_at_most_the_policy(
        policy in policy(),
        candidates in candidates(),
        zone_name in prop::sample::select(vec!["UTC", "Europe/Madrid", "America/New_York", "Australia/Lord_Howe"]),
        now_offset in 0i64..60_000_000,
    ) {
        let zone = zone(zone_name);
        let now = Timestamp::from_second(1_767_225_600 + now_offset).unwrap();
        let pruned = prune(&policy, &zone, now, &candidates);
        let is_pruned = |name: &str| pruned.iter().any(|p| p.name == name);
        let newest_completed = candidates
            .iter()
            .filter(|c| c.outcome == Outcome::Completed)
            .max_by(|a, b| a.taken.cmp(&b.taken).then_with(|| a.name.cmp(&b.name)));
        if let Some(newest) = newest_completed {
            prop_assert!(!is_pruned(&newest.name), "pruned the newest completed backup {}", newest.name);
        }
        for candidate in &candidates {
            if candidate.outcome == Outcome::Running {
                prop_assert!(!is_pruned(&candidate.name), "pruned running backup {}", candidate.name);
            }
            if is_pruned(&candidate.name) {
                prop_assert!(candidates.iter().filter(|c| c.name == candidate.name).count() == 1);
            }
        }
        let kept = |outcome: Outcome| {
            candidates.iter().filter(|c| c.outcome == outcome && !is_pruned(&c.name)).count() as u64
        };
        if let Some(most) = policy.most_kept() {
            prop_assert!(kept(Outcome::Completed) <= most, "kept {} completed, policy allows {most}", kept(Outcome::Completed));
        }
        prop_assert!(kept(Outcome::Failed) <= u64::from(policy.keep_failed));
        prop_assert_eq!(pruned.len(), pruned.iter().map(|p| &p.name).collect::<std::collections::HashSet<_>>().len());
        // The input's order does not matter.
        let mut reversed = candidates.clone();
        reversed.reverse();
        prop_assert_eq!(prune(&policy, &zone, now, &reversed), pruned);
    }
}
