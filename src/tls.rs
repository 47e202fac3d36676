//! TLS for the HTTPS server: certificate and key from PEM (files, reloaded when they change, as
//! cert-manager and the kubelet rotate them in place; or bytes, see [`crate::selfcert`]), TLS 1.2
//! and 1.3 only.

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors while loading the serving certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file (or Secret) is not PEM of the expected kind.
    #[error("{origin} holds no usable PEM {what}: {source}")]
    Pem {
        /// The file or Secret.
        origin: String,
        /// "certificate" or "private key".
        what: &'static str,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file (or Secret) holds no certificate.
    #[error("{origin} holds no certificate")]
    NoCertificate {
        /// The file or Secret.
        origin: String,
    },
    /// rustls refused the pair (for example a key that does not match the certificate).
    #[error("the certificate and key cannot be used: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the serving certificate chain and its private key live.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first (`tls.crt`).
    pub cert: PathBuf,
    /// PEM private key (`tls.key`).
    pub key: PathBuf,
}

/// A server configuration serving the PEM certificate chain `cert` (leaf first) with the PEM
/// private key `key`; `origins` name where each came from, for errors.
pub fn server_config(cert: &[u8], key: &[u8], origins: (String, String)) -> Result<ServerConfig, TlsError> {
    let (cert_origin, key_origin) = origins;
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { origin: cert_origin.clone(), what: "certificate", source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { origin: cert_origin });
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|source| TlsError::Pem {
        origin: key_origin,
        what: "private key",
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration trusting `roots` only, on the same provider and TLS versions (1.2 and
/// 1.3) as the server, without a client certificate.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A [`client_config`] trusting only the PEM CA certificates of the file `ca`.
pub fn client_config_trusting(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let pem = std::fs::read(ca).map_err(|source| TlsError::Read { path: ca.to_owned(), source })?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|source| TlsError::Pem {
            origin: ca.display().to_string(),
            what: "certificate",
            source,
        })?;
        roots.add(certificate)?;
    }
    Ok(client_config(roots)?)
}

/// The raw bytes of both files, compared to notice a change.
#[derive(PartialEq, Eq)]
struct Snapshot {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl TlsFiles {
    fn snapshot(&self) -> Result<Snapshot, TlsError> {
        let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
        Ok(Snapshot { cert: read(&self.cert)?, key: read(&self.key)? })
    }

    fn server_config(&self, snapshot: &Snapshot) -> Result<ServerConfig, TlsError> {
        let origins = (self.cert.display().to_string(), self.key.display().to_string());
        server_config(&snapshot.cert, &snapshot.key, origins)
    }

    /// Loads the files into a server configuration the HTTPS server can swap at run time.
    pub fn load(&self) -> Result<RustlsConfig, TlsError> {
        let snapshot = self.snapshot()?;
        Ok(RustlsConfig::from_config(Arc::new(self.server_config(&snapshot)?)))
    }

    /// Re-reads the files every `interval` and swaps `config` when their content changed. A
    /// broken pair (for example caught half-written) keeps the previous certificate in service.
    pub async fn reload_on_change(self, config: RustlsConfig, interval: Duration) {
        let mut current = self.snapshot().ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let next = match self.snapshot() {
                Ok(next) if current.as_ref() != Some(&next) => next,
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "serving certificate unreadable; keeping the current one");
                    continue;
                }
            };
            match self.server_config(&next) {
                Ok(server_config) => {
                    config.reload_from_config(Arc::new(server_config));
                    tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    current = Some(next);
                }
                Err(error) => {
                    tracing::warn!(%error, "new serving certificate rejected; keeping the current one")
                }
            }
        }
    }
}
