//! The fault proxy's server: accepts the replica's TLS connections (a certificate of the
//! harness's CA, which the replica's kubeconfig trusts), reads each HTTP/1.1 request, decides its
//! fate ([`super::decide`]) and either answers it with a fault or passes it on over a TLS
//! connection of its own to the API server (the bearer token passes through, so the API server
//! authenticates the replica as itself), streaming both bodies.

use super::FaultError;
use super::body::{CutBody, ProxyBody, full};
use super::counts::Counters;
use super::decide::{Action, Decision, RequestClass, Rng, decide};
use super::partition::{Partition, PartitionMode};
use super::spec::{FaultKind, FaultSpec};
use super::target::ApiRequest;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Connections open at the same time, at most (an operator holds a few watches and a small pool).
const MAX_CONNECTIONS: usize = 256;
/// How long a TLS handshake or a request's head may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client towards the API server.
type Upstream = Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>;

/// What every connection of one proxy shares.
pub struct Shared {
    /// The spec in force and the generator of its choices.
    pub faults: Mutex<(FaultSpec, Rng)>,
    /// Told each time the spec changes (open watches follow the new drop period).
    pub changes: tokio::sync::watch::Sender<()>,
    /// The partition state.
    pub partition: Partition,
    /// What was done.
    pub counters: Counters,
    upstream: Upstream,
    /// `https://127.0.0.1:<port>` of the API server.
    server: Uri,
}

fn tls_error(what: &'static str) -> impl FnOnce(String) -> FaultError {
    move |reason| FaultError::Tls { what, reason }
}

