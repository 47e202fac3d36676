//! The 3scale-operator stand-in: no 3scale-operator runs in the harness (it would need 3scale's
//! images and a cluster to run them), so nothing would ever report an APIManager available and a
//! restore would wait for it forever. This plays the one part of 3scale-operator a restore waits
//! for: it watches the APIManagers of every namespace and gives each one that has no
//! [`AVAILABLE_CONDITION`] yet the condition 3scale-operator sets once the installation's
//! deployments and routes are ready, `Available` with status `"True"`, through the status
//! subresource — once every Secret the APIManager references exists (see
//! [`crate::api::referenced_secrets`]): the real operator stalls without them, so a restore that
//! forgets one waits here as it would on a cluster. It watches Secrets (their metadata only) too, and
//! looks again at the unavailable APIManagers of a namespace where one appears.
//!
//! It leaves alone the APIManagers of a namespace labelled [`NEVER_AVAILABLE`] (label the
//! namespace before creating the APIManager), so a test can see what happens while an APIManager
//! is not available, and make it available when it chooses with [`report_available`].

use super::background::Background;
use crate::api::apimanager::{APIManager, AVAILABLE_CONDITION};
use crate::api::referenced_secrets::is_object_name;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Namespace label (`key`, `value`) telling the stand-in to leave the APIManagers of that
/// namespace unavailable, as a 3scale installation that never becomes ready would be.
pub const NEVER_AVAILABLE: (&str, &str) = ("local.apimanager-backup-operator/never-available", "true");
/// `reason` of the condition the stand-in sets (3scale-operator sets none), so whoever reads the
/// APIManager sees who marked it.
pub const REASON: &str = "HarnessStandIn";
/// Field manager of the stand-in's status writes.
const FIELD_MANAGER: &str = "apimanager-backup-operator-local-3scale-operator";

/// The running stand-in; dropping it stops it.
pub struct ThreescaleOperatorStandIn {
    _task: Background,
}

impl ThreescaleOperatorStandIn {
    /// Starts watching APIManagers with `admin` credentials, on a thread and runtime of its own.
    pub fn start(admin_kubeconfig: PathBuf) -> Self {
        Self { _task: Background::spawn("3scale-operator-stand-in", admin_kubeconfig, watch_apimanagers) }
    }
}

/// What woke the stand-in.
enum Seen {
    /// An APIManager was created or changed.
    ApiManager(Box<APIManager>),
    /// A Secret appeared or changed in this namespace.
    Secret(String),
}

