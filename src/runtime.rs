//! The one owner of the serving process: the API client, the metrics, the namespaces it manages and
//! the shutdown signal, and every task it starts. Each task is started through it, and the process
//! ends only after [`Runtime::join`] has seen every one of them end: a task either stops by itself
//! once the shutdown signal is raised (it is given [`Runtime::shutdown`]), or is started
//! [`Runtime::until_shutdown`] and is stopped at that signal.

use crate::metrics::Metrics;
use crate::scope::Namespaces;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A task that did not end well.
#[derive(Debug, thiserror::Error)]
#[error("task {name} {how}")]
pub struct TaskError {
    /// The task's name.
    pub name: &'static str,
    /// What happened to it.
    pub how: &'static str,
}

/// The serving process: what its tasks share, and the tasks.
pub struct Runtime {
    client: kube::Client,
    metrics: Arc<Metrics>,
    namespaces: Namespaces,
    stop: watch::Sender<bool>,
    tasks: JoinSet<&'static str>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Runtime {
    /// A process acting through `client`, recording in `metrics`, managing `namespaces`, with no
    /// task yet and the shutdown signal not raised.
    pub fn new(client: kube::Client, metrics: Arc<Metrics>, namespaces: Namespaces) -> Self {
        let (stop, tasks, names) = (watch::Sender::new(false), JoinSet::new(), HashMap::new());
        Self { client, metrics, namespaces, stop, tasks, names }
    }

    /// The API client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The namespaces the process manages.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Raises the shutdown signal (once; later calls change nothing).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Something that raises the shutdown signal, for a task to hold.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || {
            stop.send_replace(true);
        }
    }

    /// The shutdown signal, as a watch (for what waits on it in a loop).
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Resolves once the shutdown signal is raised.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        stopped_signal(self.stop.subscribe())
    }

    /// Starts `task`, which ends by itself once the shutdown signal is raised.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let started = self.tasks.spawn(async move {
            task.await;
            name
        });
        self.names.insert(started.id(), name);
    }

    /// Starts `task`, which would run for ever: it is stopped when the shutdown signal is raised.
    pub fn until_shutdown(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown();
        self.spawn(name, async move {
            tokio::select! {
                () = task => {}
                () = shutdown => {}
            }
        });
    }

    /// Waits until every task has ended; raises the shutdown signal when one fails (panics), so
    /// the others stop too, and reports the first that failed.
    pub async fn join(mut self) -> Result<(), TaskError> {
        let mut failed = None;
        while let Some(ended) = self.tasks.join_next().await {
            match ended {
                Ok(name) => tracing::debug!(task = name, "task ended"),
                Err(error) => {
                    let name = self.names.get(&error.id()).copied().unwrap_or("unnamed");
                    tracing::error!(task = name, %error, "a task failed; stopping");
                    self.stop.send_replace(true);
                    failed.get_or_insert(TaskError { name, how: "panicked" });
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Resolves once the shutdown signal `stopped` watches is raised.
pub async fn stopped_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn runtime() -> Runtime {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        Runtime::new(client, Arc::new(Metrics::new().expect("metrics")), Namespaces::All)
    }

    #[tokio::test]
    async fn join_waits_for_every_task_and_stops_the_endless_ones_at_shutdown() {
        let mut runtime = runtime();
        let finished = Arc::new(AtomicBool::new(false));
        let done = finished.clone();
        let shutdown = runtime.shutdown();
        runtime.spawn("graceful", async move {
            shutdown.await;
            tokio::task::yield_now().await;
            done.store(true, Ordering::SeqCst);
        });
        runtime.until_shutdown("endless", std::future::pending());
        let stop = runtime.stopper();
        runtime.spawn("signal", async move { stop() });
        tokio::time::timeout(std::time::Duration::from_secs(5), runtime.join())
            .await
            .expect("every task ended")
            .expect("none failed");
        assert!(finished.load(Ordering::SeqCst), "a task stopping by itself is waited for");
    }

    #[tokio::test]
    async fn a_panicking_task_stops_the_others_and_fails_the_join() {
        let mut runtime = runtime();
        let shutdown = runtime.shutdown();
        runtime.spawn("waits", shutdown);
        runtime.spawn("panics", async { panic!("a bug") });
        let joined = tokio::time::timeout(std::time::Duration::from_secs(5), runtime.join()).await.expect("ended");
        assert_eq!(joined.map_err(|error| error.to_string()), Err("task panics panicked".to_owned()));
    }
}
