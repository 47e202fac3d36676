//! The front door of every admission webhook: an AdmissionReview v1 body parsed straight into the
//! few fields the webhooks use, with the objects kept as raw JSON slices of the body until a webhook
//! types them once (no untyped tree; unknown fields are skipped without being stored, so a body's
//! size bounds the memory it costs). Before any rule runs, the review must be an AdmissionReview
//! `admission.k8s.io/v1` with a request (else HTTP 400), and the request must be what the API
//! server sends for the webhook's kind (else a denial with code 400 that names the problem): the
//! kind, a namespace, CREATE or UPDATE, the object, and the oldObject on UPDATE.

use crate::telemetry::Untrusted;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kube::Resource;
use kube::core::Status;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// `apiVersion` of the AdmissionReviews this server answers.
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of the AdmissionReviews this server answers.
pub const REVIEW_KIND: &str = "AdmissionReview";

/// Why a body gets HTTP 400: there is no AdmissionReview request to answer.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    /// Not JSON of an AdmissionReview's shape (the parser's message, cut).
    #[error("malformed AdmissionReview: {0}")]
    Json(String),
    /// Another kind or version than AdmissionReview admission.k8s.io/v1.
    #[error(
        "expected kind AdmissionReview of apiVersion admission.k8s.io/v1, got kind {kind} of apiVersion {api_version}"
    )]
    WrongType {
        /// The kind sent, quoted and cut.
        kind: String,
        /// The apiVersion sent, quoted and cut.
        api_version: String,
    },
    /// The review carries no request.
    #[error("AdmissionReview has no request")]
    MissingRequest,
}

/// Why a request is refused before any rule; answered as a denial with code 400 and its uid.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    /// A field of the request has the wrong type (the parser's message, cut).
    #[error("malformed AdmissionReview request: {0}")]
    Malformed(String),
    /// The request is for another kind than the webhook's.
    #[error(
        "this webhook admits {expected} only, not kind {kind} of group {group} version {version}; fix the webhook configuration's rules"
    )]
    WrongKind {
        /// `Kind.group/version` the webhook admits.
        expected: String,
        /// The kind sent, quoted and cut.
        kind: String,
        /// The group sent, quoted and cut.
        group: String,
        /// The version sent, quoted and cut.
        version: String,
    },
    /// A namespaced kind without a namespace.
    #[error("the request has no namespace, but {0} is namespaced")]
    NoNamespace(String),
    /// DELETE, CONNECT or anything else.
    #[error("this webhook admits CREATE and UPDATE only, not {0}; fix the webhook configuration's rules")]
    Operation(String),
    /// No `object`.
    #[error("the {0} request carries no object")]
    MissingObject(&'static str),
    /// An UPDATE without `oldObject`.
    #[error("the UPDATE request carries no oldObject")]
    MissingOldObject,
    /// `object` or `oldObject` is JSON of another type.
    #[error("the {0} is not a JSON object")]
    NotAnObject(&'static str),
    /// The object does not have the kind's shape (the parser's message, cut).
    #[error("the {which} is not a valid {kind}: {error}")]
    Object {
        /// `object` or `oldObject`.
        which: &'static str,
        /// The kind expected.
        kind: String,
        /// The parser's message, cut.
        error: String,
    },
}

/// A body refused before any rule.
#[derive(Debug)]
pub enum Refusal {
    /// HTTP 400, no review to answer in.
    Review(BadReview),
    /// A denial in a review answering `uid`.
    Request {
        /// The request's uid.
        uid: String,
        /// Why.
        error: BadRequest,
    },
}

/// The operations the webhooks admit (the AdmissionReview's `request.operation`; not the step
/// machine's `Operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionOperation {
    /// A new object.
    Create,
    /// A changed object.
    Update,
}

impl AdmissionOperation {
    /// The name Kubernetes uses, also the `operation` label of the admission metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
        }
    }
}

