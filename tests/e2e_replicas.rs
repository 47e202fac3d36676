//! Two operator replicas on the real control plane, behind a loopback forwarder standing in for
//! their Service (the webhook configurations call it; it sends each connection to a ready
//! replica). Exactly one leads; the leader killed in the middle of a backup, the other takes over
//! within the lease duration and finishes the backup exactly once, while creates keep being
//! admitted. Own control plane: the replicas and the Lease are this test's alone.

mod support;

use apimanager_backup_operator::api::backup::{
    APIManagerBackup, APIManagerBackupSpec, BackupDestination, PersistentVolumeClaimDestination,
    PersistentVolumeClaimResources,
};
use apimanager_backup_operator::local::forwarder::Forwarder;
use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{create_backup, eventually, finished_backup, namespace_with_installation, start_cluster};
use support::https::{client_config, request, sample, scrape};

/// controller-runtime's defaults, which the operator uses.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
const LEASE: &str = "apimanager-backup-operator";

async fn lease(admin: &kube::Client) -> Option<Lease> {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    leases.get_opt(LEASE).await.expect("read the Lease")
}

fn holder(lease: &Option<Lease>) -> Option<String> {
    lease.as_ref().and_then(|l| l.spec.as_ref()).and_then(|s| s.holder_identity.clone())
}

/// Whether exactly `leader` reports leading among `replicas` (name, address) and the Lease names it.
async fn only_leader(admin: &kube::Client, replicas: &[(String, SocketAddr)], leader: &str, ca: &Path) -> bool {
    if holder(&lease(admin).await).as_deref() != Some(leader) {
        return false;
    }
    for (name, address) in replicas {
        let leads = sample(&scrape(*address, ca).await, "apimanager_backup_operator_leader");
        if leads != Some(if name == leader { 1.0 } else { 0.0 }) {
            return false;
        }
    }
    true
}

/// A server-side dry-run create: it passes both webhooks (through the forwarder) and stores
/// nothing, so the only backup that runs is the one under test.
fn probe_backup(n: usize) -> APIManagerBackup {
    APIManagerBackup::new(
        &format!("admission-probe-{n}"),
        APIManagerBackupSpec {
            api_manager_name: None,
            backup_destination: BackupDestination {
                persistent_volume_claim: Some(PersistentVolumeClaimDestination {
                    resources: Some(PersistentVolumeClaimResources { requests: Some(Quantity("1Gi".into())) }),
                    ..PersistentVolumeClaimDestination::default()
                }),
                s3: None,
            },
        },
    )
}

/// One admission attempt: when it started and ended, and the error if it was refused.
struct Attempt {
    started: Instant,
    ended: Instant,
    error: Option<String>,
}

