//! A shared informer: one watch of one object type for the whole process, filling the one cache
//! (a reflector store) that every part reading that type shares, and telling any number of
//! subscribers (the controllers) which objects changed (docs/design.md, "Watches and caches").
//!
//! A subscriber never holds the watch up: each has a bounded backlog, and one that falls behind
//! is sent the whole cache again instead of the changes it missed (a reconcile is idempotent and a
//! controller's queue merges repeats); the deletions it missed are kept, as the cache no longer
//! holds them. A subscriber that joins late (a replica that starts leading) is first sent the
//! whole cache, then every change after it joined: it is registered before the cache is read, so
//! nothing falls between the two.

use crate::metrics::Metrics;
use crate::scope::{Namespaces, Watched};
use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

/// How many changes a subscriber may have waiting before it is sent the whole cache instead.
const BACKLOG: usize = 256;

/// One watch of `K`, its cache and its subscribers; clones share them.
#[derive(Clone)]
pub struct Informer<K: Watched> {
    store: Store<K>,
    fanout: Arc<Fanout<K>>,
}

impl<K: Watched> Informer<K> {
    /// An informer of the `K` in `namespaces`, its cache keeping of each object what `keep`
    /// leaves of it. The returned stream runs the watch: each event has reached the cache and the
    /// subscribers when it comes out (for the part that needs every event: readiness, the
    /// observer's counter). A failed watch is counted in `metrics` and logged here, once for every
    /// reader; it is retried with backoff while the cache keeps its last state. Dropping the stream
    /// stops the watch and ends every subscription.
    pub fn watch(
        client: &kube::Client,
        namespaces: &Namespaces,
        keep: fn(&mut K),
        metrics: Arc<Metrics>,
    ) -> (Self, impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K>) {
        let (store, writer) = reflector::store();
        let events = namespaces.events(client, watcher::Config::default(), store.clone()).modify(keep).inspect(
            move |event| {
                if let Err(error) = event {
                    metrics.watch_error(&K::kind(&()));
                    tracing::warn!(%error, kind = %K::kind(&()), "a watch failed; the cache keeps its last state and the watch is retried with backoff");
                }
            },
        );
        Self::fed_by(store, writer, events, BACKLOG)
    }

    /// An informer over `store`, which `writer` fills from `events`; subscribers may fall
    /// `backlog` changes behind.
    fn fed_by<S>(
        store: Store<K>,
        writer: Writer<K>,
        events: S,
        backlog: usize,
    ) -> (Self, impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + use<K, S>)
    where
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    {
        let fanout = Arc::new(Fanout { subscribers: Mutex::default(), backlog });
        let publisher = Publisher { store: store.clone(), fanout: fanout.clone() };
        let events = events.reflect(writer).inspect(move |event| {
            if let Ok(event) = event {
                publisher.publish(event);
            }
        });
        (Self { store, fanout }, events)
    }

    /// The cache (for reading; only the watch writes it).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The objects that change from now on, after every object the cache holds; deleted objects
    /// too (as last seen). Ends when the watch stops. Dropping it unsubscribes.
    pub fn subscribe(&self) -> Subscription<K> {
        let mut subscribers = lock(&self.fanout.subscribers);
        let backlog = Backlog { changes: VecDeque::new(), resend: true, closed: subscribers.closed, waker: None };
        let backlog = Arc::new(Mutex::new(backlog));
        subscribers.backlogs.push(Arc::downgrade(&backlog));
        Subscription { backlog, store: self.store.clone(), ready: VecDeque::new() }
    }
}

/// The subscribers of one informer.
struct Fanout<K> {
    subscribers: Mutex<Subscribers<K>>,
    backlog: usize,
}

struct Subscribers<K> {
    /// Each live subscriber's backlog (a dropped subscriber's is gone).
    backlogs: Vec<Weak<Mutex<Backlog<K>>>>,
    /// Whether the watch has stopped.
    closed: bool,
}

impl<K> Default for Subscribers<K> {
    fn default() -> Self {
        Self { backlogs: Vec::new(), closed: false }
    }
}

/// What one subscriber has not taken yet.
struct Backlog<K> {
    /// Changed objects, oldest first.
    changes: VecDeque<Change<K>>,
    /// Whether the whole cache is to be sent first (on joining, after falling behind, after a
    /// re-list).
    resend: bool,
    /// Whether the watch has stopped.
    closed: bool,
    waker: Option<Waker>,
}

