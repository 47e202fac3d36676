//! The webhook server under hostile load, measured on loopback against the release build:
//!
//! 1. peak RSS while 16 maximum-size AdmissionReviews arrive at once over HTTP/1.1, then over one
//!    HTTP/2 connection, with 1,000 idle TLS connections open (target: under 64 MiB);
//! 2. idle, slow-header and slow-body connections: when the server closes them (target: within
//!    30 s) and the RSS afterwards (target: back near idle);
//! 3. 100,000 generated reviews (valid, mutated, cut, garbage) over HTTP/2: 5xx answers, answers
//!    without the request's uid (target: none).
//!
//! The server runs in a child process (this binary, started again in server mode) with the
//! production router, limits and TLS, and a fixed APIManager lookup; its RSS is read from /proc.
//! Run with `bench/webhook-limits.sh`.

#[path = "../tests/support/certs.rs"]
mod certs;
#[allow(dead_code)] // each binary uses a part of the test helpers
#[path = "../tests/support/https.rs"]
mod https;
#[path = "../tests/support/lookup.rs"]
mod lookup;

use apimanager_backup_operator::admission::AdmissionState;
use apimanager_backup_operator::backup::admission::VALIDATE_PATH;
use apimanager_backup_operator::health::Readiness;
use apimanager_backup_operator::metrics::Metrics;
use apimanager_backup_operator::server::{self, Limits};
use apimanager_backup_operator::tls::TlsFiles;
use bytes::Bytes;
use serde_json::{Value, json};
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER_ROLE: &str = "WEBHOOK_LIMITS_SERVE_CERTS";
const IDLE_CONNECTIONS: usize = 1000;
const SLOW_CONNECTIONS: usize = 100;
const GENERATED_REVIEWS: usize = 100_000;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match std::env::var(SERVER_ROLE) {
        Ok(certs) => runtime.block_on(serve(certs.into())),
        Err(_) => runtime.block_on(measure()),
    }
}

/// Server mode: the production router and server on a free loopback port, printed on stdout.
async fn serve(certs: std::path::PathBuf) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let state = AdmissionState { lookup: lookup::FixedLookup::external(&["example"]), metrics };
    let limits = Limits::default();
    let app = server::router(state, Readiness::default(), &limits);
    let files = TlsFiles { cert: certs.join("tls.crt"), key: certs.join("tls.key") };
    let tls = files.load().expect("certificate");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    let never = std::future::pending::<()>();
    server::serve(listener, tls, app, &limits, never, Duration::from_secs(1)).await.expect("serve");
}

/// The server child; killed when dropped.
struct Server {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(certs: &std::path::Path) -> Self {
        let mut child = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .env(SERVER_ROLE, certs)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("server child");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
        let addr = line.trim().parse().expect("address");
        Self { child, addr }
    }

    fn status_kib(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let line = status.lines().find(|l| l.starts_with(field)).expect("field");
        line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).expect("kB")
    }

    /// Current RSS in MiB.
    fn rss(&self) -> f64 {
        self.status_kib("VmRSS:") / 1024.0
    }

    /// Peak RSS in MiB since the last reset.
    fn peak(&self) -> f64 {
        self.status_kib("VmHWM:") / 1024.0
    }

    fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").expect("reset the peak RSS");
    }
}

/// A review of the largest size the server takes: a valid backup whose object carries a long array.
fn max_size_review(uid: &str) -> Vec<u8> {
    let mut review = review(uid, "CREATE", "1Gi");
    let element = "\"item\",";
    let room = Limits::default().max_body_bytes - review.to_string().len() - 64;
    let filler: String = format!("[{}\"end\"]", element.repeat(room / element.len()));
    review["request"]["object"]["spec"]["padding"] = json!("placeholder");
    let text = review.to_string().replace("\"placeholder\"", &filler);
    assert!(text.len() <= Limits::default().max_body_bytes, "{} bytes", text.len());
    text.into_bytes()
}

fn review(uid: &str, operation: &str, size: &str) -> Value {
    let object = json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"apiManagerName": "example", "backupDestination": {"persistentVolumeClaim": {
            "resources": {"requests": size}}}}});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"},
        "resource": {"group": "apps.3scale.net", "version": "v1alpha1", "resource": "apimanagerbackups"},
        "name": "b", "namespace": "ns", "operation": operation, "userInfo": {"username": "u"},
        "object": object, "oldObject": if operation == "UPDATE" { object.clone() } else { Value::Null }}})
}

