//! A real Prometheus (Debian's `prometheus`) scrapes the operator's `/metrics` over HTTPS with
//! the CA of `certs/generate.sh` and reports the backup outcome through its HTTP query API.
//! Every query of the Grafana dashboard (`dashboards/`) runs against it. Own control plane, so
//! exactly one backup is counted.

mod support;

use apimanager_backup_operator::local::control_plane::free_port;
use apimanager_backup_operator::local::process::Supervised;
use apimanager_backup_operator::metrics::{Metrics, OperationEnd, Outcome};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};
use support::cluster::{create_backup, finished_backup, namespace_with_installation, start_cluster};

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

/// One HTTP/1.0 GET (no chunking, the server closes), returning the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// The value of instant query `query`, once Prometheus has a sample for it.
fn query(port: u16, query: &str) -> Option<String> {
    let body = http_get(port, &format!("/api/v1/query?query={}", percent_encode(query)))?;
    let answer: Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
}

/// The Grafana dashboard shipped for the operator's metrics.
const DASHBOARD: &str = include_str!("../dashboards/apimanager-backup-operator.json");

/// The answer to instant query `query`: its status and its result, or Prometheus' error.
fn query_result(port: u16, query: &str) -> Result<Vec<Value>, String> {
    let body = http_get(port, &format!("/api/v1/query?query={}", percent_encode(query))).ok_or("no answer")?;
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    match answer["status"].as_str() {
        Some("success") => Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default()),
        _ => Err(body),
    }
}

/// Every metric the operator can export: each of its families once it has a sample.
fn operator_metric_names() -> BTreeSet<String> {
    let metrics = Metrics::new().expect("metrics");
    metrics.observe_backup(OperationEnd { outcome: Outcome::Failed("BackupFailed"), seconds: 1.0 });
    metrics.observe_restore(OperationEnd { outcome: Outcome::Succeeded, seconds: 1.0 });
    metrics.observe_admission("validating", "CREATE", true, 0.01);
    metrics.reconcile_error("backup", "Api");
    drop(metrics.time_reconcile("backup"));
    metrics.leader_gauge().expect("leader gauge");
    let text = metrics.render().expect("render");
    text.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next().map(str::to_owned)).collect()
}

/// The metric names `expr` reads (`apimanager_…`, a histogram's `_bucket` series by its family).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| token.starts_with("apimanager_"))
        .map(|token| token.trim_end_matches("_bucket").to_owned())
        .collect()
}

/// Each panel's query of the dashboard (Grafana's `$__rate_interval` as 1m) is valid PromQL,
/// reads only metrics the operator exports (a renamed metric fails here), and returns data
/// wherever Prometheus holds the series it reads.
async fn check_dashboard(port: u16) {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let exported = operator_metric_names();
    let panels = dashboard["panels"].as_array().expect("panels");
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|panel| panel["targets"].as_array().expect("targets").iter())
        .map(|target| target["expr"].as_str().expect("expr").replace("$__rate_interval", "1m"))
        .collect();
    let read: BTreeSet<String> = exprs.iter().flat_map(|expr| metric_names(expr)).collect();
    for family in [
        "apimanager_backups_total",
        "apimanager_restores_total",
        "apimanager_backup_duration_seconds",
        "apimanager_restore_duration_seconds",
        "apimanager_backup_last_success_timestamp_seconds",
        "apimanager_backup_operator_admission_requests_total",
        "apimanager_backup_operator_admission_request_duration_seconds",
        "apimanager_backup_operator_leader",
        "apimanager_backup_operator_watch_errors_total",
    ] {
        assert!(read.contains(family), "the dashboard shows {family}");
    }
    let names: Value =
        serde_json::from_str(&http_get(port, "/api/v1/label/__name__/values").expect("names")).expect("names JSON");
    let stored: BTreeSet<String> =
        names["data"].as_array().expect("names").iter().filter_map(|n| n.as_str().map(str::to_owned)).collect();
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name) || stored.contains(&name),
                "{expr}: the operator exports no metric {name}"
            );
        }
        let held = metric_names(expr).iter().all(|name| stored.iter().any(|s| s.starts_with(name.as_str())));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = query_result(port, expr).unwrap_or_else(|error| panic!("{expr}: {error}"));
            if !held || !result.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{expr}: no data though Prometheus holds its series");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test]
async fn prometheus_scrapes_the_backup_outcome_over_https() {
    let (cluster, dir) = start_cluster("prometheus");
    let ns = namespace_with_installation(&cluster, "scraped").await;
    create_backup(&cluster, &ns, "b");
    let backup = finished_backup(&cluster, &ns, "b").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));

    let operator = cluster.operator.url.trim_start_matches("https://").to_owned();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: apimanager-backup-operator\n    scheme: https\n    tls_config:\n      ca_file: {}\n      server_name: localhost\n    static_configs:\n      - targets: [\"{operator}\"]\n",
            cluster.plane.certs.join("ca.crt").display()
        ),
    )
    .expect("prometheus.yml");
    let port = free_port().expect("port");
    let mut prometheus = Command::new("prometheus");
    prometheus
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn");
    let mut server = Supervised::spawn("prometheus", prometheus, &dir)
        .expect("Debian's prometheus package is installed (.ci/run installs it)");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut succeeded = None;
    while Instant::now() < deadline {
        server.check_running().expect("prometheus keeps running");
        succeeded = query(port, r#"apimanager_backups_total{outcome="succeeded"}"#);
        if succeeded.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(succeeded.as_deref(), Some("1"), "Prometheus log: {}", server.log().display());
    assert_eq!(query(port, r#"apimanager_backups_total{outcome="failed"}"#).as_deref(), Some("0"));
    assert_eq!(query(port, r#"apimanager_backup_duration_seconds_count{outcome="succeeded"}"#).as_deref(), Some("1"));
    assert_eq!(query(port, "apimanager_backups_in_progress").as_deref(), Some("0"));
    assert_eq!(query(port, r#"up{job="apimanager-backup-operator"}"#).as_deref(), Some("1"));
    assert_eq!(query(port, "apimanager_backup_operator_leader").as_deref(), Some("1"), "the only replica leads");
    let last = query(
        port,
        &format!(
            r#"apimanager_backup_last_success_timestamp_seconds{{namespace="{ns}",apimanager="example-apimanager"}}"#
        ),
    );
    assert!(last.and_then(|v| v.parse::<f64>().ok()).is_some_and(|t| t > 1.0e9), "last success timestamp scraped");
    let admissions =
        query(port, r#"sum(apimanager_backup_operator_admission_requests_total{webhook="validating",allowed="true"})"#);
    assert!(admissions.and_then(|v| v.parse::<f64>().ok()).is_some_and(|n| n >= 1.0), "admission counters scraped");
    check_dashboard(port).await;
    drop(server);
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
}
