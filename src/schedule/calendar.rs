//! A cron expression read on the clock of one time zone: the instants it fires at.
//!
//! The time-zone database is the copy compiled into the binary (the image is `scratch`, with no
//! `/usr/share/zoneinfo`), so every replica and every test reads the same rules.
//!
//! Daylight saving time: a wall-clock time that does not exist (the clocks jump over it) fires at
//! the first instant after the jump, once, however many selected times fall in the gap; a
//! wall-clock time that occurs twice (the clocks go back) fires once, at its first occurrence.

use std::sync::OnceLock;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};

use super::cron::Cron;

/// How far a search for the next (or previous) firing looks, in days: enough for the 29th of
/// February across a century year that is not a leap year (2096 → 2104).
const SEARCH_DAYS: usize = 12 * 366;

/// A time-zone name that the compiled-in database does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// Not an IANA name the database knows (names are matched exactly, as Kubernetes does).
    #[error("unknown time zone: use an IANA name such as Europe/Madrid or UTC{}", suggestion(.0))]
    Unknown(Option<String>),
}

fn suggestion(canonical: &Option<String>) -> String {
    canonical.as_ref().map(|name| format!(" (did you mean {name}?)")).unwrap_or_default()
}

fn database() -> &'static TimeZoneDatabase {
    static DATABASE: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DATABASE.get_or_init(TimeZoneDatabase::bundled)
}

/// The time zone of an IANA name from the compiled-in database; `None` is UTC.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ZoneError> {
    let Some(name) = name else { return Ok(TimeZone::UTC) };
    let zone = database().get(name).map_err(|_| ZoneError::Unknown(None))?;
    match zone.iana_name() {
        Some(canonical) if canonical == name && canonical != "Etc/Unknown" => Ok(zone),
        // The database matches without regard to case; Kubernetes does not. Name the spelling.
        Some(canonical) if canonical != "Etc/Unknown" => Err(ZoneError::Unknown(Some(canonical.to_owned()))),
        _ => Err(ZoneError::Unknown(None)),
    }
}

/// A cron expression on the wall clock of a time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    cron: Cron,
    zone: TimeZone,
}

impl Calendar {
    /// The expression read in the zone.
    pub fn new(cron: Cron, zone: TimeZone) -> Calendar {
        Calendar { cron, zone }
    }

