//! Nothing lost, nothing done twice, under faults: two operator replicas on the real control
//! plane, each talking to the API server through a fault proxy of its own
//! (`apimanager_backup_operator::local::faults`), the webhooks behind a loopback forwarder. Each
//! test scripts the faults and checks a property users rely on (docs/faults.md). The replicas, the
//! proxies and the Lease are this binary's alone; its tests run one at a time, on one runtime that
//! outlives each test (the proxies and the forwarder run on it).

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::job::manifest::{Manifest, hash_file};
use apimanager_backup_operator::local::faults::{FaultCounts, FaultProxy, FaultSpec, PartitionMode};
use apimanager_backup_operator::local::forwarder::Forwarder;
use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use apimanager_backup_operator::local::{LocalCluster, OperatorProcess, process};
use apimanager_backup_operator::names::managed_by_selector;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::admission::{create_review, sized_spec};
use support::cluster::{
    apimanager_yaml, delete_restorable, eventually, finished_backup, kubectl_ok, namespace,
    namespace_with_installation, start_cluster,
};
use support::https::{client_config, request, sample, scrape};
use support::restore::{create_restore, finished_restore};

/// The operator's leader election (client-go's defaults).
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
const LEASE: &str = "apimanager-backup-operator";

/// Backups of the mixed-faults test: `NAMESPACES` installations, `PER_NAMESPACE` backups of each,
/// all at once: the 100 of the issue (docs/faults.md has the time they take on two cores).
const NAMESPACES: usize = 4;
const PER_NAMESPACE: usize = 25;
/// Restores of the mixed-faults test, each into one of the installations once it is backed up.
const RESTORES: usize = 2;

/// One replica: the operator process and the proxy it talks to the API server through.
struct Replica {
    name: String,
    address: SocketAddr,
    proxy: FaultProxy,
    /// Where its proxy connects from: its requests in the audit log.
    source: IpAddr,
}

/// The cluster of this binary: two replicas behind their proxies, the webhooks behind a forwarder.
struct Faulty {
    cluster: LocalCluster,
    _second: OperatorProcess,
    replicas: [Replica; 2],
    _forwarder: Forwarder,
}

impl Faulty {
    async fn start() -> Self {
        let (mut cluster, dir) = start_cluster("faults");
        process::remove_at_exit(&dir);
        let sources = [IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3])];
        let mut proxies = Vec::new();
        for source in sources {
            proxies.push(cluster.fault_proxy(Some(source), FaultSpec::default()).await.expect("fault proxy"));
        }
        let first = cluster.kubeconfig_via(&proxies[0].url, "operator-a").expect("kubeconfig");
        let second = cluster.kubeconfig_via(&proxies[1].url, "operator-b").expect("kubeconfig");
        cluster.restart_operator_via(&first, &[]).await.expect("the operator behind its proxy");
        let mut second = cluster.start_replica_via(&second, &[]).expect("second replica");
        second.wait_until_ready(Duration::from_secs(60)).await.expect("second replica ready");
        let ca = cluster.plane.certs.join("ca.crt");
        let forwarder =
            Forwarder::start(&[cluster.operator.address(), second.address()], &ca).await.expect("forwarder");
        cluster.register_webhooks_at(&forwarder.url).await.expect("webhooks through the forwarder");
        let mut proxies = proxies.into_iter();
        let mut replica = |process: &OperatorProcess, source| Replica {
            name: process.name(),
            address: process.address(),
            proxy: proxies.next().expect("a proxy per replica"),
            source,
        };
        let replicas = [replica(&cluster.operator, sources[0]), replica(&second, sources[1])];
        Self { cluster, _second: second, replicas, _forwarder: forwarder }
    }

    fn ca(&self) -> PathBuf {
        self.cluster.plane.certs.join("ca.crt")
    }

    /// Puts `spec` in force on both proxies (each with a seed of its own).
    fn faults(&self, spec: &str) {
        for (n, replica) in self.replicas.iter().enumerate() {
            let mut spec: FaultSpec = spec.parse().expect("fault spec");
            spec.seed += n as u64;
            replica.proxy.set(spec);
        }
    }

    fn counts(&self) -> FaultCounts {
        self.replicas[0].proxy.counts().plus(&self.replicas[1].proxy.counts())
    }

    /// The sum of `series` over both replicas' `/metrics`.
    async fn metric(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for replica in &self.replicas {
            sum += sample(&scrape(replica.address, &self.ca()).await, series).unwrap_or(0.0);
        }
        sum
    }

    /// The index of the replica the Lease names and whose gauge says it leads, the other's saying not.
    async fn leader(&self) -> Option<usize> {
        let admin = self.cluster.admin_client().await.expect("client");
        let holder =
            Api::<Lease>::namespaced(admin, OPERATOR_NAMESPACE).get_opt(LEASE).await.ok()??.spec?.holder_identity?;
        let index = self.replicas.iter().position(|r| r.name == holder)?;
        for (n, replica) in self.replicas.iter().enumerate() {
            let leads = sample(&scrape(replica.address, &self.ca()).await, "apimanager_backup_operator_leader");
            if leads != Some(if n == index { 1.0 } else { 0.0 }) {
                return None;
            }
        }
        Some(index)
    }

    /// The index of the replica that leads, once one does.
    async fn one_leads(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(leader) = self.leader().await {
                return leader;
            }
            assert!(Instant::now() < deadline, "one replica leads");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The runtime of this binary's tests and of what they share.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
    })
}

