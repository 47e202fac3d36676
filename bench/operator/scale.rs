//! Reconcile at scale: N backups created at once over ten namespaces, each holding the sample 3scale
//! installation; the time until every one has ended, and what it cost the API server.

use crate::measure::{self, RequestCounts};
use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::api::status::OperationStatus;
use apimanager_backup_operator::local::{LocalCluster, install, session};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Label marking the backups of one round.
const ROUND_LABEL: &str = "bench-round";
/// Namespaces the backups are spread over.
pub const NAMESPACES: usize = 10;
/// How long a round may take before the bench gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(900);

/// The processes whose CPU time a round reports, in [`Round::cpu`]'s order.
pub const CPU_CONSUMERS: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "operator",
    "bench (node stand-in, 3scale-operator stand-in, watch)",
    "step Pods' processes (run by the node stand-in)",
];

/// CPU seconds so far of each of [`CPU_CONSUMERS`].
fn cpu_seconds(cluster: &LocalCluster) -> [f64; CPU_CONSUMERS.len()] {
    let [etcd, apiserver, controller_manager] = cluster.plane.pids();
    [
        measure::cpu_seconds(etcd),
        measure::cpu_seconds(apiserver),
        measure::cpu_seconds(controller_manager),
        measure::cpu_seconds(cluster.operator.pid()),
        measure::cpu_seconds(std::process::id()),
        measure::ended_children_cpu_seconds(),
    ]
}

/// What one round measured.
pub struct Round {
    /// Backups created.
    pub n: usize,
    /// Seconds from the first create to the last backup's end.
    pub wall: f64,
    /// Backups that ended failed (should be zero).
    pub failed: usize,
    /// API requests during the round, watches left out.
    pub requests: RequestCounts,
    /// Requests on APIManagerBackups (and their status) that the bench itself sent.
    pub bench_backup_requests: f64,
    /// Share of the machine's cores busy over the round.
    pub machine_busy: f64,
    /// CPU seconds over the round of each of [`CPU_CONSUMERS`].
    pub cpu: [f64; CPU_CONSUMERS.len()],
    /// Operator peak RSS during the round, KiB.
    pub operator_peak_kib: u64,
}

/// Creates the ten namespaces with the sample installation; returns their names.
pub async fn prepare(cluster: &LocalCluster, admin: &kube::Client) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut names = Vec::new();
    for i in 0..NAMESPACES {
        let name = format!("bench-scale-{i}");
        install::ensure_namespace(admin, &name).await?;
        session::seed_file_storage(&cluster.volume(&name, "system-storage"))?;
        install::apply_yaml(admin, session::SAMPLE_INSTALLATION, &name).await?;
        names.push(name);
    }
    Ok(names)
}

fn backup(name: &str, round: &str) -> Result<APIManagerBackup, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
        "metadata": {"name": name, "labels": {ROUND_LABEL: round}},
        "spec": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}}}))
}