/// The server side: `tls.crt` and `tls.key` of `certs`, HTTP/1.1 only.
pub fn acceptor(certs: &Path) -> Result<TlsAcceptor, FaultError> {
    let read = |name: &'static str| std::fs::read(certs.join(name)).map_err(|e| tls_error(name)(e.to_string()));
    let origin = |name: &str| certs.join(name).display().to_string();
    let (cert, key) = (read("tls.crt")?, read("tls.key")?);
    let mut config = crate::tls::server_config(&cert, &key, (origin("tls.crt"), origin("tls.key")))
        .map_err(|e| tls_error("server TLS")(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The client side: trusting `ca.crt` of `certs`, connecting from `source` when given (so the API
/// server's audit log tells the replicas' paths apart).
fn upstream(certs: &Path, source: Option<IpAddr>) -> Result<Upstream, FaultError> {
    let tls =
        crate::tls::client_config_trusting(&certs.join("ca.crt")).map_err(|e| tls_error("ca.crt")(e.to_string()))?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(HANDSHAKE_TIMEOUT));
    http.set_local_address(source);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector))
}

impl Shared {
    /// What every connection shares: `spec` in force, the API server at `server`.
    pub fn new(server: &str, certs: &Path, source: Option<IpAddr>, spec: FaultSpec) -> Result<Self, FaultError> {
        let server = server.parse().map_err(|_| FaultError::Server(server.to_owned()))?;
        let rng = Rng::new(spec.seed);
        Ok(Self {
            faults: Mutex::new((spec, rng)),
            changes: tokio::sync::watch::Sender::new(()),
            partition: Partition::default(),
            counters: Counters::default(),
            upstream: upstream(certs, source)?,
            server,
        })
    }

    /// Puts `spec` in force (its generator restarts from its seed) and tells the open watches.
    pub fn set(&self, spec: FaultSpec) {
        let rng = Rng::new(spec.seed);
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = (spec, rng);
        self.changes.send_replace(());
    }

    /// The spec in force.
    pub fn spec(&self) -> FaultSpec {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner).0.clone()
    }

    /// Returns when a watch that started at `started` must be cut by the drop period, following
    /// changes of the spec: a watch opened before the period was set is cut by it too.
    async fn watch_dropped(&self, started: tokio::time::Instant) {
        loop {
            let mut changes = self.changes.subscribe();
            match self.spec().drop_watches {
                Some(period) => tokio::select! {
                    () = tokio::time::sleep_until(started + period) => return,
                    _ = changes.changed() => {}
                },
                None => {
                    if changes.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    fn decide(&self, class: RequestClass, request: Option<&ApiRequest>) -> (Decision, FaultSpec) {
        let mut faults = self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let (spec, rng) = &mut *faults;
        (decide(spec, class, request, rng), spec.clone())
    }
}

/// Why a request got no answer: hyper closes its connection.
#[derive(Debug, thiserror::Error)]
enum Dropped {
    #[error("connection reset by the fault proxy")]
    Reset,
    #[error("request stalled by the fault proxy")]
    Stalled,
    #[error("answer lost by the fault proxy")]
    Lost,
    #[error("replica partitioned by the fault proxy")]
    Partitioned,
}

/// A `Status` answer of `code`, as the API server writes one.
fn status(code: StatusCode, reason: &str, retry_after: Option<u32>) -> Response<ProxyBody> {
    let mut status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("the fault proxy answered {}", code.as_u16()), "reason": reason, "code": code.as_u16(),
    });
    if let Some(seconds) = retry_after {
        status["details"] = serde_json::json!({ "retryAfterSeconds": seconds });
    }
    let mut response = Response::new(full(status.to_string()));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(seconds) = retry_after {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A watch answered as the API server answers one whose resourceVersion was compacted away: one
/// `ERROR` event with a 410 `Expired` Status, then the end of the stream.
fn gone() -> Response<ProxyBody> {
    let event = serde_json::json!({
        "type": "ERROR",
        "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version (the fault proxy answered 410)", "reason": "Expired", "code": 410,
        },
    });
    let mut response = Response::new(full(format!("{event}\n")));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The request's target on the API server.
fn upstream_uri(server: &Uri, uri: &Uri) -> Result<Uri, http::Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = server.authority().map_or("127.0.0.1", |a| a.as_str());
    Uri::builder().scheme("https").authority(authority).path_and_query(path).build()
}

/// One request: its fault, or the API server's answer (cut as the spec and partitions say).
async fn handle(shared: Arc<Shared>, mut request: Request<Incoming>) -> Result<Response<ProxyBody>, Dropped> {
    shared.counters.request();
    if shared.partition.active().is_some() {
        shared.counters.partitioned();
        shared.partition.wait_out().await;
        return Err(Dropped::Partitioned);
    }
    let class = RequestClass::of(request.uri().query());
    let api = ApiRequest::of(request.method(), request.uri().path(), request.uri().query());
    let (decision, spec) = shared.decide(class, api.as_ref());
    if !decision.delay.is_zero() {
        shared.counters.delayed();
        tokio::time::sleep(decision.delay).await;
    }
    match decision.action {
        Action::Gone => {
            shared.counters.gone();
            return Ok(gone());
        }
        Action::Fail(kind) => {
            shared.counters.fault(kind);
            match kind {
                FaultKind::TooManyRequests => {
                    return Ok(status(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", Some(spec.retry_after)));
                }
                FaultKind::InternalError => {
                    return Ok(status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", None));
                }
                FaultKind::Unavailable => {
                    return Ok(status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", None));
                }
                FaultKind::Reset => return Err(Dropped::Reset),
                FaultKind::Stall => {
                    tokio::time::sleep(spec.stall).await;
                    return Err(Dropped::Stalled);
                }
                FaultKind::LostAnswer => {}
            }
        }
        Action::Pass => {}
    }
    let lose_answer = decision.action == Action::Fail(FaultKind::LostAnswer);
    let Ok(uri) = upstream_uri(&shared.server, request.uri()) else {
        return Ok(status(StatusCode::BAD_REQUEST, "BadRequest", None));
    };
    *request.uri_mut() = uri;
    shared.counters.passed();
    let answered = tokio::select! {
        answered = shared.upstream.request(request) => answered,
        () = shared.partition.cut() => {
            shared.counters.partitioned();
            return Err(Dropped::Partitioned);
        }
    };
    let Ok(response) = answered else {
        return Ok(status(StatusCode::BAD_GATEWAY, "InternalError", None));
    };
    if lose_answer {
        return Err(Dropped::Lost);
    }
    let started = tokio::time::Instant::now();
    let cut_by = shared.clone();
    let cut = async move {
        let dropped = async {
            if class.watch {
                cut_by.watch_dropped(started).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = dropped => cut_by.counters.watch_dropped(),
            () = cut_by.partition.cut() => cut_by.counters.partitioned(),
        }
    };
    Ok(response.map(|body| CutBody::new(body, cut).boxed_unsync()))
}

/// Serves one accepted connection.
async fn serve(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream) {
    match shared.partition.active() {
        Some(PartitionMode::Refuse) => {
            shared.counters.partitioned();
            let _ = tcp.set_zero_linger();
            return;
        }
        Some(PartitionMode::Hang) => {
            shared.counters.partitioned();
            shared.partition.wait_out().await;
            return;
        }
        None => {}
    }
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else { return };
    let service = hyper::service::service_fn(move |request| handle(shared.clone(), request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service);
    let _ = connection.await;
}

/// Accepts connections on `listener` until the task is aborted, at most [`MAX_CONNECTIONS`] at once.
pub async fn run(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let (shared, acceptor) = (shared.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve(shared, acceptor, tcp).await;
        });
    }
}
