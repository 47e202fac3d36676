//! How a pass of the step machine ends early, typed: [`Failure`] is every final failure of an
//! operation (each with the reason its condition, its event and its metric carry), [`Stop`] is a
//! final failure or an error to retry. Steps return `Result<_, Stop>` and use `?`; the machine turns
//! a [`Failure`] into status, an event and metrics in one place ([`super::machine`]).

use super::{ErrorKind, ReconcileError};
use crate::api::status::Reason;
use crate::rules;
use std::fmt;
use std::time::Duration;

/// A final failure: the operation ends `Failed` and is never retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The backup means no APIManager of its namespace.
    #[error(transparent)]
    APIManagerNotFound(#[from] rules::NotFound),
    /// The APIManager is outside the backup scope.
    #[error(transparent)]
    OutOfScope(#[from] rules::OutOfScope),
    /// The claim to write holds something else; it is never written to.
    #[error(
        "PersistentVolumeClaim {claim} already exists and holds {holder}; it is never overwritten: delete it if it \
is no longer needed, or create this backup under another name"
    )]
    ClaimInUse {
        /// The claim's name.
        claim: String,
        /// What it holds.
        holder: ClaimHolder,
    },
    /// A step job failed for good: its last attempt failed and its retries are used up.
    #[error("Pod {pod} failed{} after {}: {detail}", at_step(step.as_deref()), attempts_made(*attempts))]
    JobFailed {
        /// The last attempt's Pod.
        pod: String,
        /// The step that failed, named when the Pod runs several.
        step: Option<String>,
        /// How many attempts were made.
        attempts: u32,
        /// The failed container's termination message, else the Pod's own reason and message.
        detail: String,
    },
    /// A step's Pod succeeded without the report its step must leave in its termination message.
    #[error(
        "Pod {pod} succeeded without a readable report in its termination message (the Pod's image may not match \
this operator's version)"
    )]
    Unreported {
        /// The Pod's name.
        pod: String,
    },
    /// The APIManager a restore created went away while the restore waited for it.
    #[error(
        "APIManager {name} was deleted while the restore waited for it to become available; create a new \
APIManagerRestore to restore it again"
    )]
    APIManagerDeleted {
        /// Its name.
        name: String,
    },
    /// The backup in a bucket is of an APIManager that lives in the restore's namespace.
    #[error(
        "the backup is of APIManager {name:?}, which exists in namespace {namespace:?}; restoring over a live \
installation is refused: delete that APIManager (and its Secrets, ConfigMaps and system-storage claim) first, or \
restore into another namespace"
    )]
    LiveApiManager {
        /// The APIManager's name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// The API server refused an object for good (invalid, forbidden, over quota).
    #[error("{what}: {message}")]
    Refused {
        /// What was being done.
        what: String,
        /// The API server's message.
        message: String,
    },
    /// The operation did not finish in time.
    #[error(
        "the {operation} did not finish within {} ({flag}); its Pods are kept for debugging{}",
        humantime::format_duration(*limit),
        last_error.as_ref().map(|error| format!("; the last error was: {error}")).unwrap_or_default()
    )]
    Timeout {
        /// The operation's noun ("backup").
        operation: &'static str,
        /// The flag setting the limit.
        flag: &'static str,
        /// The limit.
        limit: Duration,
        /// The last transient API error met while acting on the operation, since its last pass
        /// that succeeded: what kept it from finishing, when the API server did.
        last_error: Option<LastError>,
    },
}

/// A transient API error met while acting on an operation, told without the API server's own
/// message (which may quote the object): what was being done and how the API server failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {cause}")]
pub struct LastError {
    /// What was being done ("creating Pod backup-<uid>-0").
    pub what: String,
    /// How it failed.
    pub cause: ApiTrouble,
}

/// How the API server failed a request, for a reason that passes on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiTrouble {
    /// It answered this HTTP status (429 or 5xx).
    Answered(u16),
    /// The connection failed or was cut before an answer.
    Connection,
    /// It did not answer in time.
    NoAnswer,
}

