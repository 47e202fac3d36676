//! The controllers' runner: one kube-runtime Controller per kind of operation (backups, restores),
//! each owning the step Pods it creates and woken by the APIManagers it concerns, all on the shared
//! step machine ([`crate::reconcile`]), and the schedules' ([`crate::schedule::controller`]),
//! which creates backups. It sits above the resource kinds: its table lists them.

use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackup;
use crate::api::restore::APIManagerRestore;
use crate::backup::operation::backups_of;
use crate::informer::Informer;
use crate::lookup::cache::CachedLookup;
use crate::metrics::Metrics;
use crate::names::{CONTROLLER, managed_by_selector};
use crate::reconcile::events::EventPublisher;
use crate::reconcile::machine::{self, Operation};
use crate::reconcile::seen::CreatedPods;
use crate::reconcile::{Context, ReconcileError, ReconcileSettings, error_policy};
use crate::restore::operation::restores_of;
use crate::schedule;
use crate::scope::{Namespaces, Watched};
use crate::trim;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;

/// Logs what the controller stream reports: a failed watch (of the step Pods, the only watch the
/// controller runs itself; the cache goes stale until it recovers) at warn and counted; failed
/// reconciliations are already reported by `error_policy`.
fn report_controller_error<Q: std::fmt::Display>(
    error: Option<controller::Error<ReconcileError, Q>>,
    metrics: &Metrics,
) {
    match error {
        None => {}
        Some(controller::Error::QueueError(error)) => {
            metrics.watch_error(&Pod::kind(&()));
            tracing::warn!(%error, kind = "Pod", "a watch of the controller failed; retrying with backoff");
        }
        Some(controller::Error::RunnerError(error)) => tracing::warn!(%error, "the controller's runner failed"),
        Some(error) => tracing::debug!(%error, "controller event"),
    }
}

/// The caches of the process's one watch per kind (docs/design.md, "Watches and caches") that the
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

/// The controllers of every kind of operation, with what they share.
#[derive(Clone)]
pub struct Controllers {
    /// Client acting as the operator.
    pub client: kube::Client,
    /// The namespaces they manage.
    pub namespaces: Namespaces,
    /// Metrics to record outcomes in.
    pub metrics: Arc<Metrics>,
    /// How the operations are run.
    pub settings: ReconcileSettings,
    /// The watches shared with the webhooks and the observer.
    pub shared: SharedWatches,
    /// This replica's identity: the reporting instance of its events.
    pub instance: String,
}

impl Controllers {
    /// Runs the controllers of backups, restores and schedules until `shutdown` resolves (or the task running
    /// them is dropped, when this replica stops leading). Readiness does not wait for them:
    /// standbys run no controller. The restores' watch is theirs alone and runs as long as they do.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        let (restores, restore_events) =
            Informer::watch(&self.client, &self.namespaces, APIManagerRestore::cached, self.metrics.clone());
        let restore_watch = restore_events.for_each(|_| std::future::ready(()));
        // The table of controllers: one line per kind of operation.
        let (client, namespaces, metrics) = (self.client.clone(), self.namespaces.clone(), self.metrics.clone());
        let controllers: Vec<BoxFuture<'_, ()>> = vec![
            self.run_operation(&self.shared.backups, shutdown.clone(), backups_of).boxed(),
            self.run_operation(&restores, shutdown.clone(), restores_of).boxed(),
            schedule::controller::run(
                client,
                namespaces,
                metrics,
                self.shared.backups.clone(),
                &self.instance,
                shutdown,
            )
            .boxed(),
        ];
        tokio::select! {
            _ = futures::future::join_all(controllers) => {}
            () = restore_watch => {}
        }
    }

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
        let created_pods = Arc::new(CreatedPods::default());
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
        let recorder = EventPublisher::new(client.clone(), CONTROLLER, &self.instance);
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

#[cfg(test)]
mod tests {
    use crate::api::apimanager::FileStorage;
    use crate::backup::operation::BackupPlan;
    use crate::cli::{Cli, Command};
    use crate::reconcile::fixtures::{backup, restore};
    use crate::reconcile::machine::Operation;
    use crate::reconcile::step::{JobSettings, JobStep, StepJob, pod};
    use crate::restore::operation::RestorePlan;
    use clap::Parser;
    use serde_json::json;

    fn settings() -> JobSettings {
        JobSettings {
            image: "registry/abo:1".into(),
            command: "/abo".into(),
            backoff_limit: 2,
            file_storage_group: None,
            platform: crate::platform::Platform::Kubernetes,
        }
    }

    /// Every step of every kind: its command line, as its container runs it, parses back (by the binary's own
    /// command line) into the very command it was built from.
    #[test]
    fn every_step_command_line_parses_back_into_its_command() {
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        let backups =
            [FileStorage::Claim("files".into()), FileStorage::S3 { secret: Some("fs-s3".into()) }].map(|storage| {
                owner
                    .jobs(&BackupPlan::new("example", storage))
                    .into_iter()
                    .flat_map(|job| job.steps().cloned().collect::<Vec<_>>())
            });
        let restored =
            restore(json!({"apiManagerToRestoreRef": {"name": "example"}, "systemStorageClaimName": "system-storage"}));
        let s3 = restore(json!({"apiManagerToRestoreRef": {"name": "example"}, "fileStorageS3SecretName": "fs-s3"}));
        let restores = [restore(json!({})), restored, s3]
            .map(|r| r.job_steps(&RestorePlan { claim: "nightly".into(), file_storage_group: None }));
        let steps: Vec<JobStep> = backups.into_iter().flatten().chain(restores.into_iter().flatten()).collect();
        let mut names: Vec<&str> = steps.iter().map(JobStep::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names,
            [
                "backup-s3-files",
                "copy-files",
                "export-objects",
                "inspect-files",
                "restore-apimanager",
                "restore-files",
                "restore-objects",
                "restore-s3-files",
                "verify"
            ],
            "every step is built"
        );
        for step in steps {
            let job = StepJob::single(step.clone());
            let attempt = pod(&owner, &job, 0, &settings(), 60);
            let container = &attempt.spec.as_ref().expect("pod spec").containers[0];
            let command_line = std::iter::once("/abo".to_owned()).chain(container.args.clone().expect("args"));
            match Cli::try_parse_from(command_line) {
                Ok(Cli { command: Command::Job(parsed), .. }) => assert_eq!(*parsed, step.command),
                Ok(_) => panic!("{} parses as another command", step.name()),
                Err(error) => panic!("{} does not parse: {error}", step.name()),
            }
        }
    }
}
