//! The CA bundle of the operator's two webhook configurations (the Mutating- and the
//! ValidatingWebhookConfiguration of one name): set in every webhook of each, with a
//! resourceVersion precondition so a concurrent change is never overwritten unseen.

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// What setting the bundle of one configuration came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Bundle {
    /// Every webhook already trusted exactly the bundle.
    Unchanged,
    /// The bundle was written.
    Patched,
    /// No such configuration (not installed yet, or removed).
    Missing,
}

/// Why the bundle could not be set.
#[derive(Debug, thiserror::Error)]
#[error("setting the caBundle of {kind} {name}: {source}")]
pub struct WebhookError {
    /// The configuration's kind.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// What the API server answered (409 Conflict: it changed meanwhile).
    pub source: kube::Error,
}

/// Sets `bundle` (PEM) as the caBundle of every webhook of both configurations named `name`.
pub async fn ensure_ca_bundle(client: &Client, name: &str, bundle: &[u8]) -> Result<[Bundle; 2], WebhookError> {
    let mutating = ensure::<MutatingWebhookConfiguration>(client, name, bundle, |c| {
        c.webhooks.iter().flatten().map(|w| w.client_config.ca_bundle.as_ref()).collect()
    });
    let validating = ensure::<ValidatingWebhookConfiguration>(client, name, bundle, |c| {
        c.webhooks.iter().flatten().map(|w| w.client_config.ca_bundle.as_ref()).collect()
    });
    Ok([mutating.await?, validating.await?])
}

async fn ensure<K>(
    client: &Client,
    name: &str,
    bundle: &[u8],
    bundles: impl Fn(&K) -> Vec<Option<&ByteString>>,
) -> Result<Bundle, WebhookError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let error = |source| WebhookError { kind: K::KIND, name: name.to_owned(), source };
    let api: Api<K> = Api::all(client.clone());
    let Some(configuration) = api.get_opt(name).await.map_err(error)? else { return Ok(Bundle::Missing) };
    let current = bundles(&configuration);
    if current.iter().all(|ca| ca.is_some_and(|ca| ca.0 == bundle)) {
        return Ok(Bundle::Unchanged);
    }
    let encoded = serde_json::to_value(ByteString(bundle.to_vec())).unwrap_or_default();
    // The resourceVersion read above: the API server refuses the patch (409) if it changed since.
    let version = configuration.meta().resource_version.clone().unwrap_or_default();
    let mut operations =
        vec![serde_json::json!({"op": "replace", "path": "/metadata/resourceVersion", "value": version})];
    operations.extend((0..current.len()).map(|index| {
        serde_json::json!({"op": "add", "path": format!("/webhooks/{index}/clientConfig/caBundle"), "value": encoded})
    }));
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(operations)).map_err(|e| error(kube::Error::SerdeError(e)))?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await.map_err(error)?;
    Ok(Bundle::Patched)
}
