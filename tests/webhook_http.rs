//! The webhooks over HTTP: real AdmissionReview JSON posted to the axum router, and the same
//! router served over rustls with certificates from `certs/generate.sh`.

mod support;

use apimanager_backup_operator::admission::AdmissionState;
use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::backup::admission::{MUTATE_PATH, VALIDATE_PATH};
use apimanager_backup_operator::health::Readiness;
use apimanager_backup_operator::lookup::{ApiManagerLookup, LookupError};
use apimanager_backup_operator::metrics::Metrics;
use apimanager_backup_operator::server;
use apimanager_backup_operator::tls::TlsFiles;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::certs::{TempDir, generate};
use support::https;
use support::lookup::FixedLookup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";
const MAX_BODY: usize = 64 * 1024;

fn limits() -> server::Limits {
    server::Limits { max_body_bytes: MAX_BODY, ..server::Limits::default() }
}

fn backup(spec: Value) -> Value {
    json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
        "metadata": {"name": "backup1", "namespace": "ns"}, "spec": spec})
}

fn review(operation: &str, object: Value, old: Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": UID,
        "kind": {"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"},
        "resource": {"group": "apps.3scale.net", "version": "v1alpha1", "resource": "apimanagerbackups"},
        "name": "backup1", "namespace": "ns", "operation": operation,
        "userInfo": {"username": "admin"}, "object": object, "oldObject": old, "dryRun": false}})
}

fn sized() -> Value {
    json!({"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}})
}

fn app(lookup: FixedLookup) -> (axum::Router, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let readiness = Readiness::default();
    let state = AdmissionState { lookup, metrics: metrics.clone() };
    (server::router(state, readiness, &limits()), metrics)
}

async fn post(app: axum::Router, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .expect("request");
    let response = app.oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, bytes)
}

async fn admit(lookup: FixedLookup, path: &str, review: Value) -> Value {
    let (status, body) = post(app(lookup).0, path, review.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], UID);
    answer["response"].clone()
}

fn patch_of(response: &Value) -> Value {
    use base64::Engine;
    let encoded = response["patch"].as_str().expect("the patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
    serde_json::from_slice(&bytes).expect("patch is JSON")
}

#[tokio::test]
async fn defaulting_adds_the_only_apimanager() {
    let response =
        admit(FixedLookup::external(&["example"]), MUTATE_PATH, review("CREATE", backup(sized()), Value::Null)).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    assert_eq!(patch_of(&response), json!([{"op": "add", "path": "/spec/apiManagerName", "value": "example"}]));
    assert_eq!(
        response["patch"], "W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvYXBpTWFuYWdlck5hbWUiLCJ2YWx1ZSI6ImV4YW1wbGUifV0=",
        "the wire form is the base64 string of the JSONPatch"
    );
}

#[tokio::test]
async fn defaulting_leaves_the_object_when_no_single_choice() {
    for lookup in [FixedLookup::external(&[]), FixedLookup::external(&["a", "b"])] {
        let response = admit(lookup, MUTATE_PATH, review("CREATE", backup(sized()), Value::Null)).await;
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none(), "{response}");
    }
    let mut named = sized();
    named["apiManagerName"] = json!("chosen");
    let response =
        admit(FixedLookup::external(&["other"]), MUTATE_PATH, review("CREATE", backup(named), Value::Null)).await;
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test]
async fn validation_allows_a_good_backup_without_warnings() {
    let mut spec = sized();
    spec["apiManagerName"] = json!("example");
    let response =
        admit(FixedLookup::external(&["example"]), VALIDATE_PATH, review("CREATE", backup(spec), Value::Null)).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("warnings").is_none(), "{response}");
}