/// Creates (dry run) a backup every 100 ms until `stop` is raised.
fn keep_creating(backups: Api<APIManagerBackup>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Attempt>> {
    tokio::spawn(async move {
        let params = PostParams { dry_run: true, ..PostParams::default() };
        let mut attempts = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            let outcome = backups.create(&params, &probe_backup(attempts.len())).await;
            let error = match outcome {
                Ok(created) if created.spec.api_manager_name.as_deref() == Some("example-apimanager") => None,
                Ok(created) => Some(format!("admitted without the defaulting webhook: {:?}", created.spec)),
                Err(error) => Some(error.to_string()),
            };
            attempts.push(Attempt { started, ended: Instant::now(), error });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        attempts
    })
}

/// Records every Pod of `namespace` by uid (name kept), from a watch, until aborted.
fn record_pods(pods: Api<Pod>) -> (Arc<Mutex<BTreeMap<String, String>>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                let (Some(uid), Some(name)) = (pod.metadata.uid, pod.metadata.name) else { continue };
                record.lock().expect("lock").insert(uid, name);
            }
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_finishes_a_killed_leaders_backup_exactly_once_and_admission_never_stops() {
    let (mut cluster, dir) = start_cluster("replicas");
    let ca = cluster.plane.certs.join("ca.crt");
    let mut second = cluster.start_replica(&[]).expect("second replica");
    let forwarder = Forwarder::start(&[cluster.operator.address(), second.address()], &ca).await.expect("forwarder");
    cluster.register_webhooks_at(&forwarder.url).await.expect("webhooks through the forwarder");
    let admin = cluster.admin_client().await.expect("admin client");

    // Exactly one replica leads: the Lease names it, its gauge says 1, the other's 0.
    let replicas = [(cluster.operator.name(), cluster.operator.address()), (second.name(), second.address())];
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_leads = loop {
        if let Some(name) = holder(&lease(&admin).await)
            && only_leader(&admin, &replicas, &name, &ca).await
        {
            break name == replicas[0].0;
        }
        assert!(Instant::now() < deadline, "one replica leads");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let standby = replicas[usize::from(first_leads)].clone();
    // Readiness never depends on leadership: the standby becomes as ready as the leader.
    for (name, address) in &replicas {
        eventually(Duration::from_secs(30), &format!("{name} is ready"), || {
            let ca = ca.clone();
            async move {
                let readyz = request(*address, client_config(&[&ca]), "GET", "/readyz", b"").await;
                (readyz.status, readyz.body.as_str()) == (200, "ok\n")
            }
        })
        .await;
    }
    let leader_address = replicas[usize::from(!first_leads)].1;
    let standby_log = if first_leads { second.log() } else { cluster.operator.log() }.to_owned();

    let ns = namespace_with_installation(&cluster, "takeover").await;
    let (pods_seen, pods_watch) = record_pods(Api::namespaced(admin.clone(), &ns));
    let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
    let paused = cluster.node.pause();
    create_backup(&cluster, &ns, "b");
    let uid = backups.get("b").await.expect("backup").metadata.uid.expect("uid");
    // The backup's first Pod: the inspection of its System FileStorage (held by the paused node).
    let first_pod = format!("inspect-files-{uid}-0");
    eventually(Duration::from_secs(30), "the leader creates the backup's first Pod", || {
        let seen = pods_seen.clone();
        let first_pod = first_pod.clone();
        async move { seen.lock().expect("lock").values().any(|name| *name == first_pod) }
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let creating = keep_creating(backups.clone(), stop.clone());
    let before = scrape(leader_address, &ca).await;
    let counted_by_killed_leader = sample(&before, r#"apimanager_backups_total{outcome="succeeded"}"#);
    assert_eq!(counted_by_killed_leader, Some(0.0), "the backup is in progress: {before}");

    let killing = Instant::now();
    if first_leads {
        cluster.operator.kill();
    } else {
        second.kill();
    }
    let killed = Instant::now();
    let last_renewal = lease(&admin).await.and_then(|l| l.spec).and_then(|s| s.renew_time).expect("renewTime");
    let standbys = [standby.clone()];
    eventually(LEASE_DURATION + 2 * RETRY_PERIOD + Duration::from_secs(10), "the standby takes over", || {
        only_leader(&admin, &standbys, &standby.0, &ca)
    })
    .await;
    let takeover = killed.elapsed();
    let taken = lease(&admin).await.and_then(|l| l.spec).expect("Lease");
    let acquired = taken.acquire_time.expect("acquireTime").0.as_millisecond();
    let waited = Duration::from_millis(u64::try_from(acquired - last_renewal.0.as_millisecond()).unwrap_or(0));
    assert!(waited >= LEASE_DURATION, "the standby waited out the lease ({waited:?}), so no two leaders acted");
    assert!(
        takeover <= LEASE_DURATION + 2 * RETRY_PERIOD + Duration::from_secs(3),
        "taken over within the lease duration and its retries: {takeover:?}"
    );
    assert_eq!(taken.lease_transitions, Some(1));
    eprintln!("takeover {takeover:?} after the SIGKILL; Lease unrenewed for {waited:?} before the standby took it");

    drop(paused);
    let backup = finished_backup(&cluster, &ns, "b").await;
    stop.store(true, Ordering::SeqCst);
    let attempts = creating.await.expect("admission loop");
    pods_watch.abort();
    assert_eq!(backup.status.as_ref().and_then(|s| s.completed), Some(true), "{:?}", backup.status);

    // Admission never stopped: every create was admitted, except the ones that met the killed
    // replica's connections as it died (in flight at the SIGKILL, or sent on its open connection
    // before the API server saw it close: "unexpected EOF", which the API server does not retry).
    // From a second after the kill on, every create is admitted.
    let after_kill = attempts.iter().filter(|a| a.started > killed).count();
    assert!(after_kill >= 50, "creates went on during the takeover: {after_kill}");
    let met_the_dying_replica = |a: &Attempt| {
        a.ended >= killing
            && a.started <= killed + Duration::from_secs(1)
            && a.error.as_ref().is_some_and(|e| e.contains("unexpected EOF") || e.contains("connection reset"))
    };
    let refused: Vec<String> = attempts
        .iter()
        .filter(|a| !met_the_dying_replica(a))
        .filter_map(|a| {
            let offset =
                a.started.checked_duration_since(killed).map(|d| format!("+{d:?}")).unwrap_or_else(|| "before".into());
            a.error.as_ref().map(|e| format!("{offset} after the kill: {e}"))
        })
        .collect();
    assert!(refused.is_empty(), "creates refused during the takeover: {refused:?}");
    let at_the_kill = attempts.iter().filter(|a| met_the_dying_replica(a)).count();
    assert!(at_the_kill <= 2, "only requests on the killed replica's connections fail: {at_the_kill}");
    eprintln!(
        "{} creates, {after_kill} of them after the SIGKILL; refused: {at_the_kill}, on the killed replica's connections",
        attempts.len()
    );

    // Exactly once: one BackupCompleted event, one success counted over both replicas, one Pod.
    let events: Api<Event> = Api::namespaced(admin.clone(), &ns);
    let completed: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("BackupCompleted"))
        .collect();
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0].regarding.as_ref().and_then(|r| r.name.as_deref()), Some("b"));
    assert!(completed[0].series.is_none(), "published once, not repeated: {:?}", completed[0].series);
    let after = scrape(standby.1, &ca).await;
    let succeeded = sample(&after, r#"apimanager_backups_total{outcome="succeeded"}"#).expect("counter");
    assert_eq!(counted_by_killed_leader.unwrap_or_default() + succeeded, 1.0, "{after}");
    assert_eq!(sample(&after, r#"apimanager_backups_total{outcome="failed"}"#), Some(0.0));
    assert_eq!(sample(&after, "apimanager_backups_in_progress"), Some(0.0));
    let mut pods: Vec<String> = pods_seen.lock().expect("lock").values().cloned().collect();
    pods.sort_unstable();
    assert_eq!(pods, [format!("backup-{uid}-0"), first_pod], "each Pod once, none created twice");

    // Losing the Lease stops the controller at once: another holder takes it (as after a network
    // partition); the leader sees it at its next renewal and drops its controller.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    loop {
        let mut taken = leases.get(LEASE).await.expect("Lease");
        let spec = taken.spec.get_or_insert_default();
        spec.holder_identity = Some("another-replica".into());
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match leases.replace(LEASE, &PostParams::default(), &taken).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => panic!("taking the Lease: {error}"),
        }
    }
    let address = standby.1;
    eventually(RETRY_PERIOD + Duration::from_secs(3), "the leader stops leading at its next renewal", || {
        let ca = ca.clone();
        async move { sample(&scrape(address, &ca).await, "apimanager_backup_operator_leader") == Some(0.0) }
    })
    .await;
    let log = std::fs::read_to_string(&standby_log).expect("log");
    assert!(log.contains("lost the leader Lease: the backup controller stopped"), "{log}");

    drop(forwarder);
    drop(second);
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
