//! Admission of an `APIManagerBackup` (README, "Admission rules"): `spec.apiManagerName` defaulted
//! to the namespace's only APIManager ([`super::defaulting`]), then every rule of
//! [`super::validation`], the APIManagers read cache first and confirmed live before a refusal, and
//! the Secrets a bucket destination names checked to exist where the operator may read them
//! ([`crate::admission::secrets`]).

use super::defaulting::{choose_name, needs_default, set_name_patch};
use super::validation::{SPEC, check_apimanager, check_create, check_update};
use crate::admission::secrets::NamedSecret;
use crate::admission::{Admit, Change, ToDefault, Verdict, Webhook, s3};
use crate::api::apimanager::APIManager;
use crate::api::backup::{APIManagerBackup, APIManagerBackupSpec};
use crate::lookup::{self, ApiManagerLookup, LookupError};
use crate::telemetry::Untrusted;

/// Path of the defaulting (mutating) webhook.
pub const MUTATE_PATH: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerbackup";
/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerbackup";

/// The APIManager a backup spec naming none defaults to (`None`: it names one, or there is none
/// to choose): on CREATE, the one the lookup's answer names when it names exactly one, else (none
/// or several, maybe not yet seen by a cache) the one of the namespace as the API server lists it
/// now; on UPDATE, the old spec's name (so a replace keeps it). Shared with a schedule's template.
pub async fn default_name<L: ApiManagerLookup>(
    lookup: &L,
    asked: ToDefault<'_, APIManagerBackupSpec>,
) -> Result<Option<String>, LookupError> {
    if !needs_default(asked.spec) {
        return Ok(None);
    }
    match asked.change {
        Change::Update { old } => Ok(choose_name(old, &[])),
        Change::Create => {
            let only = |known: &[APIManager]| choose_name(None, known).ok_or(());
            match lookup::cache_first(lookup, asked.namespace, None, only).await {
                Ok(chosen) => Ok(chosen.ok()),
                // Left undefaulted, the create would be refused as naming no APIManager although
                // the namespace may hold exactly one: answered as the API server's failure instead.
                Err(error) if error.is_transient() => Err(error),
                Err(error) => {
                    tracing::warn!(error = %Untrusted(&error.to_string()), "cannot default the APIManager's name; validation will explain");
                    Ok(None)
                }
            }
        }
    }
}

impl Admit for APIManagerBackup {
    type Spec = APIManagerBackupSpec;
    const DEFAULTING: Webhook = Webhook { path: MUTATE_PATH, label: "defaulting" };
    const VALIDATING: Webhook = Webhook { path: VALIDATE_PATH, label: "validating" };

    /// On CREATE, the APIManager a backup naming none means, from the lookup's answer when it
    /// names exactly one, else (none or several, maybe not yet seen by a cache) from the namespace
    /// as the API server lists it now; on UPDATE, the old spec's name (so a replace keeps it).
    async fn default<L: ApiManagerLookup>(
        lookup: &L,
        asked: ToDefault<'_, Self::Spec>,
    ) -> Result<Option<json_patch::Patch>, LookupError> {
        let name = default_name(lookup, asked).await?;
        Ok(name.map(|name| set_name_patch(&name)))
    }

    /// The CREATE rules against the lookup's APIManagers; when they refuse the APIManager, again
    /// against what the API server holds now (a cache may not have seen it created or changed yet).
    async fn validate_create<L: ApiManagerLookup>(
        lookup: &L,
        namespace: &str,
        spec: &APIManagerBackupSpec,
    ) -> Result<Verdict, LookupError> {
        let name = spec.api_manager_name.as_deref().filter(|name| !name.is_empty());
        let rules = |known: &[APIManager]| {
            let refused = !check_apimanager(name, namespace, known).errors.is_empty();
            let verdict = check_create(spec, namespace, known);
            if refused { Err(verdict) } else { Ok(verdict) }
        };
        Ok(lookup::cache_first(lookup, namespace, name, rules).await?.unwrap_or_else(|refused| refused))
    }

