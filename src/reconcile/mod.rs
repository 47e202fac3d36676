//! The step machine every operation runs on (README, "Backups: APIManagerBackup" and "Restores:
//! APIManagerRestore"): an operation is a custom resource implementing [`machine::Operation`],
//! whose step jobs ([`step`]) run as Pods this reconciler creates and reads back ([`pods`]), from
//! the caches it keeps current ([`seen`]), ending in one place with a typed [`outcome`] and an
//! event ([`events`]). What makes an operation a backup or a restore lives in [`crate::backup`]
//! and [`crate::restore`]; [`crate::controllers`] runs them.

pub mod ends;
pub mod events;
#[cfg(test)]
pub(crate) mod fake_api;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod machine;
pub mod outcome;
pub mod pods;
pub mod s3;
pub mod seen;
pub mod step;

use crate::lookup::LookupError;
use crate::lookup::cache::CachedLookup;
use crate::metrics::Metrics;
use events::EventPublisher;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use machine::Operation;
use outcome::{ApiTrouble, LastError};
use std::sync::Arc;
use std::time::Duration;
use step::JobSettings;

/// Errors of a reconciliation; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The API error.
        source: kube::Error,
    },
    /// The APIManagers could not be read (live, to confirm what the cache does not hold).
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The object has no namespace (the CRD is namespaced, so this is a bug elsewhere).
    #[error("the object has no namespace")]
    NotNamespaced,
}

/// What kind of error a [`ReconcileError`] is: decides the retry delay and labels the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Another write got there first (HTTP 409): read again soon.
    Conflict,
    /// The operator may not do this (HTTP 403).
    Forbidden,
    /// The API server shed load (HTTP 429): passes on its own.
    TooManyRequests,
    /// The API server failed (HTTP 5xx) or did not answer in time: passes on its own.
    ServerError,
    /// The connection to the API server failed or was cut: passes on its own.
    ConnectionError,
    /// Any other API error.
    Api,
    /// The object has no namespace.
    NotNamespaced,
}

/// The first wait after a transient error; it doubles with each failed pass in a row.
const TRANSIENT_FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait after transient errors.
const TRANSIENT_MAX_RETRY: Duration = Duration::from_secs(30);

impl ErrorKind {
    /// The `reason` label of `apimanager_backup_operator_reconcile_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Conflict => "Conflict",
            Self::Forbidden => "Forbidden",
            Self::TooManyRequests => "TooManyRequests",
            Self::ServerError => "ServerError",
            Self::ConnectionError => "ConnectionError",
            Self::Api => "ApiError",
            Self::NotNamespaced => "NotNamespaced",
        }
    }

    /// Whether it passes on its own (the API server's or the network's passing trouble): it is
    /// retried with back-off and logged at debug level only.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::TooManyRequests | Self::ServerError | Self::ConnectionError)
    }

    /// How long to wait before reconciling again, after `failures` failed passes in a row (this
    /// one included): transient errors back off from 1 s, doubling, up to 30 s.
    pub fn retry_after(self, failures: u32) -> Duration {
        match self {
            Self::Conflict => Duration::from_secs(1),
            kind if kind.is_transient() => pods::doubling(TRANSIENT_FIRST_RETRY, TRANSIENT_MAX_RETRY, failures),
            _ => Duration::from_secs(10),
        }
    }

    /// The kind of a failed API request.
    fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) if status.code == 409 => Self::Conflict,
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden,
            kube::Error::Api(status) if status.code == 429 => Self::TooManyRequests,
            kube::Error::Api(status) if status.code >= 500 => Self::ServerError,
            kube::Error::HyperError(_) | kube::Error::Service(_) => Self::ConnectionError,
            _ => Self::Api,
        }
    }
}

