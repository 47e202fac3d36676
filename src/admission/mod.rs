//! Admission, the same for every resource kind: the front door ([`review`]), then the kind's rules
//! ([`Admit`]: default, validate a CREATE, validate an UPDATE — typed values in, a patch or a
//! [`Verdict`] out, never JSON or HTTP) and the existence of the Secrets it names ([`secrets`]),
//! then the answer with the request's uid; one debug line per request. Each kind brings its [`Admit`] implementation and its two [`Webhook`]s; the server's
//! one route table ([`crate::server::webhooks`]) lists them, each from [`routes`].

pub mod field_error;
pub mod review;
pub mod s3;
pub mod secrets;
pub mod verdict;

use crate::api::GROUP;
use crate::lookup::{ApiManagerLookup, LookupError};
use crate::metrics::Metrics;
use crate::telemetry::Untrusted;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use field_error::{FieldError, aggregate};
use kube::Resource;
use kube::core::Status;
use kube::core::response::{StatusCause, StatusDetails};
use review::{AdmissionOperation, AdmissionRequest, AdmissionResponse, Admitted, BadRequest, Refusal, read_request};
use secrets::NamedSecret;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use tracing::Instrument;
pub use verdict::Verdict;

/// One admission webhook: where the API server calls it, and its `webhook` label in the admission
/// metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// The HTTPS path (the webhook configurations name it).
    pub path: &'static str,
    /// The `webhook` label.
    pub label: &'static str,
}

/// What a defaulting webhook is asked about: the object's namespace and spec, and whether it is new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToDefault<'a, S> {
    /// The object's namespace.
    pub namespace: &'a str,
    /// Its spec.
    pub spec: &'a S,
    /// CREATE or UPDATE.
    pub change: Change<'a, S>,
}

/// Whether an object is new or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a, S> {
    /// A new object.
    Create,
    /// A changed object; its old spec when that has the kind's shape.
    Update {
        /// The old spec.
        old: Option<&'a S>,
    },
}

/// The admission of one resource kind: its webhooks and its rules over its typed spec.
pub trait Admit: Resource<DynamicType = ()> + Send + Sync + 'static {
    /// The spec, as the rules read it.
    type Spec: DeserializeOwned + Send + Sync;
    /// Its defaulting (mutating) webhook.
    const DEFAULTING: Webhook;
    /// Its validating webhook.
    const VALIDATING: Webhook;

    /// The JSONPatch that fills in what the spec leaves to a default, if any (the object is allowed
    /// either way; validation explains what is wrong); an `Err` is a lookup that failed for a
    /// passing reason (the creation is refused with 500, "try again", rather than let through
    /// undefaulted to be refused by validation).
    fn default<L: ApiManagerLookup>(
        lookup: &L,
        asked: ToDefault<'_, Self::Spec>,
    ) -> impl Future<Output = Result<Option<json_patch::Patch>, LookupError>> + Send;

    /// Every CREATE rule at once; an `Err` is a failed lookup (the creation is refused with 500,
    /// "try again", rather than let through).
    fn validate_create<L: ApiManagerLookup>(
        lookup: &L,
        namespace: &str,
        spec: &Self::Spec,
    ) -> impl Future<Output = Result<Verdict, LookupError>> + Send;

    /// Every UPDATE rule at once.
    fn validate_update(old: &Self::Spec, new: &Self::Spec) -> Verdict;

    /// The Secrets `spec` names, each with its field: on CREATE each, on UPDATE those named anew,
    /// must exist where the operator may read them ([`secrets`]).
    fn named_secrets(spec: &Self::Spec) -> Vec<NamedSecret>;
}

/// What the webhook handlers share.
#[derive(Clone)]
pub struct AdmissionState<L> {
    /// Finds the APIManagers of a namespace.
    pub lookup: L,
    /// Where admission metrics are recorded.
    pub metrics: Arc<Metrics>,
}

/// What an admission answer was, left in the response's extensions for the admission metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// The `operation` label.
    pub operation: &'static str,
    /// Whether the request was allowed.
    pub allowed: bool,
}

