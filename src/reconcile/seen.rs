//! What the reconciler knows of each unfinished object's versions: the `resourceVersion` it last
//! read or wrote, and the versions its own status writes replaced since it last read the object.
//! A cached object at the version last read or written is current (only the operator writes
//! status, and spec is immutable), so a pass starts from the cache. A cached object at a version
//! this reconciler's own write replaced is the cache lagging that write: the pass is put off, since
//! the write's watch event starts the next pass once the cache holds it. Any other version (never
//! read, or changed by another writer) is read live.

use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How many replaced versions are remembered per object (a pass writes status a few times at most).
const REPLACED_KEPT: usize = 8;

/// Whether a pass may start from the cached object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// The cache holds the version this reconciler last read or wrote.
    Current,
    /// The cache holds a version this reconciler's own write replaced: its watch event is coming.
    Behind,
    /// Never read by this reconciler, or changed by another writer: read it live.
    Unknown,
}

#[derive(Debug, Default)]
struct Versions {
    last: String,
    replaced: Vec<String>,
}

/// Versions by object UID.
#[derive(Debug, Default)]
pub struct SeenVersions(Mutex<HashMap<String, Versions>>);

impl SeenVersions {
    /// How `object`, as cached, compares with what this reconciler last read or wrote.
    pub fn freshness<K: Resource>(&self, object: &K) -> Freshness {
        let versions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(uid), Some(version)) = (object.uid(), object.resource_version()) else { return Freshness::Unknown };
        match versions.get(&uid) {
            Some(seen) if seen.last == version => Freshness::Current,
            Some(seen) if seen.replaced.contains(&version) => Freshness::Behind,
            _ => Freshness::Unknown,
        }
    }

    /// Remembers the version of `object`, just read.
    pub fn read<K: Resource>(&self, object: &K) {
        if let (Some(uid), Some(version)) = (object.uid(), object.resource_version()) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(uid, Versions { last: version, replaced: Vec::new() });
        }
    }

    /// Remembers the version of `written`, which this reconciler's write made of version `replaced`.
    pub fn wrote<K: Resource>(&self, replaced: Option<String>, written: &K) {
        let (Some(uid), Some(version)) = (written.uid(), written.resource_version()) else { return };
        let mut versions = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = versions.entry(uid).or_default();
        seen.replaced.extend(replaced);
        if seen.replaced.len() > REPLACED_KEPT {
            seen.replaced.remove(0);
        }
        seen.last = version;
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
    fn a_cache_at_a_version_this_reconciler_replaced_lags_any_other_is_read_live() {
        let seen = SeenVersions::default();
        assert_eq!(seen.freshness(&at("5")), Freshness::Unknown, "never seen: read it");
        seen.read(&at("5"));
        assert_eq!(seen.freshness(&at("5")), Freshness::Current);
        seen.wrote(Some("5".into()), &at("7"));
        seen.wrote(Some("7".into()), &at("9"));
        assert_eq!(seen.freshness(&at("5")), Freshness::Behind, "the cache lags the first write");
        assert_eq!(seen.freshness(&at("7")), Freshness::Behind, "the cache lags the second write");
        assert_eq!(seen.freshness(&at("9")), Freshness::Current, "caught up");
        assert_eq!(seen.freshness(&at("8")), Freshness::Unknown, "another writer's version: read it");
        seen.read(&at("12"));
        assert_eq!(seen.freshness(&at("9")), Freshness::Unknown, "a read starts afresh");
        for version in 13..30 {
            seen.wrote(Some((version - 1).to_string()), &at(&version.to_string()));
        }
        assert_eq!(seen.freshness(&at("28")), Freshness::Behind);
        assert_eq!(seen.freshness(&at("13")), Freshness::Unknown, "only the last few replaced versions are kept");
        seen.forget(&at("29"));
        assert_eq!(seen.freshness(&at("29")), Freshness::Unknown);
    }
}
