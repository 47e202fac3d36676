//! Property test of the webhooks in-process: arbitrary bytes and mutated AdmissionReviews thrown
//! at the router never cause a panic or a 5xx, every review answered carries the request's uid,
//! and nothing is allowed that the rules (or the front door's checks) refuse.

mod support;

use apimanager_backup_operator::admission::AdmissionState;
use apimanager_backup_operator::api::apimanager::APIManager;
use apimanager_backup_operator::api::backup::APIManagerBackupSpec;
use apimanager_backup_operator::backup::admission::{MUTATE_PATH, VALIDATE_PATH};
use apimanager_backup_operator::backup::validation::{check_create, check_update};
use apimanager_backup_operator::health::Readiness;
use apimanager_backup_operator::lookup::ApiManagerLookup;
use apimanager_backup_operator::metrics::Metrics;
use apimanager_backup_operator::server;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};
use support::lookup::FixedLookup;
use tower::ServiceExt;

const CASES: u32 = 1000;

fn valid_review(operation: &str) -> Value {
    let object = json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"apiManagerName": "example", "backupDestination": {"persistentVolumeClaim": {
            "storageClass": "fast", "resources": {"requests": "1Gi"}}}}});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "3f1c-uid", "kind": {"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"},
        "resource": {"group": "apps.3scale.net", "version": "v1alpha1", "resource": "apimanagerbackups"},
        "name": "b", "namespace": "ns", "operation": operation, "userInfo": {"username": "u", "groups": ["g"]},
        "object": object, "oldObject": if operation == "UPDATE" { object.clone() } else { Value::Null }}})
}

/// Places in a review worth changing.
const PATHS: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/request",
    "/request/uid",
    "/request/kind",
    "/request/kind/kind",
    "/request/kind/group",
    "/request/kind/version",
    "/request/operation",
    "/request/name",
    "/request/namespace",
    "/request/object",
    "/request/oldObject",
    "/request/object/metadata",
    "/request/object/metadata/name",
    "/request/object/spec",
    "/request/object/spec/apiManagerName",
    "/request/object/spec/backupDestination",
    "/request/object/spec/backupDestination/persistentVolumeClaim",
    "/request/object/spec/backupDestination/persistentVolumeClaim/volumeName",
    "/request/object/spec/backupDestination/persistentVolumeClaim/storageClass",
    "/request/object/spec/backupDestination/persistentVolumeClaim/resources",
    "/request/object/spec/backupDestination/persistentVolumeClaim/resources/requests",
    "/request/oldObject/spec/apiManagerName",
    "/request/oldObject/spec/backupDestination/persistentVolumeClaim/resources/requests",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{0,12}",
        "[+-]?[0-9.]{0,6}[eEinumkKMGTP]{0,2}[+-]?[0-9]{0,3}",
        "\\PC{0,8}",
        Just("CREATE".to_owned()),
        Just("UPDATE".to_owned()),
        Just("DELETE".to_owned()),
        Just("APIManagerBackup".to_owned()),
        Just("example".to_owned()),
        Just("\n\r\t\u{1b}[31m\"\\".to_owned()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, Value),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..PATHS.len(), json_value()).prop_map(|(path, value)| Mutation::Set(path, value)),
        (0..PATHS.len(), text()).prop_map(|(path, text)| Mutation::Set(path, Value::String(text))),
        (0..PATHS.len()).prop_map(Mutation::Remove),
    ]
}

fn apply(review: &mut Value, mutation: &Mutation) {
    let (path, new) = match mutation {
        Mutation::Set(path, value) => (PATHS[*path], Some(value.clone())),
        Mutation::Remove(path) => (PATHS[*path], None),
    };
    let (parent, key) = path.rsplit_once('/').unwrap_or(("", path));
    if let Some(Value::Object(parent)) = review.pointer_mut(parent) {
        match new {
            Some(value) => parent.insert(key.to_owned(), value),
            None => parent.remove(key),
        };
    }
}