async fn watch_apimanagers(client: kube::Client) {
    let (store, writer) = reflector::store();
    let apimanagers = watcher(Api::<APIManager>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .filter_map(|event| std::future::ready(event.ok().map(|apimanager| Seen::ApiManager(Box::new(apimanager)))));
    let secrets = watcher(Api::<PartialObjectMeta<Secret>>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|event| {
            std::future::ready(event.ok().map(|secret| Seen::Secret(secret.namespace().unwrap_or_default())))
        });
    let mut events = std::pin::pin!(futures::stream::select(apimanagers, secrets));
    while let Some(seen) = events.next().await {
        let candidates = match seen {
            Seen::ApiManager(apimanager) => vec![*apimanager],
            Seen::Secret(namespace) => unavailable_in(&store, &namespace),
        };
        for apimanager in candidates {
            consider(&client, &apimanager).await;
        }
    }
}

/// The APIManagers of `namespace` the store holds without an [`AVAILABLE_CONDITION`].
fn unavailable_in(store: &Store<APIManager>, namespace: &str) -> Vec<APIManager> {
    let state = store.state();
    let in_namespace = state.iter().filter(|apimanager| apimanager.namespace().as_deref() == Some(namespace));
    in_namespace
        .filter(|apimanager| !has_condition(apimanager, AVAILABLE_CONDITION))
        .map(|a| a.as_ref().clone())
        .collect()
}

/// Marks `apimanager` available when nothing holds it back, logging what happened.
async fn consider(client: &kube::Client, apimanager: &APIManager) {
    if has_condition(apimanager, AVAILABLE_CONDITION) {
        return;
    }
    let name = format!("{}/{}", apimanager.namespace().unwrap_or_default(), apimanager.name_any());
    match mark_available(client, apimanager).await {
        Ok(Verdict::Marked) => {
            tracing::info!(apimanager = %name, "3scale-operator stand-in marked the APIManager available")
        }
        Ok(Verdict::NeverAvailable) => {
            tracing::debug!(apimanager = %name, "3scale-operator stand-in leaves the APIManager unavailable")
        }
        Ok(Verdict::MissingSecrets(missing)) => tracing::info!(
            apimanager = %name,
            missing = %missing.join(", "),
            "3scale-operator stand-in waits for the Secrets the APIManager references"
        ),
        // The APIManager's next event, a Secret's, or the watch's next full list, tries again.
        Err(error) => {
            tracing::warn!(apimanager = %name, %error, "3scale-operator stand-in could not mark the APIManager")
        }
    }
}

/// Whether the APIManager's status holds a condition of `type_`, whatever its status.
fn has_condition(apimanager: &APIManager, type_: &str) -> bool {
    conditions(apimanager).iter().any(|condition| condition.get("type").and_then(Value::as_str) == Some(type_))
}

/// The APIManager's `status.conditions`, empty when it has none (or of another shape).
fn conditions(apimanager: &APIManager) -> Vec<Value> {
    let listed = apimanager.status.as_ref().and_then(|status| status.get("conditions")).and_then(Value::as_array);
    listed.cloned().unwrap_or_default()
}

/// What the stand-in did with an APIManager.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Reported available.
    Marked,
    /// Left alone: its namespace carries [`NEVER_AVAILABLE`].
    NeverAvailable,
    /// Left unavailable: these Secrets it references do not exist (yet).
    MissingSecrets(Vec<String>),
}

/// Reports the APIManager available unless its namespace carries [`NEVER_AVAILABLE`] or a Secret
/// it references does not exist.
async fn mark_available(client: &kube::Client, apimanager: &APIManager) -> Result<Verdict, kube::Error> {
    let namespace = apimanager.namespace().unwrap_or_default();
    let labels = Api::<Namespace>::all(client.clone()).get(&namespace).await?.metadata.labels.unwrap_or_default();
    if labels.get(NEVER_AVAILABLE.0).map(String::as_str) == Some(NEVER_AVAILABLE.1) {
        return Ok(Verdict::NeverAvailable);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut missing = Vec::new();
    for name in apimanager.referenced_secrets().into_keys() {
        if !is_object_name(&name) || secrets.get_metadata_opt(&name).await?.is_none() {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Ok(Verdict::MissingSecrets(missing));
    }
    report_available(client, apimanager).await?;
    Ok(Verdict::Marked)
}

/// What the stand-in does to an APIManager: adds `Available=True` to its `status.conditions` (and an
/// empty `status.deployments` where there is none, which the real CRD requires) through the status
/// subresource, conditional on the APIManager's resourceVersion (a condition
/// set meanwhile by someone else is never lost). A test whose namespace carries
/// [`NEVER_AVAILABLE`] calls it to make an APIManager available when it chooses.
pub async fn report_available(client: &kube::Client, apimanager: &APIManager) -> Result<(), kube::Error> {
    let mut conditions = conditions(apimanager);
    conditions.push(json!({
        "type": AVAILABLE_CONDITION,
        "status": "True",
        "reason": REASON,
        "message": "no 3scale-operator runs in the harness; its stand-in marks every APIManager available",
        "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
    }));
    // 3scale-operator's real CRD requires `status.deployments` (the installation's deployments by
    // state); the harness runs none, so the stand-in lists none.
    let deployments = apimanager.status.as_ref().and_then(|status| status.get("deployments")).cloned();
    let patch = json!({
        "metadata": {"resourceVersion": apimanager.resource_version()},
        "status": {"conditions": conditions, "deployments": deployments.unwrap_or_else(|| json!({}))},
    });
    let api: Api<APIManager> = Api::namespaced(client.clone(), &apimanager.namespace().unwrap_or_default());
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
    api.patch_status(&apimanager.name_any(), &params, &Patch::Merge(&patch)).await.map(drop)
}
