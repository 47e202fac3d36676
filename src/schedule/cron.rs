//! Cron expressions: the five fields of Vixie cron (`minute hour day-of-month month day-of-week`)
//! and the `@daily`-style shorthands, parsed into sets of values. Pure: no clock, no time zone.
//!
//! Accepted per field: `*`, a number, a name (`JAN`–`DEC`, `SUN`–`SAT`, any case), a range `a-b`,
//! a step `*/n`, `a-b/n` or `a/n` (from `a` to the field's end), and comma-separated lists of
//! these. Day of week 7 is Sunday, as 0 is. When both day fields are restricted, a day matches if
//! either does (Vixie cron and Kubernetes CronJob); a day field that starts with `*` (including
//! `*/n`) does not widen the match, as in Vixie cron.

use jiff::civil::Date;

/// One of the five fields of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Minute, 0–59.
    Minute,
    /// Hour, 0–23.
    Hour,
    /// Day of the month, 1–31.
    DayOfMonth,
    /// Month, 1–12 or `JAN`–`DEC`.
    Month,
    /// Day of the week, 0–7 (0 and 7 are Sunday) or `SUN`–`SAT`.
    DayOfWeek,
}

impl Field {
    const ALL: [Field; 5] = [Field::Minute, Field::Hour, Field::DayOfMonth, Field::Month, Field::DayOfWeek];

    /// The lowest and highest value the field accepts.
    fn bounds(self) -> (u8, u8) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
        }
    }

    /// The names the field accepts, in value order from `name_base`.
    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
            Field::DayOfWeek => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
        })
    }
}

/// What is wrong with one field. Never echoes the input: only values this parser read as numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// An element of a comma-separated list is empty.
    #[error("empty list element")]
    EmptyElement,
    /// A value is neither a number nor a name the field accepts.
    #[error("a value is neither a number nor a name this field accepts{}", name_hint(*.0))]
    NotAValue(Field),
    /// A number outside the field's bounds.
    #[error("{value} is out of range {min}-{max}")]
    OutOfRange {
        /// The number read.
        value: u32,
        /// The field's lowest value.
        min: u8,
        /// The field's highest value.
        max: u8,
    },
    /// A range whose start is after its end.
    #[error("range {start}-{end} runs backwards")]
    Backwards {
        /// The range's start.
        start: u8,
        /// The range's end.
        end: u8,
    },
    /// A step that is not a positive number.
    #[error("a step must be a whole number of at least 1")]
    BadStep,
}

fn name_hint(field: Field) -> &'static str {
    match field {
        Field::Month => " (1-12 or JAN-DEC)",
        Field::DayOfWeek => " (0-7 or SUN-SAT)",
        _ => "",
    }
}

/// Why an expression does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing but white space.
    #[error(
        "empty expression: expected 5 fields (minute hour day-of-month month day-of-week) or a shorthand such as @daily"
    )]
    Empty,
    /// Not five fields.
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    /// `@something` that is not a known shorthand.
    #[error("unknown shorthand: use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")]
    UnknownShorthand,
    /// One field is wrong.
    #[error("{field} field: {problem}")]
    Field {
        /// Which field.
        field: Field,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// The fields parse but no calendar day ever matches (for example `0 0 30 2 *`).
    #[error("the expression never matches: no selected month has one of the selected days of the month")]
    NeverMatches,
}

/// A parsed cron expression: the set of values each field selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    day_of_month_star: bool,
    day_of_week_star: bool,
}