impl Answered {
    /// A request refused before its operation was known.
    pub const UNREAD: Self = Self { operation: "unknown", allowed: false };
}

/// One line of the server's route table: a webhook, the kind it admits and its handler.
pub struct Route<L> {
    /// The webhook.
    pub webhook: Webhook,
    /// The kind it admits.
    pub kind: Cow<'static, str>,
    /// Its `POST` handler.
    pub handler: MethodRouter<AdmissionState<L>>,
}

/// The two webhooks of kind `A`: defaulting, then validating.
pub fn routes<A: Admit, L: ApiManagerLookup>() -> [Route<L>; 2] {
    [
        Route { webhook: A::DEFAULTING, kind: A::kind(&()), handler: post(mutate::<A, L>) },
        Route { webhook: A::VALIDATING, kind: A::kind(&()), handler: post(validate::<A, L>) },
    ]
}

/// `POST` handler of the defaulting webhook of kind `A`.
pub async fn mutate<A: Admit, L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer::<A, L>(&state.lookup, Stage::Defaulting, &body).await
}

/// `POST` handler of the validating webhook of kind `A`.
pub async fn validate<A: Admit, L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer::<A, L>(&state.lookup, Stage::Validating, &body).await
}

/// Which of a kind's two webhooks answers.
#[derive(Clone, Copy)]
enum Stage {
    Defaulting,
    Validating,
}

async fn answer<A: Admit, L: ApiManagerLookup>(lookup: &L, stage: Stage, body: &[u8]) -> Response {
    let webhook_label = match stage {
        Stage::Defaulting => A::DEFAULTING.label,
        Stage::Validating => A::VALIDATING.label,
    };
    let (response, operation) = match read_request::<A>(body) {
        Ok(request) => {
            let span = tracing::info_span!("admission", webhook = webhook_label, uid = ?Untrusted(&request.uid));
            let response = match stage {
                Stage::Defaulting => default_request::<A, L>(lookup, &request).instrument(span).await,
                Stage::Validating => validate_request::<A, L>(lookup, &request).instrument(span).await,
            };
            log_answer(webhook_label, &response, request.operation.label(), &request.namespace, &request.name);
            (response, request.operation.label())
        }
        Err(Refusal::Request { uid, error }) => {
            let response = AdmissionResponse::bad_request(uid, &error);
            log_answer(webhook_label, &response, Answered::UNREAD.operation, "", "");
            (response, Answered::UNREAD.operation)
        }
        Err(Refusal::Review(error)) => {
            tracing::debug!(webhook = webhook_label, code = 400, reason = %error, "admission request refused");
            return error.into_response();
        }
    };
    let answered = Answered { operation, allowed: response.allowed };
    let mut reply = response.into_review();
    reply.extensions_mut().insert(answered);
    reply
}

/// The one log line of an answered admission request (debug: a busy cluster sends many).
fn log_answer(webhook: &str, response: &AdmissionResponse, operation: &str, namespace: &str, name: &str) {
    let (code, reason) = response.status.as_ref().map(|s| (s.code, s.message.as_str())).unwrap_or((200, ""));
    tracing::debug!(
        webhook,
        uid = ?Untrusted(&response.uid),
        operation,
        namespace = ?Untrusted(namespace),
        name = ?Untrusted(name),
        allowed = response.allowed,
        code,
        reason = %Untrusted(reason),
        patched = response.patch.is_some(),
        "admission answered"
    );
}

/// Defaulting runs before the API server checks the object against the schema: an object that does
/// not have the kind's shape is allowed unchanged, left to the schema and to validation.
async fn default_request<A: Admit, L: ApiManagerLookup>(
    lookup: &L,
    request: &AdmissionRequest<'_>,
) -> AdmissionResponse {
    let allow = AdmissionResponse::allow(request.uid.clone());
    let Ok(object) = request.object::<Admitted<A::Spec>>() else {
        return allow;
    };
    let old = request.old_object::<Admitted<A::Spec>>().map(|old| old.ok().map(|old| old.spec));
    let change = match &old {
        None => Change::Create,
        Some(old) => Change::Update { old: old.as_ref() },
    };
    let asked = ToDefault { namespace: &request.namespace, spec: &object.spec, change };
    let patch = match A::default(lookup, asked).await {
        Ok(Some(patch)) => patch,
        Ok(None) => return allow,
        Err(error) => return lookup_failed(request.uid.clone(), &error),
    };
    allow.with_patch(&patch).unwrap_or_else(|error| {
        tracing::error!(%error, "could not encode the defaulting patch");
        AdmissionResponse::allow(request.uid.clone())
    })
}

