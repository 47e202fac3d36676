//! Stop requests: SIGTERM (Kubernetes stopping the Pod) or Ctrl-C.

use crate::health::{Readiness, SHUTDOWN};

/// Resolves on SIGTERM or Ctrl-C.
pub async fn stop_requested() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Resolves `delay` after SIGTERM or Ctrl-C; from the signal on, the readiness check
/// [`SHUTDOWN`] fails, so `/readyz` answers `not ready: shutdown` while the server still serves:
/// the Service's endpoints drop this replica (the API server and the endpoints controller learn
/// of a terminating Pod only a moment after its SIGTERM) before it stops accepting.
pub async fn stop_requested_and_drained(readiness: &Readiness, delay: std::time::Duration) {
    stop_requested().await;
    readiness.set(SHUTDOWN, false);
    if !delay.is_zero() {
        tracing::info!(
            delay_seconds = delay.as_secs_f64(),
            "stop requested; serving until the endpoints drop this replica"
        );
        tokio::time::sleep(delay).await;
    }
}