    fn validate_update(old: &APIManagerBackupSpec, new: &APIManagerBackupSpec) -> Verdict {
        check_update(old, new)
    }

    fn named_secrets(spec: &APIManagerBackupSpec) -> Vec<NamedSecret> {
        destination_secrets(spec, SPEC)
    }
}

/// The Secrets a backup spec at field path `at` names: those of its bucket destination, or the key
/// Secret of its sealed claim. Shared with a schedule's template.
pub fn destination_secrets(spec: &APIManagerBackupSpec, at: &str) -> Vec<NamedSecret> {
    let destination = &spec.backup_destination;
    let claim_encryption = destination.persistent_volume_claim.as_ref().and_then(|claim| claim.encryption.as_ref());
    s3::location_secrets(&format!("{at}.backupDestination"), destination.s3.as_ref(), claim_encryption)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;

    /// A lookup that knows no APIManager and whose live reads fail with `code` (0: the namespace is
    /// not managed).
    #[derive(Clone)]
    struct Failing(u16);

    impl ApiManagerLookup for Failing {
        async fn list(&self, _: &str) -> Result<Vec<APIManager>, LookupError> {
            Ok(Vec::new())
        }

        async fn confirm(&self, namespace: &str, _: Option<&str>) -> Result<Vec<APIManager>, LookupError> {
            if self.0 == 0 {
                return Err(LookupError::NotManaged { namespace: namespace.to_owned(), managed: "a".into() });
            }
            let status = kube::core::Status::failure("down", "ServiceUnavailable").with_code(self.0).boxed();
            Err(LookupError::Api { namespace: namespace.to_owned(), source: kube::Error::Api(status) })
        }

        async fn claim(&self, _: &str, _: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
            Ok(None)
        }
    }

    #[test]
    fn a_bucket_destination_names_its_secrets_and_a_claim_none() {
        let spec: APIManagerBackupSpec = serde_json::from_value(serde_json::json!({"backupDestination": {"s3": {
            "bucket": "backups", "region": "us-east-1", "credentialsSecretRef": {"name": "s3-creds"},
            "encryption": {"keySecretRef": {"name": "backup-key"}}}}}))
        .expect("spec");
        assert_eq!(
            <APIManagerBackup as Admit>::named_secrets(&spec),
            [
                NamedSecret::new("spec.backupDestination.s3.credentialsSecretRef.name", "s3-creds"),
                NamedSecret::new("spec.backupDestination.s3.encryption.keySecretRef.name", "backup-key"),
            ]
        );
        let claim: APIManagerBackupSpec = serde_json::from_value(serde_json::json!({"backupDestination": {
            "persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}}))
        .expect("spec");
        assert_eq!(<APIManagerBackup as Admit>::named_secrets(&claim), []);
        let sealed: APIManagerBackupSpec = serde_json::from_value(serde_json::json!({"backupDestination": {
            "persistentVolumeClaim": {"resources": {"requests": "1Gi"}, "encryption": {"keySecretRef": {"name": "k"}}}}}))
        .expect("spec");
        assert_eq!(
            <APIManagerBackup as Admit>::named_secrets(&sealed),
            [NamedSecret::new("spec.backupDestination.persistentVolumeClaim.encryption.keySecretRef.name", "k")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_default_the_api_server_cannot_confirm_for_a_passing_reason_is_an_error_not_a_silent_none() {
        let spec = APIManagerBackupSpec { api_manager_name: None, backup_destination: Default::default() };
        let asked = || ToDefault { namespace: "ns", spec: &spec, change: Change::Create };
        let unavailable = default_name(&Failing(503), asked()).await.expect_err("answered as a failure");
        assert!(unavailable.is_transient(), "{unavailable}");
        assert_eq!(default_name(&Failing(0), asked()).await.expect("left to validation"), None);
    }
}