impl fmt::Display for ApiTrouble {
    /// How it failed, and the `reason` label under which the reconcile errors counted it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Answered(code) => {
                let reason = http::StatusCode::from_u16(code).ok().and_then(|status| status.canonical_reason());
                let kind = if code == 429 { ErrorKind::TooManyRequests } else { ErrorKind::ServerError };
                write!(f, "the API server answered {code} {} ({})", reason.unwrap_or("error"), kind.label())
            }
            Self::Connection => {
                write!(f, "the connection to the API server failed ({})", ErrorKind::ConnectionError.label())
            }
            Self::NoAnswer => write!(f, "the API server did not answer in time ({})", ErrorKind::ServerError.label()),
        }
    }
}

impl Failure {
    /// The reason of the `Failed` condition and of the Warning event, and the `reason` label of the
    /// failure counters.
    pub fn reason(&self) -> Reason {
        match self {
            Self::APIManagerNotFound(_) => Reason::APIManagerNotFound,
            Self::OutOfScope(_) => Reason::OutOfScope,
            Self::ClaimInUse { .. } => Reason::ClaimInUse,
            Self::JobFailed { .. } => Reason::JobFailed,
            Self::Unreported { .. } => Reason::Unreported,
            Self::APIManagerDeleted { .. } => Reason::APIManagerDeleted,
            Self::Refused { .. } | Self::LiveApiManager { .. } => Reason::Refused,
            Self::Timeout { .. } => Reason::Timeout,
        }
    }
}

fn at_step(step: Option<&str>) -> String {
    step.map(|step| format!(" at step {step}")).unwrap_or_default()
}

fn attempts_made(attempts: u32) -> String {
    if attempts == 1 { "1 attempt".to_owned() } else { format!("{attempts} attempts") }
}

/// What an existing claim holds, read from its ownership annotation
/// ([`crate::names::CLAIM_BACKUP_UID`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimHolder {
    /// Another APIManagerBackup, by UID.
    Backup(String),
    /// Something without the annotation.
    Unknown,
}

impl fmt::Display for ClaimHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backup(uid) => write!(f, "APIManagerBackup UID {uid}"),
            Self::Unknown => f.write_str("something else"),
        }
    }
}

/// Why a pass stops before the operation's end.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    /// The operation failed for good.
    #[error(transparent)]
    Failed(#[from] Failure),
    /// Something to retry later.
    #[error(transparent)]
    Retry(ReconcileError),
}

