//! What a fault proxy does to the requests it passes: the spec `--faults` parses, e.g.
//! `errors=10%,kinds=429+500+503+reset+stall+lost,delay=50ms,drop-watches=10s,gone=5%,seed=7`,
//! or a persistent error on one kind of request: `errors=100%,kinds=500,on=create:pods`.

use super::target::{Target, TargetError};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One way a request fails instead of being answered by the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// HTTP 429 `TooManyRequests` with a `Retry-After` header, as API Priority and Fairness sheds load.
    TooManyRequests,
    /// HTTP 500 `InternalError`.
    InternalError,
    /// HTTP 503 `ServiceUnavailable`.
    Unavailable,
    /// The connection closed before the request reaches the API server.
    Reset,
    /// No answer for the stall time, then the connection closes; the request never reaches the API server.
    Stall,
    /// The request reaches the API server, which acts on it, but its answer is lost: the connection
    /// closes instead (a create that happened, for a client that cannot know it).
    LostAnswer,
}

impl FaultKind {
    /// Every kind, in the order of the spec's names.
    pub const ALL: [Self; 6] =
        [Self::TooManyRequests, Self::InternalError, Self::Unavailable, Self::Reset, Self::Stall, Self::LostAnswer];

    /// Its name in a spec.
    pub fn name(self) -> &'static str {
        match self {
            Self::TooManyRequests => "429",
            Self::InternalError => "500",
            Self::Unavailable => "503",
            Self::Reset => "reset",
            Self::Stall => "stall",
            Self::LostAnswer => "lost",
        }
    }
}

/// The faults a proxy injects. The default passes every request untouched.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSpec {
    /// Share of requests (0 to 1) answered by a fault of `kinds` instead of the API server.
    pub error_rate: f64,
    /// The kinds of those faults, each as likely (never empty).
    pub kinds: Vec<FaultKind>,
    /// Each request waits a random time up to this long before it is passed or failed.
    pub delay: Duration,
    /// How long a stalled request waits before its connection closes.
    pub stall: Duration,
    /// The `Retry-After` of a 429, in seconds.
    pub retry_after: u32,
    /// Every watch stream is cut this long after it started.
    pub drop_watches: Option<Duration>,
    /// Share of watches resuming from a resourceVersion answered with `410 Gone` (`Expired`), as
    /// after an etcd compaction: the client must list again.
    pub gone_rate: f64,
    /// Seed of the random choices, so a run can be repeated.
    pub seed: u64,
    /// The requests `error_rate` applies to (any of these patterns); empty for every request.
    pub on: Vec<Target>,
}

impl Default for FaultSpec {
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            delay: Duration::ZERO,
            stall: Duration::from_secs(5),
            retry_after: 1,
            drop_watches: None,
            gone_rate: 0.0,
            seed: 1,
            on: Vec::new(),
        }
    }
}

/// Why a fault spec was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// A part is not `key=value`.
    #[error("`{0}` is not key=value")]
    NotKeyValue(String),
    /// A key the spec does not have.
    #[error("unknown key `{0}` (errors, kinds, on, delay, stall, retry-after, drop-watches, gone, seed)")]
    UnknownKey(String),
    /// A rate that is not a share between 0 and 1 (`0.1` or `10%`).
    #[error("{key}: `{value}` is not a rate between 0 and 1 (0.1 or 10%)")]
    Rate {
        /// The key.
        key: String,
        /// What was given.
        value: String,
    },
    /// A duration that does not parse (`50ms`, `10s`).
    #[error("{key}: `{value}` is not a duration (50ms, 10s)")]
    Duration {
        /// The key.
        key: String,
        /// What was given.
        value: String,
    },
    /// A number that does not parse.
    #[error("{key}: `{value}` is not a whole number")]
    Number {
        /// The key.
        key: String,
        /// What was given.
        value: String,
    },
    /// A fault kind the proxy does not know.
    #[error("kinds: unknown kind `{0}` (429, 500, 503, reset, stall, lost)")]
    Kind(String),
    /// `kinds=` names none.
    #[error("kinds: at least one kind")]
    NoKinds,
    /// A pattern of `on=` that does not parse.
    #[error("on: {0}")]
    Target(#[from] TargetError),
    /// `on=` names none.
    #[error("on: at least one <verb>:<resource>")]
    NoTargets,
}

fn rate(key: &str, value: &str) -> Result<f64, SpecError> {
    let refused = || SpecError::Rate { key: key.to_owned(), value: value.to_owned() };
    let parsed = match value.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => value.parse::<f64>(),
    }
    .map_err(|_| refused())?;
    if (0.0..=1.0).contains(&parsed) { Ok(parsed) } else { Err(refused()) }
}

fn duration(key: &str, value: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(value).map_err(|_| SpecError::Duration { key: key.to_owned(), value: value.to_owned() })
}

fn number<T: FromStr>(key: &str, value: &str) -> Result<T, SpecError> {
    value.parse().map_err(|_| SpecError::Number { key: key.to_owned(), value: value.to_owned() })
}

