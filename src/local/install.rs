//! What a local cluster needs before the operator runs: the CRDs, the operator's own
//! ServiceAccount with exactly the RBAC of `manifests/`, and the webhook configurations of
//! `manifests/` pointed at the operator's loopback URL.

use super::LocalError;
use crate::scope::Namespaces;
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The Pod Security Standard label of every namespace the harness makes: the API server's
/// PodSecurity admission then refuses any backup Pod the strictest cluster would refuse.
pub const RESTRICTED: (&str, &str) = ("pod-security.kubernetes.io/enforce", "restricted");

/// Creates namespace `name` enforcing the `restricted` Pod Security Standard (an existing one is
/// fine).
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), LocalError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.to_owned());
    namespace.metadata.labels = Some([(RESTRICTED.0.to_owned(), RESTRICTED.1.to_owned())].into());
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
        Err(source) => Err(LocalError::Api { what: format!("creating namespace {name}"), source }),
    }
}

/// Field manager of everything the local setup applies.
pub const FIELD_MANAGER: &str = "apimanager-backup-operator-local";
/// Namespace of the operator, as in `manifests/`.
pub const OPERATOR_NAMESPACE: &str = "apimanager-backup-operator";
/// ServiceAccount of the operator, as in `manifests/`.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "apimanager-backup-operator";

/// The APIManagerBackup and APIManagerRestore CRDs of `manifests/`.
pub const OPERATOR_CRDS: &str = include_str!("../../manifests/crd.yaml");
/// The development APIManager CRD.
pub const APIMANAGER_CRD: &str = include_str!("../../manifests/dev/apimanager-crd.yaml");
/// The operator's namespace.
pub const NAMESPACE_MANIFEST: &str = include_str!("../../manifests/namespace.yaml");
/// The operator's ServiceAccount and RBAC.
pub const RBAC_MANIFEST: &str = include_str!("../../manifests/rbac.yaml");
/// The admission policy fencing the operator's ServiceAccount.
pub const ADMISSION_POLICY_MANIFEST: &str = include_str!("../../manifests/admission-policy.yaml");
/// The webhook configurations.
pub const WEBHOOKS_MANIFEST: &str = include_str!("../../manifests/webhooks.yaml");
/// The RoleBinding that grants the operator its rules in one watched namespace, from the
/// `namespaced` component of `manifests/`.
pub const NAMESPACED_ROLE_BINDING: &str = include_str!("../../manifests/components/namespaced/rolebindings.yaml");

/// The documents of a multi-document YAML text.
pub(super) fn parse_documents(yaml: &str) -> Result<Vec<DynamicObject>, LocalError> {
    serde_saphyr::from_multiple(yaml).map_err(|e| LocalError::Yaml(e.to_string()))
}

/// Server-side applies every document of `yaml`; namespaced objects without a namespace go to
/// `namespace`.
pub async fn apply_yaml(client: &Client, yaml: &str, namespace: &str) -> Result<(), LocalError> {
    for object in parse_documents(yaml)? {
        apply_object(client, object, namespace).await?;
    }
    Ok(())
}

/// Server-side applies `object`; a namespaced one without a namespace goes to `namespace`.
pub(super) async fn apply_object(client: &Client, object: DynamicObject, namespace: &str) -> Result<(), LocalError> {
    let types = object
        .types
        .clone()
        .ok_or_else(|| LocalError::Yaml(format!("{} has no apiVersion/kind", object.name_any())))?;
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| LocalError::Yaml(e.to_string()))?;
    let what = format!("applying {} {}", types.kind, object.name_any());
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|source| LocalError::Api { what: what.clone(), source })?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            Api::namespaced_with(client.clone(), object.metadata.namespace.as_deref().unwrap_or(namespace), &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object))
        .await
        .map_err(|source| LocalError::Api { what, source })?;
    Ok(())
}

/// Installs the CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> Result<(), LocalError> {
    for yaml in [OPERATOR_CRDS, APIMANAGER_CRD] {
        apply_yaml(client, yaml, "default").await?;
    }
    for name in [
        "apimanagerbackups.apps.3scale.net",
        "apimanagerrestores.apps.3scale.net",
        "apimanagerbackupschedules.apps.3scale.net",
        "apimanagers.apps.3scale.net",
    ] {
        wait_established(client, name).await?;
    }
    Ok(())
}

