//! How the webhooks find the APIManagers of a namespace: a small interface, so the rules are
//! tested with a fixed list and served with the cluster's.

use crate::api::apimanager::APIManager;
use kube::api::{Api, ListParams};
use std::future::Future;

/// Errors while listing APIManagers.
#[derive(Debug, thiserror::Error)]
#[error("could not list APIManagers in namespace {namespace:?}: {source}")]
pub struct LookupError {
    /// The namespace that was listed.
    pub namespace: String,
    /// Why the API server did not answer.
    #[source]
    pub source: kube::Error,
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
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list.items),
            Err(source) => Err(LookupError { namespace: namespace.to_owned(), source }),
        }
    }
}
