//! The operator's Kubernetes clients: each finds the API server as any client does (`KUBECONFIG`,
//! else the Pod's ServiceAccount) and names itself in its `User-Agent`, so the API server's audit
//! log and request logs tell the operator apart from each step's Pod, and from other clients of
//! the same account.

use crate::names::CONTROLLER;
use http::HeaderValue;
use http::header::USER_AGENT;

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Neither `KUBECONFIG` nor an in-cluster configuration could be read.
    #[error(transparent)]
    Config(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error(transparent)]
    Client(#[from] kube::Error),
}

/// Whether `error` may pass on its own: the API server shed load or failed (429, 5xx), or the
/// connection failed; any other answer refuses this request for good.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || status.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// A client of the API server found as any client finds it, naming `role` in its `User-Agent`.
pub async fn connect(role: &'static str) -> Result<kube::Client, ClientError> {
    named(kube::Config::infer().await?, role)
}

/// The client of `config`, naming `role` in its `User-Agent`.
pub fn named(mut config: kube::Config, role: &'static str) -> Result<kube::Client, ClientError> {
    config.headers.push((USER_AGENT, user_agent(role)));
    Ok(kube::Client::try_from(config)?)
}

/// `apimanager-backup-operator/<version> (<role>)`, the form client-go's user agents take. A role
/// that is not a header value (never one of ours) is left out.
fn user_agent(role: &str) -> HeaderValue {
    let product = format!("{CONTROLLER}/{}", env!("CARGO_PKG_VERSION"));
    HeaderValue::try_from(format!("{product} ({role})"))
        .or_else(|_| HeaderValue::try_from(product))
        .unwrap_or(HeaderValue::from_static(CONTROLLER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_load_shedding_server_failures_and_broken_connections_are_tried_again() {
        let api =
            |code: u16| kube::Error::Api(kube::core::Status::failure("refused", "Reason").with_code(code).boxed());
        for code in [429, 500, 503, 504] {
            assert!(is_transient(&api(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!is_transient(&api(code)), "{code}");
        }
    }
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn every_request_names_the_operator_its_version_and_role() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.expect("read");
                assert!(read > 0, "the request head ends");
                head.extend_from_slice(&buffer[..read]);
            }
            let body = r#"{"major":"1","minor":"33"}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.expect("write");
            String::from_utf8(head).expect("ASCII head")
        });
        let config = kube::Config::new(url.parse().expect("URL"));
        let client = named(config, "export-objects").expect("client");
        client.apiserver_version().await.expect("answered");
        let head = server.await.expect("server").to_ascii_lowercase();
        let expected =
            format!("user-agent: apimanager-backup-operator/{} (export-objects)\r\n", env!("CARGO_PKG_VERSION"));
        assert!(head.contains(&expected), "{head}");
    }
}
