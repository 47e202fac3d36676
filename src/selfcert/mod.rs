//! The operator's own webhook certificate, without cert-manager (`--certificate-secret`): every
//! replica runs [`SelfCertificate::run`], which keeps a CA and a serving certificate in one
//! Secret of the operator's namespace, the CA bundle in both webhook configurations, and the
//! Secret's certificate in the HTTPS server.
//!
//! Each round (every `--tls-reload-interval`) reads the Secret afresh. Missing, incomplete or due
//! for renewal (a third of `--certificate-validity` left, or other names), a replica issues a new
//! CA and certificate and writes them: `create` (a second creator gets 409 AlreadyExists) or
//! `replace` at the resourceVersion it read (a second writer gets 409 Conflict); the loser reads
//! the winner's. Then it sets the Secret's bundle (the new CA, and the previous one while valid)
//! in the webhook configurations, and only then serves the Secret's certificate: the API server
//! trusts a certificate before any replica serves it. `/readyz` fails (check `certificate`) until
//! the Secret's certificate is served; meanwhile a throw-away certificate nothing trusts is.

pub mod issue;
pub mod stored;
pub mod validity;
pub mod webhooks;

use crate::health::Readiness;
use crate::tls::{self, TlsError};
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stored::Stored;

/// Name of the readiness check that passes once the Secret's certificate is served.
pub const READINESS_CHECK: &str = "certificate";
/// Writes of the Secret tried in one round when other replicas win the races.
const ATTEMPTS: usize = 3;

/// Why a round did not end with the Secret's certificate served.
#[derive(Debug, thiserror::Error)]
pub enum SelfCertError {
    /// rcgen could not make a certificate.
    #[error("issuing a certificate: {0}")]
    Issue(#[from] rcgen::Error),
    /// The Secret could not be read or written.
    #[error("{what} Secret {namespace}/{name}: {source}")]
    Secret {
        /// What was done.
        what: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the API server answered.
        source: Box<kube::Error>,
    },
    /// Other replicas kept changing the Secret.
    #[error("Secret {namespace}/{name} changed under each of {ATTEMPTS} writes; trying again")]
    Contended {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The webhook configurations could not be updated.
    #[error(transparent)]
    Webhooks(#[from] Box<webhooks::WebhookError>),
    /// The Secret's certificate cannot be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Where the certificate lives and what it is for.
#[derive(Clone)]
pub struct SelfCertificate {
    /// The API client.
    pub client: kube::Client,
    /// The operator's namespace (the Secret's).
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The name of both webhook configurations.
    pub webhook_configuration: String,
    /// The serving certificate's names (DNS names or IP addresses).
    pub names: Vec<String>,
    /// How long each certificate is valid.
    pub validity: Duration,
    /// How often the Secret is read.
    pub interval: Duration,
}

/// The throw-away certificate served until the Secret's is (see [`issue::placeholder`]).
pub fn placeholder_config() -> Result<RustlsConfig, SelfCertError> {
    let (cert, key) = issue::placeholder()?;
    let origins = ("a placeholder certificate".to_owned(), "its key".to_owned());
    Ok(RustlsConfig::from_config(Arc::new(tls::server_config(cert.as_bytes(), key.as_bytes(), origins)?)))
}

impl SelfCertificate {
    /// The DNS names of Service `service` in `namespace` (as the API server calls it), then `extra`.
    pub fn service_names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
        let mut names = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.to_owned(),
        ];
        names.extend(extra.iter().cloned());
        names
    }

    /// Keeps the certificate provisioned and served in `config` until the process stops; the
    /// `readiness` check is failing from this call on, and passes once the certificate is served.
    pub fn run(self, config: RustlsConfig, readiness: Readiness) -> impl Future<Output = ()> + Send + 'static {
        readiness.set(READINESS_CHECK, false);
        self.provision(config, readiness)
    }

    async fn provision(self, config: RustlsConfig, readiness: Readiness) {
        let mut served: Option<Stored> = None;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.round(served.as_ref()).await {
                Ok(Some(next)) => {
                    let origins = (format!("Secret {}/{} tls.crt", self.namespace, self.secret), "tls.key".to_owned());
                    match tls::server_config(&next.cert, &next.key, origins) {
                        Ok(server_config) => {
                            config.reload_from_config(Arc::new(server_config));
                            readiness.set(READINESS_CHECK, true);
                            tracing::info!(namespace = %self.namespace, secret = %self.secret, "serving the webhook certificate of the Secret");
                            served = Some(next);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the Secret's certificate cannot be served; keeping the current one")
                        }
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "webhook certificate not provisioned; trying again"),
            }
        }
    }

    /// One round: the Secret made current, the webhook configurations trusting its bundle; the
    /// Secret's content when it differs from `served`.
    async fn round(&self, served: Option<&Stored>) -> Result<Option<Stored>, SelfCertError> {
        let current = self.current().await?;
        let outcome = webhooks::ensure_ca_bundle(&self.client, &self.webhook_configuration, &current.ca_bundle)
            .await
            .map_err(Box::new)?;
        if outcome.contains(&webhooks::Bundle::Patched) {
            tracing::info!(configuration = %self.webhook_configuration, "webhook configurations trust the CA bundle of the Secret");
        }
        Ok((served != Some(&current)).then_some(current))
    }

    /// The Secret's certificate, issued anew (and written) when missing or due.
    async fn current(&self) -> Result<Stored, SelfCertError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let error = |what| {
            move |source| SelfCertError::Secret {
                what,
                namespace: self.namespace.clone(),
                name: self.secret.clone(),
                source: Box::new(source),
            }
        };
        for _ in 0..ATTEMPTS {
            let now = SystemTime::now();
            let existing = secrets.get_opt(&self.secret).await.map_err(error("reading"))?;
            let stored = existing.as_ref().and_then(Stored::from_secret);
            if let Some(stored) = stored.as_ref().filter(|s| !s.renewal_due(now, self.validity, &self.names)) {
                return Ok(stored.clone());
            }
            let issued = issue::issue(&self.names, now, self.validity)?;
            let previous = stored.as_ref().and_then(|s| s.current_ca(now));
            let written = match existing {
                None => {
                    let mut secret = Secret::default();
                    secret.metadata.name = Some(self.secret.clone());
                    secret.metadata.labels =
                        Some([("app.kubernetes.io/name".to_owned(), "apimanager-backup-operator".to_owned())].into());
                    stored::write(&mut secret, &issued, None, &self.names);
                    secrets.create(&PostParams::default(), &secret).await
                }
                Some(mut secret) => {
                    stored::write(&mut secret, &issued, previous.as_deref(), &self.names);
                    // `secret` carries the resourceVersion it was read at: the replace is refused if another
                    // replica wrote meanwhile.
                    secrets.replace(&self.secret, &PostParams::default(), &secret).await
                }
            };
            match written {
                Ok(secret) => {
                    let renewed = if stored.is_some() { "renewed" } else { "issued" };
                    tracing::info!(namespace = %self.namespace, secret = %self.secret, validity = %humantime::format_duration(self.validity), "webhook certificate {renewed}");
                    if let Some(stored) = Stored::from_secret(&secret) {
                        return Ok(stored);
                    }
                }
                Err(kube::Error::Api(status)) if status.is_already_exists() || status.code == 409 => {
                    tracing::debug!("another replica wrote the certificate Secret first");
                }
                Err(source) => return Err(error("writing")(source)),
            }
        }
        Err(SelfCertError::Contended { namespace: self.namespace.clone(), name: self.secret.clone() })
    }
}