#[tokio::test]
async fn validation_denies_every_violation_as_invalid() {
    let spec = json!({"apiManagerName": "gone", "backupDestination": {"persistentVolumeClaim": {"storageClass": "Bad_Class"}}});
    let response =
        admit(FixedLookup::external(&["example"]), VALIDATE_PATH, review("CREATE", backup(spec), Value::Null)).await;
    assert_eq!(response["allowed"], false);
    let status = &response["status"];
    assert_eq!(status["code"], 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "APIManagerBackup.apps.3scale.net \"backup1\" is invalid: [spec.backupDestination.persistentVolumeClaim.resources.requests: Required value: the backup claim's size must be set, also when volumeName is set (for example 10Gi), spec.backupDestination.persistentVolumeClaim.storageClass: Invalid value: \"Bad_Class\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'), spec.apiManagerName: Invalid value: \"gone\": APIManager \"gone\" does not exist in namespace \"ns\" (there are: example)]"
    );
    assert_eq!(status["details"]["kind"], "APIManagerBackup");
    assert_eq!(status["details"]["group"], "apps.3scale.net");
    assert_eq!(status["details"]["name"], "backup1");
    let causes = status["details"]["causes"].as_array().expect("causes");
    assert_eq!(causes.len(), 3);
    assert_eq!(causes[0]["reason"], "FieldValueRequired");
    assert_eq!(causes[0]["field"], "spec.backupDestination.persistentVolumeClaim.resources.requests");
    assert_eq!(
        causes[2]["message"],
        "Invalid value: \"gone\": APIManager \"gone\" does not exist in namespace \"ns\" (there are: example)"
    );
}

#[tokio::test]
async fn validation_warns_about_an_ignored_storage_class() {
    let spec = json!({"apiManagerName": "example", "backupDestination": {"persistentVolumeClaim": {
        "volumeName": "pv-1", "storageClass": "fast", "resources": {"requests": "1Gi"}}}});
    let response =
        admit(FixedLookup::external(&["example"]), VALIDATE_PATH, review("CREATE", backup(spec), Value::Null)).await;
    assert_eq!(response["allowed"], true);
    assert_eq!(
        response["warnings"],
        json!([
            "spec.backupDestination.persistentVolumeClaim.storageClass is ignored because volumeName is set: the claim binds to PersistentVolume \"pv-1\""
        ])
    );
}

#[tokio::test]
async fn validation_refuses_spec_changes_but_not_label_changes() {
    let mut spec = sized();
    spec["apiManagerName"] = json!("example");
    let old = backup(spec.clone());
    let mut relabeled = old.clone();
    relabeled["metadata"]["labels"] = json!({"team": "a"});
    let response = admit(FixedLookup(None), VALIDATE_PATH, review("UPDATE", relabeled, old.clone())).await;
    assert_eq!(response["allowed"], true, "labels may change even when the API server is unreachable");

    let mut resized = old.clone();
    resized["spec"]["backupDestination"]["persistentVolumeClaim"]["resources"]["requests"] = json!("2Gi");
    let response = admit(FixedLookup::external(&["example"]), VALIDATE_PATH, review("UPDATE", resized, old)).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(
        response["status"]["details"]["causes"][0]["message"],
        "Forbidden: spec is immutable once the backup is created; create a new APIManagerBackup to take another backup"
    );
}

#[tokio::test]
async fn both_webhooks_fail_closed_when_apimanagers_cannot_be_listed() {
    for path in [MUTATE_PATH, VALIDATE_PATH] {
        let response = admit(FixedLookup(None), path, review("CREATE", backup(sized()), Value::Null)).await;
        assert_eq!(response["allowed"], false, "{path}");
        assert_eq!(response["status"]["code"], 500, "{path}");
        assert!(response.get("patch").is_none(), "{path}: {response}");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("could not list APIManagers in namespace \"ns\""), "{path}: {response}");
        assert!(message.ends_with("try again, and check the operator's logs if it persists"), "{path}: {response}");
    }
}