/// Waits up to 30 s until the API server serves CRD `name` (condition `Established`).
pub(super) async fn wait_established(client: &Client, name: &str) -> Result<(), LocalError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd =
            crds.get(name).await.map_err(|source| LocalError::Api { what: format!("reading CRD {name}"), source })?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LocalError::NotReady(format!("CRD {name} not established")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Replaces the APIManager CRD with `yaml` (say, 3scale-operator's real one instead of the
/// development one) by a full update of the stored CRD, so nothing of the old schema stays, and
/// waits until it is established again. The API server takes a moment more to serve the new schema;
/// a caller that depends on it checks for it.
pub async fn replace_apimanager_crd(client: &Client, yaml: &str) -> Result<(), LocalError> {
    const NAME: &str = "apimanagers.apps.3scale.net";
    let mut crd: CustomResourceDefinition =
        serde_saphyr::from_str(yaml).map_err(|e| LocalError::Yaml(e.to_string()))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let stored =
        crds.get(NAME).await.map_err(|source| LocalError::Api { what: format!("reading CRD {NAME}"), source })?;
    crd.metadata.resource_version = stored.metadata.resource_version;
    let what = format!("replacing CRD {NAME}");
    crds.replace(NAME, &PostParams::default(), &crd).await.map_err(|source| LocalError::Api { what, source })?;
    wait_established(client, NAME).await
}

/// Creates the operator's namespace, ServiceAccount and RBAC from `manifests/` and returns a
/// token of that ServiceAccount, so the operator runs with exactly the permissions it ships with.
pub async fn install_operator_identity(client: &Client) -> Result<String, LocalError> {
    apply_yaml(client, NAMESPACE_MANIFEST, OPERATOR_NAMESPACE).await?;
    apply_yaml(client, RBAC_MANIFEST, OPERATOR_NAMESPACE).await?;
    service_account_token(client, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await
}

/// Limits the operator's RBAC to `namespaces` as the `namespaced` component of `manifests/` does:
/// its ClusterRoleBinding goes, and a RoleBinding to the same ClusterRole is made in each namespace
/// (created when missing).
pub async fn scope_operator_identity(client: &Client, namespaces: &BTreeSet<String>) -> Result<(), LocalError> {
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let cluster_wide = parse_documents(RBAC_MANIFEST)?
        .into_iter()
        .filter(|object| object.types.as_ref().is_some_and(|t| t.kind == "ClusterRoleBinding"));
    for binding in cluster_wide {
        let what = format!("deleting ClusterRoleBinding {}", binding.name_any());
        match bindings.delete(&binding.name_any(), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => return Err(LocalError::Api { what, source }),
        }
    }
    for namespace in namespaces {
        ensure_namespace(client, namespace).await?;
        for mut binding in parse_documents(NAMESPACED_ROLE_BINDING)? {
            binding.metadata.namespace = Some(namespace.clone());
            apply_object(client, binding, namespace).await?;
        }
    }
    Ok(())
}

/// Installs the admission policy of `manifests/` (and its binding) allowing the operator's step Pods
/// only `job_image`, as kustomize's replacement does for an install.
pub async fn install_admission_policy(client: &Client, job_image: &str) -> Result<(), LocalError> {
    for mut object in parse_documents(ADMISSION_POLICY_MANIFEST)? {
        let variables = object.data.pointer_mut("/spec/variables").and_then(Value::as_array_mut);
        if let Some(image) = variables.into_iter().flatten().find(|v| v["name"] == "jobImage") {
            image["expression"] = Value::String(format!("'{job_image}'"));
        }
        apply_object(client, object, OPERATOR_NAMESPACE).await?;
    }
    Ok(())
}

/// A day-long token of a ServiceAccount, from the TokenRequest API.
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> Result<String, LocalError> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(86_400), ..TokenRequestSpec::default() },
        ..TokenRequest::default()
    };
    let what = format!("requesting a token for ServiceAccount {namespace}/{name}");
    let answer = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .map_err(|source| LocalError::Api { what: what.clone(), source })?;
    answer.status.map(|s| s.token).ok_or(LocalError::NotReady(what))
}

/// The webhook configurations of `manifests/`, with each webhook calling `base_url` + its path
/// and trusting `ca_pem` instead of going through the in-cluster Service; called for objects of
/// `namespaces` only, as the `namespaced` component of `manifests/` sets.
pub fn webhooks_for_url(
    base_url: &str,
    ca_pem: &[u8],
    namespaces: &Namespaces,
) -> Result<Vec<DynamicObject>, LocalError> {
    let ca_bundle = serde_json::to_value(ByteString(ca_pem.to_vec())).map_err(|e| LocalError::Yaml(e.to_string()))?;
    let mut configurations = parse_documents(WEBHOOKS_MANIFEST)?;
    for configuration in &mut configurations {
        configuration.metadata.annotations = None;
        let Some(webhooks) = configuration.data.get_mut("webhooks").and_then(Value::as_array_mut) else {
            return Err(LocalError::Yaml(format!("{} has no webhooks", configuration.name_any())));
        };
        for webhook in webhooks {
            let path = webhook.pointer("/clientConfig/service/path").and_then(Value::as_str).unwrap_or("/").to_owned();
            webhook["clientConfig"] = serde_json::json!({"url": format!("{base_url}{path}"), "caBundle": ca_bundle});
            if let Namespaces::Only(names) = namespaces {
                webhook["namespaceSelector"] = serde_json::json!({"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": names}
                ]});
            }
        }
    }
    Ok(configurations)
}

/// Registers both webhook configurations for every namespace (see [`webhooks_for_url`]).
pub async fn register_webhooks(client: &Client, base_url: &str, ca_pem: &[u8]) -> Result<(), LocalError> {
    register_scoped_webhooks(client, base_url, ca_pem, &Namespaces::All).await
}

/// Registers both webhook configurations for `namespaces` (see [`webhooks_for_url`]).
pub async fn register_scoped_webhooks(
    client: &Client,
    base_url: &str,
    ca_pem: &[u8],
    namespaces: &Namespaces,
) -> Result<(), LocalError> {
    for configuration in webhooks_for_url(base_url, ca_pem, namespaces)? {
        apply_object(client, configuration, "default").await?;
    }
    Ok(())
}

/// Removes both webhook configurations, leaving only the CRD's own rules in force.
pub async fn unregister_webhooks(client: &Client) -> Result<(), LocalError> {
    for configuration in webhooks_for_url("https://unused", b"", &Namespaces::All)? {
        let types = configuration.types.clone().unwrap_or_default();
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| LocalError::Yaml(e.to_string()))?;
        let what = format!("deleting {} {}", types.kind, configuration.name_any());
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .map_err(|source| LocalError::Api { what: what.clone(), source })?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        match api.delete(&configuration.name_any(), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(source) => return Err(LocalError::Api { what, source }),
        }
    }
    Ok(())
}
