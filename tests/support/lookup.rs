//! A fixed APIManager lookup, standing in for the API server in HTTP-level tests.

use apimanager_backup_operator::api::apimanager::{APIManager, APIManagerSpec};
use apimanager_backup_operator::lookup::{ApiManagerLookup, LookupError};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use std::sync::Arc;

/// Answers every namespace with the same APIManagers, or with an error when `None`.
#[derive(Clone)]
pub struct FixedLookup(pub Option<Arc<Vec<APIManager>>>);

impl FixedLookup {
    /// Lookup answering with APIManagers of these names, all with external databases.
    pub fn external(names: &[&str]) -> Self {
        let spec: APIManagerSpec = serde_json::from_value(serde_json::json!({"externalComponents": {
            "system": {"database": true, "redis": true}, "backend": {"redis": true}}}))
        .expect("APIManager spec");
        Self(Some(Arc::new(names.iter().map(|n| APIManager::new(n, spec.clone())).collect())))
    }
}

impl ApiManagerLookup for FixedLookup {
    async fn list(&self, namespace: &str) -> Result<Vec<APIManager>, LookupError> {
        match &self.0 {
            Some(list) => Ok(list.as_ref().clone()),
            None => Err(LookupError::Api {
                namespace: namespace.to_owned(),
                source: kube::Error::Service("API server unreachable".into()),
            }),
        }
    }

    async fn claim(&self, _namespace: &str, _name: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        Ok(None)
    }
}
