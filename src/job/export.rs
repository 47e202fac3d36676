//! `job export-objects`: the listed Secrets and ConfigMaps, the Secrets the APIManager references
//! and the APIManager, each cleaned of server-set fields and written as JSON in the 3scale-operator
//! layout (referenced Secrets beside the others, under `secrets/`).

use super::destination::write::BucketBackup;
use super::destination::{Folder, ObjectSink};
use super::manifest::{Manifest, ObjectRef, ReferencedSecretEntry, now};
use super::{ExportArgs, JobError};
use crate::api::apimanager::APIManager;
use crate::api::referenced_secrets::{ReferencedSecrets, is_object_name, referenced_secrets};
use crate::layout::{APIMANAGER_FILE, CONFIG_MAPS, CONFIG_MAPS_DIR, OPTIONAL_SECRETS, SECRETS, SECRETS_DIR};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Name of this step in the manifest.
pub const STEP: &str = crate::names::EXPORT_OBJECTS;

/// Metadata fields the server sets, dropped from every exported object.
pub const SERVER_METADATA: [&str; 9] = [
    "ownerReferences",
    "selfLink",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "namespace",
    "clusterName",
    "generation",
    "managedFields",
];

/// Removes `status` and the server-set metadata, so the object can be created again elsewhere.
pub fn clean(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SERVER_METADATA {
            metadata.remove(field);
        }
    }
}

async fn write_object<S: ObjectSink>(
    sink: &mut S,
    relative: &str,
    mut object: Value,
    manifest: &mut Manifest,
) -> Result<(), JobError> {
    clean(&mut object);
    let bytes = serde_json::to_vec_pretty(&object)
        .map_err(|e| JobError::Corrupt { path: relative.into(), reason: e.to_string() })?;
    sink.put(relative, bytes, manifest).await
}

fn to_value<T: serde::Serialize>(object: &T, what: &str) -> Result<Value, JobError> {
    serde_json::to_value(object).map_err(|e| JobError::Corrupt { path: what.into(), reason: e.to_string() })
}

/// An object the export needs that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingObject {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The fields of the APIManager referencing it; empty for the objects of the 3scale reference
    /// and the APIManager itself.
    pub referenced_by: Vec<String>,
}

impl std::fmt::Display for MissingObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if is_object_name(&self.name) {
            write!(f, "{} {}", self.kind, self.name)?;
        } else {
            write!(f, "{} {:?} (not a valid name)", self.kind, self.name)?;
        }
        if !self.referenced_by.is_empty() {
            write!(f, " (referenced by {})", self.referenced_by.join(", "))?;
        }
        Ok(())
    }
}

/// One object to export.
struct Wanted<'a> {
    name: &'a str,
    /// A missing optional object is recorded as absent instead of failing the export.
    optional: bool,
    /// The fields of the APIManager naming it.
    referenced_by: Vec<String>,
}

/// Where exported objects go, and what was not found.
struct Export<'a, S> {
    sink: &'a mut S,
    namespace: &'a str,
    manifest: &'a mut Manifest,
    missing: &'a mut Vec<MissingObject>,
}

impl<S: ObjectSink> Export<'_, S> {
    /// Writes each wanted object to `<dir>/<name>.json`; a missing one is absent when optional,
    /// otherwise missing.
    async fn named<K>(&mut self, api: &Api<K>, dir: &str, wanted: Vec<Wanted<'_>>) -> Result<(), JobError>
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let kind = K::kind(&()).into_owned();
        for Wanted { name, optional, referenced_by } in wanted {
            if !is_object_name(name) {
                // No object can have that name (and it must not become a path).
                self.missing.push(MissingObject { kind: kind.clone(), name: name.to_owned(), referenced_by });
                continue;
            }
            let relative = format!("{dir}/{name}.json");
            let what = format!("reading {kind} {}/{name}", self.namespace);
            match api.get_opt(name).await.map_err(|source| JobError::Api { what, source })? {
                Some(object) => {
                    write_object(self.sink, &relative, to_value(&object, &relative)?, self.manifest).await?
                }
                None if optional => {
                    let reason = format!("optional {kind} {name} does not exist in namespace {}", self.namespace);
                    self.manifest.add_absent(relative, reason);
                }
                None => self.missing.push(MissingObject { kind: kind.clone(), name: name.to_owned(), referenced_by }),
            }
        }
        Ok(())
    }
}

