//! HTTP/1.1 over rustls (ring) with hyper, as the Kubernetes client does: the public web roots
//! (compiled in, for a `scratch` image), the system's roots where there are any, and an optional
//! CA bundle for private endpoints. Sends one request with a deadline; reads answer bodies with
//! an idle deadline.

use super::config::{ConfigError, Endpoint, parse_ca_bundle};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// Why no answer came. Transient unless the TLS handshake failed on the certificate or
/// protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What happened (the error chain, without the URL).
    pub reason: String,
    /// Whether another attempt may succeed.
    pub transient: bool,
}

/// The HTTP client of one endpoint.
pub(crate) struct Transport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Transport {
    /// A client trusting the public roots, the system's and `endpoint`'s CA bundle, giving up on
    /// a connection after `connect_timeout`.
    pub(crate) fn new(endpoint: &Endpoint, connect_timeout: Duration) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // A `scratch` image has no system store; elsewhere its certificates are added, and
        // unreadable ones are skipped as curl and the Kubernetes client skip them.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(bundle) = endpoint.ca_bundle() {
            for cert in parse_ca_bundle(bundle)? {
                roots.add(cert).map_err(|error| ConfigError::CaBundle(error.to_string()))?;
            }
        }
        let tls = crate::tls::client_config(roots).map_err(|error| ConfigError::CaBundle(error.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        // The scheme was checked when the endpoint was made (http only when allowed).
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Self { client })
    }

    /// Sends `request`; fails when no answer's head arrived within `timeout`.
    pub(crate) async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, TransportError> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(describe(&error)),
            Err(_) => {
                Err(TransportError { reason: format!("no answer within {}s", timeout.as_secs()), transient: true })
            }
        }
    }
}

/// The next data chunk of `body` (`None` at its end), failing when none came within `idle`.
pub(crate) async fn next_chunk(body: &mut Incoming, idle: Duration) -> Result<Option<Bytes>, TransportError> {
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(TransportError {
                    reason: format!("no data for {}s while reading the answer", idle.as_secs()),
                    transient: true,
                });
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(error))) => return Err(describe(&error)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// All of `body`, up to `limit` bytes (the rest is dropped), each chunk within `idle`.
pub(crate) async fn read_limited(mut body: Incoming, limit: usize, idle: Duration) -> Result<Vec<u8>, TransportError> {
    let mut out = Vec::new();
    while let Some(chunk) = next_chunk(&mut body, idle).await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room < chunk.len() {
            break;
        }
    }
    Ok(out)
}

/// The error chain of `error` as one line; a TLS failure (a certificate the roots do not
/// vouch for, a protocol mismatch) is not transient.
fn describe(error: &(dyn std::error::Error + 'static)) -> TransportError {
    let mut reasons: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !reasons.iter().any(|r| r.contains(&text)) {
            reasons.push(text);
        }
        current = e.source();
    }
    TransportError { reason: reasons.join(": "), transient: tls_cause(error).is_none() }
}

/// The rustls error under `error`, looking through `source()` and through I/O errors that wrap
/// another (as tokio-rustls and hyper-rustls wrap the handshake's failure).
fn tls_cause<'a>(mut error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let wrapped = error.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        error = match wrapped {
            Some(inner) => inner,
            None => error.source()?,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_final_other_failures_transient() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let described = describe(&refused);
        assert!(described.transient);
        assert_eq!(described.reason, "connection refused");
        // tokio-rustls wraps the handshake's error in an I/O error, hyper-rustls wraps that again.
        let tls = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        ));
        let described = describe(&tls);
        assert!(!described.transient);
        assert!(described.reason.contains("UnknownIssuer"), "{}", described.reason);
    }
}
