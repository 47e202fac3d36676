//! The operator's benchmark, one command: `cargo bench --bench operator` (options after `--`:
//! `--seconds S` per load cell, default 3; `--protocols http1,http2`; `--concurrency 1,16,64`;
//! `--repeat 1` times each load cell; `--end-to-end 3` rounds of creates, 0 skips them; `--scale
//! 10,50,200` backups per round, empty skips them; `--finished 1000`, 0 skips it). Everything runs
//! on loopback against a real control plane started for the run, and every
//! figure is printed next to a baseline measured in the same run, because the machines are shared.
//!
//! 1. Webhooks: the load generator against the operator and against the floor (a bare rustls +
//!    hyper server answering a fixed AdmissionReview), HTTP/1.1 and HTTP/2, concurrency 1, 16, 64.
//! 2. End to end: 200 concurrent server-side dry-run creates through the API server with no
//!    webhooks, the floor's, and ours, taking turns (`rounds.rs`); ours is in place afterwards.
//! 3. Peak RSS of both servers.
//! 4. Reconcile at scale: N backups at once; wall time, backups/s, API requests per backup by
//!    resource, machine busy share, operator CPU and peak RSS; RSS with 1,000 finished backups.

mod floor;
mod load;
mod measure;
mod rounds;
mod scale;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::backup::admission::{MUTATE_PATH, VALIDATE_PATH};
use apimanager_backup_operator::local::{LocalCluster, control_plane, install};
use bytes::Bytes;
use kube::api::{Api, PostParams};
use load::{Protocol, Request, Summary};
use rounds::Setup;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

/// The operator binary the bench runs (built by cargo with the bench profile).
const OPERATOR: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");
/// Namespace of the admission benchmarks: one APIManager, `example`.
const ADMISSION_NAMESPACE: &str = "bench-admission";
/// Concurrent dry-run creates through the API server.
const END_TO_END_CREATES: usize = 200;

struct Options {
    seconds: f64,
    protocols: Vec<Protocol>,
    concurrency: Vec<usize>,
    repeat: usize,
    end_to_end: usize,
    scale: Vec<usize>,
    finished: usize,
}

/// A comma-separated list of numbers (empty: none).
fn numbers(list: &str) -> Result<Vec<usize>, Error> {
    Ok(list.split(',').filter(|v| !v.is_empty()).map(str::parse).collect::<Result<_, _>>()?)
}

