//! A kubelet's HTTP and HTTPS probes, for the node stand-in: a GET from the node to the Pod's
//! IP, the server's certificate not verified, 200 to 399 meaning success.

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::sync::Arc;
use std::time::Duration;

/// A container's port by number or by its name in `container`.
fn port_number(container: &Container, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// A container's readiness probe (HTTP or HTTPS GET), as a kubelet runs it: from the node to the
/// Pod's IP, the server's certificate not verified, 200 to 399 meaning ready.
pub struct Probe {
    address: std::net::SocketAddr,
    path: String,
    https: bool,
    /// How often it runs (`periodSeconds`).
    pub period: Duration,
    /// How long after the container starts it first runs (`initialDelaySeconds`).
    pub initial_delay: Duration,
    timeout: Duration,
}

impl Probe {
    /// The readiness probe of `container` at Pod IP `ip`, if it has an HTTP one.
    pub fn readiness(container: &Container, ip: &str) -> Option<Self> {
        let probe = container.readiness_probe.as_ref()?;
        let get = probe.http_get.as_ref()?;
        let port = port_number(container, &get.port)?;
        let seconds = |value: Option<i32>, default: u64| {
            Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
        };
        Some(Self {
            address: std::net::SocketAddr::new(ip.parse().ok()?, port),
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            https: get.scheme.as_deref() == Some("HTTPS"),
            period: seconds(probe.period_seconds, 10),
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            timeout: seconds(probe.timeout_seconds, 1),
        })
    }

    /// Whether one probe succeeds within its timeout.
    pub async fn check(&self) -> bool {
        tokio::time::timeout(self.timeout, self.get())
            .await
            .ok()
            .flatten()
            .is_some_and(|code| (200..400).contains(&code))
    }

    /// The status code of one GET, if it was answered.
    async fn get(&self) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(self.address).await.ok()?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n",
            self.path, self.address
        );
        let mut answer = Vec::new();
        if self.https {
            let connector = tokio_rustls::TlsConnector::from(unverified_tls().ok()?);
            let name = rustls::pki_types::ServerName::IpAddress(self.address.ip().into());
            let mut tls = connector.connect(name, stream).await.ok()?;
            tls.write_all(request.as_bytes()).await.ok()?;
            let _ = tls.read_to_end(&mut answer).await;
        } else {
            let mut stream = stream;
            stream.write_all(request.as_bytes()).await.ok()?;
            let _ = stream.read_to_end(&mut answer).await;
        }
        let line = String::from_utf8_lossy(&answer);
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// A TLS client that accepts any server certificate, as a kubelet's HTTPS probes do.
pub fn unverified_tls() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (the probes' verifier).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
