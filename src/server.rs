//! The one HTTPS server: the webhooks of backups and restores, `/metrics`, `/healthz` and `/readyz`, on rustls, with every
//! resource a caller can tie up bounded (the port is reachable by every Pod and carries no client
//! authentication): connections, idle time, header and body time, body size, admission memory,
//! HTTP/2 streams. Probes and `/metrics` have their own small limit, so they answer while admission
//! is saturated.

pub mod connections;
pub mod intake;

use crate::health::Readiness;
use crate::lookup::ApiManagerLookup;
use crate::metrics::Metrics;
use crate::webhook::handlers::{
    AdmissionState, MUTATE_PATH, MUTATE_RESTORE_PATH, VALIDATE_PATH, VALIDATE_RESTORE_PATH, mutate, mutate_restore,
    validate, validate_restore,
};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use connections::ConnectionGuard;
use intake::Intake;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

/// Path of the Prometheus scrape endpoint.
pub const METRICS_PATH: &str = "/metrics";
/// Path of the liveness probe.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the readiness probe.
pub const READYZ_PATH: &str = "/readyz";

/// Default cap on an admission request body. The API server refuses request bodies over 3 MiB
/// and stores no object over that, and an AdmissionReview carries at most two objects (`object`
/// and, on UPDATE, `oldObject`) plus an envelope (user info, options) far below 1 MiB:
/// 2 × 3 MiB + 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 7 * 1024 * 1024;
/// Default memory budget of admission bodies held at once: two maximum-size reviews, or about a
/// thousand ordinary ones (a few KiB each, counted as 16 KiB).
pub const DEFAULT_ADMISSION_BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// HTTP/2 streams one connection may have open at once: Go's default (what controller-runtime
/// webhooks offer), above the API server's default of 200 mutating requests in flight, so the API
/// server's calls share one connection. Past the limit its client dials a connection per waiting
/// call (32 streams cost 40 extra TLS handshakes in each burst of 200 creates).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 250;
/// HTTP/2 flow-control window per stream and per connection: what a client can make the server
/// buffer on one connection before a handler reads it.
const HTTP2_WINDOW_BYTES: u32 = 64 * 1024;
/// Largest request head over HTTP/1.1 (its read buffer), and the HTTP/2 send buffer.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest request head of one HTTP/2 stream: with [`MAX_STREAMS_PER_CONNECTION`] streams, a
/// connection holds at most about 2 MiB of heads (as 32 streams of 64 KiB did); the API server's,
/// the kubelet's and Prometheus' heads are a few hundred bytes to a few KiB.
const MAX_HTTP2_HEADER_LIST_BYTES: u32 = 8 * 1024;
/// How long a request's headers may take to arrive (HTTP/1.1); the idle timeout covers HTTP/2.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Probe and scrape requests answered at once; more get 503 at once.
const MAX_PROBES_IN_PROGRESS: usize = 32;

/// What the server takes on at once.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest admission request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Memory for admission bodies held at once; requests wait for room (then 429).
    pub admission_buffer_bytes: usize,
    /// Open connections at most; further ones are closed at once.
    pub max_connections: usize,
    /// A connection without a request in progress for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            admission_buffer_bytes: DEFAULT_ADMISSION_BUFFER_BYTES,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(20),
        }
    }
}

/// The routes of the server, with the admission bounds of `limits`.
pub fn router<L: ApiManagerLookup>(admission: AdmissionState<L>, readiness: Readiness, limits: &Limits) -> Router {
    let metrics = admission.metrics.clone();
    let intake = Intake::new(limits.admission_buffer_bytes, limits.max_body_bytes, metrics.clone());
    let webhooks = Router::new()
        .route(MUTATE_PATH, post(mutate::<L>).layer(from_fn_with_state((intake.clone(), "defaulting"), intake::admit)))
        .route(
            VALIDATE_PATH,
            post(validate::<L>).layer(from_fn_with_state((intake.clone(), "validating"), intake::admit)),
        )
        .route(
            MUTATE_RESTORE_PATH,
            post(mutate_restore::<L>).layer(from_fn_with_state((intake.clone(), "restore-defaulting"), intake::admit)),
        )
        .route(
            VALIDATE_RESTORE_PATH,
            post(validate_restore::<L>).layer(from_fn_with_state((intake, "restore-validating"), intake::admit)),
        )
        .with_state(admission)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let probes = Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok\n" }))
        .route(READYZ_PATH, get(readyz))
        .with_state(readiness);
    let scrape = Router::new().route(METRICS_PATH, get(render_metrics)).with_state(metrics);
    let probe_slots = Arc::new(Semaphore::new(MAX_PROBES_IN_PROGRESS));
    webhooks
        .merge(probes.merge(scrape).layer(from_fn_with_state(probe_slots, probe_limit)))
        .layer(CatchPanicLayer::custom(internal_error))
}

/// Answers probes and scrapes while fewer than [`MAX_PROBES_IN_PROGRESS`] are in progress, 503
/// otherwise; independent of the admission budget.
async fn probe_limit(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    match slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "too many probe requests in progress\n").into_response(),
    }
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

/// Makes request buffers of 128 KiB and more their own mappings, returned to the system when freed.
/// glibc's allocator would otherwise raise that threshold after the first multi-MiB body is freed
/// and keep later ones in its heap, so the RSS would stay at its peak after a burst of large reviews.
fn map_large_buffers_apart() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes a setting of the allocator; it is thread-safe.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        });
    }
}

/// Serves `app` over TLS on `listener` within `limits` until `shutdown` resolves, then stops
/// accepting and gives in-flight requests up to `grace` to finish.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: RustlsConfig,
    app: Router,
    limits: &Limits,
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
    map_large_buffers_apart();
    let guard = ConnectionGuard::new(limits.max_connections, limits.idle_timeout);
    let mut server = axum_server::from_tcp_rustls(listener, tls)?
        .map(|tls| tls.handshake_timeout(TLS_HANDSHAKE_TIMEOUT).acceptor(guard))
        .handle(handle);
    let builder = server.http_builder();
    builder.http1().header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .initial_stream_window_size(HTTP2_WINDOW_BYTES)
        .initial_connection_window_size(HTTP2_WINDOW_BYTES)
        .max_header_list_size(MAX_HTTP2_HEADER_LIST_BYTES)
        .max_send_buf_size(MAX_HEADER_BYTES);
    server.serve(app.into_make_service()).await
}