/// Posts `body` on its own HTTP/1.1 connection, reading the answer while still sending (the
/// server may answer 429 or 413 before the body is complete); the status, or 0 when the answer is
/// a review without the request's uid `max` or there is no answer.
async fn h1_post(addr: SocketAddr, config: Arc<rustls::ClientConfig>, body: Arc<Vec<u8>>) -> u16 {
    let Ok(stream) = https::connect(addr, config).await else { return 0 };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = format!(
        "POST {VALIDATE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(&body).await;
        let _ = writer.flush().await;
        writer
    });
    let mut raw = Vec::new();
    let _ = reader.read_to_end(&mut raw).await;
    sending.abort();
    let text = String::from_utf8_lossy(&raw);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status == 200 && !text.contains(r#""uid":"max""#) { 0 } else { status }
}

/// An HTTP/2 connection (prior knowledge over TLS, as hyper's auto server detects it).
async fn h2_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> h2::client::SendRequest<Bytes> {
    let tls = https::connect(addr, config).await.expect("TLS");
    let (send, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

async fn h2_post(send: h2::client::SendRequest<Bytes>, body: Vec<u8>) -> Result<(u16, Vec<u8>), h2::Error> {
    let mut send = send.ready().await?;
    let request = http::Request::post(format!("https://localhost{VALIDATE_PATH}"))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(())
        .expect("request");
    let (response, mut stream) = send.send_request(request, false)?;
    stream.send_data(Bytes::from(body), true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        answer.extend_from_slice(&chunk);
    }
    Ok((status, answer))
}

/// Seconds until the server closes `stream`, which keeps sending `trickle` one byte a second.
async fn seconds_until_closed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    trickle: Vec<u8>,
    started: Instant,
) -> f64 {
    let mut buf = [0u8; 1024];
    let mut next = 0;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed().as_secs_f64(),
                Ok(_) => continue,
            },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                if next < trickle.len() {
                    if stream.write_all(&trickle[next..=next]).await.is_err() {
                        return started.elapsed().as_secs_f64();
                    }
                    next += 1;
                }
                if started.elapsed() > Duration::from_secs(90) {
                    return f64::INFINITY;
                }
            }
        }
    }
}

