//! The floor: the least a webhook server can do on the same TLS and HTTP stack (rustls, hyper): read
//! the review, answer a fixed allowed AdmissionReview carrying the request's uid. A review for an
//! object named `floor-probe` is denied, so the bench can tell when the API server calls it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Marks an object the floor denies.
pub const PROBE_NAME: &str = "floor-probe";

/// The value of `"uid":"…"`, the first in the body (the request's own).
fn request_uid(body: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"uid\":\"";
    let Some(start) = body.windows(KEY.len()).position(|w| w == KEY).map(|i| i + KEY.len()) else {
        return b"";
    };
    let len = body[start..].iter().position(|b| *b == b'"').unwrap_or(0);
    &body[start..start + len]
}

fn answer(body: &[u8]) -> Bytes {
    let probe = format!("\"name\":\"{PROBE_NAME}\"");
    let denied = body.windows(probe.len()).any(|w| w == probe.as_bytes());
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":""#);
    out.extend_from_slice(request_uid(body));
    if denied {
        out.extend_from_slice(br#"","allowed":false,"status":{"code":403,"message":"floor probe"}}}"#);
    } else {
        out.extend_from_slice(br#"","allowed":true}}"#);
    }
    Bytes::from(out)
}

/// Serves on `listener` with the certificate and key of `certs` (tls.crt, tls.key) until killed.
pub async fn serve(listener: tokio::net::TcpListener, certs: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let chain = CertificateDer::pem_file_iter(certs.join("tls.crt"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(certs.join("tls.key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = service_fn(|request: http::Request<hyper::body::Incoming>| async move {
                let body = request.into_body().collect().await?.to_bytes();
                let response = http::Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(answer(&body)))
                    .unwrap_or_default();
                Ok::<_, hyper::Error>(response)
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn answers_with_the_request_uid() {
        let body = br#"{"kind":"AdmissionReview","request":{"uid":"abc-1","object":{"metadata":{"uid":"x"}}}}"#;
        assert_eq!(
            super::answer(body),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"abc-1","allowed":true}}"#
                .as_slice()
        );
    }
}
