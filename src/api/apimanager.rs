//! The parts of the 3scale `APIManager` resource (`apps.3scale.net/v1alpha1`) this operator reads.
//! The operator never changes an APIManager (a restore creates one); unknown fields are ignored.

use super::referenced_secrets::{ReferencedSecrets, referenced_secrets};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Name of the system FileStorage claim when the APIManager does not configure one.
pub const DEFAULT_SYSTEM_STORAGE_CLAIM: &str = "system-storage";

/// Type of the condition 3scale-operator sets in an APIManager's `status.conditions`, with status
/// `"True"` once the installation's deployments and routes are ready.
pub const AVAILABLE_CONDITION: &str = "Available";

/// The fields of an APIManager spec that decide what can be backed up.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "apps.3scale.net",
    version = "v1alpha1",
    kind = "APIManager",
    plural = "apimanagers",
    namespaced,
    status = "serde_json::Value"
)]
#[serde(rename_all = "camelCase")]
pub struct APIManagerSpec {
    /// Which databases run outside the APIManager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_components: Option<ExternalComponents>,
    /// Deprecated: `enabled: true` means all databases are external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_availability: Option<HighAvailability>,
    /// System settings, of which the FileStorage location is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemSpec>,
    /// APIcast settings, of which the Secrets they reference are read (see
    /// [`super::referenced_secrets`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apicast: Option<serde_json::Value>,
    /// The Secrets the installation's images are pulled with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<serde_json::Value>,
}

/// `spec.externalComponents`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalComponents {
    /// System databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<ExternalSystem>,
    /// Backend databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<ExternalBackend>,
}

/// `spec.externalComponents.system`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSystem {
    /// The system database (MySQL or PostgreSQL) is external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<bool>,
    /// The system Redis is external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<bool>,
}

/// `spec.externalComponents.backend`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalBackend {
    /// The backend Redis is external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<bool>,
}

/// `spec.highAvailability` (deprecated by 3scale).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HighAvailability {
    /// All databases are external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `spec.system`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SystemSpec {
    /// Where System keeps its uploaded files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_storage: Option<FileStorageSpec>,
}

/// `spec.system.fileStorage`: a claim, or S3 in one of its two spellings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileStorageSpec {
    /// FileStorage on a PersistentVolumeClaim (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<serde_json::Value>,
    /// FileStorage in an S3 API-compatible store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple_storage_service: Option<serde_json::Value>,
    /// Deprecated spelling of `simpleStorageService`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amazon_simple_storage_service: Option<serde_json::Value>,
}

/// Where an APIManager's System FileStorage lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStorage {
    /// On the named PersistentVolumeClaim, which the backup copies.
    Claim(String),
    /// In an S3 bucket, which the backup copies; the Secret holding its location and credentials
    /// (`simpleStorageService.configurationSecretRef`, or the deprecated
    /// `amazonSimpleStorageService.awsCredentialsSecret`), `None` when the spec names none.
    S3 {
        /// The Secret's name.
        secret: Option<String>,
    },
}

/// What an APIManager asks of its System FileStorage claim
/// (`spec.system.fileStorage.persistentVolumeClaim`); a restore creates the claim so.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SystemStorageClaim {
    /// `storageClassName`: the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// `resources.requests`, a quantity; 3scale's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<String>,
    /// `volumeName`: a PersistentVolume to bind to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
}

impl APIManager {
    /// Whether 3scale-operator reports the APIManager available: a condition of type
    /// [`AVAILABLE_CONDITION`] with status `"True"` in `status.conditions`. The status is read as
    /// JSON, so a status of any other shape reads as not available rather than failing the object.
    pub fn is_available(&self) -> bool {
        let conditions = self.status.as_ref().and_then(|s| s.get("conditions")).and_then(serde_json::Value::as_array);
        conditions.into_iter().flatten().any(|condition| {
            condition.get("type").and_then(serde_json::Value::as_str) == Some(AVAILABLE_CONDITION)
                && condition.get("status").and_then(serde_json::Value::as_str) == Some("True")
        })
    }

    /// What the APIManager asks of its System FileStorage claim (only meaningful when
    /// [`APIManager::file_storage`] is a claim).
    pub fn system_storage_claim(&self) -> SystemStorageClaim {
        let claim = self
            .spec
            .system
            .as_ref()
            .and_then(|s| s.file_storage.as_ref())
            .and_then(|fs| fs.persistent_volume_claim.as_ref());
        let text = |pointer: &str| claim.and_then(|c| c.pointer(pointer)).and_then(|v| v.as_str()).map(str::to_owned);
        SystemStorageClaim {
            storage_class_name: text("/storageClassName"),
            requests: text("/resources/requests"),
            volume_name: text("/volumeName"),
        }
    }

