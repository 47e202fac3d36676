//! The floor: the least a webhook server can do on the same TLS and HTTP stack (rustls, hyper): read
//! the review, answer a fixed allowed AdmissionReview carrying the request's uid. On the defaulting
//! path, a backup without `apiManagerName` gets the fixed patch naming `example` (the bench
//! namespace's only APIManager), the answer ours gives, so that the API server applies the same
//! patch after either. A review for an object named `floor-probe` is denied, so the bench can tell
//! when the API server calls it.

use apimanager_backup_operator::backup::admission::MUTATE_PATH;
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

/// `[{"op":"add","path":"/spec/apiManagerName","value":"example"}]`, base64-encoded.
const DEFAULTING_PATCH: &str = "W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvYXBpTWFuYWdlck5hbWUiLCJ2YWx1ZSI6ImV4YW1wbGUifV0=";

/// The value of `"uid":"…"`, the first in the body (the request's own).
fn request_uid(body: &[u8]) -> &[u8] {
    const KEY: &[u8] = b"\"uid\":\"";
    let Some(start) = memchr::memmem::find(body, KEY).map(|i| i + KEY.len()) else {
        return b"";
    };
    let len = memchr::memchr(b'"', &body[start..]).unwrap_or(0);
    &body[start..start + len]
}

fn contains(body: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(body, needle).is_some()
}

fn answer(path: &str, body: &[u8]) -> Bytes {
    let probe = format!("\"name\":\"{PROBE_NAME}\"");
    let denied = contains(body, probe.as_bytes());
    let defaults = path == MUTATE_PATH && !contains(body, b"\"apiManagerName\"");
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":""#);
    out.extend_from_slice(request_uid(body));
    if denied {
        out.extend_from_slice(br#"","allowed":false,"status":{"code":403,"message":"floor probe"}}}"#);
    } else if defaults {
        out.extend_from_slice(br#"","allowed":true,"patchType":"JSONPatch","patch":""#);
        out.extend_from_slice(DEFAULTING_PATCH.as_bytes());
        out.extend_from_slice(br#""}}"#);
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
                let path = request.uri().path().to_owned();
                let body = request.into_body().collect().await?.to_bytes();
                let response = http::Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(answer(&path, &body)))
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
            super::answer(apimanager_backup_operator::backup::admission::VALIDATE_PATH, body),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"abc-1","allowed":true}}"#
                .as_slice()
        );
    }

    #[test]
    fn defaults_a_backup_without_a_name_with_the_patch_ours_sends() {
        let body = br#"{"kind":"AdmissionReview","request":{"uid":"abc-1","object":{"spec":{}}}}"#;
        use apimanager_backup_operator::{admission::review, backup::defaulting};
        let patch = defaulting::set_name_patch("example");
        let ours = review::AdmissionResponse::allow("abc-1").with_patch(&patch).expect("encodes");
        let answered: serde_json::Value =
            serde_json::from_slice(&super::answer(super::MUTATE_PATH, body)).expect("JSON");
        assert_eq!(answered["response"], serde_json::to_value(&ours).expect("serializes"));
        let named = br#"{"request":{"uid":"abc-1","object":{"spec":{"apiManagerName":"example"}}}}"#;
        let answered: serde_json::Value =
            serde_json::from_slice(&super::answer(super::MUTATE_PATH, named)).expect("JSON");
        assert_eq!(answered["response"], serde_json::json!({"uid": "abc-1", "allowed": true}));
    }
}
