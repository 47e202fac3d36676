//! The election rules against an in-memory Lease with the API server's optimistic concurrency, on
//! tokio's paused clock (sleeps advance it instantly, so the timings are exact).

use super::lease::fake::FakeLease;
use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// controller-runtime's defaults.
fn settings(identity: &str) -> ElectionSettings {
    ElectionSettings {
        identity: identity.to_owned(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    }
}

fn holder(store: &FakeLease) -> Option<String> {
    store.stored().and_then(|l| l.spec).and_then(|s| s.holder_identity)
}

#[test]
fn timings_must_leave_room_for_renewal() {
    assert!(settings("a").check().is_ok());
    let mut wrong = settings("a");
    wrong.renew_deadline = Duration::from_secs(15);
    assert_eq!(
        wrong.check().expect_err("renew deadline = lease duration").to_string(),
        "leader election timings: need lease duration (15s) > renew deadline (15s) > retry period (2s) > 0"
    );
    wrong = settings("a");
    wrong.retry_period = Duration::ZERO;
    assert!(wrong.check().is_err());
}

#[tokio::test(start_paused = true)]
async fn the_first_candidate_creates_the_lease_and_leads() {
    let store = FakeLease::default();
    let mut a = Elector::new(store.clone(), settings("a"));
    assert_eq!(a.attempt().await.expect("attempt"), Attempt::Leading);
    let spec = store.stored().and_then(|l| l.spec).expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("a"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_held_lease_is_taken_only_after_its_holder_stopped_renewing_for_the_lease_duration() {
    let store = FakeLease::default();
    let mut a = Elector::new(store.clone(), settings("a"));
    let mut b = Elector::new(store.another_client(), settings("b"));
    assert_eq!(a.attempt().await.expect("a"), Attempt::Leading);
    // While a renews, b never gets in, however long it tries.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(a.attempt().await.expect("a renews"), Attempt::Leading);
        assert_eq!(b.attempt().await.expect("b"), Attempt::HeldBy("a".into()));
    }
    // a stops renewing: b waits the full lease duration from when it saw the last renewal.
    let last_renewal_seen = Instant::now();
    tokio::time::sleep(Duration::from_millis(14_900)).await;
    assert_eq!(b.attempt().await.expect("b"), Attempt::HeldBy("a".into()));
    tokio::time::sleep_until(last_renewal_seen + Duration::from_secs(15)).await;
    assert_eq!(b.attempt().await.expect("b takes over"), Attempt::Leading);
    let spec = store.stored().and_then(|l| l.spec).expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    // a, back, finds b holding the Lease.
    assert_eq!(a.attempt().await.expect("a"), Attempt::HeldBy("b".into()));
}

#[tokio::test(start_paused = true)]
async fn a_standby_counts_the_lease_duration_on_its_own_clock_from_its_first_sight() {
    let store = FakeLease::default();
    let mut a = Elector::new(store.clone(), settings("a"));
    assert_eq!(a.attempt().await.expect("a"), Attempt::Leading);
    // Long after a's last renewal (by the Lease's renewTime), a new standby still waits a full
    // lease duration: it cannot know whether the holder's clock agrees with its own.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut b = Elector::new(store.another_client(), settings("b"));
    assert_eq!(b.attempt().await.expect("b"), Attempt::HeldBy("a".into()));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(b.attempt().await.expect("b"), Attempt::Leading);
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let store = FakeLease::default();
    let mut a = Elector::new(store.clone(), settings("a"));
    let mut b = Elector::new(store.another_client(), settings("b"));
    assert_eq!(a.attempt().await.expect("a"), Attempt::Leading);
    assert_eq!(b.attempt().await.expect("b"), Attempt::HeldBy("a".into()));
    b.release().await.expect("b holds nothing to release");
    assert_eq!(holder(&store).as_deref(), Some("a"), "a standby's release leaves the leader alone");
    a.release().await.expect("a releases");
    assert_eq!(holder(&store), None);
    assert_eq!(b.attempt().await.expect("b"), Attempt::Leading);
}

#[tokio::test(start_paused = true)]
async fn a_write_based_on_a_stale_read_loses() {
    let store = FakeLease::default();
    let mut a = Elector::new(store.clone(), settings("a"));
    assert_eq!(a.attempt().await.expect("a"), Attempt::Leading);
    let stale = store.stored().expect("lease");
    // b read the Lease, then a renewed: b's write with the old resourceVersion must fail.
    assert_eq!(a.attempt().await.expect("a renews"), Attempt::Leading);
    let mut stolen = stale.clone();
    stolen.spec.get_or_insert_default().holder_identity = Some("b".into());
    let error = store.replace(&stolen).await.expect_err("stale resourceVersion");
    assert!(lost_race(&error), "{error}");
    assert_eq!(holder(&store).as_deref(), Some("a"));
}

/// Waits (at most 2 minutes of the paused clock) until `leading` is `value`.
async fn until_leads(leading: &mut watch::Receiver<bool>, value: bool, what: &str) {
    tokio::time::timeout(Duration::from_secs(120), leading.wait_for(|l| *l == value))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 2 minutes"))
        .expect("elector running");
}

/// Starts `elector` and returns whether it leads, and the switch that stops it.
fn spawn(elector: Elector<FakeLease>) -> (watch::Receiver<bool>, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (leading, watched) = watch::channel(false);
    let (release, released) = watch::channel(false);
    (watched, release, tokio::spawn(elector.run(leading, released)))
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_from_the_api_server_steps_down_before_anyone_can_take_over() {
    let store = FakeLease::default();
    let a_client = store.another_client();
    let (mut a_leads, _a_release, _a) = spawn(Elector::new(a_client.clone(), settings("a")));
    until_leads(&mut a_leads, true, "a leads").await;
    let (mut b_leads, _b_release, _b) = spawn(Elector::new(store.another_client(), settings("b")));
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!*b_leads.borrow());

    a_client.unreachable.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    until_leads(&mut a_leads, false, "a steps down").await;
    let stepped_down = cut.elapsed();
    assert!(stepped_down <= Duration::from_secs(10), "within the renew deadline: {stepped_down:?}");
    assert!(!*b_leads.borrow(), "nobody else leads before a has stepped down");
    until_leads(&mut b_leads, true, "b takes over").await;
    let taken_over = cut.elapsed();
    assert!(taken_over > stepped_down, "b after a: {taken_over:?} > {stepped_down:?}");
    assert!(taken_over <= Duration::from_secs(15 + 3), "b within the lease duration and a retry: {taken_over:?}");

    // Back in touch, a finds b leading and stands by.
    a_client.unreachable.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!*a_leads.borrow() && *b_leads.borrow());
    assert_eq!(holder(&store).as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn two_electors_never_lead_at_the_same_time_through_outages() {
    let store = FakeLease::default();
    let clients = [store.another_client(), store.another_client()];
    let mut leads = Vec::new();
    let mut releases = Vec::new();
    for (client, name) in clients.iter().zip(["a", "b"]) {
        let (leading, release, _task) = spawn(Elector::new(client.clone(), settings(name)));
        leads.push(leading);
        releases.push(release);
    }
    let mut leaderships = 0;
    let mut was = [false, false];
    // Each second for 10 minutes, one of the clients loses or regains the API server now and then.
    for second in 0..600u32 {
        if second % 37 == 0 {
            let flaky = &clients[(second / 37 % 2) as usize];
            flaky.unreachable.store(second % 3 != 0, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = [*leads[0].borrow(), *leads[1].borrow()];
        assert!(!(now[0] && now[1]), "two leaders at second {second}");
        leaderships += now.iter().zip(was).filter(|(now, was)| **now && !*was).count();
        was = now;
    }
    assert!(leaderships >= 2, "leadership moved between them: {leaderships}");
}

#[tokio::test(start_paused = true)]
async fn lead_runs_the_controller_only_while_leading_and_drops_it_at_once() {
    let store = FakeLease::default();
    let metrics = crate::metrics::Metrics::new().expect("metrics");
    let gauge = metrics.leader_gauge().expect("gauge");
    let (stop, stopped) = watch::channel(false);
    let running = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    struct Running(Arc<AtomicBool>);
    impl Drop for Running {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let (flag, count) = (running.clone(), starts.clone());
    let shutdown = stopped.clone();
    let leading = tokio::spawn(lead(Elector::new(store.clone(), settings("a")), gauge.clone(), stopped, move || {
        let flag = flag.clone();
        count.fetch_add(1, Ordering::SeqCst);
        let mut shutdown = shutdown.clone();
        async move {
            flag.store(true, Ordering::SeqCst);
            let _guard = Running(flag);
            let _ = shutdown.wait_for(|s| *s).await;
        }
    }));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(running.load(Ordering::SeqCst) && gauge.get() == 1, "the leader runs the controller");

    // Another replica takes the Lease (as after a partition): the controller is dropped at the
    // next renewal, within one retry period.
    let mut taken = store.stored().expect("lease");
    taken.spec.get_or_insert_default().holder_identity = Some("b".into());
    store.overwrite(&taken);
    tokio::time::sleep(Duration::from_secs(2) + Duration::from_millis(10)).await;
    assert!(!running.load(Ordering::SeqCst), "the controller stopped");
    assert_eq!(gauge.get(), 0);

    // b goes away; a takes the Lease back after it expires and starts a fresh controller.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(running.load(Ordering::SeqCst) && gauge.get() == 1);
    assert_eq!(starts.load(Ordering::SeqCst), 2);

    stop.send_replace(true);
    leading.await.expect("lead ends");
    assert!(!running.load(Ordering::SeqCst));
    assert_eq!(holder(&store), None, "the Lease is released after the controller stopped");
}
