//! The one HTTPS server: the webhooks of backups and restores, `/metrics`, `/healthz` and `/readyz`, on rustls, with every
//! resource a caller can tie up bounded (the port is reachable by every Pod and carries no client
//! authentication): connections, idle time, header and body time, body size, admission memory,
//! HTTP/2 streams. Probes and `/metrics` have their own small limit, so they answer while admission
//! is saturated.

pub mod connections;
pub mod intake;

use crate::admission::{self, AdmissionState, Route};
use crate::api::backup::APIManagerBackup;
use crate::api::restore::APIManagerRestore;
use crate::api::schedule::APIManagerBackupSchedule;
use crate::health::Readiness;
use crate::lookup::ApiManagerLookup;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
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

/// The admission webhooks this server serves, each kind's defaulting and validating ones: the one
/// route table, a line per resource kind.
pub fn webhooks<L: ApiManagerLookup>() -> Vec<Route<L>> {
    [
        admission::routes::<APIManagerBackup, L>(),
        admission::routes::<APIManagerRestore, L>(),
        admission::routes::<APIManagerBackupSchedule, L>(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The routes of the server, with the admission bounds of `limits`.
pub fn router<L: ApiManagerLookup>(admission: AdmissionState<L>, readiness: Readiness, limits: &Limits) -> Router {
    let metrics = admission.metrics.clone();
    let intake = Intake::new(limits.admission_buffer_bytes, limits.max_body_bytes, metrics.clone());
    let webhooks = webhooks::<L>()
        .into_iter()
        .fold(Router::new(), |router, Route { webhook, handler, .. }| {
            let admit = from_fn_with_state((intake.clone(), webhook.label), intake::admit);
            router.route(webhook.path, handler.layer(admit))
        })
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
    // Runs beside the server (no task of its own): at shutdown it starts the graceful stop, then
    // waits for the server to end.
    let stop = async move {
        shutdown.await;
        tracing::info!(grace_seconds = grace.as_secs(), "shutting down the HTTPS server");
        trigger.graceful_shutdown(Some(grace));
        std::future::pending::<()>().await;
    };
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
    tokio::select! {
        served = server.serve(app.into_make_service()) => served,
        () = stop => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::APIManager;
    use crate::lookup::LookupError;
    use axum::body::Body;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use tower::ServiceExt;

    /// A namespace without APIManagers or claims.
    #[derive(Clone)]
    struct Empty;

    impl ApiManagerLookup for Empty {
        async fn list(&self, _: &str) -> Result<Vec<APIManager>, LookupError> {
            Ok(Vec::new())
        }

        async fn claim(&self, _: &str, _: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
            Ok(None)
        }
    }

    /// The table, as other programs see it: the paths the webhook configurations name, the
    /// `webhook` label of the metrics, the kind each admits.
    #[test]
    fn every_webhook_of_the_table_admits_its_kind_at_the_path_the_api_server_calls() {
        let table: Vec<(&str, &str, String)> =
            webhooks::<Empty>().iter().map(|r| (r.webhook.path, r.webhook.label, r.kind.to_string())).collect();
        let line = |path, label, kind: &str| (path, label, kind.to_owned());
        assert_eq!(
            table,
            [
                line("/mutate-apps-3scale-net-v1alpha1-apimanagerbackup", "defaulting", "APIManagerBackup"),
                line("/validate-apps-3scale-net-v1alpha1-apimanagerbackup", "validating", "APIManagerBackup"),
                line("/mutate-apps-3scale-net-v1alpha1-apimanagerrestore", "restore-defaulting", "APIManagerRestore"),
                line("/validate-apps-3scale-net-v1alpha1-apimanagerrestore", "restore-validating", "APIManagerRestore"),
                line(
                    "/mutate-apps-3scale-net-v1alpha1-apimanagerbackupschedule",
                    "schedule-defaulting",
                    "APIManagerBackupSchedule"
                ),
                line(
                    "/validate-apps-3scale-net-v1alpha1-apimanagerbackupschedule",
                    "schedule-validating",
                    "APIManagerBackupSchedule"
                ),
            ]
        );
    }

    /// The server answers a review at every path of the table (a body that is no AdmissionReview
    /// gets the front door's 400), and at no other webhook path.
    #[tokio::test]
    async fn the_server_serves_exactly_the_webhooks_of_the_table() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let app = router(AdmissionState { lookup: Empty, metrics }, Readiness::default(), &Limits::default());
        let post = |path: &str| Request::post(path).body(Body::from("{}")).expect("request");
        for route in webhooks::<Empty>() {
            let answer = app.clone().oneshot(post(route.webhook.path)).await.expect("answered");
            assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{}", route.webhook.path);
        }
        for path in ["/mutate-apps-3scale-net-v1alpha1-apimanagerbackups", "/validate", "/"] {
            let answer = app.clone().oneshot(post(path)).await.expect("answered");
            assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
}
