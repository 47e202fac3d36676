//! The APIManagers the webhooks and the controllers read: the store of the process's one
//! APIManager watch ([`Informer`]), so a warm webhook answers without a single API request. It lags
//! the API server by the watch's delivery delay; what it does not know is confirmed live before
//! anything is refused (docs/design.md, "Admission from memory"). The watch runs on every replica for the
//! process's life, whether or not this replica leads.

use super::{ApiManagerLookup, ClusterLookup, LookupError, SecretExistence, with_confirmed};
use crate::api::apimanager::APIManager;
use crate::health::Readiness;
use crate::informer::Informer;
use crate::scope::Namespaces;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};

/// Readiness check: the APIManager cache holds a complete list.
pub const CACHE_CHECK: &str = "apimanager-cache";

/// APIManagers from a watch-fed cache, confirmed through the API server when the cache's answer
/// would refuse. A namespace the operator does not manage is never looked up.
#[derive(Clone)]
pub struct CachedLookup {
    store: Store<APIManager>,
    live: ClusterLookup,
    namespaces: Namespaces,
}

impl CachedLookup {
    /// A cache of the APIManagers of `namespaces`: `apimanagers`' store, confirming through
    /// `live`. The returned future runs `events`, the informer's watch (which reports its own
    /// failures), until dropped; `readiness` check [`CACHE_CHECK`] fails until its first complete
    /// list is in the store.
    pub fn watch(
        apimanagers: &Informer<APIManager>,
        events: impl Stream<Item = Result<Event<APIManager>, watcher::Error>> + Send + 'static,
        namespaces: Namespaces,
        live: ClusterLookup,
        readiness: &Readiness,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let fill = readiness.mark_synced(CACHE_CHECK, events).for_each(|_| std::future::ready(()));
        (Self { store: apimanagers.store(), live, namespaces }, fill)
    }

    /// A cache over `store` (filled elsewhere) of every namespace, confirming through `live`.
    pub fn from_store(store: Store<APIManager>, live: ClusterLookup) -> Self {
        Self { store, live, namespaces: Namespaces::All }
    }

    /// Refuses a namespace the operator does not manage.
    fn managed(&self, namespace: &str) -> Result<(), LookupError> {
        if self.namespaces.contains(namespace) {
            return Ok(());
        }
        Err(LookupError::NotManaged { namespace: namespace.to_owned(), managed: self.namespaces.to_string() })
    }
}

impl ApiManagerLookup for CachedLookup {
    async fn list(&self, namespace: &str) -> Result<Vec<APIManager>, LookupError> {
        self.managed(namespace)?;
        let cached = self.store.state_filter(|apimanager| apimanager.metadata.namespace.as_deref() == Some(namespace));
        let mut found: Vec<APIManager> = cached.iter().map(|apimanager| apimanager.as_ref().clone()).collect();
        found.sort_by_key(ResourceExt::name_any);
        Ok(found)
    }

    async fn confirm(&self, namespace: &str, name: Option<&str>) -> Result<Vec<APIManager>, LookupError> {
        self.managed(namespace)?;
        match name {
            Some(name) => {
                let found = self.live.get(namespace, name).await?;
                Ok(with_confirmed(self.list(namespace).await?, name, found))
            }
            None => self.live.list(namespace).await,
        }
    }

    /// Claims are not cached: a restore is rare, and its claim is read live.
    async fn claim(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        self.managed(namespace)?;
        self.live.claim(namespace, name).await
    }

    /// Secrets are not cached: only a bucket's Secrets are asked about, when a backup, restore or
    /// schedule into a bucket is admitted (rare), and a cache would mean watching every Secret of
    /// the managed namespaces (list and watch on Secrets, memory growing with their number).
    async fn secret(&self, namespace: &str, name: &str) -> Result<SecretExistence, LookupError> {
        self.managed(namespace)?;
        self.live.secret(namespace, name).await
    }
}