#[tokio::test]
async fn both_webhooks_refuse_other_kinds_before_any_rule() {
    let mut pod = review(
        "CREATE",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}),
        Value::Null,
    );
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    for path in [MUTATE_PATH, VALIDATE_PATH] {
        let response = admit(FixedLookup::external(&["example"]), path, pod.clone()).await;
        assert_eq!(response["allowed"], false, "{path}");
        assert_eq!(response["status"]["code"], 400, "{path}");
        assert_eq!(
            response["status"]["message"],
            "this webhook admits APIManagerBackup.apps.3scale.net/v1alpha1 only, not kind \"Pod\" of group \"\" version \"v1\"; fix the webhook configuration's rules",
            "{path}"
        );
        assert!(response.get("patch").is_none(), "{path}: {response}");
    }
}

#[tokio::test]
async fn both_webhooks_fail_closed_without_a_namespace() {
    let mut request = review("CREATE", backup(sized()), Value::Null);
    request["request"].as_object_mut().expect("request").remove("namespace");
    for path in [MUTATE_PATH, VALIDATE_PATH] {
        let response = admit(FixedLookup::external(&["example"]), path, request.clone()).await;
        assert_eq!(response["allowed"], false, "{path}");
        assert_eq!(response["status"]["message"], "the request has no namespace, but APIManagerBackup is namespaced");
    }
}