/// The Secrets to export: the 13 of the 3scale reference, then those the APIManager references
/// (one of the 13 that it references is exported once, and is required even if optional).
fn wanted_secrets(referenced: &ReferencedSecrets) -> Vec<Wanted<'_>> {
    let fields = |name: &str| -> Vec<String> {
        referenced.get(name).into_iter().flatten().map(|reference| reference.field.clone()).collect()
    };
    let reference_secrets = SECRETS.iter().map(|name| Wanted {
        name,
        optional: OPTIONAL_SECRETS.contains(name) && !referenced.contains_key(*name),
        referenced_by: fields(name),
    });
    let others = referenced.keys().filter(|name| !SECRETS.contains(&name.as_str()));
    reference_secrets.chain(others.map(|name| Wanted { name, optional: false, referenced_by: fields(name) })).collect()
}

/// What the manifest lists of the referenced Secrets.
fn referenced_entries(referenced: &ReferencedSecrets) -> Vec<ReferencedSecretEntry> {
    referenced
        .iter()
        .map(|(name, references)| ReferencedSecretEntry {
            name: name.clone(),
            path: format!("{SECRETS_DIR}/{name}.json"),
            references: references.clone(),
        })
        .collect()
}

/// Exports every object, then records the step in the manifest (on the claim, or in the bucket's
/// part of this step, committed when this is the backup's last step). The APIManager is read
/// first: it names the Secrets it references, exported with the 13. Missing required objects fail
/// the step with their names (and the fields referencing them); missing optional Secrets are
/// recorded as absent. Returns the bytes a bucket's backup uploaded when this step committed it.
pub async fn run(args: &ExportArgs) -> Result<Option<u64>, JobError> {
    let started_at = now();
    if crate::job::destination::writes_sealed(&args.common) {
        let mut bucket = BucketBackup::begin(&args.common, STEP).await?;
        let mut manifest = Manifest::default();
        export(args, &mut bucket, &mut manifest).await?;
        manifest.finish_step(STEP, started_at, args.last_step);
        return Ok(bucket.finish(manifest, args.last_step).await?.backup_uploaded);
    }
    let root = &args.common.backup_dir;
    let mut manifest = Manifest::load(root)?;
    manifest.begin(root)?;
    export(args, &mut Folder(root), &mut manifest).await?;
    manifest.finish_step(STEP, started_at, args.last_step);
    manifest.save(root)?;
    Ok(None)
}