/// Creates `n` backups at once and waits until all have ended.
pub async fn round(
    cluster: &LocalCluster,
    admin: &kube::Client,
    namespaces: &[String],
    n: usize,
) -> Result<Round, Box<dyn std::error::Error>> {
    let round = format!("n{n}");
    let operator = cluster.operator.pid();
    let before = measure::apiserver_requests(admin).await?;
    let (busy_before, total_before) = measure::machine_jiffies();
    let cpu_before = cpu_seconds(cluster);
    measure::reset_peak(operator);

    let all: Api<APIManagerBackup> = Api::all(admin.clone());
    let selector = format!("{ROUND_LABEL}={round}");
    let mut ended =
        std::pin::pin!(watcher(all, watcher::Config::default().labels(&selector)).default_backoff().applied_objects());
    let started = Instant::now();
    let creates = (0..n).map(|i| {
        let api: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &namespaces[i % namespaces.len()]);
        let object = backup(&format!("{round}-{i}"), &round);
        async move {
            api.create(&PostParams::default(), &object?).await.map(drop).map_err(Box::<dyn std::error::Error>::from)
        }
    });
    for created in futures::future::join_all(creates).await {
        created?;
    }
    let mut done = HashSet::new();
    let mut failed = 0;
    while done.len() < n {
        let next = tokio::time::timeout_at((started + ROUND_TIMEOUT).into(), ended.next()).await;
        let Ok(Some(event)) = next else {
            return Err(format!("round {round}: only {} of {n} backups ended in {ROUND_TIMEOUT:?}", done.len()).into());
        };
        let Ok(backup) = event else { continue };
        let status = backup.status.clone().unwrap_or_default();
        if status.progress().is_final()
            && done.insert(backup.metadata.uid.clone().unwrap_or_default())
            && status.completed != Some(true)
        {
            failed += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let after = measure::apiserver_requests(admin).await?;
    let (busy_after, total_after) = measure::machine_jiffies();
    let cpu_after = cpu_seconds(cluster);
    Ok(Round {
        n,
        wall,
        failed,
        requests: measure::difference(&before, &after),
        // n creates and the bench's own list before its watch.
        bench_backup_requests: n as f64 + 1.0,
        machine_busy: (busy_after - busy_before) as f64 / (total_after - total_before).max(1) as f64,
        cpu: std::array::from_fn(|i| cpu_after[i] - cpu_before[i]),
        operator_peak_kib: measure::status_kib(operator, "VmHWM"),
    })
}

impl Round {
    /// The operator's CPU seconds over the round.
    pub fn operator_cpu(&self) -> f64 {
        self.cpu[3]
    }

    /// The share of the machine's cores the run's own processes kept busy over the round: near the
    /// machine's busy share when nothing else ran; far below it when other work shared the cores.
    pub fn run_share(&self) -> f64 {
        self.cpu.iter().sum::<f64>() / (self.wall * measure::cores() as f64)
    }
}

/// Requests on APIManagerBackups (and their status) in `round`, less the bench's own, per backup:
/// the operator's, and those of any other client that reads them (the API server's counters name
/// no client).
pub fn backup_requests_per_backup(round: &Round) -> f64 {
    let backups: f64 = measure::by_resource(&round.requests)
        .iter()
        .filter(|(resource, _)| resource.starts_with("apimanagerbackups"))
        .map(|(_, count)| count)
        .sum();
    (backups - round.bench_backup_requests) / round.n as f64
}

/// The operator's resident memory, KiB: in all, and of it the anonymous (heap, stacks) and the
/// file-backed (the mapped binary's touched pages) share.
pub struct Resident {
    /// `VmRSS`.
    pub total: u64,
    /// `RssAnon`.
    pub anon: u64,
    /// `RssFile`.
    pub file: u64,
}

/// Makes the operator hold `total` finished backups: adds completed ones (copies of a real
/// finished backup's status) while the operator is stopped, starts it again and returns its RSS
/// once it has settled.
pub async fn rss_with_finished(
    cluster: &mut LocalCluster,
    admin: &kube::Client,
    total: usize,
) -> Result<Resident, Box<dyn std::error::Error>> {
    let all: Api<APIManagerBackup> = Api::all(admin.clone());
    let existing = all.list(&ListParams::default()).await?.items;
    let template = existing
        .iter()
        .find(|b| b.status.as_ref().is_some_and(|s| s.completed == Some(true)))
        .and_then(|b| b.status.clone())
        .ok_or("no completed backup to copy the status of")?;
    let missing = total.saturating_sub(existing.len());
    let namespace = "bench-finished";
    install::ensure_namespace(admin, namespace).await?;
    cluster.operator.terminate(Duration::from_secs(10));
    install::unregister_webhooks(admin).await?;
    let api: Api<APIManagerBackup> = Api::namespaced(admin.clone(), namespace);
    // The API server drops the stopped operator's webhooks a moment after their configurations go.
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.create(&dry_run, &backup("unregistered-probe", "finished")?).await.is_err() {
        if Instant::now() > deadline {
            return Err("the API server still calls the stopped operator's webhooks".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let batch: Vec<usize> = (0..missing).collect();
    for chunk in batch.chunks(50) {
        let writes = chunk.iter().map(|i| {
            let api = api.clone();
            let mut status = template.clone();
            let name = format!("finished-{i}");
            status.backup_persistent_volume_claim_name = Some(name.clone());
            async move {
                api.create(&PostParams::default(), &backup(&name, "finished")?).await?;
                let patch = serde_json::json!({"status": status});
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Ok::<_, Box<dyn std::error::Error>>(())
            }
        });
        for written in futures::future::join_all(writes).await {
            written?;
        }
    }
    let ca = std::fs::read(cluster.plane.certs.join("ca.crt"))?;
    install::register_webhooks(admin, &cluster.operator.url, &ca).await?;
    cluster.restart_operator(&[]).await?;
    // Settled: three readings half a second apart within 1 % of each other.
    let pid = cluster.operator.pid();
    let mut readings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        readings.push(measure::status_kib(pid, "VmRSS"));
        let last: Vec<u64> = readings.iter().rev().take(3).copied().collect();
        let steady = last.len() == 3
            && last.iter().max().copied().unwrap_or(0) as f64 <= last.iter().min().copied().unwrap_or(0) as f64 * 1.01;
        if steady || Instant::now() > deadline {
            let anon = measure::status_kib(pid, "RssAnon");
            let file = measure::status_kib(pid, "RssFile");
            return Ok(Resident { total: last[0], anon, file });
        }
    }
}

/// Client-side throttling that kube-controller-manager logged (client-go logs a wait of more than
/// 1 s, at most once every 10 s): the number of such lines, the longest wait in seconds, and the
/// first line.
pub fn throttling(cluster: &LocalCluster) -> (usize, f64, String) {
    let log = cluster.plane.dir.join("logs").join("kube-controller-manager.log");
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|line| line.contains("client-side throttling")).collect();
    let delay = |line: &str| -> f64 {
        let after = line.split_once("delay=\"").or_else(|| line.split_once("Waited for ")).map(|(_, rest)| rest);
        let number: String =
            after.unwrap_or_default().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        number.parse().unwrap_or(0.0)
    };
    let longest = lines.iter().map(|line| delay(line)).fold(0.0, f64::max);
    let first = lines.first().map(|line| line.chars().take(300).collect()).unwrap_or_default();
    (lines.len(), longest, first)
}
