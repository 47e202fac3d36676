//! The webhooks of `APIManagerBackup` and `APIManagerRestore` over HTTP: the front door of [`super::review`], then the
//! rules, then the answer with the request's uid; one debug line per request.

use super::defaulting::{choose_name, needs_default, read_only_patch, set_name_patch};
use super::field_error::{FieldError, aggregate};
use super::restore_validation;
use super::review::{AdmissionRequest, AdmissionResponse, Admitted, BadRequest, Operation, Refusal, read_request};
use super::validation::{Verdict, check_apimanager, check_create, check_update};
use crate::api::GROUP;
use crate::api::apimanager::APIManager;
use crate::api::backup::{APIManagerBackup, APIManagerBackupSpec};
use crate::api::restore::{APIManagerRestore, APIManagerRestoreSpec};
use crate::lookup::{self, ApiManagerLookup, LookupError};
use crate::metrics::Metrics;
use crate::telemetry::Untrusted;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use kube::Resource;
use kube::core::Status;
use kube::core::response::{StatusCause, StatusDetails};
use std::sync::Arc;
use tracing::Instrument;

/// Path of the defaulting (mutating) webhook.
pub const MUTATE_PATH: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerbackup";
/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerbackup";
/// Path of the restores' defaulting (mutating) webhook.
pub const MUTATE_RESTORE_PATH: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerrestore";
/// Path of the restores' validating webhook.
pub const VALIDATE_RESTORE_PATH: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerrestore";

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

/// The object as the rules read it.
type Backup = Admitted<APIManagerBackupSpec>;
/// A restore as the rules read it.
type Restore = Admitted<APIManagerRestoreSpec>;

#[derive(Clone, Copy)]
enum Webhook {
    Defaulting,
    Validating,
    RestoreDefaulting,
    RestoreValidating,
}

impl Webhook {
    fn label(self) -> &'static str {
        match self {
            Self::Defaulting => "defaulting",
            Self::Validating => "validating",
            Self::RestoreDefaulting => "restore-defaulting",
            Self::RestoreValidating => "restore-validating",
        }
    }
}

/// `POST` handler of the defaulting webhook.
pub async fn mutate<L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer(&state.lookup, Webhook::Defaulting, &body).await
}

/// `POST` handler of the validating webhook.
pub async fn validate<L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer(&state.lookup, Webhook::Validating, &body).await
}

/// `POST` handler of the restores' defaulting webhook.
pub async fn mutate_restore<L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer(&state.lookup, Webhook::RestoreDefaulting, &body).await
}

/// `POST` handler of the restores' validating webhook.
pub async fn validate_restore<L: ApiManagerLookup>(State(state): State<AdmissionState<L>>, body: Bytes) -> Response {
    answer(&state.lookup, Webhook::RestoreValidating, &body).await
}