/// A tiny deterministic generator (xorshift), so every run sends the same reviews.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Review `n` of the generated set: valid, mutated in a few places, cut short, or garbage.
fn generated(rng: &mut Rng, n: usize) -> Vec<u8> {
    let uid = format!("gen-{n}");
    let sizes = ["1Gi", "0", "-1", "1e20Ei", "16Ei", " 1Gi", "\t1Gi", "Ki", "1.5.5", "", "1e9223372036854775807"];
    let operation = *rng.pick(&["CREATE", "UPDATE"]);
    let size = *rng.pick(&sizes);
    let mut review = review(&uid, operation, size);
    let paths = [
        "/request/kind/kind",
        "/request/kind/group",
        "/request/operation",
        "/request/namespace",
        "/request/object",
        "/request/oldObject",
        "/request/object/spec",
        "/request/object/spec/apiManagerName",
        "/request/object/spec/backupDestination",
        "/request/name",
        "/kind",
        "/apiVersion",
        "/request/uid",
    ];
    let values = [
        Value::Null,
        json!(""),
        json!(7),
        json!([1, "x"]),
        json!({"a": {}}),
        json!("DELETE"),
        json!("Pod"),
        json!("x\ny\u{1b}[31m"),
        json!(true),
    ];
    for _ in 0..(rng.next() % 4) {
        let path = *rng.pick(&paths);
        let (parent, key) = path.rsplit_once('/').expect("a path");
        if let Some(Value::Object(parent)) = review.pointer_mut(parent) {
            if rng.next().is_multiple_of(4) {
                parent.remove(key);
            } else {
                parent.insert(key.to_owned(), rng.pick(&values).clone());
            }
        }
    }
    let mut bytes = review.to_string().into_bytes();
    match rng.next() % 10 {
        0 => bytes.truncate((rng.next() % bytes.len() as u64) as usize),
        1 => {
            let at = (rng.next() % bytes.len() as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        2 => bytes = (0..(rng.next() % 200)).map(|_| rng.next() as u8).collect(),
        _ => {}
    }
    bytes
}

struct Row {
    measure: &'static str,
    value: String,
    target: &'static str,
    ok: bool,
}

async fn measure() {
    let dir = certs::TempDir::new("webhook-limits");
    certs::generate(&dir.0);
    let mut server = Server::start(&dir.0);
    let config = https::client_config(&[&dir.0.join("ca.crt")]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = server.rss();
    println!("\nwebhook server under hostile load (release build, loopback); baseline: idle RSS {idle_rss:.1} MiB\n");
    println!("| measure | value | ratio to idle RSS | target | met |");
    println!("| --- | --- | --- | --- | --- |");
    let mut all_met = true;

    // 1,000 idle TLS connections, held open.
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(https::connect(server.addr, config.clone()).await.expect("idle connection"));
    }
    let with_idle = server.rss();
    report(
        idle_rss,
        &mut all_met,
        Row {
            measure: "RSS with 1,000 idle TLS connections",
            value: format!("{with_idle:.1} MiB"),
            target: "",
            ok: true,
        },
    );

    // 16 maximum-size reviews at once over HTTP/1.1, then over one HTTP/2 connection.
    let body = Arc::new(max_size_review("max"));
    let (addr, h1_config, h1_body) = (server.addr, config.clone(), body.clone());
    let (started, statuses) = burst(&server, || h1_post(addr, h1_config.clone(), h1_body.clone())).await;
    let row = peak_row("peak RSS, 16 max-size reviews, HTTP/1.1", server.peak(), started, &statuses);
    report(idle_rss, &mut all_met, row);
    let send = h2_connect(server.addr, config.clone()).await;
    let (started, statuses) = burst(&server, || {
        let (send, body) = (send.clone(), body.as_ref().clone());
        async move { h2_post(send, body).await.map(|(status, _)| status).unwrap_or(0) }
    })
    .await;
    let row = peak_row("peak RSS, 16 max-size reviews, one HTTP/2 connection", server.peak(), started, &statuses);
    report(idle_rss, &mut all_met, row);
    drop(send);

    // The idle connections are still open (none was dropped to make room) …
    let mut open = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await.is_err() {
            open += 1;
        }
    }
    report(
        idle_rss,
        &mut all_met,
        Row {
            measure: "idle connections still open after the reviews",
            value: format!("{open} of {IDLE_CONNECTIONS}"),
            target: "all",
            ok: open == IDLE_CONNECTIONS,
        },
    );
    drop(idle);

    // … and idle, slow-header and slow-body connections are closed by the server.
    let started = Instant::now();
    let head = format!("POST {VALIDATE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n");
    let mut slow = Vec::new();
    for (kind, trickle) in [
        ("idle", Vec::new()),
        ("slow header", head.clone().into_bytes()),
        ("slow body", [head.as_bytes(), &[b' '; 1000]].concat()),
    ] {
        for _ in 0..SLOW_CONNECTIONS {
            let mut stream = https::connect(server.addr, config.clone()).await.expect("connection");
            let trickle = trickle.clone();
            if kind == "slow body" {
                stream.write_all(head.as_bytes()).await.expect("head");
            }
            let trickle = if kind == "slow body" { trickle[head.len()..].to_vec() } else { trickle };
            slow.push((kind, tokio::spawn(seconds_until_closed(stream, trickle, started))));
        }
    }
    for kind in ["idle", "slow header", "slow body"] {
        let mut longest: f64 = 0.0;
        for (_, task) in slow.iter_mut().filter(|(k, _)| *k == kind) {
            longest = longest.max(task.await.expect("task"));
        }
        report(
            idle_rss,
            &mut all_met,
            Row {
                measure: match kind {
                    "idle" => "idle connections closed after",
                    "slow header" => "slow-header connections closed after",
                    _ => "slow-body connections closed after",
                },
                value: format!("{longest:.1} s (all {SLOW_CONNECTIONS})"),
                target: "<= 30 s",
                ok: longest <= 30.0,
            },
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss();
    report(
        idle_rss,
        &mut all_met,
        Row {
            measure: "RSS after every connection closed",
            value: format!("{after:.1} MiB"),
            target: "near idle",
            ok: after < idle_rss + 16.0,
        },
    );

    // 100,000 generated reviews over four HTTP/2 connections, 16 streams each.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let send = h2_connect(server.addr, config.clone()).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
            let (mut server_errors, mut lost_uids, mut failed, mut answered) = (0usize, 0usize, 0usize, 0usize);
            let mut pending = futures::stream::FuturesUnordered::new();
            for n in (worker..GENERATED_REVIEWS).step_by(4) {
                let body = generated(&mut rng, n);
                let send = send.clone();
                pending.push(async move {
                    let sent: Option<Value> = serde_json::from_str(&String::from_utf8_lossy(&body)).ok();
                    (sent, h2_post(send, body).await)
                });
                if pending.len() >= 16 {
                    let (sent, result) = futures::StreamExt::next(&mut pending).await.expect("pending");
                    tally(sent, result, &mut server_errors, &mut lost_uids, &mut failed, &mut answered);
                }
            }
            while let Some((sent, result)) = futures::StreamExt::next(&mut pending).await {
                tally(sent, result, &mut server_errors, &mut lost_uids, &mut failed, &mut answered);
            }
            (server_errors, lost_uids, failed, answered)
        }));
    }
    let (mut server_errors, mut lost_uids, mut failed, mut answered) = (0, 0, 0, 0);
    for task in tasks {
        let (e, l, f, a) = task.await.expect("worker");
        (server_errors, lost_uids, failed, answered) = (server_errors + e, lost_uids + l, failed + f, answered + a);
    }
    report(
        idle_rss,
        &mut all_met,
        Row {
            measure: "generated reviews: 5xx / lost uids / transport errors",
            value: format!(
                "{server_errors} / {lost_uids} / {failed} of {GENERATED_REVIEWS} ({answered} answered with a review, {:.0}/s)",
                GENERATED_REVIEWS as f64 / started.elapsed().as_secs_f64()
            ),
            target: "0 / 0 / 0",
            ok: server_errors == 0 && lost_uids == 0 && failed == 0,
        },
    );
    let panicked = server.child.try_wait().ok().flatten().is_some();
    report(
        idle_rss,
        &mut all_met,
        Row {
            measure: "server process alive at the end",
            value: (!panicked).to_string(),
            target: "true",
            ok: !panicked,
        },
    );

    drop(server);
    if !all_met {
        std::process::exit(1);
    }
}

