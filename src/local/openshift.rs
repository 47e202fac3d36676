//! The harness's OpenShift mode: what a step Pod meets on OpenShift that plain Kubernetes lacks,
//! on the path a real cluster takes, the API server itself.
//!
//! - Discovery shows [`OPENSHIFT_SECURITY_GROUP`]: the SecurityContextConstraints CRD is installed
//!   (as OpenShift 4 serves it) with the `restricted-v2` SCC.
//! - Every namespace carries OpenShift's allocation annotations (a block of 10,000 users and groups
//!   and an SELinux level, see [`scc::Allocation`]): a mutating webhook gives them to each namespace
//!   at creation (OpenShift's controller does it just after; here no Pod can race it), and the
//!   namespaces existing at start are annotated then.
//! - SCC admission for Pods, a mutating and a validating webhook served here and called by the API
//!   server for every Pod outside `kube-*`: `restricted-v2` as [`scc`] states it (defaults, then
//!   refusal of anything outside the namespace's ranges or the SCC's rules), the admitted Pod
//!   annotated `openshift.io/scc: restricted-v2`.
//!
//! The node stand-in then runs the Pod as OpenShift's runtime does: as the assigned user, with
//! primary group 0 (no `runAsGroup`), the `fsGroup` and the supplemental groups.

use super::LocalError;
use super::background::Background;
use super::install::{FIELD_MANAGER, apply_object, apply_yaml, wait_established};
use super::scc::{self, Allocation};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The SecurityContextConstraints CRD, as OpenShift 4 serves the kind.
pub const SCC_CRD: &str = include_str!("../../manifests/dev/openshift/securitycontextconstraints-crd.yaml");
/// OpenShift's default `restricted-v2` SCC.
pub const RESTRICTED_V2: &str = include_str!("../../manifests/dev/openshift/restricted-v2.yaml");
/// Name of the CRD.
const SCC_CRD_NAME: &str = "securitycontextconstraints.security.openshift.io";

/// Path of the namespace allocation webhook.
const NAMESPACE_PATH: &str = "/namespaces/allocate";
/// Path of the mutating SCC webhook.
const MUTATE_PATH: &str = "/pods/scc/mutate";
/// Path of the validating SCC webhook.
const VALIDATE_PATH: &str = "/pods/scc/validate";
/// Name of both SCC webhook configurations (and of their one webhook, with a domain).
const CONFIGURATION: &str = "local-openshift-scc";
/// The first block handed out (so the first namespace gets users 1000660000 on, as in
/// OpenShift's documentation).
const FIRST_BLOCK: u32 = 66;
/// Namespaces OpenShift's admission leaves alone here (the control plane's own).
const EXEMPT_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Hands out allocation blocks, each once.
#[derive(Clone)]
struct Allocator(Arc<AtomicU32>);