/// Runs `test` with the cluster of this binary, one test at a time.
fn with_cluster<F, Fut>(test: F)
where
    F: FnOnce(&'static Faulty) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    static CLUSTER: OnceLock<Faulty> = OnceLock::new();
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    runtime().block_on(async {
        if CLUSTER.get().is_none() {
            let faulty = Faulty::start().await;
            let _ = CLUSTER.set(faulty);
        }
        let faulty = CLUSTER.get().expect("cluster");
        faulty.faults("");
        test(faulty).await;
        faulty.faults("");
    });
}

fn backup_yaml(name: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n"
    )
}

/// The step Pods seen: by name, the uids of the Pods of that name.
type PodsSeen = Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>;

/// Records every step Pod of the cluster from a watch, until aborted.
fn record_pods(admin: kube::Client) -> (PodsSeen, tokio::task::JoinHandle<()>) {
    let seen = PodsSeen::default();
    let record = seen.clone();
    let pods: Api<Pod> = Api::all(admin);
    let config = watcher::Config::default().labels(&managed_by_selector());
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(pods, config).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                let (Some(uid), Some(name)) = (pod.metadata.uid, pod.metadata.name) else { continue };
                record.lock().expect("lock").entry(name).or_default().insert(uid);
            }
        }
    });
    (seen, task)
}

/// Dry-run creates of a backup naming no APIManager in `namespace` (one there: both webhooks
/// admit it, the defaulting one naming it) every 250 ms until `stop`; returns each refusal.
fn keep_admitting(
    admin: kube::Client,
    namespace: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, Vec<String>)> {
    let backups: Api<APIManagerBackup> = Api::namespaced(admin, namespace);
    tokio::spawn(async move {
        let params = PostParams { dry_run: true, ..PostParams::default() };
        let (mut attempts, mut refused) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let probe: APIManagerBackup =
                serde_saphyr::from_str(&backup_yaml(&format!("probe-{attempts}"))).expect("probe");
            match backups.create(&params, &probe).await {
                Ok(created) if created.spec.api_manager_name.as_deref() == Some("example-apimanager") => {}
                Ok(created) => refused.push(format!("admitted without defaulting: {:?}", created.spec)),
                Err(error) => refused.push(error.to_string()),
            }
            attempts += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (attempts, refused)
    })
}

/// Every file of `source` (the System FileStorage) has the same bytes in the backup at `root`,
/// and every file the backup's manifest lists hashes as listed.
fn assert_backup_equals_source(root: &Path, source: &Path) {
    let manifest = Manifest::load(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    for entry in &manifest.files {
        assert_eq!(&hash_file(&root.join(&entry.path), &entry.path).expect("hash"), entry, "{}", root.display());
    }
    let mut pending = vec![source.to_owned()];
    let mut files = 0;
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("source folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(source).expect("under the source");
            let copied = root.join("system-filestorage-pvc").join(relative);
            assert_eq!(std::fs::read(&copied).ok(), std::fs::read(&path).ok(), "{}", copied.display());
            files += 1;
        }
    }
    assert!(files >= 2, "the sample's files were compared: {files}");
}

