//! A loopback TCP load balancer in front of several operator replicas, standing in for the
//! operator's Service: the webhook configurations point at it, and it sends each connection to a
//! replica whose `/readyz` answered 200 at the last probe (every 200 ms, as endpoints follow
//! readiness), trying the next ready replica when a connect fails. TLS passes through untouched,
//! so the API server checks the replicas' own certificate; a connection the replica resets is
//! reset towards the API server too, and one it closes is closed.

use super::LocalError;
use crate::server::READYZ_PATH;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// How often each replica's `/readyz` is probed.
const PROBE_PERIOD: Duration = Duration::from_millis(200);
/// How long a probe or a connect to a replica may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections forwarded at the same time, at most.
const MAX_CONNECTIONS: usize = 256;

/// One replica behind the forwarder.
struct Backend {
    address: SocketAddr,
    ready: AtomicBool,
}

/// The running forwarder; dropping it stops it.
pub struct Forwarder {
    /// `https://127.0.0.1:<port>`: what the webhook configurations call.
    pub url: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io { what: what.to_owned(), source }
}

/// A TLS client trusting the CA in `ca_file`, for the readiness probes.
fn probe_connector(ca_file: &Path) -> Result<TlsConnector, LocalError> {
    let config = crate::tls::client_config_trusting(ca_file).map_err(|e| LocalError::Kube(format!("CA: {e}")))?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Whether `GET /readyz` on `address` answers 200.
async fn probe(address: SocketAddr, connector: &TlsConnector) -> bool {
    let attempt = async {
        let tcp = TcpStream::connect(address).await.ok()?;
        let name = ServerName::try_from("localhost").ok()?;
        let mut tls = connector.connect(name, tcp).await.ok()?;
        let request = format!("GET {READYZ_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.ok()?;
        let mut status = [0u8; 12];
        tls.read_exact(&mut status).await.ok()?;
        Some(&status == b"HTTP/1.1 200")
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt).await.ok().flatten().unwrap_or(false)
}

/// Connects to a ready replica, starting after the last one used (round robin).
async fn connect(backends: &[Backend], next: &AtomicUsize) -> Option<TcpStream> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    for offset in 0..backends.len() {
        let backend = &backends[(start + offset) % backends.len()];
        if !backend.ready.load(Ordering::SeqCst) {
            continue;
        }
        if let Ok(Ok(stream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.address)).await {
            return Some(stream);
        }
    }
    None
}

impl Forwarder {
    /// Starts forwarding from a free loopback port to `replicas`, probing them with `ca_file`.
    pub async fn start(replicas: &[SocketAddr], ca_file: &Path) -> Result<Self, LocalError> {
        let connector = probe_connector(ca_file)?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io("binding the forwarder"))?;
        let port = listener.local_addr().map_err(io("reading the forwarder's address"))?.port();
        let backends: Arc<Vec<Backend>> =
            Arc::new(replicas.iter().map(|&address| Backend { address, ready: AtomicBool::new(false) }).collect());
        let probed = backends.clone();
        let probes = tokio::spawn(async move {
            loop {
                for backend in probed.iter() {
                    backend.ready.store(probe(backend.address, &connector).await, Ordering::SeqCst);
                }
                tokio::time::sleep(PROBE_PERIOD).await;
            }
        });
        let forwarding = tokio::spawn(async move {
            let next = Arc::new(AtomicUsize::new(0));
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let (backends, next) = (backends.clone(), next.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Some(mut replica) = connect(&backends, &next).await
                        && tokio::io::copy_bidirectional(&mut client, &mut replica).await.is_err()
                    {
                        // The replica reset the connection (it died under a request): pass the
                        // reset on, as the network between the API server and a Pod would.
                        let _ = client.set_zero_linger();
                    }
                });
            }
        });
        Ok(Self { url: format!("https://127.0.0.1:{port}"), tasks: vec![probes, forwarding] })
    }
}
