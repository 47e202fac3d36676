//! The reconcilers: kube-runtime Controllers on APIManagerBackup and APIManagerRestore, each owning
//! the step Pods it creates, that turn an accepted backup into files on its claim (README, "Backups") and a backup
//! claim back into an installation (README, "Restores"). The step machine ([`machine`]) is shared
//! by every operation; [`backup`] and [`restore`] are what make it a backup or a restore.

pub mod backup;
pub mod builders;
pub mod events;
#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod fixtures;
pub mod machine;
pub mod outcome;
pub mod pods;
pub mod restore;
pub mod seen;
pub mod step;

use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackup;
use crate::api::restore::APIManagerRestore;
use crate::api::status::OperationStatus;
use crate::informer::Informer;
use crate::lookup::LookupError;
use crate::lookup::cache::CachedLookup;
use crate::metrics::Metrics;
use crate::names::{CONTROLLER, managed_by_selector};
use crate::scope::{Namespaces, Watched};
use crate::trim;
use events::EventPublisher;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
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
    /// The operation's step Pods (trimmed by [`trim::pod`]), from the watch that also triggers
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

/// The unfinished backups of `apimanager`, reconciled again when it changes or goes away.
fn backups_of(store: &Store<APIManagerBackup>, apimanager: &APIManager) -> Vec<ObjectRef<APIManagerBackup>> {
    let name = apimanager.name_any();
    store
        .state()
        .iter()
        .filter(|b| b.namespace() == apimanager.namespace())
        .filter(|b| b.status.as_ref().is_none_or(|s| !s.progress().is_final()))
        .filter(|b| {
            let source = b.status.as_ref().and_then(|s| s.api_manager_source_name.as_deref());
            b.spec.api_manager_name.as_deref() == Some(name.as_str()) || source == Some(name.as_str())
        })
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

/// Counts a failed pass and schedules the next one after its kind's delay.
pub fn error_policy<O: Operation>(object: Arc<O>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics.reconcile_error(O::NOUN, kind.label());
    let retry = kind.retry_after();
    tracing::warn!(object = %ObjectRef::from_obj(object.as_ref()), %error, retry_seconds = retry.as_secs(), "reconcile failed; retrying");
    Action::requeue(retry)
}

/// Logs what the controller stream reports: a failed watch (the cache goes stale until it recovers)
/// at warn and counted; failed reconciliations are already reported by `error_policy`.
fn report_controller_error<Q: std::fmt::Display>(
    error: Option<controller::Error<ReconcileError, Q>>,
    metrics: &Metrics,
) {
    match error {
        None => {}
        Some(controller::Error::QueueError(error)) => {
            metrics.watch_error();
            tracing::warn!(%error, "a watch of the controller failed; retrying with backoff");
        }
        Some(controller::Error::RunnerError(error)) => tracing::warn!(%error, "the controller's runner failed"),
        Some(error) => tracing::debug!(%error, "controller event"),
    }
}

/// The caches of the process's one watch per kind (README "Watches and caches") that the
/// controllers share with the webhooks and the observer: they read them and subscribe to their
/// changes while they run.
#[derive(Clone)]
pub struct SharedWatches {
    /// The APIManagers (the webhooks' cache).
    pub apimanagers: Informer<APIManager>,
    /// The same store, as the passes read it (what it does not hold is confirmed live).
    pub lookup: CachedLookup,
    /// The backups (the observer's cache).
    pub backups: Informer<APIManagerBackup>,
}

/// Runs the controllers of backups and restores in `namespaces` until `shutdown` resolves (or the
/// task running them is dropped, when this replica stops leading). Readiness does not wait for
/// them: standbys run no controller. The restores' watch is theirs alone and runs as long as they do.
pub async fn run(
    client: kube::Client,
    namespaces: Namespaces,
    metrics: Arc<Metrics>,
    settings: ReconcileSettings,
    shared: SharedWatches,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let (restores, restore_events) = Informer::watch(&client, &namespaces, APIManagerRestore::cached, metrics.clone());
    let restore_watch = restore_events.for_each(|_| std::future::ready(()));
    let parts = Parts { client, namespaces, metrics, settings, shared };
    let controllers = futures::future::join(
        parts.run_operation(&parts.shared.backups, shutdown.clone(), backups_of),
        parts.run_operation(&restores, shutdown, restore::restores_of),
    );
    tokio::select! {
        _ = controllers => {}
        () = restore_watch => {}
    }
}

/// What the controllers are made of.
struct Parts {
    client: kube::Client,
    namespaces: Namespaces,
    metrics: Arc<Metrics>,
    settings: ReconcileSettings,
    shared: SharedWatches,
}

impl Parts {
    /// The controller of operation `O`, triggered by `operations` (its cache), until `shutdown`
    /// resolves: it owns the operations' step Pods, and an APIManager that changes or goes away
    /// wakes the operations `wakes` finds for it.
    async fn run_operation<O: Operation + Watched>(
        &self,
        operations: &Informer<O>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
        wakes: fn(&Store<O>, &APIManager) -> Vec<ObjectRef<O>>,
    ) {
        let (client, namespaces) = (&self.client, &self.namespaces);
        // The Pods of this kind of operation only (each carries its operation's UID label).
        let owned = watcher::Config::default().labels(&format!("{},{}", managed_by_selector(), O::UID_LABEL));
        let store = operations.store();
        let watched = store.clone();
        // The watch of the step Pods fills the store passes read them from and triggers the passes
        // they concern (after the store has the change); so do the shared watches.
        let (pod_store, pod_writer) = reflector::store();
        let created_pods = Arc::new(seen::CreatedPods::default());
        let delivered = created_pods.clone();
        let pods = namespaces
            .events::<Pod>(client, owned, pod_store.clone())
            .modify(trim::pod)
            .reflect(pod_writer)
            .touched_objects()
            .inspect(move |pod| {
                if let Ok(pod) = pod {
                    delivered.observed(pod);
                }
            });
        let controller = Controller::for_shared_stream(operations.subscribe(), store)
            .owns_stream(pods)
            .watches_shared_stream(self.shared.apimanagers.subscribe(), move |apimanager| wakes(&watched, &apimanager))
            .graceful_shutdown_on(shutdown);
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| CONTROLLER.to_owned());
        let recorder = EventPublisher::new(client.clone(), CONTROLLER, &instance);
        let (metrics, settings, lookup) = (self.metrics.clone(), self.settings.clone(), self.shared.lookup.clone());
        let context =
            Arc::new(Context::new(client.clone(), metrics, recorder, settings, lookup, pod_store, created_pods));
        controller
            .run(machine::reconcile::<O>, error_policy, context)
            .for_each(|result| {
                report_controller_error(result.err(), &self.metrics);
                std::future::ready(())
            })
            .await;
        tracing::info!("{} controller stopped", O::NOUN);
    }
}