/// A JSON object read as `T`; the array form that derived structs also accept is refused (the API
/// server never sends it).
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        deserializer.deserialize_map(Visitor(PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    request: Option<ObjectOnly<WireRequest<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    uid: String,
    #[serde(borrow)]
    kind: ObjectOnly<WireKind<'a>>,
    #[serde(borrow)]
    operation: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    object: Option<&'a RawValue>,
    #[serde(default, borrow)]
    old_object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireKind<'a> {
    #[serde(default, borrow)]
    group: Cow<'a, str>,
    #[serde(default, borrow)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// Only the uid of a review whose request is malformed elsewhere, to answer it.
#[derive(Deserialize)]
struct UidOnly {
    request: Option<ObjectOnly<UidOnlyRequest>>,
}

#[derive(Deserialize)]
struct UidOnlyRequest {
    uid: String,
}

/// An admission request that passed the front door.
#[derive(Debug)]
pub struct AdmissionRequest<'a> {
    /// The request's uid, echoed in the answer.
    pub uid: String,
    /// CREATE or UPDATE.
    pub operation: AdmissionOperation,
    /// The object's namespace (never empty).
    pub namespace: Cow<'a, str>,
    /// The object's name as the request states it (empty for `generateName` before it is set).
    pub name: Cow<'a, str>,
    object: &'a RawValue,
    old_object: Option<&'a RawValue>,
    kind: Cow<'static, str>,
}

/// The parts of an object the rules read: its name and its spec of type `S`.
#[derive(Debug, Deserialize)]
pub struct Admitted<S> {
    /// `metadata.name`.
    #[serde(default)]
    pub metadata: AdmittedMeta,
    /// `spec`.
    pub spec: S,
}

/// The part of `metadata` the rules read.
#[derive(Debug, Default, Deserialize)]
pub struct AdmittedMeta {
    /// `metadata.name`, when set.
    #[serde(default)]
    pub name: Option<String>,
}

impl AdmissionRequest<'_> {
    /// The object, typed.
    pub fn object<T: DeserializeOwned>(&self) -> Result<T, BadRequest> {
        self.typed("object", self.object)
    }

    /// The old object of an UPDATE, typed; `None` on CREATE.
    pub fn old_object<T: DeserializeOwned>(&self) -> Option<Result<T, BadRequest>> {
        self.old_object.map(|raw| self.typed("oldObject", raw))
    }

    fn typed<T: DeserializeOwned>(&self, which: &'static str, raw: &RawValue) -> Result<T, BadRequest> {
        serde_json::from_str(raw.get()).map_err(|error| BadRequest::Object {
            which,
            kind: self.kind.clone().into_owned(),
            error: Untrusted(&error.to_string()).to_string(),
        })
    }
}