impl Allocator {
    fn next(&self) -> Allocation {
        Allocation::block(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// The running OpenShift admission; dropping it stops its server.
pub struct OpenShiftStandIn {
    _server: Background,
}

impl OpenShiftStandIn {
    /// Installs the SCC CRD and `restricted-v2`, starts the admission webhooks' server on
    /// loopback (serving `certs`' tls.crt, trusted through its ca.crt), annotates the namespaces
    /// that exist, and registers the webhooks with the API server of `admin`; returns once a Pod
    /// is admitted through them.
    pub async fn start(admin: &kube::Client, admin_kubeconfig: &Path, certs: &Path) -> Result<Self, LocalError> {
        apply_yaml(admin, SCC_CRD, "default").await?;
        wait_established(admin, SCC_CRD_NAME).await?;
        apply_yaml(admin, RESTRICTED_V2, "default").await?;

        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|source| LocalError::Io { what: "binding the OpenShift admission port".into(), source })?;
        let url = format!(
            "https://127.0.0.1:{}",
            listener
                .local_addr()
                .map_err(|source| LocalError::Io { what: "the OpenShift admission port".into(), source })?
                .port()
        );
        let files = crate::tls::TlsFiles { cert: certs.join("tls.crt"), key: certs.join("tls.key") };
        let tls = files.load().map_err(|e| LocalError::Kube(format!("OpenShift admission TLS: {e}")))?;
        let allocator = Allocator(Arc::new(AtomicU32::new(FIRST_BLOCK)));
        let served = allocator.clone();
        let server = Background::spawn("openshift-admission", admin_kubeconfig.to_owned(), move |client| {
            serve(listener, tls, client, served)
        });

        annotate_existing_namespaces(admin, &allocator).await?;
        let ca = std::fs::read(certs.join("ca.crt"))
            .map_err(|source| LocalError::Io { what: "reading ca.crt".into(), source })?;
        for configuration in webhook_configurations(&url, &ca) {
            let object: DynamicObject =
                serde_json::from_value(configuration).map_err(|e| LocalError::Yaml(e.to_string()))?;
            apply_object(admin, object, "default").await?;
        }
        let stand_in = Self { _server: server };
        wait_admitting(admin).await?;
        Ok(stand_in)
    }
}

/// Gives every namespace without an allocation one, as OpenShift's controller does.
async fn annotate_existing_namespaces(admin: &kube::Client, allocator: &Allocator) -> Result<(), LocalError> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let listed = namespaces
        .list(&Default::default())
        .await
        .map_err(|source| LocalError::Api { what: "listing namespaces".into(), source })?;
    for namespace in listed {
        let name = namespace.name_any();
        if EXEMPT_NAMESPACES.contains(&name.as_str()) || namespace.annotations().contains_key(scc::UID_RANGE) {
            continue;
        }
        let patch = json!({"metadata": {"annotations": allocator.next().annotations()}});
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
        namespaces
            .patch(&name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| LocalError::Api { what: format!("annotating namespace {name}"), source })?;
    }
    Ok(())
}

/// The namespace webhook (CREATE) and the two Pod webhooks (CREATE, every namespace but
/// [`EXEMPT_NAMESPACES`]), calling `url` and trusting `ca_pem`; all fail closed, as OpenShift's
/// built-in admission cannot be skipped.
fn webhook_configurations(url: &str, ca_pem: &[u8]) -> Vec<Value> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let webhook = |name: &str, path: &str, resource: &str| {
        let mut hook = json!({
            "name": format!("{name}.local.openshift.io"),
            "clientConfig": {"url": format!("{url}{path}"), "caBundle": ca},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [resource]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 10,
        });
        if resource == "pods" {
            hook["namespaceSelector"] = json!({"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": EXEMPT_NAMESPACES}]});
        }
        hook
    };
    let mut mutating = webhook("scc-mutate", MUTATE_PATH, "pods");
    // Run again if a later mutating webhook changes the Pod, as the built-in admission sees the end result.
    mutating["reinvocationPolicy"] = json!("IfNeeded");
    vec![
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": CONFIGURATION},
            "webhooks": [webhook("namespace-allocation", NAMESPACE_PATH, "namespaces"), mutating]}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": CONFIGURATION},
            "webhooks": [webhook("scc-validate", VALIDATE_PATH, "pods")]}),
    ]
}