impl ReconcileError {
    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { source, .. } => ErrorKind::of(source),
            Self::Lookup(LookupError::Api { source, .. } | LookupError::Read { source, .. }) => {
                match ErrorKind::of(source) {
                    ErrorKind::Conflict | ErrorKind::Forbidden => ErrorKind::Api,
                    kind => kind,
                }
            }
            Self::Lookup(LookupError::Timeout { .. } | LookupError::ReadTimeout { .. }) => ErrorKind::ServerError,
            Self::Lookup(_) => ErrorKind::Api,
            Self::NotNamespaced => ErrorKind::NotNamespaced,
        }
    }

    /// What was being done and how the API server failed, when it failed for a reason that passes
    /// on its own ([`ErrorKind::is_transient`]); never its message, which may quote the object.
    pub fn last_error(&self) -> Option<LastError> {
        let trouble = |source: &kube::Error| match (ErrorKind::of(source), source) {
            (ErrorKind::TooManyRequests | ErrorKind::ServerError, kube::Error::Api(status)) => {
                Some(ApiTrouble::Answered(status.code))
            }
            (ErrorKind::ConnectionError, _) => Some(ApiTrouble::Connection),
            _ => None,
        };
        let listing = |namespace: &str| format!("listing the APIManagers of namespace {namespace:?}");
        let reading = |name: &str| format!("reading APIManager {name:?}");
        let (what, cause) = match self {
            Self::Api { what, source } => (what.clone(), trouble(source)?),
            Self::Lookup(LookupError::Api { namespace, source }) => (listing(namespace), trouble(source)?),
            Self::Lookup(LookupError::Read { name, source, .. }) => (reading(name), trouble(source)?),
            Self::Lookup(LookupError::Timeout { namespace }) => (listing(namespace), ApiTrouble::NoAnswer),
            Self::Lookup(LookupError::ReadTimeout { name, .. }) => (reading(name), ApiTrouble::NoAnswer),
            Self::Lookup(_) | Self::NotNamespaced => return None,
        };
        Some(LastError { what, cause })
    }

    /// What was refused and the API server's message, when it refused for good (invalid object,
    /// forbidden, over quota): retrying the same request cannot succeed.
    pub fn refusal(&self) -> Option<(String, String)> {
        match self {
            Self::Api { what, source: kube::Error::Api(status) } if [400, 403, 422].contains(&status.code) => {
                Some((what.clone(), status.message.clone()))
            }
            _ => None,
        }
    }
}

/// How backups and restores are run.
#[derive(Clone, Debug)]
pub struct ReconcileSettings {
    /// How the step Pods run.
    pub jobs: JobSettings,
    /// A backup not finished this long after its start fails.
    pub backup_timeout: Duration,
    /// A restore not finished this long after its start fails.
    pub restore_timeout: Duration,
}

/// What each reconciliation shares.
pub struct Context {
    /// Client acting as the operator.
    pub client: kube::Client,
    /// Metrics to record outcomes in.
    pub metrics: Arc<Metrics>,
    /// Publishes events on the backups.
    pub recorder: EventPublisher,
    /// Settings.
    pub settings: ReconcileSettings,
    /// The versions this reconciler last read or wrote, to start passes from the cache.
    pub seen: seen::SeenVersions,
    /// Ends written whose metrics and event are not announced yet.
    pub ends: ends::PendingEnds,
    /// Failed passes in a row per object, for the back-off of transient errors.
    pub failures: Failures,
    /// The step Pods this reconciler created a moment ago, which the Pod watch may not have
    /// delivered yet (it forgets each it delivers).
    pub created_pods: Arc<seen::CreatedPods>,
    /// The APIManagers, from the watch that also triggers passes; what it does not hold is
    /// confirmed live before a pass fails for it.
    pub apimanagers: CachedLookup,
    /// The operation's step Pods (trimmed by [`crate::trim::pod`]), from the watch that also triggers
    /// passes; an attempt it does not hold yet (and this reconciler did not just create) is
    /// confirmed by its create (AlreadyExists) and one GET.
    pub pods: Store<Pod>,
}

impl Context {
    /// What the passes share, with nothing read or written yet; `created_pods` is forgotten by the
    /// Pod watch as it delivers them.
    pub fn new(
        client: kube::Client,
        metrics: Arc<Metrics>,
        recorder: EventPublisher,
        settings: ReconcileSettings,
        apimanagers: CachedLookup,
        pods: Store<Pod>,
        created_pods: Arc<seen::CreatedPods>,
    ) -> Self {
        let (seen, ends, failures) = Default::default();
        Self { client, metrics, recorder, settings, seen, ends, failures, created_pods, apimanagers, pods }
    }
}

/// Failed passes in a row per object UID, for the back-off of transient errors, and the last
/// transient error among them, which a timeout names; a pass that succeeds forgets its object.
#[derive(Debug, Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<String, InARow>>);

/// The failed passes in a row of one object.
#[derive(Debug, Default)]
struct InARow {
    count: u32,
    last_error: Option<LastError>,
}

impl Failures {
    /// Counts a failed pass of object `uid`, which failed with `error`; returns how many failed
    /// in a row.
    pub fn failed(&self, uid: &str, error: &ReconcileError) -> u32 {
        let mut failures = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let in_a_row = failures.entry(uid.to_owned()).or_default();
        in_a_row.count = in_a_row.count.saturating_add(1);
        if let Some(last_error) = error.last_error() {
            in_a_row.last_error = Some(last_error);
        }
        in_a_row.count
    }

