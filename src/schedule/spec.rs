//! A schedule's spec read into the pure core's terms: its calendar, its retention policy, its
//! concurrency and deadline. Every problem is reported at once, each naming its field; admission
//! refuses with them and the controller reports them in the `Ready` condition.

use jiff::SignedDuration;

use super::calendar::{Calendar, ZoneError, time_zone};
use super::cron::{Cron, CronError};
use super::plan::Concurrency;
use super::retention::Policy;
use crate::api::schedule::{APIManagerBackupScheduleSpec, ConcurrencyPolicy, Retention};

/// One problem with a schedule's spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// `spec.schedule` does not parse.
    #[error(transparent)]
    Schedule(#[from] CronError),
    /// `spec.timeZone` is not a known IANA name.
    #[error(transparent)]
    TimeZone(#[from] ZoneError),
    /// `spec.retention.maxAge` is not a positive duration.
    #[error("must be a positive duration such as 720h, 30d or 2w")]
    MaxAge,
}

impl SpecError {
    /// The field the problem is in.
    pub fn field(&self) -> &'static str {
        match self {
            SpecError::Schedule(_) => "spec.schedule",
            SpecError::TimeZone(_) => "spec.timeZone",
            SpecError::MaxAge => "spec.retention.maxAge",
        }
    }

    /// The field's value in `spec` (what the error is about).
    pub fn value<'a>(&self, spec: &'a APIManagerBackupScheduleSpec) -> &'a str {
        match self {
            SpecError::Schedule(_) => &spec.schedule,
            SpecError::TimeZone(_) => &spec.time_zone,
            SpecError::MaxAge => spec.retention.max_age.as_deref().unwrap_or_default(),
        }
    }
}

/// A schedule's spec in the pure core's terms.
#[derive(Debug, Clone)]
pub struct Settings {
    /// When it fires.
    pub calendar: Calendar,
    /// What it keeps.
    pub policy: Policy,
    /// What a due run does while the previous one runs.
    pub concurrency: Concurrency,
    /// How late a run may start; `None`: however late.
    pub starting_deadline: Option<SignedDuration>,
}

/// Reads `spec`; every problem at once.
pub fn settings(spec: &APIManagerBackupScheduleSpec) -> Result<Settings, Vec<SpecError>> {
    let cron = Cron::parse(&spec.schedule).map_err(SpecError::from);
    let zone = time_zone(Some(&spec.time_zone)).map_err(SpecError::from);
    let policy = policy(&spec.retention);
    match (cron, zone, policy) {
        (Ok(cron), Ok(zone), Ok(policy)) => Ok(Settings {
            calendar: Calendar::new(cron, zone),
            policy,
            concurrency: match spec.concurrency_policy {
                ConcurrencyPolicy::Forbid => Concurrency::Forbid,
                ConcurrencyPolicy::Replace => Concurrency::Replace,
            },
            starting_deadline: spec.starting_deadline_seconds.map(|s| SignedDuration::from_secs(s.max(0))),
        }),
        (cron, zone, policy) => Err([cron.err(), zone.err(), policy.err()].into_iter().flatten().collect()),
    }
}

/// The retention rules of the spec.
fn policy(retention: &Retention) -> Result<Policy, SpecError> {
    let max_age = match retention.max_age.as_deref() {
        None => None,
        Some(text) => Some(max_age(text)?),
    };
    Ok(Policy {
        keep_last: retention.keep_last,
        keep_hourly: retention.keep_hourly,
        keep_daily: retention.keep_daily,
        keep_weekly: retention.keep_weekly,
        keep_monthly: retention.keep_monthly,
        keep_yearly: retention.keep_yearly,
        max_age,
        keep_failed: retention.keep_failed,
    })
}

/// A positive duration: Go's form (`720h0m0s`, as Velero's TTL) or humantime's (`30d`, `2w`).
fn max_age(text: &str) -> Result<SignedDuration, SpecError> {
    let duration = humantime::parse_duration(text.trim()).map_err(|_| SpecError::MaxAge)?;
    match SignedDuration::try_from(duration) {
        Ok(duration) if duration.is_positive() => Ok(duration),
        _ => Err(SpecError::MaxAge),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::APIManagerBackupSpec;

    fn spec(schedule: &str, zone: &str, max_age: Option<&str>) -> APIManagerBackupScheduleSpec {
        APIManagerBackupScheduleSpec {
            schedule: schedule.to_owned(),
            time_zone: zone.to_owned(),
            suspend: false,
            concurrency_policy: ConcurrencyPolicy::Replace,
            starting_deadline_seconds: Some(120),
            template: serde_json::from_value::<APIManagerBackupSpec>(serde_json::json!({"backupDestination": {}}))
                .unwrap(),
            retention: Retention { keep_daily: Some(7), max_age: max_age.map(str::to_owned), ..Retention::default() },
        }
    }

    #[test]
    fn a_valid_spec_reads_into_the_core() {
        let settings = settings(&spec("0 2 * * *", "Europe/Madrid", Some("720h0m0s"))).unwrap();
        assert_eq!(settings.calendar.zone().iana_name(), Some("Europe/Madrid"));
        assert_eq!(settings.policy.keep_daily, Some(7));
        assert_eq!(settings.policy.keep_failed, 1);
        assert_eq!(settings.policy.max_age, Some(SignedDuration::from_hours(720)));
        assert_eq!(settings.concurrency, Concurrency::Replace);
        assert_eq!(settings.starting_deadline, Some(SignedDuration::from_secs(120)));
    }

    #[test]
    fn max_age_forms() {
        for (text, hours) in [("720h", 720), ("30d", 720), ("2w", 336), ("1h30m", 1), (" 48h ", 48)] {
            assert_eq!(max_age(text).unwrap().as_hours(), hours, "{text}");
        }
        for text in ["", "0s", "forever", "-1h", "30"] {
            assert_eq!(max_age(text), Err(SpecError::MaxAge), "{text:?}");
        }
    }

    #[test]
    fn every_problem_at_once_each_with_its_field() {
        let spec = spec("61 * * * *", "Mars/Olympus", Some("soon"));
        let errors = settings(&spec).unwrap_err();
        let rendered: Vec<(&str, &str, String)> =
            errors.iter().map(|e| (e.field(), e.value(&spec), e.to_string())).collect();
        assert_eq!(
            rendered,
            [
                ("spec.schedule", "61 * * * *", "minute field: 61 is out of range 0-59".to_owned()),
                (
                    "spec.timeZone",
                    "Mars/Olympus",
                    "unknown time zone: use an IANA name such as Europe/Madrid or UTC".to_owned()
                ),
                ("spec.retention.maxAge", "soon", "must be a positive duration such as 720h, 30d or 2w".to_owned()),
            ]
        );
    }
}