/// Reads `body` as an AdmissionReview v1 request for kind `K`, checking everything the API server
/// always sends before any rule sees it.
pub fn read_request<K: Resource<DynamicType = ()>>(body: &[u8]) -> Result<AdmissionRequest<'_>, Refusal> {
    let review: Envelope = match serde_json::from_slice::<ObjectOnly<Envelope>>(body) {
        Ok(ObjectOnly(review)) => review,
        Err(error) => return Err(malformed(body, &error)),
    };
    if review.kind != REVIEW_KIND || review.api_version != REVIEW_API_VERSION {
        return Err(Refusal::Review(BadReview::WrongType {
            kind: format!("{:?}", Untrusted(&review.kind)),
            api_version: format!("{:?}", Untrusted(&review.api_version)),
        }));
    }
    let ObjectOnly(request) = review.request.ok_or(Refusal::Review(BadReview::MissingRequest))?;
    let uid = request.uid;
    let refuse = |error| Err(Refusal::Request { uid: uid.clone(), error });
    let (group, version, kind) = (K::group(&()), K::version(&()), K::kind(&()));
    let ObjectOnly(sent) = &request.kind;
    if sent.group != group || sent.version != version || sent.kind != kind {
        return refuse(BadRequest::WrongKind {
            expected: format!("{kind}.{group}/{version}"),
            kind: format!("{:?}", Untrusted(&sent.kind)),
            group: format!("{:?}", Untrusted(&sent.group)),
            version: format!("{:?}", Untrusted(&sent.version)),
        });
    }
    let operation = match request.operation.as_ref() {
        "CREATE" => AdmissionOperation::Create,
        "UPDATE" => AdmissionOperation::Update,
        other => return refuse(BadRequest::Operation(format!("{:?}", Untrusted(other)))),
    };
    let Some(namespace) = request.namespace.filter(|namespace| !namespace.is_empty()) else {
        return refuse(BadRequest::NoNamespace(kind.clone().into_owned()));
    };
    let Some(object) = request.object else {
        return refuse(BadRequest::MissingObject(operation.label()));
    };
    if operation == AdmissionOperation::Update && request.old_object.is_none() {
        return refuse(BadRequest::MissingOldObject);
    }
    let old_object = if operation == AdmissionOperation::Update { request.old_object } else { None };
    for (which, raw) in [("object", Some(object)), ("oldObject", old_object)] {
        if raw.is_some_and(|raw| !raw.get().starts_with('{')) {
            return refuse(BadRequest::NotAnObject(which));
        }
    }
    Ok(AdmissionRequest { uid, operation, namespace, name: request.name, object, old_object, kind })
}

/// A body that failed to parse: answered in a review when its uid can be read, else HTTP 400.
fn malformed(body: &[u8], error: &serde_json::Error) -> Refusal {
    let message = Untrusted(&error.to_string()).to_string();
    let uid = serde_json::from_slice::<ObjectOnly<UidOnly>>(body)
        .ok()
        .and_then(|ObjectOnly(review)| review.request)
        .map(|ObjectOnly(request)| request.uid);
    match uid {
        Some(uid) => Refusal::Request { uid, error: BadRequest::Malformed(message) },
        None => Refusal::Review(BadReview::Json(message)),
    }
}

/// The answer to an admission request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not, when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The JSONPatch, base64-encoded as the AdmissionReview API documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when there is a patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Shown to the user either way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl AdmissionResponse {
    /// Allows request `uid` unchanged.
    pub fn allow(uid: impl Into<String>) -> Self {
        Self { uid: uid.into(), allowed: true, status: None, patch: None, patch_type: None, warnings: Vec::new() }
    }

    /// Denies request `uid` with `status`.
    pub fn deny(uid: impl Into<String>, status: Status) -> Self {
        Self { allowed: false, status: Some(status), ..Self::allow(uid) }
    }

    /// Denies request `uid` with code 400 for a request that is not what the API server sends.
    pub fn bad_request(uid: impl Into<String>, error: &BadRequest) -> Self {
        Self::deny(uid, Status::failure(&error.to_string(), "BadRequest").with_code(400))
    }

    /// Adds `patch` to an allowing answer.
    pub fn with_patch(mut self, patch: &json_patch::Patch) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_vec(patch)?;
        self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        self.patch_type = Some("JSONPatch");
        Ok(self)
    }

    /// The HTTP answer: an AdmissionReview v1 carrying this response.
    pub fn into_review(self) -> Response {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Review {
            api_version: &'static str,
            kind: &'static str,
            response: AdmissionResponse,
        }
        Json(Review { api_version: REVIEW_API_VERSION, kind: REVIEW_KIND, response: self }).into_response()
    }
}