    /// The databases that run inside the APIManager, by their user-facing names; a backup needs
    /// this to be empty. The deprecated `highAvailability.enabled: true` makes all of them external.
    pub fn internal_databases(&self) -> Vec<&'static str> {
        let spec = &self.spec;
        if spec.high_availability.as_ref().and_then(|ha| ha.enabled) == Some(true) {
            return Vec::new();
        }
        let components = spec.external_components.clone().unwrap_or_default();
        let system = components.system.unwrap_or_default();
        let backend = components.backend.unwrap_or_default();
        [("system database", system.database), ("system Redis", system.redis), ("backend Redis", backend.redis)]
            .into_iter()
            .filter(|(_, external)| *external != Some(true))
            .map(|(name, _)| name)
            .collect()
    }

    /// The Secrets the APIManager's spec references (APIcast policies, environments, certificates and
    /// tracing configurations, S3 FileStorage, image pulls), by name, with the fields naming them.
    pub fn referenced_secrets(&self) -> ReferencedSecrets {
        let spec = serde_json::to_value(&self.spec).unwrap_or_default();
        referenced_secrets(&serde_json::json!({ "spec": spec }))
    }

    /// Where System's FileStorage lives; no `fileStorage` means the `system-storage` claim.
    pub fn file_storage(&self) -> FileStorage {
        let storage = self.spec.system.as_ref().and_then(|s| s.file_storage.as_ref());
        match storage {
            Some(fs) if fs.simple_storage_service.is_some() || fs.amazon_simple_storage_service.is_some() => {
                let name = |spec: &Option<serde_json::Value>, field: &str| {
                    let name = spec.as_ref()?.get(field)?.get("name")?.as_str()?;
                    (!name.is_empty()).then(|| name.to_owned())
                };
                let secret = name(&fs.simple_storage_service, "configurationSecretRef")
                    .or_else(|| name(&fs.amazon_simple_storage_service, "awsCredentialsSecret"));
                FileStorage::S3 { secret }
            }
            _ => FileStorage::Claim(DEFAULT_SYSTEM_STORAGE_CLAIM.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apimanager(spec: serde_json::Value) -> APIManager {
        APIManager::new("example", serde_json::from_value(spec).expect("valid APIManager spec"))
    }

    #[test]
    fn all_external_components_leave_no_internal_database() {
        let am = apimanager(json!({"externalComponents": {
            "system": {"database": true, "redis": true}, "backend": {"redis": true}}}));
        assert!(am.internal_databases().is_empty());
    }

    #[test]
    fn missing_components_are_internal() {
        let am = apimanager(json!({"externalComponents": {"system": {"database": true}}}));
        assert_eq!(am.internal_databases(), vec!["system Redis", "backend Redis"]);
        assert_eq!(apimanager(json!({})).internal_databases().len(), 3);
    }

    #[test]
    fn high_availability_makes_every_database_external() {
        let am = apimanager(json!({"highAvailability": {"enabled": true}}));
        assert!(am.internal_databases().is_empty());
    }

    #[test]
    fn file_storage_defaults_to_system_storage_claim() {
        assert_eq!(apimanager(json!({})).file_storage(), FileStorage::Claim("system-storage".into()));
        let pvc = apimanager(json!({"system": {"fileStorage": {"persistentVolumeClaim": {}}}}));
        assert_eq!(pvc.file_storage(), FileStorage::Claim("system-storage".into()));
    }

    #[test]
    fn system_storage_claim_reads_class_size_and_volume() {
        let am = apimanager(json!({"system": {"fileStorage": {"persistentVolumeClaim": {
            "storageClassName": "nfs", "resources": {"requests": "2Gi"}, "volumeName": "pv-7"}}}}));
        assert_eq!(
            am.system_storage_claim(),
            SystemStorageClaim {
                storage_class_name: Some("nfs".into()),
                requests: Some("2Gi".into()),
                volume_name: Some("pv-7".into())
            }
        );
        assert_eq!(apimanager(json!({})).system_storage_claim(), SystemStorageClaim::default());
    }

    #[test]
    fn available_only_with_an_available_condition_that_is_true() {
        let with_status = |status: serde_json::Value| APIManager { status: Some(status), ..apimanager(json!({})) };
        assert!(!apimanager(json!({})).is_available());
        assert!(with_status(json!({"conditions": [{"type": "Available", "status": "True"}]})).is_available());
        assert!(!with_status(json!({"conditions": [{"type": "Available", "status": "False"}]})).is_available());
        assert!(!with_status(json!({"conditions": [{"type": "Warning", "status": "True"}]})).is_available());
        assert!(!with_status(json!({"conditions": "garbled"})).is_available());
        let stored: APIManager = serde_json::from_value(json!({"apiVersion": "apps.3scale.net/v1alpha1",
            "kind": "APIManager", "metadata": {"name": "x"}, "spec": {}, "status": {"conditions": 7}}))
        .expect("a status of any shape deserializes");
        assert!(!stored.is_available());
    }

    #[test]
    fn the_typed_apimanager_keeps_the_secret_references_of_its_spec() {
        let am = apimanager(json!({"imagePullSecrets": [{"name": "registry"}],
            "apicast": {"productionSpec": {"customEnvironments": [{"secretRef": {"name": "env"}}]}},
            "system": {"fileStorage": {"simpleStorageService": {"configurationSecretRef": {"name": "s3"}}}}}));
        let names: Vec<String> = am.referenced_secrets().into_keys().collect();
        assert_eq!(names, ["env", "registry", "s3"]);
        assert!(apimanager(json!({})).referenced_secrets().is_empty());
    }

    #[test]
    fn both_s3_spellings_are_s3_with_the_secret_they_name() {
        let spelled = [
            ("simpleStorageService", "configurationSecretRef"),
            ("amazonSimpleStorageService", "awsCredentialsSecret"),
        ];
        for (key, field) in spelled {
            let am = apimanager(json!({"system": {"fileStorage": {key: {field: {"name": "s3"}}}}}));
            assert_eq!(am.file_storage(), FileStorage::S3 { secret: Some("s3".into()) }, "{key}");
            let unnamed = apimanager(json!({"system": {"fileStorage": {key: {field: {"name": ""}}}}}));
            assert_eq!(unnamed.file_storage(), FileStorage::S3 { secret: None }, "{key}");
        }
        let elsewhere = apimanager(
            json!({"system": {"fileStorage": {"simpleStorageService": {"awsCredentialsSecret": {"name": "s3"}}}}}),
        );
        assert_eq!(elsewhere.file_storage(), FileStorage::S3 { secret: None }, "each spelling reads its own field");
    }
}
