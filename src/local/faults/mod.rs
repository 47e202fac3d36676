//! A fault-injecting HTTPS proxy between one operator replica and the API server, scriptable at
//! run time: error rate and kinds (429 with Retry-After, 500, 503, a reset connection, a stalled
//! request, a lost answer), on every request or on some kinds only (`create:pods`), delays, watches
//! cut every period, resuming watches answered 410 Gone, and a partition of the replica for a
//! given time. In the spirit of [`super::forwarder`], but it
//! reads HTTP: it terminates TLS with a certificate of the harness's CA and opens its own TLS
//! connections to the API server. Used by the fault tests and by `local --faults`.

pub mod body;
pub mod counts;
pub mod decide;
pub mod partition;
mod proxy;
pub mod spec;
pub mod target;

pub use counts::FaultCounts;
pub use partition::PartitionMode;
pub use spec::{FaultKind, FaultSpec};

use proxy::Shared;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why a fault proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// A certificate, a key or a TLS setting was refused.
    #[error("{what}: {reason}")]
    Tls {
        /// What was being read or set.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The API server's URL does not parse.
    #[error("`{0}` is not the API server's URL")]
    Server(String),
    /// The listening socket could not be opened.
    #[error("binding the fault proxy: {0}")]
    Bind(std::io::Error),
}

/// A running fault proxy; dropping it stops it (open connections end with it).
pub struct FaultProxy {
    /// `https://127.0.0.1:<port>`: the API server as the replica behind this proxy sees it.
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of the API server at `server`, serving
    /// `tls.crt` of `certs` and trusting its `ca.crt`, connecting from `source` when given, with
    /// `spec` in force.
    pub async fn start(
        server: &str,
        certs: &Path,
        source: Option<IpAddr>,
        spec: FaultSpec,
    ) -> Result<Self, FaultError> {
        let shared = Arc::new(Shared::new(server, certs, source, spec)?);
        let acceptor = proxy::acceptor(certs)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(FaultError::Bind)?;
        let port = listener.local_addr().map_err(FaultError::Bind)?.port();
        let task = tokio::spawn(proxy::run(listener, acceptor, shared.clone()));
        Ok(Self { url: format!("https://127.0.0.1:{port}"), shared, task })
    }

    /// Puts `spec` in force from the next request on (its generator restarts from its seed).
    pub fn set(&self, spec: FaultSpec) {
        self.shared.set(spec);
    }

    /// The spec in force.
    pub fn spec(&self) -> FaultSpec {
        self.shared.spec()
    }

    /// Partitions the replica from the API server for `duration` from now.
    pub fn partition(&self, mode: PartitionMode, duration: Duration) {
        self.shared.partition.start(mode, duration);
    }

    /// Ends a partition now.
    pub fn heal(&self) {
        self.shared.partition.heal();
    }

    /// Whether a partition is in force now.
    pub fn partitioned(&self) -> bool {
        self.shared.partition.active().is_some()
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> FaultCounts {
        self.shared.counters.snapshot()
    }
}