/// A change of one object.
enum Change<K> {
    /// Added or changed: the object as the cache now holds it.
    Applied(Arc<K>),
    /// Deleted: the object as last seen (the cache no longer holds it).
    Deleted(Arc<K>),
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Self::Applied(object) => Self::Applied(object.clone()),
            Self::Deleted(object) => Self::Deleted(object.clone()),
        }
    }
}

impl<K> Change<K> {
    fn into_object(self) -> Arc<K> {
        match self {
            Self::Applied(object) | Self::Deleted(object) => object,
        }
    }
}

impl<K> Backlog<K> {
    /// Queues `change`; past `limit`, the changes the cache holds give way to one resend of it.
    fn push(&mut self, change: Change<K>, limit: usize) {
        self.changes.push_back(change);
        if self.changes.len() > limit {
            self.resend = true;
            self.changes.retain(|change| matches!(change, Change::Deleted(_)));
            if self.changes.len() > limit {
                let lost = self.changes.len() - limit;
                self.changes.drain(..lost);
                tracing::warn!(
                    lost,
                    "a watch subscriber fell behind by more deletions than it may keep; the oldest are not sent"
                );
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands each event, once the cache has it, to the subscribers; closes them when dropped.
struct Publisher<K: Watched> {
    store: Store<K>,
    fanout: Arc<Fanout<K>>,
}

impl<K: Watched> Publisher<K> {
    fn publish(&self, event: &Event<K>) {
        match event {
            // The cache's own copy, so a change costs a subscriber a pointer, not an object.
            Event::Apply(object) => self.send(|| {
                Change::Applied(
                    self.store.get(&ObjectRef::from_obj(object)).unwrap_or_else(|| Arc::new(object.clone())),
                )
            }),
            Event::Delete(object) => self.send(|| Change::Deleted(Arc::new(object.clone()))),
            // A (re-)listing replaced the cache at once: each subscriber is sent all of it.
            Event::InitDone => self.each(|backlog| backlog.resend = true),
            Event::Init | Event::InitApply(_) => {}
        }
    }

    /// Queues the change `make` makes for every subscriber; made only when there is one. One that
    /// subscribes meanwhile finds the change in the cache, which has it already.
    fn send(&self, make: impl FnOnce() -> Change<K>) {
        if self.live() == 0 {
            return;
        }
        let change = make();
        let limit = self.fanout.backlog;
        self.each(|backlog| backlog.push(change.clone(), limit));
    }

    /// How many subscribers there are, forgetting the dropped ones.
    fn live(&self) -> usize {
        let mut subscribers = lock(&self.fanout.subscribers);
        subscribers.backlogs.retain(|backlog| backlog.strong_count() > 0);
        subscribers.backlogs.len()
    }

    /// Runs `change` on the backlog of every live subscriber and wakes it.
    fn each(&self, mut change: impl FnMut(&mut Backlog<K>)) {
        let mut wakers = Vec::new();
        for backlog in lock(&self.fanout.subscribers).backlogs.iter().filter_map(Weak::upgrade) {
            let mut backlog = lock(&backlog);
            change(&mut backlog);
            wakers.extend(backlog.waker.take());
        }
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl<K: Watched> Drop for Publisher<K> {
    fn drop(&mut self) {
        lock(&self.fanout.subscribers).closed = true;
        self.each(|backlog| backlog.closed = true);
    }
}

/// A subscriber's stream of changed objects (see [`Informer::subscribe`]).
pub struct Subscription<K: Watched> {
    backlog: Arc<Mutex<Backlog<K>>>,
    store: Store<K>,
    /// Taken from the backlog, not yet returned.
    ready: VecDeque<Arc<K>>,
}

impl<K: Watched> Stream for Subscription<K> {
    type Item = Arc<K>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Arc<K>>> {
        let this = self.get_mut();
        loop {
            if let Some(object) = this.ready.pop_front() {
                return Poll::Ready(Some(object));
            }
            let resend = std::mem::take(&mut lock(&this.backlog).resend);
            if resend {
                // Read after the flag was cleared: a change the cache gets later is queued again.
                this.ready.extend(this.store.state());
            }
            let mut backlog = lock(&this.backlog);
            this.ready.extend(backlog.changes.drain(..).map(Change::into_object));
            if !this.ready.is_empty() || backlog.resend {
                continue;
            }
            if backlog.closed {
                return Poll::Ready(None);
            }
            backlog.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests;