async fn answer<L: ApiManagerLookup>(lookup: &L, webhook: Webhook, body: &[u8]) -> Response {
    let webhook_label = webhook.label();
    let read = match webhook {
        Webhook::Defaulting | Webhook::Validating => read_request::<APIManagerBackup>(body),
        Webhook::RestoreDefaulting | Webhook::RestoreValidating => read_request::<APIManagerRestore>(body),
    };
    let (response, operation) = match read {
        Ok(request) => {
            let span = tracing::info_span!("admission", webhook = webhook_label, uid = ?Untrusted(&request.uid));
            let response = match webhook {
                Webhook::Defaulting => default_request(lookup, &request).instrument(span).await,
                Webhook::Validating => validate_request(lookup, &request).instrument(span).await,
                Webhook::RestoreDefaulting => span.in_scope(|| default_restore(&request)),
                Webhook::RestoreValidating => validate_restore_request(lookup, &request).instrument(span).await,
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

async fn default_request<L: ApiManagerLookup>(lookup: &L, request: &AdmissionRequest<'_>) -> AdmissionResponse {
    let allow = AdmissionResponse::allow(request.uid.clone());
    // Defaulting runs before the API server checks the object against the schema: an object
    // that does not have the shape of an APIManagerBackup is left to the schema and to validation.
    let Ok(backup) = request.object::<Backup>() else {
        return allow;
    };
    if !needs_default(&backup.spec) {
        return allow;
    }
    let chosen = match request.old_object::<Backup>() {
        Some(old) => choose_name(old.ok().map(|old| old.spec).as_ref(), &[]),
        None => {
            let only = |known: &[APIManager]| choose_name(None, known).ok_or(());
            match lookup::cache_first(lookup, &request.namespace, None, only).await {
                Ok(chosen) => chosen.ok(),
                Err(error) => {
                    tracing::warn!(error = %Untrusted(&error.to_string()), "cannot default spec.apiManagerName; validation will explain");
                    None
                }
            }
        }
    };
    let Some(name) = chosen else {
        return allow;
    };
    patched(request, &set_name_patch(&name))
}

/// Allows `request` with `patch`; unpatched if the patch cannot be encoded.
fn patched(request: &AdmissionRequest<'_>, patch: &json_patch::Patch) -> AdmissionResponse {
    AdmissionResponse::allow(request.uid.clone()).with_patch(patch).unwrap_or_else(|error| {
        tracing::error!(%error, "could not encode the defaulting patch");
        AdmissionResponse::allow(request.uid.clone())
    })
}

/// Restores: `claimSource.readOnly` defaults to `true`, which is how the restore mounts the claim
/// in any case (a restore never writes to its backup). An object of another shape is left to the
/// schema and to validation.
fn default_restore(request: &AdmissionRequest<'_>) -> AdmissionResponse {
    let read_only_unset = request.object::<Restore>().ok().and_then(|restore| {
        restore.spec.restore_source.persistent_volume_claim.map(|claim| claim.claim_source.read_only.is_none())
    });
    if read_only_unset == Some(true) {
        patched(request, &read_only_patch())
    } else {
        AdmissionResponse::allow(request.uid.clone())
    }
}

async fn validate_request<L: ApiManagerLookup>(lookup: &L, request: &AdmissionRequest<'_>) -> AdmissionResponse {
    let create = |spec: APIManagerBackupSpec| async move { checked_create(lookup, &spec, &request.namespace).await };
    validate_with(request, &APIManagerBackup::kind(&()), create, check_update).await
}

async fn validate_restore_request<L: ApiManagerLookup>(
    lookup: &L,
    request: &AdmissionRequest<'_>,
) -> AdmissionResponse {
    let create = |spec: APIManagerRestoreSpec| async move { checked_restore(lookup, &spec, &request.namespace).await };
    validate_with(request, &APIManagerRestore::kind(&()), create, restore_validation::check_update).await
}

/// The validating flow of `kind`: its spec typed as `S`, then `create` on CREATE (an `Err` is a
/// failed lookup: creation is refused with 500, "try again", rather than let through) or `update`
/// on UPDATE.
async fn validate_with<S, C, Fut>(
    request: &AdmissionRequest<'_>,
    kind: &str,
    create: C,
    update: impl FnOnce(&S, &S) -> Verdict,
) -> AdmissionResponse
where
    S: serde::de::DeserializeOwned,
    C: FnOnce(S) -> Fut,
    Fut: Future<Output = Result<Verdict, LookupError>>,
{
    let uid = request.uid.clone();
    let object = match request.object::<Admitted<S>>() {
        Ok(object) => object,
        Err(error) => return AdmissionResponse::bad_request(uid, &error),
    };
    let name = object.metadata.name.clone().unwrap_or_else(|| request.name.to_string());
    let verdict = match request.operation {
        Operation::Create => match create(object.spec).await {
            Ok(verdict) => verdict,
            Err(error @ LookupError::NotManaged { .. }) => {
                let message = Untrusted(&error.to_string()).to_string();
                return AdmissionResponse::deny(uid, Status::failure(&message, "Forbidden").with_code(403));
            }
            Err(error) => {
                let error = Untrusted(&error.to_string()).to_string();
                tracing::warn!(%error, "cannot look up what the rules need");
                let message = format!("{error}; try again, and check the operator's logs if it persists");
                return AdmissionResponse::deny(uid, Status::failure(&message, "InternalError").with_code(500));
            }
        },
        Operation::Update => match request.old_object::<Admitted<S>>() {
            Some(Ok(old)) => update(&old.spec, &object.spec),
            Some(Err(error)) => return AdmissionResponse::bad_request(uid, &error),
            None => return AdmissionResponse::bad_request(uid, &BadRequest::MissingOldObject),
        },
    };
    respond(uid, kind, &name, verdict)
}

/// The CREATE rules against the lookup's APIManagers; when they refuse the APIManager, again
/// against what the API server holds now (a cache may not have seen it created or changed yet).
async fn checked_create<L: ApiManagerLookup>(
    lookup: &L,
    spec: &APIManagerBackupSpec,
    namespace: &str,
) -> Result<Verdict, LookupError> {
    let name = spec.api_manager_name.as_deref().filter(|name| !name.is_empty());
    let rules = |known: &[APIManager]| {
        let refused = !check_apimanager(name, namespace, known).errors.is_empty();
        let verdict = check_create(spec, namespace, known);
        if refused { Err(verdict) } else { Ok(verdict) }
    };
    Ok(lookup::cache_first(lookup, namespace, name, rules).await?.unwrap_or_else(|refused| refused))
}

/// The CREATE rules of a restore: the claim read live, the APIManagers from the lookup; when a
/// live APIManager is the reason to refuse, again against what the API server holds now (a cache
/// may not have seen it deleted yet).
async fn checked_restore<L: ApiManagerLookup>(
    lookup: &L,
    spec: &APIManagerRestoreSpec,
    namespace: &str,
) -> Result<Verdict, LookupError> {
    let claim = match spec.restore_source.claim_name().filter(|name| !name.is_empty()) {
        Some(name) => lookup.claim(namespace, name).await?,
        None => None,
    };
    let backed_up = claim.as_ref().and_then(restore_validation::backed_up_apimanager);
    let rules = |known: &[APIManager]| {
        let verdict = restore_validation::check_create(spec, namespace, claim.as_ref(), known);
        // Only a live APIManager of the backed-up name is worth confirming.
        if verdict.errors.is_empty() || backed_up.is_none() { Ok(verdict) } else { Err(verdict) }
    };
    Ok(lookup::cache_first(lookup, namespace, backed_up.as_deref(), rules).await?.unwrap_or_else(|refused| refused))
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
