//! AdmissionReview v1 over HTTP: parse the review, apply the rules, answer with the request's uid.
//! A body that is not an AdmissionReview v1 with a request gets HTTP 400 and a one-line reason.

use super::defaulting::{choose_name, needs_default, set_name_patch};
use super::field_error::{FieldError, aggregate};
use super::lookup::{ApiManagerLookup, LookupError};
use super::validation::{Verdict, check_apimanager, check_create, check_update};
use crate::api::GROUP;
use crate::api::apimanager::APIManager;
use crate::api::backup::{APIManagerBackup, APIManagerBackupSpec};
use crate::metrics::Metrics;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::Resource;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{DynamicObject, Status};
use std::sync::Arc;
use std::time::Instant;

/// Path of the defaulting (mutating) webhook.
pub const MUTATE_PATH: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerbackup";
/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerbackup";

const REVIEW_KIND: &str = "AdmissionReview";
const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// What the webhook handlers share.
#[derive(Clone)]
pub struct AdmissionState<L> {
    /// Finds the APIManagers of a namespace.
    pub lookup: L,
    /// Where admission metrics are recorded.
    pub metrics: Arc<Metrics>,
}

/// Why a request body is not an AdmissionReview this server answers.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    /// The body is not JSON of an AdmissionReview's shape.
    #[error("malformed AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    /// Another kind or version than AdmissionReview admission.k8s.io/v1.
    #[error(
        "expected kind AdmissionReview of apiVersion admission.k8s.io/v1, got kind {kind:?} of apiVersion {api_version:?}"
    )]
    WrongType {
        /// The kind sent.
        kind: String,
        /// The apiVersion sent.
        api_version: String,
    },
    /// The review carries no request.
    #[error("AdmissionReview has no request")]
    MissingRequest,
}

/// Parses an AdmissionReview v1 body into its request.
pub fn parse_request(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body)?;
    if review.types.kind != REVIEW_KIND || review.types.api_version != REVIEW_API_VERSION {
        return Err(BadReview::WrongType { kind: review.types.kind, api_version: review.types.api_version });
    }
    review.try_into().map_err(|_| BadReview::MissingRequest)
}

/// `POST` handler of the defaulting webhook.
pub async fn mutate<L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer(&state.metrics, "defaulting", &body, |request| default_request(&state.lookup, request)).await
}

/// `POST` handler of the validating webhook.
pub async fn validate<L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer(&state.metrics, "validating", &body, |request| validate_request(&state.lookup, request)).await
}

async fn answer<F, Fut>(metrics: &Metrics, webhook: &str, body: &[u8], decide: F) -> Response
where
    F: FnOnce(AdmissionRequest<DynamicObject>) -> Fut,
    Fut: Future<Output = AdmissionResponse>,
{
    let started = Instant::now();
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(webhook, %error, "rejected a body that is not an AdmissionReview v1 request");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let operation = operation_label(&request.operation);
    let span = tracing::info_span!("admission", webhook, uid = %request.uid, operation,
        namespace = request.namespace.as_deref().unwrap_or(""), name = %request.name);
    let response = tracing::Instrument::instrument(decide(request), span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    metrics.observe_admission(webhook, operation, response.allowed, seconds);
    span.in_scope(|| {
        tracing::info!(allowed = response.allowed, reason = %response.result.message, seconds, "admission answered");
    });
    Json(response.into_review()).into_response()
}

fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

async fn default_request<L: ApiManagerLookup>(
    lookup: &L,
    request: AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(&request);
    if !request.object.as_ref().is_some_and(|object| needs_default(&object.data)) {
        return response;
    }
    let old = request.old_object.as_ref().map(|old| &old.data);
    let apimanagers = match (old, request.namespace.as_deref()) {
        (Some(_), _) | (None, None) => Vec::new(),
        (None, Some(namespace)) => namespace_apimanagers(lookup, namespace).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot default spec.apiManagerName; validation will explain");
            Vec::new()
        }),
    };
    let Some(name) = choose_name(old, &apimanagers) else {
        return response;
    };
    match response.with_patch(set_name_patch(&name)) {
        Ok(patched) => {
            tracing::info!(api_manager_name = %name, "defaulted spec.apiManagerName");
            patched
        }
        Err(error) => {
            tracing::error!(%error, "could not encode the defaulting patch");
            AdmissionResponse::from(&request)
        }
    }
}

