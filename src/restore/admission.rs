//! Admission of an `APIManagerRestore`: `claimSource.readOnly` defaulted to `true`, then every rule
//! of [`super::validation`], the claim read live and the APIManagers cache first, confirmed live
//! before a refusal, and the Secrets a bucket source names checked to exist where the operator may
//! read them ([`crate::admission::secrets`]).

use super::validation::{backed_up_apimanager, check_create, check_update};
use crate::admission::secrets::NamedSecret;
use crate::admission::{Admit, ToDefault, Verdict, Webhook, s3};
use crate::api::apimanager::APIManager;
use crate::api::restore::{APIManagerRestore, APIManagerRestoreSpec};
use crate::lookup::{self, ApiManagerLookup, LookupError};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::Value;

/// Path of the restores' defaulting (mutating) webhook.
pub const MUTATE_PATH: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerrestore";
/// Path of the restores' validating webhook.
pub const VALIDATE_PATH: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerrestore";

/// The JSONPatch that sets a restore's `claimSource.readOnly` to `true`.
pub fn read_only_patch() -> Patch {
    Patch(vec![PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(["spec", "restoreSource", "persistentVolumeClaim", "claimSource", "readOnly"]),
        value: Value::Bool(true),
    })])
}

impl Admit for APIManagerRestore {
    type Spec = APIManagerRestoreSpec;
    const DEFAULTING: Webhook = Webhook { path: MUTATE_PATH, label: "restore-defaulting" };
    const VALIDATING: Webhook = Webhook { path: VALIDATE_PATH, label: "restore-validating" };

    /// `claimSource.readOnly` defaults to `true`, which is how the restore mounts the claim in any
    /// case (a restore never writes to its backup).
    async fn default<L: ApiManagerLookup>(
        _: &L,
        asked: ToDefault<'_, Self::Spec>,
    ) -> Result<Option<Patch>, LookupError> {
        let Some(claim) = asked.spec.restore_source.persistent_volume_claim.as_ref() else { return Ok(None) };
        Ok(claim.claim_source.read_only.is_none().then(read_only_patch))
    }

    /// The claim read live, the APIManagers from the lookup; when a live APIManager of the
    /// backed-up name is the reason to refuse, again against what the API server holds now (a
    /// cache may not have seen it deleted yet).
    async fn validate_create<L: ApiManagerLookup>(
        lookup: &L,
        namespace: &str,
        spec: &APIManagerRestoreSpec,
    ) -> Result<Verdict, LookupError> {
        let claim = match spec.restore_source.claim_name().filter(|name| !name.is_empty()) {
            Some(name) => lookup.claim(namespace, name).await?,
            None => None,
        };
        let backed_up = claim.as_ref().and_then(backed_up_apimanager);
        let rules = |known: &[APIManager]| {
            let verdict = check_create(spec, namespace, claim.as_ref(), known);
            // Only a live APIManager of the backed-up name is worth confirming.
            if verdict.errors.is_empty() || backed_up.is_none() { Ok(verdict) } else { Err(verdict) }
        };
        Ok(lookup::cache_first(lookup, namespace, backed_up.as_deref(), rules).await?.unwrap_or_else(|refused| refused))
    }

    fn validate_update(old: &APIManagerRestoreSpec, new: &APIManagerRestoreSpec) -> Verdict {
        check_update(old, new)
    }

    /// Those of a bucket source, or the key Secret of a claim source.
    fn named_secrets(spec: &APIManagerRestoreSpec) -> Vec<NamedSecret> {
        let source = &spec.restore_source;
        let claim_encryption = source.persistent_volume_claim.as_ref().and_then(|claim| claim.encryption.as_ref());
        s3::location_secrets("spec.restoreSource", source.s3.as_ref().map(|s3| &s3.bucket), claim_encryption)
    }
}