impl IntoResponse for BadReview {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, format!("{self}\n")).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::APIManagerBackup;
    use serde_json::json;

    fn review(request: serde_json::Value) -> Vec<u8> {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
            .to_string()
            .into_bytes()
    }

    fn request(operation: &str) -> serde_json::Value {
        json!({"uid": "u-1", "kind": {"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"},
            "operation": operation, "name": "b", "namespace": "ns", "object": {"spec": {}}, "oldObject": {"spec": {}}})
    }

    fn refused(body: &[u8]) -> String {
        match read_request::<APIManagerBackup>(body) {
            Ok(request) => panic!("admitted: {request:?}"),
            Err(Refusal::Review(error)) => format!("400: {error}"),
            Err(Refusal::Request { uid, error }) => format!("{uid}: {error}"),
        }
    }

    #[test]
    fn refuses_what_the_api_server_never_sends() {
        let mut pod = request("CREATE");
        pod["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
        assert_eq!(
            refused(&review(pod)),
            r#"u-1: this webhook admits APIManagerBackup.apps.3scale.net/v1alpha1 only, not kind "Pod" of group "" version "v1"; fix the webhook configuration's rules"#
        );
        let mut no_namespace = request("CREATE");
        no_namespace.as_object_mut().expect("object").remove("namespace");
        assert_eq!(
            refused(&review(no_namespace)),
            "u-1: the request has no namespace, but APIManagerBackup is namespaced"
        );
        let mut empty_namespace = request("CREATE");
        empty_namespace["namespace"] = json!("");
        assert_eq!(
            refused(&review(empty_namespace)),
            "u-1: the request has no namespace, but APIManagerBackup is namespaced"
        );
        assert_eq!(
            refused(&review(request("DELETE"))),
            r#"u-1: this webhook admits CREATE and UPDATE only, not "DELETE"; fix the webhook configuration's rules"#
        );
        let mut no_object = request("CREATE");
        no_object["object"] = json!(null);
        assert_eq!(refused(&review(no_object)), "u-1: the CREATE request carries no object");
        let mut not_an_object = request("UPDATE");
        not_an_object["oldObject"] = json!("");
        assert_eq!(refused(&review(not_an_object)), "u-1: the oldObject is not a JSON object");
        let mut no_old = request("UPDATE");
        no_old.as_object_mut().expect("object").remove("oldObject");
        assert_eq!(refused(&review(no_old)), "u-1: the UPDATE request carries no oldObject");
        assert_eq!(
            refused(&review(
                json!(["u-2", {"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"},
                "CREATE", "b", "ns", {"spec": {}}, null])
            )),
            "400: malformed AdmissionReview: invalid type: sequence, expected a JSON object at line 1 column 71"
        );
        let mut bad_type = request("CREATE");
        bad_type["name"] = json!(42);
        assert_eq!(
            refused(&review(bad_type)),
            "u-1: malformed AdmissionReview request: invalid type: integer `42`, expected a string at line 1 column 163"
        );
    }

    #[test]
    fn echoed_values_are_cut() {
        let body = json!({"apiVersion": "x".repeat(1_000_000), "kind": "AdmissionReview"}).to_string();
        let message = refused(body.as_bytes());
        assert!(message.len() < 500, "{message}");
        assert!(message.ends_with(&format!("{}…(+999744 bytes)\"", "x".repeat(256))), "{message}");
    }

    #[test]
    fn an_update_carries_both_objects_typed_on_demand() {
        let body = review(request("UPDATE"));
        let admitted = read_request::<APIManagerBackup>(&body).expect("admitted");
        assert_eq!(
            (admitted.uid.as_str(), admitted.operation, admitted.namespace.as_ref()),
            ("u-1", AdmissionOperation::Update, "ns")
        );
        let old: Result<Admitted<serde::de::IgnoredAny>, _> = admitted.old_object().expect("an old object");
        assert!(old.is_ok());
    }

    #[test]
    fn the_patch_is_a_base64_string() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/spec/apiManagerName", "value": "example"}]))
                .expect("patch");
        let response = AdmissionResponse::allow("u-1").with_patch(&patch).expect("encodes");
        assert_eq!(
            serde_json::to_value(&response).expect("serializes"),
            json!({"uid": "u-1", "allowed": true, "patchType": "JSONPatch",
                "patch": "W3sib3AiOiJhZGQiLCJwYXRoIjoiL3NwZWMvYXBpTWFuYWdlck5hbWUiLCJ2YWx1ZSI6ImV4YW1wbGUifV0="})
        );
    }
}
