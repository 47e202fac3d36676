//! Which namespaces the operator manages: every namespace, or only those named by `--namespace`
//! (docs/operations.md, "Namespace scoping"). The one place that turns that choice into Apis and watches, so
//! each watch and list of the operator reaches only those namespaces.

use futures::stream::{self, BoxStream, Stream, StreamExt};
use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::BTreeSet;
use std::fmt;

/// The namespaces whose objects the operator watches, reconciles and admits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace of the cluster.
    #[default]
    All,
    /// Only these namespaces (never empty).
    Only(BTreeSet<String>),
}

/// A namespaced object type the operator watches.
pub trait Watched:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl Watched for crate::api::backup::APIManagerBackup {}
impl Watched for crate::api::restore::APIManagerRestore {}
impl Watched for crate::api::schedule::APIManagerBackupSchedule {}
impl Watched for crate::api::apimanager::APIManager {}
impl Watched for k8s_openapi::api::core::v1::Pod {}
#[cfg(test)]
impl Watched for k8s_openapi::api::core::v1::ConfigMap {}

impl Namespaces {
    /// The scope of `--namespace`: every namespace when none is named.
    pub fn from_names(names: impl IntoIterator<Item = String>) -> Self {
        let names: BTreeSet<String> = names.into_iter().collect();
        if names.is_empty() { Self::All } else { Self::Only(names) }
    }

    /// Whether objects of `namespace` are the operator's to manage.
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names.contains(namespace),
        }
    }

    /// One Api per watched namespace (one for the whole cluster when every namespace is),
    /// each with the namespace it covers (`None`: all).
    fn apis<K: Watched>(&self, client: &Client) -> Vec<(Option<String>, Api<K>)> {
        match self {
            Self::All => vec![(None, Api::all(client.clone()))],
            Self::Only(names) => {
                names.iter().map(|name| (Some(name.clone()), Api::namespaced(client.clone(), name))).collect()
            }
        }
    }

    /// Objects of type `K` selected by `config` as they are created, change or are deleted, in
    /// the watched namespaces: one watch per namespace, each retried with backoff. For a
    /// controller's triggers (`owns_stream`, `watches_stream`), which keep no cache of them; a
    /// deletion must trigger too (an APIManager deleted mid-backup fails the backup).
    pub fn objects<K: Watched>(
        &self,
        client: &Client,
        config: watcher::Config,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + use<K> {
        let watches: Vec<BoxStream<'static, _>> = self
            .apis::<K>(client)
            .into_iter()
            .map(|(_, api)| watch(api, config.clone()).default_backoff().touched_objects().boxed())
            .collect();
        stream::select_all(watches)
    }

    /// The watch events of type `K` selected by `config` in the watched namespaces, merged so
    /// that they read as the events of one watch: for a reflector writing into `known`. A
    /// namespace's re-list replaces that namespace's objects only; the first listing ends once
    /// every namespace is listed.
    pub fn events<K: Watched>(
        &self,
        client: &Client,
        config: watcher::Config,
        known: Store<K>,
    ) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K> {
        let apis = self.apis::<K>(client);
        let covers = apis.iter().map(|(namespace, _)| namespace.clone()).collect();
        let watches: Vec<BoxStream<'static, _>> = apis
            .into_iter()
            .enumerate()
            .map(|(index, (_, api))| watch(api, config.clone()).default_backoff().map(move |e| (index, e)).boxed())
            .collect();
        let mut merge = Merge::new(covers, known);
        stream::select_all(watches).flat_map(move |(index, event)| {
            let merged = match event {
                Ok(event) => merge.on(index, event).into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            stream::iter(merged)
        })
    }
}

impl fmt::Display for Namespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("every namespace"),
            Self::Only(names) => f.write_str(&names.iter().map(String::as_str).collect::<Vec<_>>().join(", ")),
        }
    }
}

/// Turns the events of one watch per namespace into the events of one watch over all of them.
struct Merge<K: Watched> {
    /// The namespace each watch covers (`None`: all).
    covers: Vec<Option<String>>,
    /// Per watch, the objects of a listing in progress.
    listing: Vec<Option<Vec<K>>>,
    /// Per watch, its first complete listing (kept current), until every watch has one.
    first: Vec<Option<Vec<K>>>,
    /// Whether the merged first listing was emitted.
    started: bool,
    /// What the reflector fed by the merged events holds.
    known: Store<K>,
}

fn same<K: Resource>(a: &K, b: &K) -> bool {
    a.meta().name == b.meta().name && a.meta().namespace == b.meta().namespace
}

impl<K: Watched> Merge<K> {
    fn new(covers: Vec<Option<String>>, known: Store<K>) -> Self {
        let watches = covers.len();
        Self { covers, listing: vec![None; watches], first: vec![None; watches], started: false, known }
    }