/// The `BackupCompleted` events of `namespace`, by backup name.
async fn completions(admin: &kube::Client, namespace: &str) -> BTreeMap<String, usize> {
    let events: Api<Event> = Api::namespaced(admin.clone(), namespace);
    let mut counted = BTreeMap::new();
    for event in events.list(&ListParams::default()).await.expect("events").items {
        if event.reason.as_deref() == Some("BackupCompleted") {
            assert!(event.series.is_none(), "published once, not repeated: {event:?}");
            let name = event.regarding.and_then(|r| r.name).unwrap_or_default();
            *counted.entry(name).or_insert(0) += 1;
        }
    }
    counted
}

#[test]
fn under_mixed_faults_every_backup_and_restore_finishes_once_and_admission_refuses_nothing() {
    with_cluster(|faulty| async move {
        let cluster = &faulty.cluster;
        let admin = cluster.admin_client().await.expect("client");
        let mut namespaces = Vec::new();
        for n in 0..NAMESPACES {
            namespaces.push(namespace_with_installation(cluster, &format!("mixed-{n}")).await);
        }
        let succeeded = r#"apimanager_backups_total{outcome="succeeded"}"#;
        let failed = r#"apimanager_backups_total{outcome="failed"}"#;
        let (succeeded_before, failed_before) = (faulty.metric(succeeded).await, faulty.metric(failed).await);
        let (pods_seen, pods_watch) = record_pods(admin.clone());
        let counts_before = faulty.counts();
        let started = Instant::now();
        faulty.faults("errors=10%,delay=20ms,stall=2s,drop-watches=10s,seed=25");
        let stop = Arc::new(AtomicBool::new(false));
        // In an installation no restore empties (a restore deletes the APIManager first).
        let admitting = keep_admitting(admin.clone(), &namespaces[NAMESPACES - 1], stop.clone());

        // Every backup at once, through both webhooks.
        let creates = namespaces.iter().flat_map(|ns| (0..PER_NAMESPACE).map(move |n| (ns.clone(), format!("b{n}"))));
        let created = futures::future::join_all(creates.map(|(ns, name)| {
            let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
            async move {
                let backup: APIManagerBackup = serde_saphyr::from_str(&backup_yaml(&name)).expect("backup");
                backups.create(&PostParams::default(), &backup).await.map(|_| (ns, name))
            }
        }))
        .await;
        let created: Vec<(String, String)> =
            created.into_iter().map(|c| c.unwrap_or_else(|e| panic!("a backup create was refused: {e}"))).collect();
        let mut finished = Vec::new();
        for (ns, name) in &created {
            finished.push(finished_backup_within(cluster, ns, name, Duration::from_secs(600)).await);
        }
        let backups_took = started.elapsed();

        // A few restores, the faults still on: each installation emptied, then restored from its
        // first backup.
        for ns in namespaces.iter().take(RESTORES) {
            delete_restorable(cluster, ns).await;
            create_restore(cluster, ns, "back", "b0");
        }
        let mut restores = Vec::new();
        for ns in namespaces.iter().take(RESTORES) {
            restores.push(finished_restore(cluster, ns, "back").await);
        }
        stop.store(true, Ordering::SeqCst);
        let (attempts, refused) = admitting.await.expect("admission loop");
        let injected = faulty.counts().since(&counts_before);
        faulty.faults("");
        let took = started.elapsed();

        // Each backup completed, none failed.
        for backup in &finished {
            let status = backup.status.clone().expect("status");
            assert_eq!(status.completed, Some(true), "{:?}: {:?}", backup.metadata.name, status.conditions);
            assert!(!status.conditions.iter().any(|c| c.type_ == "Failed"), "{:?}", status.conditions);
        }
        for restore in &restores {
            let status: Option<&apimanager_backup_operator::api::restore::APIManagerRestoreStatus> =
                restore.status.as_ref();
            assert_eq!(status.and_then(|s| s.completed), Some(true), "{:?}", restore.status);
        }
        // Exactly once: one completion event each, the counters moved once each.
        let mut completed = 0;
        for ns in &namespaces {
            let events = completions(&admin, ns).await;
            let expected: BTreeMap<String, usize> = (0..PER_NAMESPACE).map(|n| (format!("b{n}"), 1)).collect();
            assert_eq!(events, expected, "one BackupCompleted event per backup in {ns}");
            completed += events.values().sum::<usize>();
        }
        let counted = faulty.metric(succeeded).await - succeeded_before;
        assert_eq!(counted, (NAMESPACES * PER_NAMESPACE) as f64, "the completed counter moved once per backup");
        assert_eq!(faulty.metric(failed).await - failed_before, 0.0, "no backup failed");
        // The files equal the source: the restored installations' storage was emptied and brought
        // back, so the backups of the others are compared.
        for ns in namespaces.iter().skip(RESTORES) {
            for n in 0..PER_NAMESPACE {
                assert_backup_equals_source(
                    &cluster.volume(ns, &format!("b{n}")),
                    &cluster.volume(ns, "system-storage"),
                );
            }
        }
        // No step Pod created twice, and none, nor any Role or RoleBinding, left behind.
        pods_watch.abort();
        let duplicates: Vec<(String, BTreeSet<String>)> =
            pods_seen.lock().expect("lock").clone().into_iter().filter(|(_, uids)| uids.len() > 1).collect();
        assert_eq!(duplicates, [], "a Pod name created twice");
        let pods_created = pods_seen.lock().expect("lock").len();
        let managed = ListParams::default().labels(&managed_by_selector());
        let mut leaks = Vec::new();
        for ns in &namespaces {
            let (pods, roles, bindings): (Api<Pod>, Api<Role>, Api<RoleBinding>) = (
                Api::namespaced(admin.clone(), ns),
                Api::namespaced(admin.clone(), ns),
                Api::namespaced(admin.clone(), ns),
            );
            eventually(Duration::from_secs(60), &format!("no step Pod, Role or RoleBinding left in {ns}"), || async {
                pods.list(&managed).await.expect("pods").items.is_empty()
                    && roles.list(&managed).await.expect("roles").items.is_empty()
                    && bindings.list(&managed).await.expect("bindings").items.is_empty()
            })
            .await;
            leaks.extend(pods.list(&managed).await.expect("pods").items.into_iter().filter_map(|p| p.metadata.name));
        }
        // Admission answered every create, from its cache, through all of it.
        assert!(attempts >= 20, "creates went on during the run: {attempts}");
        assert_eq!(refused, Vec::<String>::new(), "dry-run creates refused under faults");
        // The faults happened, every kind of them, and the operator counted what it met.
        for (kind, count) in [
            ("429", injected.too_many_requests),
            ("500", injected.internal_errors),
            ("503", injected.unavailable),
            ("reset", injected.resets),
            ("stall", injected.stalls),
            ("lost answer", injected.lost_answers),
            ("watch dropped", injected.watches_dropped),
        ] {
            assert!(count > 0, "no {kind} fault was injected: {injected:?}");
        }
        let mut errors = BTreeMap::new();
        for replica in &faulty.replicas {
            for line in scrape(replica.address, &faulty.ca()).await.lines() {
                if let Some(series) = line.strip_prefix("apimanager_backup_operator_reconcile_errors_total{") {
                    let (labels, value) = series.split_once("} ").expect("a sample");
                    *errors.entry(labels.to_owned()).or_insert(0.0) += value.parse::<f64>().expect("a number");
                }
            }
        }
        assert!(!errors.is_empty(), "the reconcile errors the faults caused are counted");
        eprintln!(
            "mixed faults: {} backups and {RESTORES} restores in {took:?} (backups done in {backups_took:?}); {} requests through the proxies, {} faults injected: {}; reconcile errors counted {errors:?}; {completed} completions, 0 duplicates ({pods_created} step Pods, each created once), {} leaks; {attempts} dry-run creates admitted, {} refused",
            created.len(),
            injected.requests,
            injected.injected(),
            serde_json::to_string(&injected).expect("json"),
            leaks.len(),
            refused.len(),
        );
    });
}