async fn validate_request<L: ApiManagerLookup>(
    lookup: &L,
    request: AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(&request);
    if request.kind.group != GROUP || request.kind.kind != APIManagerBackup::kind(&()) {
        let message = format!(
            "this webhook validates {}.{GROUP} only, not {:?} of group {:?}; fix the webhook configuration's rules",
            APIManagerBackup::kind(&()),
            request.kind.kind,
            request.kind.group
        );
        return refuse(response, Status::failure(&message, "BadRequest").with_code(400));
    }
    let typed = |object: Option<&DynamicObject>| -> Result<APIManagerBackup, String> {
        let object = object.ok_or_else(|| "the request carries no object".to_owned())?;
        let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
        serde_json::from_value(value).map_err(|e| format!("the object is not a valid APIManagerBackup: {e}"))
    };
    let verdict = match request.operation {
        Operation::Create => {
            let backup = match typed(request.object.as_ref()) {
                Ok(backup) => backup,
                Err(message) => {
                    return refuse(response, Status::failure(&message, "BadRequest").with_code(400));
                }
            };
            let namespace = request.namespace.clone().unwrap_or_default();
            match checked_create(lookup, &backup.spec, &namespace).await {
                Ok(verdict) => verdict,
                Err(error) => {
                    tracing::warn!(%error, "cannot check the APIManager");
                    let message = format!("{error}; try again, and check the operator's logs if it persists");
                    return refuse(response, Status::failure(&message, "InternalError").with_code(500));
                }
            }
        }
        Operation::Update => match (typed(request.old_object.as_ref()), typed(request.object.as_ref())) {
            (Ok(old), Ok(new)) => check_update(&old.spec, &new.spec),
            (Err(message), _) | (_, Err(message)) => {
                return refuse(response, Status::failure(&message, "BadRequest").with_code(400));
            }
        },
        Operation::Delete | Operation::Connect => Verdict::default(),
    };
    let name = request.object.as_ref().and_then(|o| o.metadata.name.clone()).unwrap_or_else(|| request.name.clone());
    respond(response, &name, verdict)
}

/// The APIManagers to default from: the lookup's answer when it names exactly one, otherwise
/// (none or several, maybe not yet seen by a cache) the namespace as the API server lists it now.
async fn namespace_apimanagers<L: ApiManagerLookup>(
    lookup: &L,
    namespace: &str,
) -> Result<Vec<APIManager>, LookupError> {
    let known = lookup.list(namespace).await?;
    if known.len() == 1 { Ok(known) } else { lookup.confirm(namespace, None).await }
}

/// The CREATE rules against the lookup's APIManagers; when they refuse the APIManager, again
/// against what the API server holds now (a cache may not have seen it created or changed yet).
async fn checked_create<L: ApiManagerLookup>(
    lookup: &L,
    spec: &APIManagerBackupSpec,
    namespace: &str,
) -> Result<Verdict, LookupError> {
    let known = lookup.list(namespace).await?;
    if check_apimanager(spec.api_manager_name.as_deref(), namespace, &known).errors.is_empty() {
        return Ok(check_create(spec, namespace, &known));
    }
    let name = spec.api_manager_name.as_deref().filter(|name| !name.is_empty());
    let confirmed = lookup.confirm(namespace, name).await?;
    Ok(check_create(spec, namespace, &confirmed))
}

fn refuse(response: AdmissionResponse, status: Status) -> AdmissionResponse {
    let mut response = response.deny(&status.message);
    response.result = status;
    response
}

/// Turns a verdict into the response: allowed with warnings, or denied as `Invalid` (HTTP 422)
/// with one cause per error, which `kubectl` prints as `The APIManagerBackup "x" is invalid: …`.
fn respond(response: AdmissionResponse, name: &str, verdict: Verdict) -> AdmissionResponse {
    let Verdict { errors, warnings } = verdict;
    let mut response = if errors.is_empty() {
        response
    } else {
        let kind = APIManagerBackup::kind(&());
        let message = format!("{kind}.{GROUP} {name:?} is invalid: {}", aggregate(&errors));
        let details = StatusDetails {
            name: name.to_owned(),
            group: GROUP.to_owned(),
            kind: kind.into_owned(),
            uid: String::new(),
            causes: errors.iter().map(cause).collect(),
            retry_after_seconds: 0,
        };
        refuse(response, Status::failure(&message, "Invalid").with_code(422).with_details(details))
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

fn cause(error: &FieldError) -> StatusCause {
    StatusCause { reason: error.kind.cause_type().to_owned(), message: error.body(), field: error.field.clone() }
}