impl From<ReconcileError> for Stop {
    /// An API server's final refusal fails the operation as [`Failure::Refused`]; anything else is
    /// retried.
    fn from(error: ReconcileError) -> Self {
        match error.refusal() {
            Some((what, message)) => Self::Failed(Failure::Refused { what, message }),
            None => Self::Retry(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::OperationKind;
    use kube::core::Status;

    fn api_error(code: u16, message: &str) -> ReconcileError {
        let status = Status::failure(message, "Reason").with_code(code);
        ReconcileError::Api { what: "creating Pod j-0".into(), source: kube::Error::Api(Box::new(status)) }
    }

    #[test]
    fn refusals_end_the_operation_and_other_errors_are_retried() {
        for code in [400, 403, 422] {
            match Stop::from(api_error(code, "exceeded quota")) {
                Stop::Failed(failure) => {
                    assert_eq!(failure.reason().label(), "Refused");
                    assert_eq!(failure.to_string(), "creating Pod j-0: exceeded quota");
                }
                Stop::Retry(error) => panic!("{code} is a refusal, got {error}"),
            }
        }
        for code in [409, 500, 503] {
            assert!(matches!(Stop::from(api_error(code, "busy")), Stop::Retry(_)), "{code} is retried");
        }
    }

    #[test]
    fn a_last_error_names_what_was_done_and_how_the_api_server_failed() {
        let told = |cause| LastError { what: "updating the status".into(), cause }.to_string();
        assert_eq!(
            told(ApiTrouble::Answered(429)),
            "updating the status: the API server answered 429 Too Many Requests (TooManyRequests)"
        );
        assert_eq!(
            told(ApiTrouble::Answered(503)),
            "updating the status: the API server answered 503 Service Unavailable (ServerError)"
        );
        assert_eq!(
            told(ApiTrouble::Answered(599)),
            "updating the status: the API server answered 599 error (ServerError)"
        );
        assert_eq!(
            told(ApiTrouble::Connection),
            "updating the status: the connection to the API server failed (ConnectionError)"
        );
        assert_eq!(
            told(ApiTrouble::NoAnswer),
            "updating the status: the API server did not answer in time (ServerError)"
        );
    }

    #[test]
    fn each_failure_has_its_reason_and_message() {
        let cases = [
            (
                Failure::ClaimInUse { claim: "b".into(), holder: ClaimHolder::Backup("u-1".into()) },
                "ClaimInUse",
                "PersistentVolumeClaim b already exists and holds APIManagerBackup UID u-1; it is never overwritten: \
delete it if it is no longer needed, or create this backup under another name",
            ),
            (
                Failure::ClaimInUse { claim: "b".into(), holder: ClaimHolder::Unknown },
                "ClaimInUse",
                "PersistentVolumeClaim b already exists and holds something else; it is never overwritten: delete it \
if it is no longer needed, or create this backup under another name",
            ),
            (
                Failure::JobFailed { pod: "j-0".into(), step: None, attempts: 1, detail: "boom".into() },
                "JobFailed",
                "Pod j-0 failed after 1 attempt: boom",
            ),
            (
                Failure::JobFailed {
                    pod: "backup-u-2".into(),
                    step: Some("copy-files".into()),
                    attempts: 3,
                    detail: "cannot read uploads/a".into(),
                },
                "JobFailed",
                "Pod backup-u-2 failed at step copy-files after 3 attempts: cannot read uploads/a",
            ),
            (
                Failure::Timeout {
                    operation: "backup",
                    flag: "--backup-timeout",
                    limit: Duration::from_secs(5400),
                    last_error: None,
                },
                "Timeout",
                "the backup did not finish within 1h 30m (--backup-timeout); its Pods are kept for debugging",
            ),
            (
                Failure::Timeout {
                    operation: "backup",
                    flag: "--backup-timeout",
                    limit: Duration::from_secs(10),
                    last_error: Some(LastError { what: "creating Pod j-0".into(), cause: ApiTrouble::Answered(500) }),
                },
                "Timeout",
                "the backup did not finish within 10s (--backup-timeout); its Pods are kept for debugging; the last \
error was: creating Pod j-0: the API server answered 500 Internal Server Error (ServerError)",
            ),
            (
                Failure::APIManagerNotFound(rules::NotFound::NoneInNamespace { namespace: "n".into() }),
                "APIManagerNotFound",
                r#"no APIManager exists in namespace "n"; create the APIManager to back up first"#,
            ),
            (
                Failure::OutOfScope(rules::OutOfScope { name: "a".into(), internal: vec!["backend Redis"] }),
                "OutOfScope",
                "APIManager \"a\" is outside the backup scope: its backend Redis is not external; backups need the \
system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)",
            ),
        ];
        for (failure, reason, message) in cases {
            assert_eq!((failure.reason().label(), failure.to_string().as_str()), (reason, message));
            assert!(Reason::failures(OperationKind::Backup).any(|r| r.label() == reason));
        }
        let restore_cases = [
            (
                Failure::Unreported { pod: "verify-u-0".into() },
                "Unreported",
                "Pod verify-u-0 succeeded without a readable report in its termination message (the Pod's image may not \
match this operator's version)",
            ),
            (
                Failure::APIManagerDeleted { name: "example".into() },
                "APIManagerDeleted",
                "APIManager example was deleted while the restore waited for it to become available; create a new \
APIManagerRestore to restore it again",
            ),
        ];
        for (failure, reason, message) in restore_cases {
            assert_eq!((failure.reason().label(), failure.to_string().as_str()), (reason, message));
            assert!(Reason::failures(OperationKind::Restore).any(|r| r.label() == reason));
        }
    }
}