/// [`finished_backup`] with a longer patience, for backups run under faults.
async fn finished_backup_within(
    cluster: &LocalCluster,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> APIManagerBackup {
    let admin = cluster.admin_client().await.expect("admin client");
    let api = Api::namespaced(admin, namespace);
    apimanager_backup_operator::local::session::wait_for_backup(&api, name, timeout).await.expect("backup finishes")
}

/// The answer of the replica at `address` to `review` on `path`.
async fn admit(address: SocketAddr, ca: &Path, path: &str, review: Vec<u8>) -> serde_json::Value {
    let reply = request(address, client_config(&[ca]), "POST", path, &review).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let review: serde_json::Value = serde_json::from_str(&reply.body).expect("AdmissionReview");
    review["response"].clone()
}

const VALIDATE: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerbackup";
const MUTATE: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerbackup";

/// Whether each replica's webhooks answer as caches equal to the API server's state would:
/// `kept` allowed, `deleted` and `changed` refused (a stale cache would allow them without asking
/// the API server), and a backup naming none in `alone`'s namespace defaulted to `added`, the one
/// there (defaulting reads the cache alone).
async fn caches_agree(faulty: &Faulty, ns: &str, alone: &str) -> bool {
    let ca = faulty.ca();
    for replica in &faulty.replicas {
        let allowed = |answer: serde_json::Value| answer["allowed"] == true;
        if !allowed(admit(replica.address, &ca, VALIDATE, create_review(ns, sized_spec(Some("kept")))).await)
            || allowed(admit(replica.address, &ca, VALIDATE, create_review(ns, sized_spec(Some("deleted")))).await)
            || allowed(admit(replica.address, &ca, VALIDATE, create_review(ns, sized_spec(Some("changed")))).await)
        {
            return false;
        }
        let defaulted = admit(replica.address, &ca, MUTATE, create_review(alone, sized_spec(None))).await;
        let Some(patch) = defaulted["patch"].as_str() else { return false };
        let patch = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, patch).expect("base64");
        if !String::from_utf8_lossy(&patch).contains(r#""value":"added""#) {
            return false;
        }
    }
    true
}