impl Cron {
    /// Parses a 5-field expression or a shorthand; surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(CronError::Empty);
        }
        if let Some(name) = text.strip_prefix('@') {
            return Cron::parse(shorthand(name).ok_or(CronError::UnknownShorthand)?);
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let mut sets = [0u64; 5];
        for ((set, field), source) in sets.iter_mut().zip(Field::ALL).zip(&fields) {
            *set = parse_field(field, source).map_err(|problem| CronError::Field { field, problem })?;
        }
        let [minutes, hours, days_of_month, months, days_of_week] = sets;
        // Sunday is both 0 and 7; fold 7 onto 0.
        let days_of_week = (days_of_week | (days_of_week >> 7)) & 0x7f;
        let cron = Cron {
            minutes,
            hours: u32::try_from(hours).unwrap_or(u32::MAX),
            days_of_month: u32::try_from(days_of_month).unwrap_or(u32::MAX),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            days_of_week: u8::try_from(days_of_week).unwrap_or(u8::MAX),
            day_of_month_star: fields[2].starts_with('*'),
            day_of_week_star: fields[4].starts_with('*'),
        };
        if !cron.matches_some_day() {
            return Err(CronError::NeverMatches);
        }
        Ok(cron)
    }

    /// Whether the expression selects this minute of the hour.
    pub fn minute(&self, minute: i8) -> bool {
        (0..60).contains(&minute) && self.minutes & (1 << minute) != 0
    }

    /// Whether the expression selects this hour of the day.
    pub fn hour(&self, hour: i8) -> bool {
        (0..24).contains(&hour) && self.hours & (1 << hour) != 0
    }

    /// Whether the expression selects this calendar day (month, and the day fields' rule).
    pub fn day(&self, date: Date) -> bool {
        let month = date.month();
        if !(1..=12).contains(&month) || self.months & (1 << month) == 0 {
            return false;
        }
        let by_month_day = self.days_of_month & (1 << date.day()) != 0;
        let by_week_day = self.days_of_week & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.day_of_month_star || self.day_of_week_star {
            by_month_day && by_week_day
        } else {
            by_month_day || by_week_day
        }
    }

    /// The minutes of the hour the expression selects, ascending.
    pub(super) fn minutes(&self) -> impl DoubleEndedIterator<Item = i8> + '_ {
        (0..60).filter(|m| self.minute(*m))
    }

    /// The hours of the day the expression selects, ascending.
    pub(super) fn hours(&self) -> impl DoubleEndedIterator<Item = i8> + '_ {
        (0..24).filter(|h| self.hour(*h))
    }

    /// Whether any calendar day can match (a restricted day of the week always can).
    fn matches_some_day(&self) -> bool {
        if !self.day_of_week_star || self.day_of_month_star {
            return true;
        }
        // Longest length of each month, February counted in a leap year.
        const LONGEST: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12u8).any(|month| {
            let days = (1u64 << (LONGEST[usize::from(month - 1)] + 1)) - 2;
            self.months & (1 << month) != 0 && u64::from(self.days_of_month) & days != 0
        })
    }
}

/// The 5-field expression a shorthand stands for.
fn shorthand(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 1 1 *",
        "monthly" => "0 0 1 * *",
        "weekly" => "0 0 * * 0",
        "daily" | "midnight" => "0 0 * * *",
        "hourly" => "0 * * * *",
        _ => return None,
    })
}

/// The set of values (bit i = value i) one field selects.
fn parse_field(field: Field, source: &str) -> Result<u64, FieldProblem> {
    let (min, max) = field.bounds();
    let mut set = 0u64;
    for element in source.split(',') {
        if element.is_empty() {
            return Err(FieldProblem::EmptyElement);
        }
        let (range, step) = match element.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(step)?)),
            None => (element, None),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((start, end)) = range.split_once('-') {
            let (start, end) = (parse_value(field, start)?, parse_value(field, end)?);
            if start > end {
                return Err(FieldProblem::Backwards { start, end });
            }
            (start, end)
        } else {
            let value = parse_value(field, range)?;
            // `a/n` runs from `a` to the field's end; a lone `a` is just `a`.
            (value, if step.is_some() { max } else { value })
        };
        let step = usize::from(step.unwrap_or(1));
        for value in (start..=end).step_by(step) {
            set |= 1 << value;
        }
    }
    Ok(set)
}

fn parse_step(text: &str) -> Result<u8, FieldProblem> {
    match text.parse::<u8>() {
        Ok(step) if step >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(step),
        _ => Err(FieldProblem::BadStep),
    }
}