fn options(args: &[String]) -> Result<Options, Error> {
    let mut options = Options {
        seconds: 3.0,
        protocols: vec![Protocol::Http1, Protocol::Http2],
        concurrency: vec![1, 16, 64],
        repeat: 1,
        end_to_end: 3,
        scale: vec![10, 50, 200],
        finished: 1000,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => options.seconds = value()?.parse()?,
            "--protocols" => {
                options.protocols = value()?
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| match v {
                        "http1" => Ok(Protocol::Http1),
                        "http2" => Ok(Protocol::Http2),
                        other => Err(format!("unknown protocol {other} (http1, http2)")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--concurrency" => options.concurrency = numbers(value()?)?,
            "--repeat" => options.repeat = value()?.parse()?,
            "--end-to-end" => options.end_to_end = value()?.parse()?,
            "--scale" => options.scale = numbers(value()?)?,
            "--finished" => options.finished = value()?.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args.first().map(String::as_str) {
        Some("floor") => runtime.block_on(run_floor(&args[1..])),
        _ => options(&args).and_then(|options| runtime.block_on(bench(options))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `floor PORT CERT_DIR`: the floor server, run as its own process so its RSS is its own.
async fn run_floor(args: &[String]) -> Result<(), Error> {
    let [port, certs] = args else { return Err("usage: floor PORT CERT_DIR".into()) };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    floor::serve(listener, Path::new(certs)).await
}

/// The floor process; killed on drop.
struct Floor {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Floor {
    async fn start(certs: &Path) -> Result<Self, Error> {
        let port = control_plane::free_port()?;
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("floor")
            .arg(port.to_string())
            .arg(certs)
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                return Err("the floor server did not start".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { child, addr })
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A realistic CREATE review as the API server sends it (object with managed fields, user info,
/// options), of a backup without `apiManagerName` (what defaulting fills in) or naming `example`.
fn review(i: usize, named: bool) -> Bytes {
    let mut spec =
        serde_json::json!({"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "10Gi"}}}});
    if named {
        spec["apiManagerName"] = "example".into();
    }
    let fields = serde_json::json!({"f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}}},
        "f:spec": {".": {}, "f:backupDestination": {".": {}, "f:persistentVolumeClaim": {".": {},
            "f:resources": {".": {}, "f:requests": {}}}}}});
    let metadata = serde_json::json!({"name": format!("nightly-{i}"), "namespace": ADMISSION_NAMESPACE,
        "uid": "8c2d4f4e-1b55-4d27-a0a8-6a51a1d4c5f0", "creationTimestamp": "2026-11-26T02:00:00Z",
        "labels": {"app.kubernetes.io/managed-by": "backup-scheduler"},
        "managedFields": [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "apps.3scale.net/v1alpha1",
            "time": "2026-11-26T02:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields}]});
    let user = serde_json::json!({"username": "system:serviceaccount:ci:backup-scheduler",
        "uid": "5f1c6a52-0d7e-4e43-9c2a-9a1f3f1c2b7d",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": ["JTI=7c0e1c7e-5b8f-4a7b-9d56-2f4f8a1d0e11"]}});
    let kind = serde_json::json!({"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"});
    let resource =
        serde_json::json!({"group": "apps.3scale.net", "version": "v1alpha1", "resource": "apimanagerbackups"});
    let body = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("3d7a1c2e-0000-4000-8000-{i:012}"),
        "kind": kind, "resource": resource, "requestKind": kind, "requestResource": resource,
        "name": format!("nightly-{i}"), "namespace": ADMISSION_NAMESPACE, "operation": "CREATE", "userInfo": user,
        "object": {"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup", "metadata": metadata, "spec": spec},
        "oldObject": null, "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-create"}}});
    Bytes::from(body.to_string())
}

/// The request mix: defaulting reviews and validation reviews, alternating.
fn mix() -> Arc<Vec<Request>> {
    let requests = (0..16)
        .map(|i| {
            if i % 2 == 0 {
                Request { path: MUTATE_PATH, body: review(i, false) }
            } else {
                Request { path: VALIDATE_PATH, body: review(i, true) }
            }
        })
        .collect();
    Arc::new(requests)
}

fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn ratio(ours: f64, base: f64) -> String {
    if base == 0.0 { "n/a".into() } else { format!("{:.2}", ours / base) }
}

async fn bench(options: Options) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("abo-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let outcome = bench_in(&dir, options).await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn bench_in(dir: &Path, options: Options) -> Result<(), Error> {
    eprintln!("starting the control plane, the operator ({OPERATOR}) and the floor …");
    let mut cluster = LocalCluster::start(Path::new(OPERATOR), dir, &[]).await?;
    let admin = cluster.admin_client().await?;
    let certs: PathBuf = cluster.plane.certs.clone();
    let ca = std::fs::read(certs.join("ca.crt"))?;
    let floor = Floor::start(&certs).await?;
    install::ensure_namespace(&admin, ADMISSION_NAMESPACE).await?;
    install::apply_yaml(&admin, &apimanager_yaml("example"), ADMISSION_NAMESPACE).await?;
    wait_until_defaulted(&admin).await?;

    // 1. Webhooks, direct.
    let operator_addr: SocketAddr = cluster.operator.url.trim_start_matches("https://").parse()?;
    let tls = client_config(&certs.join("ca.crt"))?;
    let mix = mix();
    let measure = Duration::from_secs_f64(options.seconds);
    let warmup = Duration::from_millis(500);
    measure::reset_peak(cluster.operator.pid());
    let mut rows = Vec::new();
    for _ in 0..options.repeat {
        for &protocol in &options.protocols {
            for &concurrency in &options.concurrency {
                eprintln!("load: {} concurrency {concurrency}", protocol.label());
                let ours =
                    load::run(operator_addr, tls.clone(), protocol, concurrency, mix.clone(), warmup, measure).await?;
                let base =
                    load::run(floor.addr, tls.clone(), protocol, concurrency, mix.clone(), warmup, measure).await?;
                rows.push((protocol, concurrency, ours, base));
            }
        }
    }
    let rss = (measure::status_kib(cluster.operator.pid(), "VmHWM"), measure::status_kib(floor.child.id(), "VmHWM"));

    // 2. End to end through the API server, the three set-ups taking turns (in a rotating order)
    // round by round, so that a change in the machine's load falls on all of them alike; the last
    // turn leaves ours in place for the reconcile rounds.
    let floor_url = format!("https://{}", floor.addr);
    let mut end_to_end: Vec<EndToEnd> = Setup::ALL.into_iter().map(EndToEnd::new).collect();
    for turn in rounds::turns(options.end_to_end) {
        let webhooks = match turn.setup {
            Setup::NoWebhooks => None,
            Setup::Floor => Some(floor_url.as_str()),
            Setup::Ours => Some(cluster.operator.url.as_str()),
        };
        let label = turn.setup.label();
        match turn.round {
            Some(round) => eprintln!(
                "end to end, round {round}: {END_TO_END_CREATES} concurrent dry-run creates, webhooks: {label}"
            ),
            None => eprintln!("end to end: webhooks back to {label} for what follows"),
        }
        switch_webhooks(&admin, webhooks, &ca, turn.setup).await?;
        let Some(round) = turn.round else { continue };
        let row = &mut end_to_end[turn.setup.index()];
        let before = measure::webhook_calls(&admin).await?;
        row.latencies.append(&mut dry_run_creates(&admin, &format!("{label}-{round}")).await?);
        let after = measure::webhook_calls(&admin).await?;
        row.calls = row.calls + (after - before);
    }
    drop(floor);

    print_webhooks(&rows, options.seconds);
    if options.end_to_end > 0 {
        print_end_to_end(&mut end_to_end, options.end_to_end);
    }
    println!("\n| server | peak RSS (MiB) |\n| --- | --- |");
    println!("| ours (operator process, whole run so far) | {:.1} |", measure::mib(rss.0));
    println!("| floor | {:.1} |", measure::mib(rss.1));
    println!("| ours / floor | {} |", ratio(rss.0 as f64, rss.1 as f64));

    // 4. Reconcile at scale, and the memory of a restart holding many finished backups.
    if options.scale.is_empty() && options.finished == 0 {
        return Ok(());
    }
    let namespaces = scale::prepare(&cluster, &admin).await?;
    let mut rounds = Vec::new();
    for n in &options.scale {
        eprintln!("reconcile: {n} backups at once");
        rounds.push(scale::round(&cluster, &admin, &namespaces, *n).await?);
    }
    if !rounds.is_empty() {
        print_rounds(&rounds);
        let (count, longest, first) = scale::throttling(&cluster);
        println!(
            "\nkube-controller-manager logged {count} client-side throttling waits over 1 s (at most one line per 10 s); longest {longest:.1} s"
        );
        if !first.is_empty() {
            println!("first: {first}");
        }
    }
    if options.finished > 0 {
        if rounds.is_empty() {
            eprintln!("memory: one backup, whose status the finished ones copy");
            scale::round(&cluster, &admin, &namespaces, 1).await?;
        }
        eprintln!("memory: the operator holding {} finished backups", options.finished);
        let rss = scale::rss_with_finished(&mut cluster, &admin, options.finished).await?;
        println!(
            "\noperator RSS after a restart with {} finished backups cached: {:.1} MiB (anonymous {:.1}, file-backed {:.1})",
            options.finished,
            measure::mib(rss.total),
            measure::mib(rss.anon),
            measure::mib(rss.file)
        );
    }
    Ok(())
}

fn apimanager_yaml(name: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManager\nmetadata:\n  name: {name}\nspec:\n  wildcardDomain: example.com\n  externalComponents:\n    system:\n      database: true\n      redis: true\n    backend:\n      redis: true\n"
    )
}

fn probe(name: &str, size: &str) -> Result<APIManagerBackup, serde_json::Error> {
    serde_json::from_value(serde_json::json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
        "metadata": {"name": name},
        "spec": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": size}}}}}))
}

/// Waits until our webhooks default a backup of the admission namespace (the cache has the APIManager).
async fn wait_until_defaulted(admin: &kube::Client) -> Result<(), Error> {
    let api: Api<APIManagerBackup> = Api::namespaced(admin.clone(), ADMISSION_NAMESPACE);
    let params = PostParams { dry_run: true, ..PostParams::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(created) = api.create(&params, &probe("defaulting-probe", "1Gi")?).await
            && created.spec.api_manager_name.is_some()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the webhooks do not default backups of the bench namespace".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers `webhooks` (or none) and waits until the API server calls them.
async fn switch_webhooks(admin: &kube::Client, webhooks: Option<&str>, ca: &[u8], setup: Setup) -> Result<(), Error> {
    match webhooks {
        Some(url) => install::register_webhooks(admin, url, ca).await?,
        None => install::unregister_webhooks(admin).await?,
    }
    let api: Api<APIManagerBackup> = Api::namespaced(admin.clone(), ADMISSION_NAMESPACE);
    let params = PostParams { dry_run: true, ..PostParams::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Ours refuses a zero size, the floor refuses its probe, neither is refused without webhooks.
        let (ours, floor) = (
            api.create(&params, &probe("size-probe", "0")?).await,
            api.create(&params, &probe(floor::PROBE_NAME, "1Gi")?).await,
        );
        let switched = match setup {
            Setup::NoWebhooks => ours.is_ok() && floor.is_ok(),
            Setup::Floor => ours.is_ok() && floor.is_err(),
            Setup::Ours => ours.is_err() && floor.is_ok(),
        };
        if switched {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the API server did not switch to webhooks {}", setup.label()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Latencies of 200 concurrent server-side dry-run creates.
async fn dry_run_creates(admin: &kube::Client, label: &str) -> Result<Vec<Duration>, Error> {
    let api: Api<APIManagerBackup> = Api::namespaced(admin.clone(), ADMISSION_NAMESPACE);
    let params = PostParams { dry_run: true, ..PostParams::default() };
    let creates = (0..END_TO_END_CREATES).map(|i| {
        let (api, params) = (api.clone(), params.clone());
        let name = format!("{label}-{i}");
        async move {
            let object = probe(&name, "1Gi")?;
            let started = Instant::now();
            api.create(&params, &object).await?;
            Ok::<_, Error>(started.elapsed())
        }
    });
    futures::future::join_all(creates).await.into_iter().collect()
}

fn print_webhooks(rows: &[(Protocol, usize, Summary, Summary)], seconds: f64) {
    println!(
        "\nWebhooks, direct ({seconds} s per cell after 0.5 s warm-up; ours = the operator, floor = bare rustls + hyper)\n"
    );
    println!(
        "| protocol | concurrency | req/s ours | req/s floor | req/s ours / floor | p50 ms ours / floor | p99 ms ours / floor | p99 ours / floor | p99.9 ms ours / floor | errors ours / floor |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (protocol, concurrency, ours, base) in rows {
        println!(
            "| {} | {concurrency} | {:.0} | {:.0} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} | {:.2} / {:.2} | {} / {} |",
            protocol.label(),
            ours.per_second,
            base.per_second,
            ratio(ours.per_second, base.per_second),
            ms(ours.p50),
            ms(base.p50),
            ms(ours.p99),
            ms(base.p99),
            ratio(ms(ours.p99), ms(base.p99)),
            ms(ours.p999),
            ms(base.p999),
            ours.errors,
            base.errors
        );
    }
}

/// What the creates of one set-up of webhooks measured over every round.
struct EndToEnd {
    setup: Setup,
    latencies: Vec<Duration>,
    calls: measure::WebhookCalls,
}

impl EndToEnd {
    fn new(setup: Setup) -> Self {
        Self { setup, latencies: Vec::new(), calls: measure::WebhookCalls::default() }
    }
}

fn print_end_to_end(rows: &mut [EndToEnd], rounds: usize) {
    println!(
        "\nEnd to end: {END_TO_END_CREATES} concurrent dry-run creates through the API server, {rounds} rounds, the set-ups taking turns\n"
    );
    println!(
        "| webhooks | p50 ms | p99 ms | p50 overhead over none (ms) | webhook calls | mean call ms (the API server's apiserver_admission_webhook_admission_duration_seconds) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut none = 0.0;
    let mut overheads = Vec::new();
    for row in rows.iter_mut() {
        row.latencies.sort_unstable();
        let p50 = ms(load::percentile(&row.latencies, 0.5));
        if row.setup == Setup::NoWebhooks {
            none = p50;
        }
        let overhead = p50 - none;
        overheads.push((overhead, row.calls.mean_ms()));
        println!(
            "| {} | {p50:.1} | {:.1} | {overhead:+.1} | {:.0} | {:.2} |",
            row.setup.label(),
            ms(load::percentile(&row.latencies, 0.99)),
            row.calls.count,
            row.calls.mean_ms()
        );
    }
    if let [_, floor, ours] = overheads.as_slice() {
        println!("| ours / floor | | | {} | | {} |", ratio(ours.0, floor.0), ratio(ours.1, floor.1));
    }
}

fn print_rounds(rounds: &[scale::Round]) {
    println!("\nReconcile at scale: N backups created at once over {} namespaces\n", scale::NAMESPACES);
    println!(
        "| N | wall s | backups/s | failed | machine busy | run's own share | operator CPU s | operator peak RSS MiB | requests on APIManagerBackups per backup, every client but the bench |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for round in rounds {
        println!(
            "| {} | {:.1} | {:.2} | {} | {:.0} % | {:.0} % | {:.1} | {:.1} | {:.1} |",
            round.n,
            round.wall,
            round.n as f64 / round.wall,
            round.failed,
            round.machine_busy * 100.0,
            round.run_share() * 100.0,
            round.operator_cpu(),
            measure::mib(round.operator_peak_kib),
            scale::backup_requests_per_backup(round)
        );
    }
    println!("\nCPU seconds per backup by process (its share of the round's CPU)\n");
    let header: Vec<String> = rounds.iter().map(|r| format!("N = {}", r.n)).collect();
    println!("| process | {} |", header.join(" | "));
    println!("|---{}|", " | ---".repeat(rounds.len()));
    for (i, consumer) in scale::CPU_CONSUMERS.iter().enumerate() {
        let cells: Vec<String> = rounds
            .iter()
            .map(|r| {
                let share = r.cpu[i] / r.cpu.iter().sum::<f64>().max(f64::EPSILON);
                format!("{:.3} ({:.0} %)", r.cpu[i] / r.n as f64, share * 100.0)
            })
            .collect();
        println!("| {consumer} | {} |", cells.join(" | "));
    }
    let mut resources = std::collections::BTreeSet::new();
    for round in rounds {
        resources.extend(measure::by_resource(&round.requests).into_keys());
    }
    println!("\nAPI requests per backup by resource (every client, watches left out)\n");
    let header: Vec<String> = rounds.iter().map(|r| format!("N = {}", r.n)).collect();
    println!("| resource | {} |", header.join(" | "));
    println!("|---{}|", " | ---".repeat(rounds.len()));
    for resource in resources {
        let cells: Vec<String> = rounds
            .iter()
            .map(|r| {
                format!("{:.1}", measure::by_resource(&r.requests).get(&resource).copied().unwrap_or(0.0) / r.n as f64)
            })
            .collect();
        println!("| {resource} | {} |", cells.join(" | "));
    }
    println!(
        "\nRequests on APIManagerBackups per backup by verb and response code (every client, the bench's creates included)\n"
    );
    let mut keys = std::collections::BTreeSet::new();
    for round in rounds {
        keys.extend(
            round.requests.keys().filter(|(resource, _, _)| resource.starts_with("apimanagerbackups")).cloned(),
        );
    }
    println!("| resource | verb | code | {} |", header.join(" | "));
    println!("|---{}|", " | ---".repeat(rounds.len() + 2));
    for key in keys {
        let cells: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.2}", r.requests.get(&key).copied().unwrap_or(0.0) / r.n as f64))
            .collect();
        println!("| {} | {} | {} | {} |", key.0, key.1, key.2, cells.join(" | "));
    }
}