#[test]
fn a_watch_answered_410_gone_relists_and_loses_no_change() {
    with_cluster(|faulty| async move {
        let cluster = &faulty.cluster;
        let ns = namespace(cluster, "relist");
        let alone = namespace(cluster, "relist-alone");
        for name in ["kept", "deleted", "changed"] {
            kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml(name, true));
        }
        let ca = faulty.ca();
        for replica in &faulty.replicas {
            let (address, ca) = (replica.address, ca.clone());
            eventually(Duration::from_secs(30), "both replicas' caches hold the APIManagers", || {
                let ca = ca.clone();
                async move {
                    admit(address, &ca, VALIDATE, create_review("relist", sized_spec(Some("deleted")))).await["allowed"]
                        == true
                }
            })
            .await;
        }
        let errors = r#"apimanager_backup_operator_watch_errors_total{kind="APIManager"}"#;
        let errors_before = faulty.metric(errors).await;
        let before = faulty.counts();
        // Every watch resuming from a resourceVersion is answered 410 Gone, and each is cut after
        // 2 s, so the caches learn every change below from a fresh list, never from a watch event.
        faulty.faults("gone=100%,drop-watches=2s");
        let answered_gone = || faulty.replicas.iter().all(|r| r.proxy.counts().gone >= 2);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !answered_gone() {
            let counts: Vec<FaultCounts> = faulty.replicas.iter().map(|r| r.proxy.counts()).collect();
            assert!(Instant::now() < deadline, "watches of both replicas are answered 410 Gone: {counts:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        kubectl_ok(cluster, &["-n", &ns, "delete", "apimanager", "deleted"], "");
        let patch = serde_json::json!({"spec": {"externalComponents": {"system": {"database": false}}}});
        let apimanagers: Api<kube::api::DynamicObject> = Api::namespaced_with(
            cluster.admin_client().await.expect("client"),
            &ns,
            &kube::api::ApiResource::erase::<apimanager_backup_operator::api::apimanager::APIManager>(&()),
        );
        apimanagers.patch("changed", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
        kubectl_ok(cluster, &["-n", &alone, "create", "-f", "-"], &apimanager_yaml("added", true));
        let changed = Instant::now();
        eventually(Duration::from_secs(90), "both replicas' caches equal the API server's state", || {
            caches_agree(faulty, &ns, &alone)
        })
        .await;
        let converged = changed.elapsed();
        let injected = faulty.counts().since(&before);
        faulty.faults("");
        assert!(
            faulty.metric(errors).await > errors_before,
            "the APIManager watches' 410s are counted as their watch errors"
        );
        eprintln!(
            "410 Gone: caches equal to the API server {converged:?} after the changes; {} watches answered 410, {} cut",
            injected.gone, injected.watches_dropped
        );
    });
}

/// One write of the operator's ServiceAccount in the API server's audit log.
#[derive(Debug)]
struct Write {
    received: jiff::Timestamp,
    verb: String,
    resource: String,
    code: i64,
    from: Vec<String>,
}

fn audited_writes(log: &Path) -> Vec<Write> {
    let text = std::fs::read_to_string(log).expect("audit log");
    text.lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("an audit event");
            let text = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
            Write {
                received: text(&event["requestReceivedTimestamp"]).parse().expect("a timestamp"),
                verb: text(&event["verb"]),
                resource: text(&event["objectRef"]["resource"]),
                code: event["responseStatus"]["code"].as_i64().unwrap_or_default(),
                from: event["sourceIPs"].as_array().into_iter().flatten().map(text).collect(),
            }
        })
        .collect()
}

