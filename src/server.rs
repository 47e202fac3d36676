//! The one HTTPS server: both webhooks, `/metrics`, `/healthz` and `/readyz`, on rustls.

use crate::health::Readiness;
use crate::metrics::Metrics;
use crate::webhook::handlers::{AdmissionState, MUTATE_PATH, VALIDATE_PATH, mutate, validate};
use crate::webhook::lookup::ApiManagerLookup;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;

/// Path of the Prometheus scrape endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the readiness probe.
pub const READYZ_PATH: &str = "/readyz";

/// The routes of the server; bodies larger than `max_body_bytes` get HTTP 413.
pub fn router<L: ApiManagerLookup>(
    admission: AdmissionState<L>,
    readiness: Readiness,
    max_body_bytes: usize,
) -> Router {
    let metrics = admission.metrics.clone();
    let webhooks = Router::new()
        .route(MUTATE_PATH, post(mutate::<L>))
        .route(VALIDATE_PATH, post(validate::<L>))
        .with_state(admission);
    let probes = Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok\n" }))
        .route(READYZ_PATH, get(readyz))
        .with_state(readiness);
    let scrape = Router::new().route(METRICS_PATH, get(render_metrics)).with_state(metrics);
    webhooks
        .merge(probes)
        .merge(scrape)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(internal_error))
}

/// A handler that panicked (a bug) answers 500 with one line instead of dropping the connection;
/// the API server then applies the webhook's failurePolicy.
fn internal_error(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked; answered 500");
    (StatusCode::INTERNAL_SERVER_ERROR, "internal error in the webhook; see the operator's logs\n").into_response()
}

async fn readyz(State(readiness): State<Readiness>) -> Response {
    let failing = readiness.failing();
    if failing.is_empty() {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", failing.join(", "))).into_response()
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
        }
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then stops accepting and gives
/// in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let handle = Handle::new();
    let trigger = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(grace_seconds = grace.as_secs(), "shutting down the HTTPS server");
        trigger.graceful_shutdown(Some(grace));
    });
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, tls)?.handle(handle).serve(app.into_make_service()).await
}