/// Waits until the API server calls the SCC webhook: a dry-run Pod in `default` comes back with
/// the SCC's annotation.
async fn wait_admitting(admin: &kube::Client) -> Result<(), LocalError> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let probe: Pod = serde_json::from_value(json!({"metadata": {"name": "openshift-admission-probe"},
        "spec": {"containers": [{"name": "probe", "image": "probe"}]}}))
    .map_err(|e| LocalError::Yaml(e.to_string()))?;
    let params = kube::api::PostParams { dry_run: true, ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match pods.create(&params, &probe).await {
            Ok(pod) if pod.annotations().get(scc::SCC_ANNOTATION).map(String::as_str) == Some(scc::SCC_NAME) => {
                return Ok(());
            }
            Ok(_) => last = "the probe Pod was admitted without the SCC".into(),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(LocalError::NotReady(format!("OpenShift admission: {last}")))
}

/// What every handler shares.
#[derive(Clone)]
struct Admission {
    client: kube::Client,
    allocator: Allocator,
}

async fn serve(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    client: kube::Client,
    allocator: Allocator,
) {
    let app = axum::Router::new()
        .route(NAMESPACE_PATH, post(allocate_namespace))
        .route(MUTATE_PATH, post(mutate_pod))
        .route(VALIDATE_PATH, post(validate_pod))
        .with_state(Admission { client, allocator });
    let served = match listener.set_nonblocking(true).and_then(|()| axum_server::from_tcp_rustls(listener, tls)) {
        Ok(server) => server.serve(app.into_make_service()).await,
        Err(error) => Err(error),
    };
    if let Err(error) = served {
        tracing::error!(%error, "the OpenShift admission stand-in stopped");
    }
}

/// An AdmissionReview v1 answering `uid`.
fn review(response: Value) -> Json<Value> {
    Json(json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
}

fn allowed(uid: &str, patch: Option<&json_patch::Patch>) -> Json<Value> {
    let mut response = json!({"uid": uid, "allowed": true});
    if let Some(patch) = patch.filter(|p| !p.0.is_empty()) {
        let bytes = serde_json::to_vec(patch).unwrap_or_default();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    review(response)
}

fn denied(uid: &str, message: &str) -> Json<Value> {
    review(json!({"uid": uid, "allowed": false,
        "status": {"code": 403, "reason": "Forbidden", "message": message}}))
}

/// The request's uid and object, as the API server sends them.
fn request_parts(body: &Value) -> (String, Value) {
    let uid = body.pointer("/request/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let object = body.pointer("/request/object").cloned().unwrap_or(Value::Null);
    (uid, object)
}

async fn allocate_namespace(State(state): State<Admission>, Json(body): Json<Value>) -> Json<Value> {
    let (uid, object) = request_parts(&body);
    let Ok(namespace) = serde_json::from_value::<Namespace>(object) else {
        return denied(&uid, "the request carries no Namespace");
    };
    if namespace.annotations().contains_key(scc::UID_RANGE) {
        return allowed(&uid, None);
    }
    let mut annotated = namespace.clone();
    annotated.annotations_mut().extend(state.allocator.next().annotations());
    let (before, after) = (serde_json::to_value(&namespace), serde_json::to_value(&annotated));
    match (before, after) {
        (Ok(before), Ok(after)) => allowed(&uid, Some(&json_patch::diff(&before, &after))),
        _ => denied(&uid, "the Namespace cannot be annotated"),
    }
}

/// The Pod of the request and its namespace's allocation, or the refusal.
async fn pod_and_allocation(state: &Admission, body: &Value) -> Result<(Pod, Allocation), String> {
    let (_, object) = request_parts(body);
    let pod: Pod = serde_json::from_value(object).map_err(|e| format!("the request carries no Pod: {e}"))?;
    let namespace = body.pointer("/request/namespace").and_then(Value::as_str).unwrap_or_default();
    let found = Api::<Namespace>::all(state.client.clone())
        .get(namespace)
        .await
        .map_err(|e| format!("unable to read namespace {namespace}: {e}"))?;
    let allocation = Allocation::from_annotations(found.annotations()).map_err(|e| e.to_string())?;
    Ok((pod, allocation))
}

async fn mutate_pod(State(state): State<Admission>, Json(body): Json<Value>) -> Json<Value> {
    let (uid, _) = request_parts(&body);
    let (pod, allocation) = match pod_and_allocation(&state, &body).await {
        Ok(found) => found,
        Err(message) => return denied(&uid, &message),
    };
    let mut admitted = pod.clone();
    let mut spec = admitted.spec.take().unwrap_or_default();
    scc::apply_defaults(&mut spec, &allocation);
    let violations = scc::violations(&spec, &allocation);
    if !violations.is_empty() {
        return denied(&uid, &scc::refusal(&violations));
    }
    admitted.spec = Some(spec);
    admitted.annotations_mut().insert(scc::SCC_ANNOTATION.to_owned(), scc::SCC_NAME.to_owned());
    match (serde_json::to_value(&pod), serde_json::to_value(&admitted)) {
        (Ok(before), Ok(after)) => allowed(&uid, Some(&json_patch::diff(&before, &after))),
        _ => denied(&uid, "the Pod cannot be admitted"),
    }
}

async fn validate_pod(State(state): State<Admission>, Json(body): Json<Value>) -> Json<Value> {
    let (uid, _) = request_parts(&body);
    let (pod, allocation) = match pod_and_allocation(&state, &body).await {
        Ok(found) => found,
        Err(message) => return denied(&uid, &message),
    };
    let violations = scc::violations(&pod.spec.unwrap_or_default(), &allocation);
    if violations.is_empty() { allowed(&uid, None) } else { denied(&uid, &scc::refusal(&violations)) }
}