fn kinds(value: &str) -> Result<Vec<FaultKind>, SpecError> {
    let mut kinds = Vec::new();
    for name in value.split('+').map(str::trim).filter(|name| !name.is_empty()) {
        let kind = FaultKind::ALL.into_iter().find(|kind| kind.name() == name);
        let kind = kind.ok_or_else(|| SpecError::Kind(name.to_owned()))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() { Err(SpecError::NoKinds) } else { Ok(kinds) }
}

fn targets(value: &str) -> Result<Vec<Target>, SpecError> {
    let targets = value
        .split('+')
        .map(str::trim)
        .filter(|pattern| !pattern.is_empty())
        .map(str::parse)
        .collect::<Result<Vec<Target>, _>>()?;
    if targets.is_empty() { Err(SpecError::NoTargets) } else { Ok(targets) }
}

impl FromStr for FaultSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let mut parsed = Self::default();
        for part in spec.split(',').map(str::trim).filter(|part| !part.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| SpecError::NotKeyValue(part.to_owned()))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "errors" => parsed.error_rate = rate(key, value)?,
                "kinds" => parsed.kinds = kinds(value)?,
                "on" => parsed.on = targets(value)?,
                "delay" => parsed.delay = duration(key, value)?,
                "stall" => parsed.stall = duration(key, value)?,
                "retry-after" => parsed.retry_after = number(key, value)?,
                "drop-watches" => parsed.drop_watches = Some(duration(key, value)?),
                "gone" => parsed.gone_rate = rate(key, value)?,
                "seed" => parsed.seed = number(key, value)?,
                _ => return Err(SpecError::UnknownKey(key.to_owned())),
            }
        }
        Ok(parsed)
    }
}

impl fmt::Display for FaultSpec {
    /// The spec in the form [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self.kinds.iter().map(|kind| kind.name()).collect();
        write!(
            f,
            "errors={},kinds={},delay={},stall={},retry-after={}",
            self.error_rate,
            kinds.join("+"),
            humantime::format_duration(self.delay),
            humantime::format_duration(self.stall),
            self.retry_after
        )?;
        if let Some(period) = self.drop_watches {
            write!(f, ",drop-watches={}", humantime::format_duration(period))?;
        }
        write!(f, ",gone={},seed={}", self.gone_rate, self.seed)?;
        if !self.on.is_empty() {
            let on: Vec<String> = self.on.iter().map(Target::to_string).collect();
            write!(f, ",on={}", on.join("+"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_sets_what_it_names_and_keeps_the_defaults_of_the_rest() {
        let spec: FaultSpec = "errors=10%, kinds=429+reset, drop-watches=10s, gone=0.05, seed=7".parse().expect("spec");
        assert_eq!(
            spec,
            FaultSpec {
                error_rate: 0.1,
                kinds: vec![FaultKind::TooManyRequests, FaultKind::Reset],
                drop_watches: Some(Duration::from_secs(10)),
                gone_rate: 0.05,
                seed: 7,
                ..FaultSpec::default()
            }
        );
        assert_eq!("".parse::<FaultSpec>(), Ok(FaultSpec::default()));
    }

    #[test]
    fn a_spec_reads_back_what_it_prints() {
        let spec: FaultSpec =
            "errors=0.2,kinds=500+503+stall+lost,delay=50ms,stall=2s,retry-after=3,drop-watches=1m,gone=50%,seed=9"
                .parse()
                .expect("spec");
        assert_eq!(spec.to_string().parse::<FaultSpec>(), Ok(spec.clone()));
        assert_eq!(
            spec.to_string(),
            "errors=0.2,kinds=500+503+stall+lost,delay=50ms,stall=2s,retry-after=3,drop-watches=1m,gone=0.5,seed=9"
        );
        let targeted: FaultSpec =
            "errors=100%,kinds=500,on=create:pods+*:apimanagerbackups/status".parse().expect("spec");
        assert_eq!(targeted.to_string().parse::<FaultSpec>(), Ok(targeted.clone()));
        assert!(targeted.to_string().ends_with(",seed=1,on=create:pods+*:apimanagerbackups/status"), "{targeted}");
    }

    #[test]
    fn a_wrong_spec_is_refused_naming_the_part() {
        let refused = |spec: &str| spec.parse::<FaultSpec>().expect_err(spec).to_string();
        assert_eq!(refused("errors"), "`errors` is not key=value");
        assert_eq!(
            refused("error=0.1"),
            "unknown key `error` (errors, kinds, on, delay, stall, retry-after, drop-watches, gone, seed)"
        );
        assert_eq!(refused("errors=110%"), "errors: `110%` is not a rate between 0 and 1 (0.1 or 10%)");
        assert_eq!(refused("gone=-0.1"), "gone: `-0.1` is not a rate between 0 and 1 (0.1 or 10%)");
        assert_eq!(refused("delay=soon"), "delay: `soon` is not a duration (50ms, 10s)");
        assert_eq!(refused("seed=x"), "seed: `x` is not a whole number");
        assert_eq!(refused("kinds=429+418"), "kinds: unknown kind `418` (429, 500, 503, reset, stall, lost)");
        assert_eq!(refused("kinds=+"), "kinds: at least one kind");
        assert_eq!(refused("on=+"), "on: at least one <verb>:<resource>");
        assert!(refused("on=create:pods+post:pods").starts_with("on: `post:pods` is not <verb>:<resource>"));
    }
}
