use super::*;
use futures::FutureExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::ConfigMap;
use std::time::Duration;

type Feed = mpsc::UnboundedSender<Result<Event<ConfigMap>, watcher::Error>>;
/// The informer's watch stream.
type Watch = futures::stream::BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>;

fn object(name: &str) -> ConfigMap {
    let mut object = ConfigMap::default();
    object.metadata.namespace = Some("n".into());
    object.metadata.name = Some(name.into());
    object
}

/// An informer fed through the returned sender, its watch stream, subscribers `backlog` behind at most.
fn informer(backlog: usize) -> (Informer<ConfigMap>, Feed, Watch) {
    let (store, writer) = reflector::store();
    let (feed, events) = mpsc::unbounded();
    let (informer, events) = Informer::fed_by(store, writer, events, backlog);
    (informer, feed, events.boxed())
}

/// Sends `event` and lets the watch handle it.
async fn feed(feed: &Feed, events: &mut Watch, event: Event<ConfigMap>) {
    feed.unbounded_send(Ok(event)).expect("the watch is running");
    events.next().await.expect("the watch goes on").expect("an event");
}

async fn list(sender: &Feed, events: &mut Watch, names: &[&str]) {
    feed(sender, events, Event::Init).await;
    for name in names {
        feed(sender, events, Event::InitApply(object(name))).await;
    }
    feed(sender, events, Event::InitDone).await;
}

/// Everything the subscription has ready now, without waiting.
fn taken(subscription: &mut Subscription<ConfigMap>) -> Vec<Arc<ConfigMap>> {
    let mut taken = Vec::new();
    while let Some(Some(object)) = subscription.next().now_or_never() {
        taken.push(object);
    }
    taken
}