#[test]
fn a_partitioned_leader_stops_within_its_renew_deadline_and_the_standby_finishes_its_backup_once() {
    with_cluster(|faulty| async move {
        let cluster = &faulty.cluster;
        let admin = cluster.admin_client().await.expect("client");
        let leader = faulty.one_leads().await;
        let (old, standby) = (&faulty.replicas[leader], &faulty.replicas[1 - leader]);
        let ns = namespace_with_installation(cluster, "partition").await;
        let (pods_seen, pods_watch) = record_pods(admin.clone());
        let paused = cluster.node.pause();
        kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_yaml("b"));
        let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &ns);
        let uid = backups.get("b").await.expect("backup").metadata.uid.expect("uid");
        let first_pod = format!("inspect-files-{uid}-0");
        eventually(Duration::from_secs(30), "the leader creates the backup's first Pod", || async {
            pods_seen.lock().expect("lock").contains_key(&first_pod)
        })
        .await;

        // The leader cut off from the API server for longer than the lease; it still runs.
        let partition = LEASE_DURATION * 2;
        let cut = Instant::now();
        let cut_at = jiff::Timestamp::now();
        old.proxy.partition(PartitionMode::Hang, partition);
        let ca = faulty.ca();
        eventually(RENEW_DEADLINE + Duration::from_secs(2), "the partitioned leader stops leading", || async {
            sample(&scrape(old.address, &ca).await, "apimanager_backup_operator_leader") == Some(0.0)
        })
        .await;
        let stopped = cut.elapsed();
        let index = 1 - leader;
        eventually(LEASE_DURATION + RETRY_PERIOD + Duration::from_secs(3), "the standby takes over", || async {
            faulty.leader().await == Some(index)
        })
        .await;
        let takeover = cut.elapsed();
        drop(paused);
        let backup = finished_backup(cluster, &ns, "b").await;
        assert_eq!(backup.status.as_ref().and_then(|s| s.completed), Some(true), "{:?}", backup.status);

        // Healed, the old leader goes on as a standby (it asks for the Lease every retry period).
        eventually(partition + Duration::from_secs(5), "the partition ends", || async { !old.proxy.partitioned() })
            .await;
        let healed = old.proxy.counts().passed;
        eventually(Duration::from_secs(30), "the healed replica talks to the API server again", || async {
            old.proxy.counts().passed >= healed + 3
        })
        .await;
        assert_eq!(faulty.leader().await, Some(index), "the new leader keeps leading");
        pods_watch.abort();

        // The audit log: the old leader's last renewal before the cut, and nothing written by it
        // after its renew deadline; the new leader did the rest.
        let writes = audited_writes(&cluster.plane.audit_log());
        let from = |replica: &Replica, write: &Write| write.from.contains(&replica.source.to_string());
        let renewed = writes
            .iter()
            .filter(|w| from(old, w) && w.resource == "leases" && w.verb == "update" && w.code == 200)
            .filter(|w| w.received < cut_at)
            .map(|w| w.received)
            .max()
            .expect("the old leader renewed the Lease before the cut");
        let own_deadline = renewed + jiff::SignedDuration::try_from(RENEW_DEADLINE).expect("duration");
        let late: Vec<&Write> = writes.iter().filter(|w| from(old, w) && w.received > own_deadline).collect();
        assert!(late.is_empty(), "the old leader wrote after its renew deadline ({own_deadline}): {late:?}");
        let by_new_leader = writes
            .iter()
            .filter(|w| from(standby, w) && w.received > cut_at && w.resource == "apimanagerbackups")
            .count();
        assert!(by_new_leader > 0, "the new leader wrote the backup's status");

        // Done once: one completion event, each Pod created once.
        assert_eq!(completions(&admin, &ns).await, BTreeMap::from([("b".to_owned(), 1)]));
        let seen = pods_seen.lock().expect("lock").clone();
        let ours: BTreeMap<String, BTreeSet<String>> =
            seen.into_iter().filter(|(name, _)| name.contains(&uid)).collect();
        assert_eq!(ours.keys().cloned().collect::<Vec<_>>(), [format!("backup-{uid}-0"), first_pod]);
        assert!(ours.values().all(|uids| uids.len() == 1), "each Pod created once: {ours:?}");
        let injected = old.proxy.counts().partitioned;
        eprintln!(
            "partition of {partition:?}: the leader stopped after {stopped:?} (renew deadline {RENEW_DEADLINE:?}), the standby led after {takeover:?}; {injected} requests, connections or streams cut; {} writes of the old leader audited before its deadline, 0 after",
            writes.iter().filter(|w| from(old, w)).count()
        );
    });
}

