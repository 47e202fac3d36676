//! The load generator: AdmissionReview CREATE requests over HTTPS with keep-alive, HTTP/1.1 (one
//! connection per concurrent client) or HTTP/2 (one connection, that many concurrent streams, as
//! the API server calls webhooks), for a fixed time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The HTTP version of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2.
    Http2,
}

impl Protocol {
    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }

    fn alpn(self) -> Vec<u8> {
        match self {
            Self::Http1 => b"http/1.1".to_vec(),
            Self::Http2 => b"h2".to_vec(),
        }
    }
}

/// One request of the mix: path and body.
#[derive(Clone)]
pub struct Request {
    /// The webhook path.
    pub path: &'static str,
    /// The AdmissionReview.
    pub body: Bytes,
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Answers with HTTP 200 per second.
    pub per_second: f64,
    /// Latency percentiles of answered requests.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Requests that failed or did not get HTTP 200.
    pub errors: u64,
}

/// Latency percentile `q` (0..1) of sorted `samples`.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

type Sender1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Sender2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    Ok(TokioIo::new(TlsConnector::from(config).connect(name, tcp).await?))
}

async fn http1(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Sender1, Box<dyn std::error::Error>> {
    let (sender, connection) = hyper::client::conn::http1::handshake(tls(addr, config).await?).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn http2(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Result<Sender2, Box<dyn std::error::Error>> {
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), tls(addr, config).await?).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn http_request(request: &Request) -> http::Request<Full<Bytes>> {
    http::Request::post(request.path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(request.body.clone()))
        .unwrap_or_default()
}

/// Whether the answer is HTTP 200 with a whole body.
async fn answered(response: Result<http::Response<hyper::body::Incoming>, hyper::Error>) -> bool {
    match response {
        Ok(response) if response.status() == http::StatusCode::OK => response.into_body().collect().await.is_ok(),
        _ => false,
    }
}

/// One client's loop until `end`: latencies of answered requests, and the count of failures.
async fn client_loop(
    mut send: impl AsyncSend,
    mix: Arc<Vec<Request>>,
    offset: usize,
    measure_from: Instant,
    end: Instant,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut i = offset;
    while Instant::now() < end {
        let request = http_request(&mix[i % mix.len()]);
        i += 1;
        let started = Instant::now();
        let ok = send.send(request).await;
        if started < measure_from {
            continue;
        }
        if ok {
            latencies.push(started.elapsed());
        } else {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// Something that sends one request and tells whether it was answered.
trait AsyncSend {
    fn send(&mut self, request: http::Request<Full<Bytes>>) -> impl Future<Output = bool>;
}

impl AsyncSend for Sender1 {
    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> bool {
        self.ready().await.is_ok() && answered(self.send_request(request).await).await
    }
}

impl AsyncSend for Sender2 {
    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> bool {
        self.ready().await.is_ok() && answered(self.send_request(request).await).await
    }
}

/// Sends the `mix` round robin to `addr` from `concurrency` clients for `warmup` + `measure`,
/// measuring only after the warm-up.
pub async fn run(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    protocol: Protocol,
    concurrency: usize,
    mix: Arc<Vec<Request>>,
    warmup: Duration,
    measure: Duration,
) -> Result<Summary, Box<dyn std::error::Error>> {
    let mut config = config.as_ref().clone();
    config.alpn_protocols = vec![protocol.alpn()];
    let config = Arc::new(config);
    let measure_from = Instant::now() + warmup;
    let end = measure_from + measure;
    let mut clients = tokio::task::JoinSet::new();
    let shared = match protocol {
        Protocol::Http2 => Some(http2(addr, config.clone()).await?),
        Protocol::Http1 => None,
    };
    for offset in 0..concurrency {
        let mix = mix.clone();
        match &shared {
            Some(sender) => {
                clients.spawn(client_loop(sender.clone(), mix, offset, measure_from, end));
            }
            None => {
                let sender = http1(addr, config.clone()).await?;
                clients.spawn(client_loop(sender, mix, offset, measure_from, end));
            }
        }
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = clients.join_next().await {
        let (mut client, client_errors) = done?;
        latencies.append(&mut client);
        errors += client_errors;
    }
    latencies.sort_unstable();
    Ok(Summary {
        per_second: latencies.len() as f64 / measure.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        p999: percentile(&latencies, 0.999),
        errors,
    })
}