    /// The merged events for `event` of watch `index`. The events of a single watch are already
    /// those of one watch: passed on as they come, never held (a listing is not copied).
    fn on(&mut self, index: usize, event: Event<K>) -> Vec<Event<K>> {
        if self.covers.len() == 1 {
            return vec![event];
        }
        match event {
            Event::Init => {
                self.listing[index] = Some(Vec::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                self.listing[index].get_or_insert_with(Vec::new).push(object);
                Vec::new()
            }
            Event::InitDone => {
                let listed = self.listing[index].take().unwrap_or_default();
                if self.started {
                    let covered = &self.covers[index];
                    let others = self
                        .known
                        .state()
                        .into_iter()
                        .filter(|object| covered.is_some() && object.meta().namespace != *covered)
                        .map(|object| object.as_ref().clone());
                    return relisted(others.chain(listed));
                }
                self.first[index] = Some(listed);
                if self.first.iter().any(Option::is_none) {
                    return Vec::new();
                }
                self.started = true;
                relisted(self.first.iter_mut().filter_map(Option::take).flatten())
            }
            Event::Apply(object) if !self.started => {
                self.keep_current(index, object, true);
                Vec::new()
            }
            Event::Delete(object) if !self.started => {
                self.keep_current(index, object, false);
                Vec::new()
            }
            event => vec![event],
        }
    }

    /// A change reported by watch `index` before every watch is listed: kept in its first listing.
    fn keep_current(&mut self, index: usize, object: K, exists: bool) {
        let Some(first) = self.first[index].as_mut() else { return };
        first.retain(|known| !same(known, &object));
        if exists {
            first.push(object);
        }
    }
}

/// The events of one complete listing of `objects`.
fn relisted<K>(objects: impl Iterator<Item = K>) -> Vec<Event<K>> {
    std::iter::once(Event::Init).chain(objects.map(Event::InitApply)).chain([Event::InitDone]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn object(namespace: &str, name: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.namespace = Some(namespace.into());
        object.metadata.name = Some(name.into());
        object
    }

    #[test]
    fn every_watched_kind_has_its_watch_errors_series() {
        use crate::api::{apimanager::APIManager, backup::APIManagerBackup};
        use crate::api::{restore::APIManagerRestore, schedule::APIManagerBackupSchedule};
        use k8s_openapi::api::core::v1::Pod;
        let kinds = [
            APIManager::kind(&()),
            APIManagerBackup::kind(&()),
            APIManagerRestore::kind(&()),
            APIManagerBackupSchedule::kind(&()),
            Pod::kind(&()),
        ];
        assert_eq!(kinds.map(|kind| kind.into_owned()), crate::metrics::WATCHED_KINDS.map(str::to_owned));
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o.metadata.namespace.as_deref().unwrap_or(""),
                    o.metadata.name.as_deref().unwrap_or("")
                )
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_first_listing_ends_when_every_namespace_is_listed_and_a_relist_replaces_only_its_namespace() {
        let (store, mut writer) = reflector::store();
        let mut merge = Merge::new(vec![Some("a".into()), Some("b".into())], store.clone());
        let mut feed = |index: usize, event: Event<ConfigMap>| {
            let merged = merge.on(index, event);
            for event in &merged {
                writer.apply_watcher_event(event);
            }
            merged.len()
        };
        assert_eq!(feed(0, Event::Init), 0);
        assert_eq!(feed(0, Event::InitApply(object("a", "x"))), 0);
        assert_eq!(feed(0, Event::InitApply(object("a", "gone"))), 0);
        assert_eq!(feed(0, Event::InitDone), 0, "namespace b is not listed yet");
        assert_eq!(feed(0, Event::Apply(object("a", "y"))), 0);
        assert_eq!(feed(0, Event::Delete(object("a", "gone"))), 0);
        assert_eq!(feed(1, Event::Init), 0);
        assert_eq!(feed(1, Event::InitApply(object("b", "z"))), 0);
        assert_eq!(feed(1, Event::InitDone), 5, "Init, three objects, InitDone");
        assert_eq!(names(&store), ["a/x", "a/y", "b/z"]);
        assert_eq!(feed(0, Event::Apply(object("a", "w"))), 1);
        assert_eq!(feed(1, Event::Init), 0);
        assert_eq!(feed(1, Event::InitApply(object("b", "v"))), 0);
        assert_eq!(feed(1, Event::InitDone), 6, "Init, a's three objects kept, b's one, InitDone");
        assert_eq!(names(&store), ["a/w", "a/x", "a/y", "b/v"], "b/z went away while b was not watched");
    }

    #[test]
    fn a_watch_of_every_namespace_passes_its_listing_through() {
        let (store, mut writer) = reflector::store();
        let mut merge = Merge::new(vec![None], store.clone());
        for event in [Event::Init, Event::InitApply(object("a", "x")), Event::InitDone] {
            for event in merge.on(0, event) {
                writer.apply_watcher_event(&event);
            }
        }
        assert_eq!(names(&store), ["a/x"]);
        for event in [Event::Init, Event::InitApply(object("b", "y")), Event::InitDone] {
            for event in merge.on(0, event) {
                writer.apply_watcher_event(&event);
            }
        }
        assert_eq!(names(&store), ["b/y"], "a re-list of the whole cluster replaces everything");
    }

    #[test]
    fn scope_of_names() {
        assert_eq!(Namespaces::from_names(Vec::new()), Namespaces::All);
        let only = Namespaces::from_names(["b".to_owned(), "a".to_owned()]);
        assert!(only.contains("a") && !only.contains("c"));
        assert!(Namespaces::All.contains("c"));
        assert_eq!(only.to_string(), "a, b");
    }
}