/// A body: a valid review changed by a few mutations, then maybe cut or with a byte changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let reviewed = (prop_oneof![Just("CREATE"), Just("UPDATE")], prop::collection::vec(mutation(), 0..4))
        .prop_map(|(operation, mutations)| {
            let mut review = valid_review(operation);
            for mutation in &mutations {
                apply(&mut review, mutation);
            }
            review.to_string().into_bytes()
        })
        .boxed();
    prop_oneof![
        6 => reviewed.clone(),
        1 => (reviewed.clone(), any::<prop::sample::Index>()).prop_map(|(mut bytes, at)| {
            bytes.truncate(at.index(bytes.len() + 1));
            bytes
        }),
        1 => (reviewed, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut bytes, at, byte)| {
            let at = at.index(bytes.len());
            bytes[at] = byte;
            bytes
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
}

fn router() -> axum::Router {
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let state = AdmissionState { lookup: FixedLookup::external(&["example"]), metrics };
    server::router(state, Readiness::default(), &server::Limits::default())
}

fn post(router: axum::Router, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    runtime().block_on(async move {
        let request = Request::post(path).body(Body::from(body)).expect("request");
        let response = router.oneshot(request).await.expect("the router answers");
        let status = response.status().as_u16();
        (status, response.into_body().collect().await.expect("body").to_bytes().to_vec())
    })
}

/// What the rules say of the review sent (read independently of the server's front door): `true`
/// when a webhook may allow it.
fn rules_allow(sent: &Value, validating: bool) -> bool {
    let request = &sent["request"];
    let kind = &request["kind"];
    let well_formed = sent["apiVersion"] == "admission.k8s.io/v1"
        && sent["kind"] == "AdmissionReview"
        && kind["group"] == "apps.3scale.net"
        && kind["version"] == "v1alpha1"
        && kind["kind"] == "APIManagerBackup"
        && request["namespace"].as_str().is_some_and(|ns| !ns.is_empty())
        && request["object"].is_object();
    if !well_formed {
        return false;
    }
    let spec = |object: &Value| serde_json::from_value::<APIManagerBackupSpec>(object["spec"].clone()).ok();
    match request["operation"].as_str() {
        Some("CREATE") if validating => {
            let apimanagers: Vec<APIManager> =
                runtime().block_on(FixedLookup::external(&["example"]).list("ns")).expect("fixed list");
            spec(&request["object"]).is_some_and(|spec| check_create(&spec, "ns", &apimanagers).errors.is_empty())
        }
        Some("UPDATE") if validating => match (spec(&request["oldObject"]), spec(&request["object"])) {
            (Some(old), Some(new)) => check_update(&old, &new).errors.is_empty(),
            _ => false,
        },
        Some("CREATE") => true,
        Some("UPDATE") => request["oldObject"].is_object(),
        _ => false,
    }
}

fn check(path: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    // Skipped fields are not checked for UTF-8 by the server; read them leniently here too.
    let sent: Option<Value> = serde_json::from_str(&String::from_utf8_lossy(&body)).ok();
    let (status, answer) = post(router(), path, body);
    prop_assert!(status < 500, "{path}: HTTP {status}: {}", String::from_utf8_lossy(&answer));
    if status != 200 {
        return Ok(());
    }
    let sent = sent.expect("only JSON is answered with a review");
    let answer: Value = serde_json::from_slice(&answer).expect("a JSON review");
    prop_assert_eq!(&answer["response"]["uid"], &sent["request"]["uid"], "the request's uid: {}", sent);
    if answer["response"]["allowed"] == true {
        prop_assert!(rules_allow(&sent, path == VALIDATE_PATH), "{path} allowed what the rules refuse: {sent}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_fails_loses_the_uid_or_allows_what_the_rules_refuse(body in body()) {
        check(VALIDATE_PATH, body)?;
    }

    #[test]
    fn defaulting_never_fails_loses_the_uid_or_allows_what_the_front_door_refuses(body in body()) {
        check(MUTATE_PATH, body)?;
    }
}