    /// The schedule's time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The first firing strictly after `after`; `None` only past the end of the supported range.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = self.zone.to_datetime(after);
        let mut date = start.date();
        for _ in 0..SEARCH_DAYS {
            if self.cron.day(date) {
                for hour in self.cron.hours() {
                    for minute in self.cron.minutes() {
                        let civil = date.at(hour, minute, 0, 0);
                        match self.instant(civil) {
                            Some(at) if at > after => return Some(at),
                            _ => {}
                        }
                    }
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The last firing at or before `until`; `None` when there is none in the search range.
    pub fn latest_at_or_before(&self, until: Timestamp) -> Option<Timestamp> {
        let mut date = self.zone.to_datetime(until).date();
        for _ in 0..SEARCH_DAYS {
            if self.cron.day(date) {
                for hour in self.cron.hours().rev() {
                    for minute in self.cron.minutes().rev() {
                        match self.instant(date.at(hour, minute, 0, 0)) {
                            Some(at) if at <= until => return Some(at),
                            _ => {}
                        }
                    }
                }
            }
            date = date.yesterday().ok()?;
        }
        None
    }

    /// The longest time between two consecutive firings among the next `count` after `from`:
    /// what "the schedule's interval" means to an alert (a weekday schedule's is the weekend).
    pub fn longest_interval(&self, from: Timestamp, count: usize) -> Option<SignedDuration> {
        let mut previous = self.next_after(from)?;
        let mut longest = SignedDuration::ZERO;
        for _ in 1..count.max(2) {
            let next = self.next_after(previous)?;
            longest = longest.max(next.duration_since(previous));
            previous = next;
        }
        Some(longest)
    }

    /// The instant a selected wall-clock time fires at (see the module's daylight-saving rules).
    /// Monotonic in `civil`, which is what lets the searches stop at the first hit.
    fn instant(&self, civil: DateTime) -> Option<Timestamp> {
        match self.zone.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(civil).ok(),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil).ok(),
            AmbiguousOffset::Gap { after, .. } => {
                // Read with the later offset, the time lies before the jump; the jump follows it.
                let before_jump = after.to_timestamp(civil).ok()?;
                self.zone.following(before_jump).next().map(|transition| transition.timestamp())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn calendar(cron: &str, zone: &str) -> Calendar {
        Calendar::new(Cron::parse(cron).unwrap(), time_zone(Some(zone)).unwrap())
    }

    fn next_n(calendar: &Calendar, from: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = at(from);
        for _ in 0..n {
            t = calendar.next_after(t).unwrap();
            out.push(t.to_zoned(calendar.zone().clone()).to_string());
        }
        out
    }

    #[test]
    fn time_zones_come_from_the_compiled_in_database_by_exact_name() {
        assert_eq!(time_zone(None).unwrap(), TimeZone::UTC);
        assert_eq!(time_zone(Some("Europe/Madrid")).unwrap().iana_name(), Some("Europe/Madrid"));
        assert_eq!(time_zone(Some("UTC")).unwrap().iana_name(), Some("UTC"));
        assert_eq!(
            time_zone(Some("europe/madrid")).unwrap_err().to_string(),
            "unknown time zone: use an IANA name such as Europe/Madrid or UTC (did you mean Europe/Madrid?)"
        );
        for name in ["Mars/Olympus", "", "Etc/Unknown", "../../etc/passwd", "Local"] {
            assert_eq!(
                time_zone(Some(name)).unwrap_err().to_string(),
                "unknown time zone: use an IANA name such as Europe/Madrid or UTC",
                "{name:?}"
            );
        }
    }

    #[test]
    fn next_is_strictly_after_and_on_the_minute() {
        let daily = calendar("30 2 * * *", "UTC");
        assert_eq!(daily.next_after(at("2026-12-06T02:29:59.999Z")), Some(at("2026-12-06T02:30:00Z")));
        assert_eq!(daily.next_after(at("2026-12-06T02:30:00Z")), Some(at("2026-12-07T02:30:00Z")));
        let minutely = calendar("* * * * *", "UTC");
        assert_eq!(minutely.next_after(at("2026-12-06T05:41:05Z")), Some(at("2026-12-06T05:42:00Z")));
        assert_eq!(minutely.next_after(at("2026-12-06T05:42:00Z")), Some(at("2026-12-06T05:43:00Z")));
    }

    #[test]
    fn year_boundaries_leap_days_and_month_ends() {
        assert_eq!(
            next_n(&calendar("0 0 29 2 *", "UTC"), "2025-01-01T00:00:00Z", 3),
            ["2028-02-29T00:00:00+00:00[UTC]", "2032-02-29T00:00:00+00:00[UTC]", "2036-02-29T00:00:00+00:00[UTC]"]
        );
        // 2100 is not a leap year: the next 29th of February after 2096 is in 2104.
        assert_eq!(
            next_n(&calendar("0 0 29 2 *", "UTC"), "2096-03-01T00:00:00Z", 1),
            ["2104-02-29T00:00:00+00:00[UTC]"]
        );
        assert_eq!(
            next_n(&calendar("@yearly", "Pacific/Auckland"), "2026-12-31T10:59:00Z", 2),
            ["2027-01-01T00:00:00+13:00[Pacific/Auckland]", "2028-01-01T00:00:00+13:00[Pacific/Auckland]"]
        );
        assert_eq!(
            next_n(&calendar("0 12 31 * *", "UTC"), "2026-01-31T12:00:00Z", 3),
            ["2026-03-31T12:00:00+00:00[UTC]", "2026-05-31T12:00:00+00:00[UTC]", "2026-07-31T12:00:00+00:00[UTC]"]
        );
        assert_eq!(
            next_n(&calendar("59 23 31 12 *", "UTC"), "2026-12-31T23:58:00Z", 2),
            ["2026-12-31T23:59:00+00:00[UTC]", "2027-12-31T23:59:00+00:00[UTC]"]
        );
    }

    #[test]
    fn weekday_or_month_day() {
        // Friday the 13th style OR: the 13th, or any Friday.
        assert_eq!(
            next_n(&calendar("0 9 13 * FRI", "UTC"), "2026-12-06T00:00:00Z", 4),
            [
                "2026-12-11T09:00:00+00:00[UTC]",
                "2026-12-13T09:00:00+00:00[UTC]",
                "2026-12-18T09:00:00+00:00[UTC]",
                "2026-12-25T09:00:00+00:00[UTC]"
            ]
        );
    }

    #[test]
    fn a_time_in_a_spring_gap_fires_once_at_the_end_of_the_gap() {
        // Europe/Madrid, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
        assert_eq!(
            next_n(&calendar("30 2 * * *", "Europe/Madrid"), "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:30:00+01:00[Europe/Madrid]",
                "2026-03-29T03:00:00+02:00[Europe/Madrid]",
                "2026-03-30T02:30:00+02:00[Europe/Madrid]"
            ]
        );
        // Every 15 minutes: 02:00, 02:15, 02:30, 02:45 do not exist; one run at 03:00, then on.
        assert_eq!(
            next_n(&calendar("*/15 * * * *", "Europe/Madrid"), "2026-03-29T00:40:00Z", 4),
            [
                "2026-03-29T01:45:00+01:00[Europe/Madrid]",
                "2026-03-29T03:00:00+02:00[Europe/Madrid]",
                "2026-03-29T03:15:00+02:00[Europe/Madrid]",
                "2026-03-29T03:30:00+02:00[Europe/Madrid]"
            ]
        );
        // America/New_York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        assert_eq!(
            next_n(&calendar("0 2 * * *", "America/New_York"), "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00[America/New_York]", "2026-03-09T02:00:00-04:00[America/New_York]"]
        );
    }

    #[test]
    fn a_time_in_an_autumn_overlap_fires_once_at_its_first_occurrence() {
        // Europe/Madrid, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
        assert_eq!(
            next_n(&calendar("30 2 * * *", "Europe/Madrid"), "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:30:00+02:00[Europe/Madrid]", "2026-10-26T02:30:00+01:00[Europe/Madrid]"]
        );
        // Hourly: the repeated hour runs once, at its first occurrence.
        assert_eq!(
            next_n(&calendar("@hourly", "Europe/Madrid"), "2026-10-24T23:30:00Z", 4),
            [
                "2026-10-25T02:00:00+02:00[Europe/Madrid]",
                "2026-10-25T03:00:00+01:00[Europe/Madrid]",
                "2026-10-25T04:00:00+01:00[Europe/Madrid]",
                "2026-10-25T05:00:00+01:00[Europe/Madrid]"
            ]
        );
        // Looking from inside the second occurrence, the passed first occurrence is not repeated.
        let half = calendar("30 2 * * *", "Europe/Madrid");
        assert_eq!(half.next_after(at("2026-10-25T01:10:00Z")), Some(at("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn half_hour_daylight_saving_lord_howe() {
        // Australia/Lord_Howe, 2026-10-04: 02:00 +10:30 jumps to 02:30 +11:00.
        assert_eq!(
            next_n(&calendar("15 2 * * *", "Australia/Lord_Howe"), "2026-10-03T12:00:00Z", 2),
            ["2026-10-04T02:30:00+11:00[Australia/Lord_Howe]", "2026-10-05T02:15:00+11:00[Australia/Lord_Howe]"]
        );
    }

    #[test]
    fn latest_at_or_before_mirrors_next() {
        let daily = calendar("30 2 * * *", "Europe/Madrid");
        assert_eq!(daily.latest_at_or_before(at("2026-03-29T01:00:00Z")), Some(at("2026-03-29T01:00:00Z")));
        assert_eq!(daily.latest_at_or_before(at("2026-03-29T00:59:59Z")), Some(at("2026-03-28T01:30:00Z")));
        assert_eq!(daily.latest_at_or_before(at("2026-10-25T01:00:00Z")), Some(at("2026-10-25T00:30:00Z")));
        assert_eq!(
            calendar("0 0 29 2 *", "UTC").latest_at_or_before(at("2104-01-01T00:00:00Z")),
            Some(at("2096-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn longest_interval() {
        let weekdays = calendar("0 1 * * MON-FRI", "UTC");
        assert_eq!(weekdays.longest_interval(at("2026-12-06T00:00:00Z"), 8), Some(SignedDuration::from_hours(72)));
        let hourly = calendar("@hourly", "UTC");
        assert_eq!(hourly.longest_interval(at("2026-12-06T00:00:00Z"), 8), Some(SignedDuration::from_hours(1)));
    }

    /// The brute-force reference: every minute from `after`, read on the zone's wall clock.
    fn brute_next(cron: &Cron, zone: &TimeZone, after: Timestamp) -> Timestamp {
        let mut t = Timestamp::from_second(after.as_second().div_euclid(60) * 60 + 60).unwrap();
        loop {
            let civil = zone.to_datetime(t);
            let selected = cron.day(civil.date()) && cron.hour(civil.hour()) && cron.minute(civil.minute());
            // Selected and this is the first occurrence of the wall-clock time.
            let first = zone.to_ambiguous_timestamp(civil).earlier().unwrap() == t;
            if selected && first {
                return t;
            }
            t = t.checked_add(SignedDuration::from_mins(1)).unwrap();
        }
    }

    proptest! {
        /// Away from daylight-saving jumps, the search agrees with checking every minute.
        #[test]
        fn next_agrees_with_every_minute(
            minute in prop::sample::select(vec!["*", "*/7", "0", "5,35", "10-20/5"]),
            hour in prop::sample::select(vec!["*", "*/5", "3", "0-5"]),
            dom in prop::sample::select(vec!["*", "1", "13", "*/10"]),
            dow in prop::sample::select(vec!["*", "MON", "1-5", "0,6"]),
            zone in prop::sample::select(vec!["UTC", "Europe/Madrid", "Asia/Kolkata"]),
            start in 1_767_225_600i64..1_798_761_600,
        ) {
            let cron = Cron::parse(&format!("{minute} {hour} {dom} * {dow}")).unwrap();
            let zone = time_zone(Some(zone)).unwrap();
            let start = Timestamp::from_second(start).unwrap();
            let calendar = Calendar::new(cron.clone(), zone.clone());
            let next = calendar.next_after(start).unwrap();
            prop_assert!(next > start);
            let gap_free = zone.following(start).next().is_none_or(|tr| tr.timestamp() > next);
            if gap_free && next.duration_since(start) < SignedDuration::from_hours(24 * 40) {
                prop_assert_eq!(next, brute_next(&cron, &zone, start));
            }
            prop_assert_eq!(calendar.latest_at_or_before(next), Some(next));
        }
    }
}