/// Exports every object into `sink`, listing them and the backup's identity in `manifest`.
async fn export<S: ObjectSink>(args: &ExportArgs, sink: &mut S, manifest: &mut Manifest) -> Result<(), JobError> {
    let client = crate::client::connect(STEP).await.map_err(|e| JobError::Config(e.to_string()))?;
    let mut missing = Vec::new();

    let resource = ApiResource::erase::<APIManager>(&());
    let apimanagers: Api<DynamicObject> = Api::namespaced_with(client.clone(), &args.namespace, &resource);
    let what = format!("reading APIManager {}/{}", args.namespace, args.apimanager);
    let apimanager =
        match apimanagers.get_opt(&args.apimanager).await.map_err(|source| JobError::Api { what, source })? {
            Some(apimanager) => Some(to_value(&apimanager, APIMANAGER_FILE)?),
            None => {
                missing.push(MissingObject {
                    kind: APIManager::kind(&()).into_owned(),
                    name: args.apimanager.clone(),
                    referenced_by: Vec::new(),
                });
                None
            }
        };
    let referenced = apimanager.as_ref().map(referenced_secrets).unwrap_or_default();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &args.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client, &args.namespace);
    let mut export = Export { sink, namespace: &args.namespace, manifest, missing: &mut missing };
    export.named(&secrets, SECRETS_DIR, wanted_secrets(&referenced)).await?;
    let config_map_names = CONFIG_MAPS.iter().map(|name| Wanted { name, optional: false, referenced_by: Vec::new() });
    export.named(&config_maps, CONFIG_MAPS_DIR, config_map_names.collect()).await?;
    let Export { sink, manifest, missing, .. } = export;
    if !missing.is_empty() {
        return Err(JobError::MissingObjects { namespace: args.namespace.clone(), objects: std::mem::take(missing) });
    }
    if let Some(apimanager) = apimanager {
        manifest.api_manager = ObjectRef {
            name: args.apimanager.clone(),
            uid: apimanager.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned(),
        };
        write_object(sink, APIMANAGER_FILE, apimanager, manifest).await?;
    }
    manifest.referenced_secrets = referenced_entries(&referenced);
    manifest.namespace = args.namespace.clone();
    manifest.backup = ObjectRef { name: args.backup_name.clone(), uid: args.backup_uid.clone() };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn referenced_secrets_are_exported_with_the_13_once_and_always_required() {
        let apimanager = json!({"spec": {
            "imagePullSecrets": [{"name": "registry"}],
            "apicast": {"productionSpec": {"customPolicies": [{"name": "p", "secretRef": {"name": "system-smtp"}}]}}}});
        let referenced = referenced_secrets(&apimanager);
        let wanted = wanted_secrets(&referenced);
        let names: Vec<&str> = wanted.iter().map(|w| w.name).collect();
        let expected: Vec<&str> = SECRETS.iter().copied().chain(["registry"]).collect();
        assert_eq!(names, expected);
        let smtp = wanted.iter().find(|w| w.name == "system-smtp").expect("system-smtp");
        assert!(!smtp.optional, "referenced, so required");
        assert_eq!(smtp.referenced_by, ["spec.apicast.productionSpec.customPolicies[0].secretRef"]);
        let recaptcha = wanted.iter().find(|w| w.name == "system-recaptcha").expect("system-recaptcha");
        assert!(recaptcha.optional && recaptcha.referenced_by.is_empty());
        assert_eq!(
            referenced_entries(&referenced).iter().map(|e| (e.name.as_str(), e.path.as_str())).collect::<Vec<_>>(),
            [("registry", "secrets/registry.json"), ("system-smtp", "secrets/system-smtp.json")]
        );
    }

    #[test]
    fn a_missing_referenced_secret_is_named_with_the_fields_naming_it() {
        let missing = |name: &str, referenced_by: &[&str]| MissingObject {
            kind: "Secret".into(),
            name: name.into(),
            referenced_by: referenced_by.iter().map(|f| (*f).to_owned()).collect(),
        };
        let error = JobError::MissingObjects {
            namespace: "3scale".into(),
            objects: vec![
                missing("system-seed", &[]),
                missing("apicast-policy", &["spec.apicast.productionSpec.customPolicies[0].secretRef"]),
                missing(
                    "tls",
                    &[
                        "spec.apicast.productionSpec.httpsCertificateSecretRef",
                        "spec.apicast.stagingSpec.httpsCertificateSecretRef",
                    ],
                ),
                missing("../etc", &["spec.imagePullSecrets[0]"]),
            ],
        };
        assert_eq!(
            error.to_string(),
            "required objects missing in namespace 3scale: Secret system-seed, Secret apicast-policy (referenced by \
spec.apicast.productionSpec.customPolicies[0].secretRef), Secret tls (referenced by \
spec.apicast.productionSpec.httpsCertificateSecretRef, spec.apicast.stagingSpec.httpsCertificateSecretRef), \
Secret \"../etc\" (not a valid name) (referenced by spec.imagePullSecrets[0]); create them or fix the APIManager, \
then create a new APIManagerBackup"
        );
    }

    #[test]
    fn clean_drops_status_and_server_metadata_only() {
        let mut secret = json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "system-seed", "namespace": "3scale", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1, "selfLink": "/x", "clusterName": "c",
                "managedFields": [{}], "ownerReferences": [{}], "labels": {"app": "3scale"}, "annotations": {"a": "b"}},
            "data": {"MASTER_USER": "bWFzdGVy"}, "status": {"x": 1}
        });
        clean(&mut secret);
        assert_eq!(
            secret,
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "system-seed", "labels": {"app": "3scale"}, "annotations": {"a": "b"}},
                "data": {"MASTER_USER": "bWFzdGVy"}
            })
        );
    }
}