/// The validating flow of kind `A`: its spec typed, then its CREATE or UPDATE rules.
async fn validate_request<A: Admit, L: ApiManagerLookup>(
    lookup: &L,
    request: &AdmissionRequest<'_>,
) -> AdmissionResponse {
    let uid = request.uid.clone();
    let object = match request.object::<Admitted<A::Spec>>() {
        Ok(object) => object,
        Err(error) => return AdmissionResponse::bad_request(uid, &error),
    };
    let name = object.metadata.name.clone().unwrap_or_else(|| request.name.to_string());
    let namespace = request.namespace.as_ref();
    let checked = match request.operation {
        AdmissionOperation::Create => {
            let rules = A::validate_create(lookup, namespace, &object.spec);
            secrets::with_existing_secrets(lookup, namespace, &A::named_secrets(&object.spec), rules).await
        }
        AdmissionOperation::Update => match request.old_object::<Admitted<A::Spec>>() {
            Some(Ok(old)) => {
                let rules = std::future::ready(Ok(A::validate_update(&old.spec, &object.spec)));
                let anew = secrets::named_anew(A::named_secrets(&old.spec), A::named_secrets(&object.spec));
                secrets::with_existing_secrets(lookup, namespace, &anew, rules).await
            }
            Some(Err(error)) => return AdmissionResponse::bad_request(uid, &error),
            None => return AdmissionResponse::bad_request(uid, &BadRequest::MissingOldObject),
        },
    };
    match checked {
        Ok(verdict) => respond(uid, &A::kind(&()), &name, verdict),
        Err(error @ LookupError::NotManaged { .. }) => {
            let message = Untrusted(&error.to_string()).to_string();
            AdmissionResponse::deny(uid, Status::failure(&message, "Forbidden").with_code(403))
        }
        Err(error) => lookup_failed(uid, &error),
    }
}

/// The answer when what the rules need could not be looked up: refused as the API server's own
/// failure (HTTP 500, "try again"), never as a verdict on the object.
fn lookup_failed(uid: String, error: &LookupError) -> AdmissionResponse {
    let error = Untrusted(&error.to_string()).to_string();
    tracing::warn!(%error, "cannot look up what the rules need");
    let message = format!("{error}; try again, and check the operator's logs if it persists");
    AdmissionResponse::deny(uid, Status::failure(&message, "InternalError").with_code(500))
}

/// Turns a verdict into the response: allowed with warnings, or denied as `Invalid` (HTTP 422)
/// with one cause per error, which `kubectl` prints as `The APIManagerBackup "x" is invalid: …`.
fn respond(uid: String, kind: &str, name: &str, verdict: Verdict) -> AdmissionResponse {
    let Verdict { errors, warnings } = verdict;
    let mut response = if errors.is_empty() {
        AdmissionResponse::allow(uid)
    } else {
        let message = format!("{kind}.{GROUP} {:?} is invalid: {}", Untrusted(name), aggregate(&errors));
        let details = StatusDetails {
            name: Untrusted(name).to_string(),
            group: GROUP.to_owned(),
            kind: kind.to_owned(),
            uid: String::new(),
            causes: errors.iter().map(cause).collect(),
            retry_after_seconds: 0,
        };
        AdmissionResponse::deny(uid, Status::failure(&message, "Invalid").with_code(422).with_details(details))
    };
    response.warnings = warnings;
    response
}

fn cause(error: &FieldError) -> StatusCause {
    StatusCause { reason: error.kind.cause_type().to_owned(), message: error.body(), field: error.field.clone() }
}
