//! The newest `resourceVersion` of each unfinished object that the reconciler itself read or wrote.
//! A cached object at that version is current (only the operator writes status, and spec is
//! immutable), so a pass starts from the cache instead of reading the object again; any other
//! version (the cache lags this operator's last write, or another writer was seen) is read fresh.

use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Versions by object UID.
#[derive(Debug, Default)]
pub struct SeenVersions(Mutex<HashMap<String, String>>);

impl SeenVersions {
    /// Whether `object` is at the newest version this reconciler read or wrote.
    pub fn is_current<K: Resource>(&self, object: &K) -> bool {
        let versions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match (object.uid(), object.resource_version()) {
            (Some(uid), Some(version)) => versions.get(&uid) == Some(&version),
            _ => false,
        }
    }

    /// Remembers the version of `object`, just read or written.
    pub fn record<K: Resource>(&self, object: &K) {
        if let (Some(uid), Some(version)) = (object.uid(), object.resource_version()) {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(uid, version);
        }
    }

    /// Forgets `object` (it has ended: nothing is done with it again).
    pub fn forget<K: Resource>(&self, object: &K) {
        if let Some(uid) = object.uid() {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn at(version: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.uid = Some("u1".into());
        object.metadata.resource_version = Some(version.into());
        object
    }

    #[test]
    fn only_the_version_last_read_or_written_is_current() {
        let seen = SeenVersions::default();
        assert!(!seen.is_current(&at("5")), "never seen: read it");
        seen.record(&at("5"));
        assert!(seen.is_current(&at("5")));
        seen.record(&at("7"));
        assert!(!seen.is_current(&at("5")), "the cache lags a write");
        seen.forget(&at("7"));
        assert!(!seen.is_current(&at("7")));
    }
}