/// Sends 16 requests at once with `post` after resetting the server's peak RSS; their statuses and
/// when they started.
async fn burst<F, Fut>(server: &Server, post: F) -> (Instant, Vec<u16>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16> + Send + 'static,
{
    server.reset_peak();
    let started = Instant::now();
    let answers = futures::future::join_all((0..16).map(|_| tokio::spawn(post()))).await;
    (started, answers.into_iter().map(|answer| answer.expect("task")).collect())
}

/// The row of a burst of maximum-size reviews: peak RSS under 64 MiB, every answer a review or 429.
fn peak_row(measure: &'static str, peak: f64, started: Instant, statuses: &[u16]) -> Row {
    Row {
        measure,
        value: format!("{peak:.1} MiB ({:.1} s, answers {statuses:?})", started.elapsed().as_secs_f64()),
        target: "< 64 MiB",
        ok: peak < 64.0 && statuses.iter().all(|s| [200, 429].contains(s)),
    }
}

/// Prints one row of the table as soon as it is measured.
fn report(idle_rss: f64, all_met: &mut bool, row: Row) {
    let ratio = row
        .value
        .split(" MiB")
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|_| row.value.contains(" MiB"))
        .map(|mib| format!("{:.2}", mib / idle_rss))
        .unwrap_or_default();
    println!("| {} | {} | {ratio} | {} | {} |", row.measure, row.value, row.target, if row.ok { "yes" } else { "NO" });
    *all_met &= row.ok;
}

fn tally(
    sent: Option<Value>,
    result: Result<(u16, Vec<u8>), h2::Error>,
    server_errors: &mut usize,
    lost_uids: &mut usize,
    failed: &mut usize,
    answered: &mut usize,
) {
    match result {
        Err(_) => *failed += 1,
        Ok((status, _)) if status >= 500 => *server_errors += 1,
        Ok((200, body)) => {
            *answered += 1;
            let answer: Option<Value> = serde_json::from_slice(&body).ok();
            let uid = answer.as_ref().map(|a| a["response"]["uid"].clone());
            let expected = sent.as_ref().map(|s| s["request"]["uid"].clone());
            if uid.is_none() || uid != expected {
                *lost_uids += 1;
            }
        }
        Ok(_) => {}
    }
}