/// The distinct names among `objects`, sorted.
fn names(objects: &[Arc<ConfigMap>]) -> Vec<String> {
    let mut names: Vec<String> = objects.iter().filter_map(|o| o.metadata.name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn waiting(subscription: &Subscription<ConfigMap>) -> usize {
    lock(&subscription.backlog).changes.len()
}

#[tokio::test]
async fn a_late_subscriber_gets_the_whole_cache_then_every_change_with_none_lost_between() {
    let (informer, sender, mut events) = informer(BACKLOG);
    let mut early = informer.subscribe();
    assert!(taken(&mut early).is_empty(), "nothing listed yet");
    list(&sender, &mut events, &["a", "b"]).await;
    assert_eq!(names(&taken(&mut early)), ["a", "b"], "the first listing, once the cache has it");

    let mut late = informer.subscribe();
    // A change after it joined and before it first looked: in the cache it reads or queued, or both.
    feed(&sender, &mut events, Event::Apply(object("c"))).await;
    assert_eq!(names(&taken(&mut late)), ["a", "b", "c"]);
    assert!(taken(&mut late).is_empty(), "nothing more until a change");

    let mut changed = object("a");
    changed.data = Some([("k".to_owned(), "v".to_owned())].into());
    feed(&sender, &mut events, Event::Apply(changed.clone())).await;
    feed(&sender, &mut events, Event::Delete(object("b"))).await;
    let live = taken(&mut late);
    assert_eq!(live.iter().map(|o| o.as_ref().clone()).collect::<Vec<_>>(), [changed, object("b")]);
    assert!(Arc::ptr_eq(&live[0], &informer.store().state().into_iter().find(|o| live[0] == *o).expect("cached")));
    assert_eq!(names(&taken(&mut early)), ["a", "b", "c"], "the early subscriber got the same changes");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_sent_the_whole_cache_and_the_deletions_it_missed() {
    let (informer, sender, mut events) = informer(4);
    list(&sender, &mut events, &["a"]).await;
    let mut subscription = informer.subscribe();
    assert_eq!(names(&taken(&mut subscription)), ["a"]);
    for n in 0..10 {
        if n == 2 {
            feed(&sender, &mut events, Event::Delete(object("a"))).await;
        }
        feed(&sender, &mut events, Event::Apply(object(&format!("x{n}")))).await;
        assert!(waiting(&subscription) <= 4, "the backlog stays bounded");
    }
    let expected: Vec<String> = std::iter::once("a".to_owned()).chain((0..10).map(|n| format!("x{n}"))).collect();
    assert_eq!(names(&taken(&mut subscription)), expected, "every object the cache holds, and the deleted one");
    assert_eq!(names(&informer.store().state()), expected[1..], "the cache no longer holds the deleted one");
}

#[tokio::test]
async fn a_relisting_sends_each_subscriber_the_cache_it_replaced() {
    let (informer, sender, mut events) = informer(BACKLOG);
    list(&sender, &mut events, &["a", "b"]).await;
    let mut subscription = informer.subscribe();
    assert_eq!(names(&taken(&mut subscription)), ["a", "b"]);
    list(&sender, &mut events, &["b", "c"]).await;
    assert_eq!(names(&taken(&mut subscription)), ["b", "c"]);
}

#[tokio::test]
async fn a_dropped_subscriber_is_forgotten_and_the_others_go_on() {
    let (informer, sender, mut events) = informer(BACKLOG);
    list(&sender, &mut events, &["a"]).await;
    let mut kept = informer.subscribe();
    let dropped = informer.subscribe();
    assert_eq!(lock(&informer.fanout.subscribers).backlogs.len(), 2);
    drop(dropped);
    feed(&sender, &mut events, Event::Apply(object("b"))).await;
    assert_eq!(lock(&informer.fanout.subscribers).backlogs.len(), 1, "the dropped one's backlog is gone");
    assert_eq!(names(&taken(&mut kept)), ["a", "b"]);
}

#[test]
fn the_watch_never_waits_for_a_subscriber() {
    let listing = (0..1000).map(|n| Event::InitApply(object(&format!("o{n}"))));
    let changes = (0..1000).map(|n| Event::Apply(object(&format!("o{n}"))));
    let all: Vec<_> =
        std::iter::once(Event::Init).chain(listing).chain([Event::InitDone]).chain(changes).map(Ok).collect();
    let (store, writer) = reflector::store();
    let (informer, events) = Informer::fed_by(store, writer, futures::stream::iter(all), 8);
    let mut idle = informer.subscribe();
    let handled = events.count().now_or_never().expect("the watch never waited");
    assert_eq!(handled, 1002 + 1000);
    assert!(waiting(&idle) <= 8, "the idle subscriber's backlog stayed bounded: {}", waiting(&idle));
    assert_eq!(names(&taken(&mut idle)).len(), 1000, "it is sent the whole cache when it looks");
}

#[tokio::test]
async fn a_waiting_subscriber_is_woken_by_a_change_and_ends_when_the_watch_stops() {
    let (informer, sender, mut events) = informer(BACKLOG);
    list(&sender, &mut events, &[]).await;
    let mut subscription = informer.subscribe();
    let backlog = subscription.backlog.clone();
    let next = tokio::spawn(async move {
        let first = subscription.next().await;
        (first, subscription)
    });
    while lock(&backlog).waker.is_none() {
        tokio::task::yield_now().await;
    }
    feed(&sender, &mut events, Event::Apply(object("a"))).await;
    let (first, mut subscription) =
        tokio::time::timeout(Duration::from_secs(10), next).await.expect("woken").expect("task");
    assert_eq!(first.and_then(|o| o.metadata.name.clone()).as_deref(), Some("a"));
    feed(&sender, &mut events, Event::Apply(object("b"))).await;
    drop(events);
    assert_eq!(subscription.next().await.and_then(|o| o.metadata.name.clone()).as_deref(), Some("b"));
    assert!(subscription.next().await.is_none(), "ends once what was queued is taken");
    let mut after = informer.subscribe();
    assert_eq!(names(&taken(&mut after)), ["a", "b"], "the cache as the watch left it");
    assert!(after.next().await.is_none());
}