fn parse_value(field: Field, text: &str) -> Result<u8, FieldProblem> {
    let (min, max) = field.bounds();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value = text.parse::<u32>().unwrap_or(u32::MAX);
        return match u8::try_from(value) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(FieldProblem::OutOfRange { value, min, max }),
        };
    }
    let base = if field == Field::Month { 1 } else { 0 };
    field
        .names()
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .and_then(|index| u8::try_from(index).ok())
        .map(|index| index + base)
        .ok_or(FieldProblem::NotAValue(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn values(cron: &Cron, field: Field) -> Vec<i8> {
        match field {
            Field::Minute => cron.minutes().collect(),
            Field::Hour => cron.hours().collect(),
            _ => unreachable!("only minutes and hours are listed"),
        }
    }

    #[test]
    fn fields_lists_ranges_steps() {
        let cron = Cron::parse("*/15 9-17/4,23 * * *").unwrap();
        assert_eq!(values(&cron, Field::Minute), [0, 15, 30, 45]);
        assert_eq!(values(&cron, Field::Hour), [9, 13, 17, 23]);
        let cron = Cron::parse("5/20 0 * * *").unwrap();
        assert_eq!(values(&cron, Field::Minute), [5, 25, 45]);
        let cron = Cron::parse("59 23 * * *").unwrap();
        assert_eq!(values(&cron, Field::Minute), [59]);
        assert_eq!(values(&cron, Field::Hour), [23]);
    }

    #[test]
    fn names_of_months_and_days_in_any_case() {
        let cron = Cron::parse("0 0 * feb-Mar,dec mon-fri").unwrap();
        assert!(cron.day(date(2026, 2, 2))); // Monday in February
        assert!(!cron.day(date(2026, 2, 1))); // Sunday
        assert!(!cron.day(date(2026, 4, 1))); // April
        assert!(cron.day(date(2026, 12, 31))); // Thursday in December
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        for text in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN", "0 0 * * 6-7"] {
            let cron = Cron::parse(text).unwrap();
            assert!(cron.day(date(2026, 12, 6)), "{text}: 2026-12-06 is a Sunday");
        }
        assert!(!Cron::parse("0 0 * * 7").unwrap().day(date(2026, 12, 7)));
    }

    #[test]
    fn day_fields_or_when_both_restricted_and_when_one_is_a_star() {
        // The 13th or any Friday.
        let both = Cron::parse("0 0 13 * 5").unwrap();
        assert!(both.day(date(2026, 12, 13))); // Sunday the 13th
        assert!(both.day(date(2026, 12, 4))); // Friday the 4th
        assert!(!both.day(date(2026, 12, 5)));
        // A star in day-of-week: only the 13th.
        let star = Cron::parse("0 0 13 * *").unwrap();
        assert!(star.day(date(2026, 12, 13)));
        assert!(!star.day(date(2026, 12, 4)));
        // `*/2` in day-of-month starts with a star: the day of the week decides with it (AND).
        let stepped_star = Cron::parse("0 0 */2 * 5").unwrap();
        assert!(stepped_star.day(date(2026, 12, 11))); // odd day, Friday
        assert!(!stepped_star.day(date(2026, 12, 4))); // even day, Friday
        assert!(!stepped_star.day(date(2026, 12, 13))); // odd day, Sunday
    }

    #[test]
    fn shorthands() {
        let cases = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("  @DAILY ", "0 0 * * *"),
        ];
        for (short, long) in cases {
            assert_eq!(Cron::parse(short).unwrap(), Cron::parse(long).unwrap(), "{short}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_problem() {
        let cases = [
            (
                "",
                "empty expression: expected 5 fields (minute hour day-of-month month day-of-week) or a shorthand such as @daily",
            ),
            ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 4"),
            ("0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 6"),
            (
                "@reboot",
                "unknown shorthand: use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
            ),
            ("60 * * * *", "minute field: 60 is out of range 0-59"),
            ("0 24 * * *", "hour field: 24 is out of range 0-23"),
            ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
            ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
            ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
            ("0 0 * * 99999999999", "day-of-week field: 4294967295 is out of range 0-7"),
            (
                "0 0 * JANUARY *",
                "month field: a value is neither a number nor a name this field accepts (1-12 or JAN-DEC)",
            ),
            (
                "0 0 * * MONDAY",
                "day-of-week field: a value is neither a number nor a name this field accepts (0-7 or SUN-SAT)",
            ),
            ("x * * * *", "minute field: a value is neither a number nor a name this field accepts"),
            ("0 MON * * *", "hour field: a value is neither a number nor a name this field accepts"),
            ("1,,2 * * * *", "minute field: empty list element"),
            ("30-10 * * * *", "minute field: range 30-10 runs backwards"),
            ("*/0 * * * *", "minute field: a step must be a whole number of at least 1"),
            ("*/x * * * *", "minute field: a step must be a whole number of at least 1"),
            ("*/+5 * * * *", "minute field: a step must be a whole number of at least 1"),
            ("0 0 30 2 *", "the expression never matches: no selected month has one of the selected days of the month"),
            (
                "0 0 31 4,6,9,11 *",
                "the expression never matches: no selected month has one of the selected days of the month",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(Cron::parse(text).unwrap_err().to_string(), message, "{text:?}");
        }
    }

    #[test]
    fn rare_but_possible_days_parse() {
        assert!(Cron::parse("0 0 29 2 *").is_ok());
        // Both day fields restricted: the weekday can always match.
        assert!(Cron::parse("0 0 30 2 MON").is_ok());
        assert!(Cron::parse("0 0 31 * *").is_ok());
    }
}
