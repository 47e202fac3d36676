//! The step machine every operation runs on (README, "Backups: APIManagerBackup" and "Restores:
//! APIManagerRestore"): an operation is a custom resource implementing [`machine::Operation`],
//! whose step jobs ([`step`]) run as Pods this reconciler creates and reads back ([`pods`]), from
//! the caches it keeps current ([`seen`]), ending in one place with a typed [`outcome`] and an
//! event ([`events`]). What makes an operation a backup or a restore lives in [`crate::backup`]
//! and [`crate::restore`]; [`crate::controllers`] runs them.

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
    /// Any other API error.
    Api,
    /// The object has no namespace.
    NotNamespaced,
}

impl ErrorKind {
    /// The `reason` label of `apimanager_backup_operator_reconcile_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Conflict => "Conflict",
            Self::Forbidden => "Forbidden",
            Self::Api => "ApiError",
            Self::NotNamespaced => "NotNamespaced",
        }
    }

    /// How long to wait before reconciling again.
    pub fn retry_after(self) -> Duration {
        match self {
            Self::Conflict => Duration::from_secs(1),
            Self::Forbidden | Self::Api | Self::NotNamespaced => Duration::from_secs(10),
        }
    }
}

impl ReconcileError {
    /// Its kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Api { source: kube::Error::Api(status), .. } if status.code == 409 => ErrorKind::Conflict,
            Self::Api { source: kube::Error::Api(status), .. } if status.code == 403 => ErrorKind::Forbidden,
            Self::Api { .. } | Self::Lookup(_) => ErrorKind::Api,
            Self::NotNamespaced => ErrorKind::NotNamespaced,
        }
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
        let seen = Default::default();
        Self { client, metrics, recorder, settings, seen, created_pods, apimanagers, pods }
    }
}

/// Counts a failed pass and schedules the next one after its kind's delay.
pub fn error_policy<O: Operation>(object: Arc<O>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics.reconcile_error(O::NOUN, kind.label());
    let retry = kind.retry_after();
    tracing::warn!(object = %ObjectRef::from_obj(object.as_ref()), %error, retry_seconds = retry.as_secs(), "reconcile failed; retrying");
    Action::requeue(retry)
}