    /// The last transient error of the failed passes in a row of object `uid`.
    pub fn last_error(&self, uid: &str) -> Option<LastError> {
        let failures = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        failures.get(uid).and_then(|in_a_row| in_a_row.last_error.clone())
    }

    /// Forgets the failures of object `uid`, whose pass succeeded.
    pub fn succeeded(&self, uid: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(uid);
    }
}

/// Counts a failed pass and schedules the next one after its kind's delay (backing off while
/// transient errors go on); transient errors are logged at debug level, others as warnings.
pub fn error_policy<O: Operation>(object: Arc<O>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics.reconcile_error(O::NOUN, kind.label());
    let failures = ctx.failures.failed(&object.meta().uid.clone().unwrap_or_default(), error);
    let retry = kind.retry_after(failures);
    let object = ObjectRef::from_obj(object.as_ref());
    if kind.is_transient() {
        tracing::debug!(%object, %error, reason = kind.label(), failures, retry_seconds = retry.as_secs(), "reconcile failed for a passing reason; retrying");
    } else {
        tracing::warn!(%object, %error, reason = kind.label(), retry_seconds = retry.as_secs(), "reconcile failed; retrying");
    }
    Action::requeue(retry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> ReconcileError {
        let status = kube::core::Status::failure("refused", "Reason").with_code(code).boxed();
        ReconcileError::Api { what: "writing".into(), source: kube::Error::Api(status) }
    }

    #[test]
    fn api_errors_are_told_apart_by_whether_they_pass_on_their_own() {
        let kinds: Vec<(u16, &str, bool)> = [409, 403, 429, 500, 503, 504, 404, 422]
            .map(|code| (code, api(code).kind().label(), api(code).kind().is_transient()))
            .to_vec();
        assert_eq!(
            kinds,
            [
                (409, "Conflict", false),
                (403, "Forbidden", false),
                (429, "TooManyRequests", true),
                (500, "ServerError", true),
                (503, "ServerError", true),
                (504, "ServerError", true),
                (404, "ApiError", false),
                (422, "ApiError", false),
            ]
        );
        let timeout = ReconcileError::Lookup(LookupError::Timeout { namespace: "ns".into() });
        assert_eq!(timeout.kind(), ErrorKind::ServerError);
    }

    #[test]
    fn transient_errors_back_off_doubling_up_to_half_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| ErrorKind::ServerError.retry_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(ErrorKind::TooManyRequests.retry_after(u32::MAX), Duration::from_secs(30));
        assert_eq!(ErrorKind::Conflict.retry_after(5), Duration::from_secs(1));
        assert_eq!(ErrorKind::Api.retry_after(5), Duration::from_secs(10));
    }

    #[test]
    fn failures_count_in_a_row_until_a_pass_succeeds() {
        let failures = Failures::default();
        let error = api(409);
        assert_eq!(
            (failures.failed("a", &error), failures.failed("a", &error), failures.failed("b", &error)),
            (1, 2, 1)
        );
        failures.succeeded("a");
        assert_eq!(failures.failed("a", &error), 1);
    }

    #[test]
    fn the_last_transient_error_is_kept_until_a_pass_succeeds() {
        let failures = Failures::default();
        failures.failed("a", &api(409));
        assert_eq!(failures.last_error("a"), None, "a conflict is no trouble of the API server");
        failures.failed("a", &api(500));
        failures.failed("a", &api(429));
        failures.failed("a", &api(409));
        let last = failures.last_error("a").map(|error| error.to_string());
        assert_eq!(last.as_deref(), Some("writing: the API server answered 429 Too Many Requests (TooManyRequests)"));
        assert_eq!(failures.last_error("b"), None);
        failures.succeeded("a");
        assert_eq!(failures.last_error("a"), None);
    }

    #[test]
    fn a_last_error_never_carries_the_api_servers_message() {
        let status = kube::core::Status::failure("secret value s3cr3t in the object", "InternalError").with_code(500);
        let error = ReconcileError::Api { what: "creating Pod p-0".into(), source: kube::Error::Api(status.boxed()) };
        assert_eq!(
            error.last_error().map(|e| e.to_string()).as_deref(),
            Some("creating Pod p-0: the API server answered 500 Internal Server Error (ServerError)")
        );
        let timeout = ReconcileError::Lookup(LookupError::ReadTimeout { namespace: "ns".into(), name: "am".into() });
        assert_eq!(
            timeout.last_error().map(|e| e.to_string()).as_deref(),
            Some(r#"reading APIManager "am": the API server did not answer in time (ServerError)"#)
        );
        assert_eq!(api(404).last_error(), None);
        assert_eq!(ReconcileError::NotNamespaced.last_error(), None);
    }
}
