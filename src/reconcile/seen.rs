//! What the reconciler knows of each unfinished object's versions: the `resourceVersion` it last
//! read or wrote, and the versions its own status writes replaced since it last read the object.
//! A cached object at the version last read or written is current (only the operator writes
//! status, and spec is immutable), so a pass starts from the cache. A cached object at a version
//! this reconciler's own write replaced is the cache lagging that write: the pass is put off, since
//! the write's watch event starts the next pass once the cache holds it. Any other version (never
//! read, or changed by another writer) is read live.
//!
//! Likewise for the step Pods this reconciler created ([`CreatedPods`]): until the Pod watch
//! delivers one (for [`CATCH_UP`] at most), a pass counts it as created instead of creating it, and
//! its RBAC, again.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How long this reconciler waits at most for its own write or create to reach its caches (a
/// watch event); past it, it reads the API server instead.
pub const CATCH_UP: Duration = Duration::from_secs(5);

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

/// The step Pods this reconciler created in the last [`CATCH_UP`], by namespace and name, as
/// created (no status yet: pending).
#[derive(Debug, Default)]
pub struct CreatedPods(Mutex<HashMap<PodKey, (Arc<Pod>, Instant)>>);

/// A Pod's namespace and name.
type PodKey = (String, String);

impl CreatedPods {
    /// Remembers the Pod of `metadata`, just created in `namespace` (and forgets those created too
    /// long ago).
    pub fn created(&self, namespace: &str, metadata: ObjectMeta) {
        let mut created = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        created.retain(|_, (_, at)| at.elapsed() < CATCH_UP);
        let name = metadata.name.clone().unwrap_or_default();
        let pending = Pod { metadata, ..Pod::default() };
        created.insert((namespace.to_owned(), name), (Arc::new(pending), Instant::now()));
    }

    /// Pod `name` of `namespace` as created, when this reconciler created it less than
    /// [`CATCH_UP`] ago.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        let created = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (pod, at) = created.get(&(namespace.to_owned(), name.to_owned()))?;
        (at.elapsed() < CATCH_UP).then(|| pod.clone())
    }

    /// Forgets `pod`: its watch delivered it (created, changed or deleted), so the Pod store
    /// answers for it from now on.
    pub fn observed(&self, pod: &Pod) {
        let mut created = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !created.is_empty() {
            created.remove(&(pod.namespace().unwrap_or_default(), pod.name_any()));
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

    fn pod(name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_created_pod_counts_until_the_store_shows_it_or_for_catch_up_at_most() {
        let created = CreatedPods::default();
        assert!(created.get("ns", "p-0").is_none());
        created.created("ns", pod("p-0"));
        let pending = created.get("ns", "p-0").expect("counted as created");
        assert_eq!((pending.metadata.name.as_deref(), pending.status.is_none()), (Some("p-0"), true), "pending");
        assert!(created.get("other", "p-0").is_none(), "per namespace");
        let mut delivered = Pod { metadata: pod("p-0"), ..Pod::default() };
        delivered.metadata.namespace = Some("ns".into());
        created.observed(&delivered);
        assert!(created.get("ns", "p-0").is_none(), "the store answers from now on");
        created.created("ns", pod("p-1"));
        tokio::time::advance(CATCH_UP).await;
        assert!(created.get("ns", "p-1").is_none(), "too long ago: the API server is asked");
        created.created("ns", pod("p-2"));
        assert_eq!(created.0.lock().expect("lock").len(), 1, "expired ones are dropped on the next create");
    }
}
