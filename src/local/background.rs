//! A task the harness runs beside the control plane (the node and 3scale-operator stand-ins): a
//! future talking to the API server as the administrator, on a thread and Tokio runtime of its
//! own, so it outlives the runtime of whoever started it (each test has its own, and the tests of a
//! binary share one cluster), stopped when dropped.

use std::future::Future;
use std::path::PathBuf;

/// The running task; dropping it stops the task and joins its thread.
pub struct Background {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Runs the future `task` makes from a client of `admin_kubeconfig` on a new thread named
    /// `name`, until it ends or this is dropped.
    pub fn spawn<F, Fut>(name: &str, admin_kubeconfig: PathBuf, task: F) -> Self
    where
        F: FnOnce(kube::Client) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let label = name.to_owned();
        let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(task = %label, %error, "no runtime for a harness task");
                    return;
                }
            };
            runtime.block_on(async move {
                let client = match super::control_plane::client_from_kubeconfig(&admin_kubeconfig).await {
                    Ok(client) => client,
                    Err(error) => {
                        tracing::error!(task = %label, %error, "no client for a harness task");
                        return;
                    }
                };
                tokio::select! {
                    _ = stopped => {},
                    () = task(client) => {},
                }
            });
        });
        let thread =
            thread.inspect_err(|error| tracing::error!(task = %name, %error, "could not start a harness task")).ok();
        Self { stop: Some(stop), thread }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