#[test]
fn an_end_the_leader_could_not_announce_is_announced_once_by_the_replica_taking_over() {
    with_cluster(|faulty| async move {
        let leader = faulty.one_leads().await;
        let (old, index) = (&faulty.replicas[leader], 1 - leader);
        let cluster = &faulty.cluster;
        let admin = cluster.admin_client().await.expect("client");
        let ns = namespace_with_installation(cluster, "takeover").await;
        let succeeded = r#"apimanager_backups_total{outcome="succeeded"}"#;
        let before = faulty.metric(succeeded).await;

        // Every event the leader sends is answered 500: it writes the backup's end, and cannot
        // announce it.
        old.proxy.set("errors=100%,kinds=500,on=create:events".parse().expect("fault spec"));
        kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_yaml("b"));
        let backup = finished_backup(cluster, &ns, "b").await;
        assert_eq!(backup.status.as_ref().and_then(|s| s.completed), Some(true), "{:?}", backup.status);
        let refused = || old.proxy.counts().internal_errors;
        eventually(Duration::from_secs(30), "the leader tries the end event and fails", || async {
            // 6 tries of each Pod's JobCreated event, then 6 of the end's.
            refused() >= 18
        })
        .await;
        assert_eq!(completions(&admin, &ns).await, BTreeMap::new(), "not announced");
        assert_eq!(faulty.metric(succeeded).await, before, "not counted");

        // The leader cut off; the standby takes over and finds the end unannounced.
        let partition = LEASE_DURATION * 2;
        let cut = Instant::now();
        old.proxy.partition(PartitionMode::Hang, partition);
        eventually(LEASE_DURATION + RETRY_PERIOD + Duration::from_secs(5), "the standby takes over", || async {
            faulty.leader().await == Some(index)
        })
        .await;
        eventually(Duration::from_secs(30), "the new leader announces the end", || async {
            completions(&admin, &ns).await == BTreeMap::from([("b".to_owned(), 1)])
        })
        .await;
        let announced = cut.elapsed();
        assert_eq!(faulty.metric(succeeded).await, before + 1.0, "counted once");

        // Healed, the old leader is a standby, owing an announcement it never makes.
        eventually(partition + Duration::from_secs(5), "the partition ends", || async { !old.proxy.partitioned() })
            .await;
        old.proxy.set(FaultSpec::default());
        let healed = old.proxy.counts().passed;
        eventually(Duration::from_secs(30), "the healed replica talks to the API server again", || async {
            old.proxy.counts().passed >= healed + 3
        })
        .await;
        assert_eq!(faulty.leader().await, Some(index), "the new leader keeps leading");
        assert_eq!(completions(&admin, &ns).await, BTreeMap::from([("b".to_owned(), 1)]), "one completion event");
        assert_eq!(faulty.metric(succeeded).await, before + 1.0, "counted once over both replicas");
        eprintln!(
            "takeover: the end announced {announced:?} after the leader was cut off; {} event creates of the old leader answered 500",
            refused()
        );
    });
}
