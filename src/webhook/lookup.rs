//! How the webhooks find the APIManagers of a namespace: a small interface, so the rules are
//! tested with a fixed list and served with the cluster's.

use crate::api::apimanager::APIManager;
use kube::api::{Api, ListParams};
use std::future::Future;
use std::time::Duration;

/// How long a lookup may take: the API server gives each webhook call at most 5 s
/// (`timeoutSeconds`), and a clear answer within that beats its generic timeout error.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Errors while listing APIManagers.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The API server refused or could not be reached.
    #[error("could not list APIManagers in namespace {namespace:?}: {source}")]
    Api {
        /// The namespace that was listed.
        namespace: String,
        /// Why the API server did not answer.
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("the API server did not list the APIManagers of namespace {namespace:?} within {LOOKUP_TIMEOUT:?}")]
    Timeout {
        /// The namespace that was listed.
        namespace: String,
    },
}

/// Lists the APIManagers of a namespace.
pub trait ApiManagerLookup: Clone + Send + Sync + 'static {
    /// Every APIManager in `namespace`.
    fn list(&self, namespace: &str) -> impl Future<Output = Result<Vec<APIManager>, LookupError>> + Send;
}

/// Lists APIManagers from the API server.
#[derive(Clone)]
pub struct ClusterLookup {
    client: kube::Client,
}

impl ClusterLookup {
    /// A lookup through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

impl ApiManagerLookup for ClusterLookup {
    async fn list(&self, namespace: &str) -> Result<Vec<APIManager>, LookupError> {
        let api: Api<APIManager> = Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(LOOKUP_TIMEOUT, api.list(&ListParams::default())).await {
            Ok(Ok(list)) => Ok(list.items),
            Ok(Err(source)) => Err(LookupError::Api { namespace: namespace.to_owned(), source }),
            Err(_) => Err(LookupError::Timeout { namespace: namespace.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_api_server_gives_a_timeout_error_naming_the_namespace() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let _silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().expect("url"));
        let lookup = ClusterLookup::new(kube::Client::try_from(config).expect("client"));
        let error = lookup.list("3scale").await.expect_err("no answer");
        assert_eq!(error.to_string(), r#"the API server did not list the APIManagers of namespace "3scale" within 3s"#);
    }
}