#[tokio::test]
async fn refusals_before_any_rule_are_counted_and_timed() {
    let (router, metrics) = app(FixedLookup::external(&[]));
    let (status, _) = post(router.clone(), MUTATE_PATH, b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(router, VALIDATE_PATH, vec![b' '; MAX_BODY + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let text = metrics.render().expect("render");
    for webhook in ["defaulting", "validating"] {
        assert!(
            text.contains(&format!(
                r#"apimanager_backup_operator_admission_requests_total{{allowed="false",operation="unknown",webhook="{webhook}"}} 1"#
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                r#"apimanager_backup_operator_admission_request_duration_seconds_count{{webhook="{webhook}"}} 1"#
            )),
            "{text}"
        );
    }
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_one_line_reason() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "malformed AdmissionReview: key must be a string at line 1 column 2\n"),
        (
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": null})
                .to_string()
                .into_bytes(),
            "expected kind AdmissionReview of apiVersion admission.k8s.io/v1, got kind \"AdmissionReview\" of apiVersion \"admission.k8s.io/v1beta1\"\n",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod"}).to_string().into_bytes(),
            "expected kind AdmissionReview of apiVersion admission.k8s.io/v1, got kind \"Pod\" of apiVersion \"v1\"\n",
        ),
        (
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string().into_bytes(),
            "AdmissionReview has no request\n",
        ),
    ];
    for path in [MUTATE_PATH, VALIDATE_PATH] {
        for (body, reason) in &cases {
            let (status, answer) = post(app(FixedLookup::external(&[])).0, path, body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
            assert_eq!(String::from_utf8_lossy(&answer), *reason, "{path}");
        }
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let (status, _) = post(app(FixedLookup::external(&[])).0, VALIDATE_PATH, vec![b' '; MAX_BODY + 1]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn readyz_names_the_failing_checks() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let readiness = Readiness::default();
    readiness.set("apimanager-api", false);
    let router =
        server::router(AdmissionState { lookup: FixedLookup::external(&[]), metrics }, readiness.clone(), &limits());
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(get("/readyz")).await.expect("answer");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"not ready: apimanager-api\n");
    readiness.set("apimanager-api", true);
    assert_eq!(router.clone().oneshot(get("/readyz")).await.expect("answer").status(), StatusCode::OK);
    assert_eq!(router.oneshot(get("/healthz")).await.expect("answer").status(), StatusCode::OK);
}

/// The router served over rustls on a loopback port, with a stop switch.
struct Served {
    addr: SocketAddr,
    certs: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve_tls(reload: Duration) -> Served {
    serve_router(app(FixedLookup::external(&["example"])).0, reload).await
}

async fn serve_router(router: axum::Router, reload: Duration) -> Served {
    serve_limited(router, reload, limits()).await
}

async fn serve_limited(router: axum::Router, reload: Duration, limits: server::Limits) -> Served {
    let certs = TempDir::new("tls");
    generate(&certs.0);
    let files = TlsFiles { cert: certs.0.join("tls.crt"), key: certs.0.join("tls.key") };
    let tls = files.load().expect("certificate loads");
    tokio::spawn(files.reload_on_change(tls.clone(), reload));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let done =
        tokio::spawn(
            async move { server::serve(listener, tls, router, &limits, shutdown, Duration::from_secs(5)).await },
        );
    Served { addr, certs, stop: Some(stop), done }
}

#[tokio::test]
async fn serves_webhooks_and_metrics_over_tls_with_the_generated_ca() {
    let served = serve_tls(Duration::from_secs(60)).await;
    let client = https::client_config(&[&served.certs.0.join("ca.crt")]);
    let body = review("CREATE", backup(sized()), Value::Null).to_string();
    let reply = https::request(served.addr, client.clone(), "POST", MUTATE_PATH, body.as_bytes()).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains(UID), "{}", reply.body);
    let reply = https::request(served.addr, client.clone(), "POST", VALIDATE_PATH, body.as_bytes()).await;
    assert_eq!(reply.status, 200);

    let scrape = https::request(served.addr, client, "GET", "/metrics", b"").await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.body.contains(r#"apimanager_backup_operator_admission_requests_total{allowed="true",operation="CREATE",webhook="defaulting"} 1"#),
        "{}",
        scrape.body
    );
    assert!(
        scrape.body.contains(r#"apimanager_backup_operator_admission_requests_total{allowed="false",operation="CREATE",webhook="validating"} 1"#),
        "{}",
        scrape.body
    );
    assert!(
        scrape
            .body
            .contains(r#"apimanager_backup_operator_admission_request_duration_seconds_count{webhook="validating"} 1"#),
        "{}",
        scrape.body
    );
}

#[tokio::test]
async fn reloads_a_changed_certificate_without_restart() {
    let served = serve_tls(Duration::from_millis(100)).await;
    let first_ca = served.certs.0.join("ca.crt");
    let before = https::connect(served.addr, https::client_config(&[&first_ca])).await.expect("handshake");
    let served_before = before.get_ref().1.peer_certificates().expect("peer certs")[0].to_vec();

    let next = TempDir::new("tls-next");
    generate(&next.0);
    std::fs::copy(next.0.join("tls.key"), served.certs.0.join("tls.key")).expect("swap key");
    std::fs::copy(next.0.join("tls.crt"), served.certs.0.join("tls.crt")).expect("swap cert");
    let expected = rustls::pki_types::CertificateDer::pem_file_iter(next.0.join("tls.crt"))
        .expect("read new cert")
        .next()
        .expect("one cert")
        .expect("PEM")
        .to_vec();
    assert_ne!(expected, served_before);

    let both = https::client_config(&[&first_ca, &next.0.join("ca.crt")]);
    let mut served_now = Vec::new();
    for _ in 0..100 {
        let stream = https::connect(served.addr, both.clone()).await.expect("handshake");
        served_now = stream.get_ref().1.peer_certificates().expect("peer certs")[0].to_vec();
        if served_now == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_now, expected, "the new certificate is served");
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn plain_http_is_refused() {
    let served = serve_tls(Duration::from_secs(60)).await;
    let mut tcp = tokio::net::TcpStream::connect(served.addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await.expect("server closes");
    // One TLS record and the end of the connection: an alert (21) in TLS 1.2 framing (3.3), two
    // bytes long, fatal (2), decode_error (50). No HTTP reply of any kind.
    assert_eq!(answer, [21, 3, 3, 0, 2, 2, 50], "a fatal decode_error alert, then the connection closes");
}

/// A TLS 1.1 ClientHello (record and handshake both say 3.2, one CBC cipher, no extensions).
fn tls11_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x02];
    hello.extend([0x42; 32]);
    hello.extend([0x00, 0x00, 0x02, 0x00, 0x2f, 0x01, 0x00]);
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x02, 0x00, handshake.len() as u8];
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused_with_a_fatal_alert() {
    let served = serve_tls(Duration::from_secs(60)).await;
    let mut tcp = tokio::net::TcpStream::connect(served.addr).await.expect("connect");
    tcp.write_all(&tls11_client_hello()).await.expect("write hello");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await.expect("server answers");
    assert!(answer.len() >= 7, "an alert record: {answer:?}");
    assert_eq!(answer[0], 0x15, "an alert record, not a ServerHello: {answer:?}");
    assert_eq!(answer[5], 0x02, "fatal");
    assert!([40, 70].contains(&answer[6]), "handshake_failure or protocol_version, got {}", answer[6]);
}

#[tokio::test]
async fn shuts_down_gracefully() {
    let mut served = serve_tls(Duration::from_secs(60)).await;
    served.stop.take().expect("stop switch").send(()).expect("server listening");
    let result =
        tokio::time::timeout(Duration::from_secs(10), &mut served.done).await.expect("server stops").expect("task");
    assert!(result.is_ok(), "{result:?}");
    assert!(tokio::net::TcpStream::connect(served.addr).await.is_err(), "no longer accepting");
}

/// A lookup that answers after a delay, to have a request in flight.
#[derive(Clone)]
struct SlowLookup(Duration);

impl ApiManagerLookup for SlowLookup {
    async fn list(&self, _namespace: &str) -> Result<Vec<APIManager>, LookupError> {
        tokio::time::sleep(self.0).await;
        Ok(Vec::new())
    }

    async fn claim(&self, _namespace: &str, _name: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        tokio::time::sleep(self.0).await;
        Ok(None)
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_admission_requests_finish() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let state = AdmissionState { lookup: SlowLookup(Duration::from_millis(800)), metrics };
    let mut served =
        serve_router(server::router(state, Readiness::default(), &limits()), Duration::from_secs(60)).await;
    let client = https::client_config(&[&served.certs.0.join("ca.crt")]);
    let body = review("CREATE", backup(sized()), Value::Null).to_string();
    let addr = served.addr;
    let in_flight =
        tokio::spawn(async move { https::request(addr, client, "POST", VALIDATE_PATH, body.as_bytes()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    served.stop.take().expect("stop switch").send(()).expect("server listening");
    let reply = tokio::time::timeout(Duration::from_secs(5), in_flight).await.expect("answered").expect("task");
    assert_eq!(reply.status, 200, "the in-flight review is answered");
    assert!(reply.body.contains(UID), "{}", reply.body);
    let result =
        tokio::time::timeout(Duration::from_secs(10), &mut served.done).await.expect("server stops").expect("task");
    assert!(result.is_ok(), "{result:?}");
}

/// A lookup with a bug: it panics.
#[derive(Clone)]
struct PanickingLookup;

impl ApiManagerLookup for PanickingLookup {
    async fn list(&self, _namespace: &str) -> Result<Vec<APIManager>, LookupError> {
        panic!("a bug in a lookup")
    }

    async fn claim(&self, _namespace: &str, _name: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        panic!("a bug in a lookup")
    }
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_keeps_serving() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let state = AdmissionState { lookup: PanickingLookup, metrics };
    let router = server::router(state, Readiness::default(), &limits());
    let body = review("CREATE", backup(sized()), Value::Null).to_string().into_bytes();
    let (status, answer) = post(router.clone(), VALIDATE_PATH, body).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(String::from_utf8_lossy(&answer), "internal error in the webhook; see the operator's logs\n");
    let healthz = router.oneshot(Request::get("/healthz").body(Body::empty()).expect("request")).await.expect("answer");
    assert_eq!(healthz.status(), StatusCode::OK);
}

#[tokio::test]
async fn probes_answer_while_admission_is_saturated_and_the_overflow_gets_429() {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let state = AdmissionState { lookup: SlowLookup(Duration::from_secs(3)), metrics };
    // Room for four ordinary reviews (each counts at least 16 KiB).
    let limits = server::Limits { max_body_bytes: MAX_BODY, admission_buffer_bytes: MAX_BODY, ..limits() };
    let router = server::router(state, Readiness::default(), &limits);
    let body = review("CREATE", backup(sized()), Value::Null).to_string().into_bytes();
    let in_progress: Vec<_> = (0..4).map(|_| tokio::spawn(post(router.clone(), VALIDATE_PATH, body.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = tokio::spawn(post(router.clone(), VALIDATE_PATH, body.clone()));
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let answer = tokio::time::timeout(Duration::from_secs(2), router.clone().oneshot(get(path)))
            .await
            .expect("a probe answers while admission is full")
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
    let (status, answer) = overflow.await.expect("task");
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(String::from_utf8_lossy(&answer), "too many admission requests in progress; try again\n");
    for request in in_progress {
        assert_eq!(request.await.expect("task").0, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_declared_length_over_the_cap_gets_413_before_the_body_is_sent() {
    let served = serve_tls(Duration::from_secs(60)).await;
    let mut stream =
        https::connect(served.addr, https::client_config(&[&served.certs.0.join("ca.crt")])).await.expect("TLS");
    let head =
        format!("POST {VALIDATE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n", 100 * 1024 * 1024);
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with(&format!("request body over the limit of {MAX_BODY} bytes\n")), "{answer}");
}

#[tokio::test]
async fn idle_connections_are_closed_and_connections_over_the_cap_refused() {
    let limits = server::Limits { max_connections: 2, idle_timeout: Duration::from_millis(500), ..limits() };
    let served = serve_limited(app(FixedLookup::external(&[])).0, Duration::from_secs(60), limits).await;
    let client = https::client_config(&[&served.certs.0.join("ca.crt")]);
    let mut first = https::connect(served.addr, client.clone()).await.expect("first connection");
    let _second = https::connect(served.addr, client.clone()).await.expect("second connection");
    assert!(https::connect(served.addr, client.clone()).await.is_err(), "a third connection is refused");
    // The first one sends a partial request head, which does not count as activity.
    first.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("partial head");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle connection is closed by the server");
    let reply = https::request(served.addr, client, "GET", "/healthz", b"").await;
    assert_eq!(reply.status, 200, "a slot is free again");
}

#[tokio::test]
async fn the_api_servers_burst_of_200_calls_shares_one_http2_connection() {
    let served = serve_tls(Duration::from_secs(60)).await;
    let mut config = https::client_config(&[&served.certs.0.join("ca.crt")]).as_ref().clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = https::connect(served.addr, Arc::new(config)).await.expect("TLS handshake");
    let (send, connection) = h2::client::handshake(tls).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let body = bytes::Bytes::from(review("CREATE", backup(sized()), Value::Null).to_string());
    let calls = (0..200).map(|_| {
        let (mut send, body) = (send.clone(), body.clone());
        async move {
            let request = http::Request::post(MUTATE_PATH).body(()).expect("request");
            let (response, mut stream) = send.send_request(request, false)?;
            stream.send_data(body, true)?;
            let response = response.await?;
            let status = response.status();
            let mut answer = response.into_body();
            while let Some(chunk) = answer.data().await {
                let _ = answer.flow_control().release_capacity(chunk?.len());
            }
            Ok::<_, h2::Error>(status)
        }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|status| matches!(status, Ok(StatusCode::OK))), "{statuses:?}");
    assert!(send.current_max_send_streams() >= 200, "{} streams", send.current_max_send_streams());
}
