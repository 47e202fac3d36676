//! `job export-objects`: the listed Secrets and ConfigMaps and the APIManager, each cleaned of
//! server-set fields and written as JSON in the 3scale-operator layout.

use super::manifest::{Manifest, ObjectRef, StepTimes, hash_file, now};
use super::{ExportArgs, JobError, write_atomically};
use crate::api::apimanager::APIManager;
use crate::layout::{APIMANAGER_FILE, CONFIG_MAPS, CONFIG_MAPS_DIR, OPTIONAL_SECRETS, SECRETS, SECRETS_DIR};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

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

fn write_object(root: &Path, relative: &str, mut object: Value, manifest: &mut Manifest) -> Result<(), JobError> {
    clean(&mut object);
    let path = root.join(relative);
    let bytes = serde_json::to_vec_pretty(&object)
        .map_err(|e| JobError::Corrupt { path: path.clone(), reason: e.to_string() })?;
    // Secrets are in there: readable by the backup's owner only.
    write_atomically(&path, &bytes, 0o600)?;
    manifest.add_files([hash_file(&path, relative)?]);
    Ok(())
}

fn to_value<T: serde::Serialize>(object: &T, what: &str) -> Result<Value, JobError> {
    serde_json::to_value(object).map_err(|e| JobError::Corrupt { path: what.into(), reason: e.to_string() })
}

/// Where exported objects go, and what was not found.
struct Export<'a> {
    root: &'a Path,
    namespace: &'a str,
    manifest: &'a mut Manifest,
    missing: &'a mut Vec<String>,
}

impl Export<'_> {
    /// Writes each of `names` to `<dir>/<name>.json`; a missing one is absent when `optional`,
    /// otherwise missing.
    async fn named<K>(&mut self, api: &Api<K>, dir: &str, names: &[&str], optional: &[&str]) -> Result<(), JobError>
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        let kind = K::kind(&());
        for name in names {
            let relative = format!("{dir}/{name}.json");
            let what = format!("reading {kind} {}/{name}", self.namespace);
            match api.get_opt(name).await.map_err(|source| JobError::Api { what, source })? {
                Some(object) => write_object(self.root, &relative, to_value(&object, &relative)?, self.manifest)?,
                None if optional.contains(name) => {
                    let reason = format!("optional {kind} {name} does not exist in namespace {}", self.namespace);
                    self.manifest.add_absent(relative, reason);
                }
                None => self.missing.push(format!("{kind} {name}")),
            }
        }
        Ok(())
    }
}

/// Exports every object, then records the step in the manifest. Missing required objects fail
/// the step with their names; missing optional Secrets are recorded as absent.
pub async fn run(args: &ExportArgs) -> Result<(), JobError> {
    let started_at = now();
    let root = &args.common.backup_dir;
    let client = crate::client::connect(STEP).await.map_err(|e| JobError::Config(e.to_string()))?;
    let mut manifest = Manifest::load(root)?;
    let mut missing = Vec::new();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &args.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &args.namespace);
    let mut export = Export { root, namespace: &args.namespace, manifest: &mut manifest, missing: &mut missing };
    export.named(&secrets, SECRETS_DIR, &SECRETS, &OPTIONAL_SECRETS).await?;
    export.named(&config_maps, CONFIG_MAPS_DIR, &CONFIG_MAPS, &[]).await?;
    let resource = ApiResource::erase::<APIManager>(&());
    let apimanagers: Api<DynamicObject> = Api::namespaced_with(client, &args.namespace, &resource);
    let what = format!("reading APIManager {}/{}", args.namespace, args.apimanager);
    match apimanagers.get_opt(&args.apimanager).await.map_err(|source| JobError::Api { what, source })? {
        Some(apimanager) => {
            manifest.api_manager =
                ObjectRef { name: args.apimanager.clone(), uid: apimanager.metadata.uid.clone().unwrap_or_default() };
            write_object(root, APIMANAGER_FILE, to_value(&apimanager, APIMANAGER_FILE)?, &mut manifest)?;
        }
        None => missing.push(format!("APIManager {}", args.apimanager)),
    }
    if !missing.is_empty() {
        return Err(JobError::Missing(format!(
            "required objects missing in namespace {}: {}; create them or fix the APIManager, then create a new APIManagerBackup",
            args.namespace,
            missing.join(", ")
        )));
    }
    manifest.namespace = args.namespace.clone();
    manifest.backup = ObjectRef { name: args.backup_name.clone(), uid: args.backup_uid.clone() };
    manifest.steps.insert(STEP.to_owned(), StepTimes { started_at, finished_at: now() });
    manifest.save(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
