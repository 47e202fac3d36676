//! The admission rules of an `APIManagerBackup` (README, "Admission rules") as plain functions over the typed
//! object and the APIManagers of its namespace, so they are tested without a cluster.

use crate::admission::field_error::{FieldError, check_dns1123_subdomain};
use crate::admission::verdict::Verdict;
use crate::api::apimanager::APIManager;
use crate::api::backup::{
    APIManagerBackupSpec, BackupDestination, DESTINATION_REQUIRED, PersistentVolumeClaimDestination, REQUESTS_REQUIRED,
};
use crate::api::quantity::{Sign, parse_json_quantity};
use crate::rules;
use crate::telemetry::Untrusted;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;

/// Where a backup's spec is; a schedule's template is at `spec.template`.
pub const SPEC: &str = "spec";

/// Rules 1–4: the destination, the claim's size and names, and the ignored `storageClass`.
pub fn check_spec(spec: &APIManagerBackupSpec) -> Verdict {
    check_spec_at(spec, SPEC)
}

/// [`check_spec`] of a backup spec at field path `at` (a schedule's template), its errors named there.
pub fn check_spec_at(spec: &APIManagerBackupSpec, at: &str) -> Verdict {
    let mut verdict = Verdict::default();
    check_destination(&spec.backup_destination, &format!("{at}.backupDestination"), &mut verdict);
    verdict
}

fn check_destination(destination: &BackupDestination, at: &str, verdict: &mut Verdict) {
    if destination.configured().len() != 1 {
        verdict.errors.push(FieldError::required(at, DESTINATION_REQUIRED));
    }
    if let Some(claim) = &destination.persistent_volume_claim {
        check_claim(claim, &format!("{at}.persistentVolumeClaim"), verdict);
    }
    if let Some(bucket) = &destination.s3 {
        crate::admission::s3::check_bucket(bucket, &format!("{at}.s3"), verdict);
    }
}

fn check_claim(claim: &PersistentVolumeClaimDestination, at: &str, verdict: &mut Verdict) {
    let requests = claim.resources.as_ref().and_then(|r| r.requests.as_ref());
    match requests {
        None => verdict.errors.push(FieldError::required(format!("{at}.resources.requests"), REQUESTS_REQUIRED)),
        Some(quantity) => verdict.errors.extend(check_size(quantity, at)),
    }
    for (field, value) in [("volumeName", &claim.volume_name), ("storageClass", &claim.storage_class)] {
        if let Some(value) = value {
            verdict.errors.extend(check_dns1123_subdomain(&format!("{at}.{field}"), value));
        }
    }
    crate::admission::s3::check_claim_encryption(claim.encryption.as_ref(), at, verdict);
    if let (Some(volume), Some(_)) = (&claim.volume_name, &claim.storage_class) {
        verdict.warnings.push(format!(
            "{at}.storageClass is ignored because volumeName is set: the claim binds to PersistentVolume {:?}",
            Untrusted(volume)
        ));
    }
}

fn check_size(quantity: &Quantity, at: &str) -> Option<FieldError> {
    let field = format!("{at}.resources.requests");
    // The claim is created with this exact string, so it must be what the API server accepts there.
    match parse_json_quantity(&quantity.0) {
        Err(_) => Some(FieldError::invalid(field, &quantity.0, "must be a Kubernetes quantity such as 10Gi or 500Mi")),
        Ok(Sign::Zero | Sign::Negative) => {
            Some(FieldError::invalid(field, &quantity.0, "must be greater than zero, for example 10Gi"))
        }
        Ok(Sign::Positive) => None,
    }
}

/// Rules 5 and 6: the named APIManager exists in the namespace and is in the backup scope (both
/// decided and worded by [`crate::rules`]). Returns the error, if any.
pub fn check_apimanager(name: Option<&str>, namespace: &str, apimanagers: &[APIManager]) -> Verdict {
    check_apimanager_at(name, namespace, apimanagers, SPEC)
}

/// [`check_apimanager`] of a backup spec at field path `at` (a schedule's template).
pub fn check_apimanager_at(name: Option<&str>, namespace: &str, apimanagers: &[APIManager], at: &str) -> Verdict {
    let field = format!("{at}.apiManagerName");
    let mut verdict = Verdict::default();
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        // After defaulting, a backup names its APIManager; say which one it would mean.
        let detail = match rules::apimanager_meant(None, namespace, apimanagers) {
            Ok(only) => format!("set it to {:?}, the APIManager of namespace {namespace:?}", only.name_any()),
            Err(not_found) => not_found.to_string(),
        };
        verdict.errors.push(FieldError::required(field, detail));
        return verdict;
    };
    let scope = rules::apimanager_meant(Some(name), namespace, apimanagers)
        .map_err(|not_found| not_found.to_string())
        .and_then(|apimanager| rules::in_scope(apimanager).map_err(|out| out.to_string()));
    if let Err(detail) = scope {
        verdict.errors.push(FieldError::invalid(field, name, detail));
    }
    verdict
}

/// Rule 7: the spec of an existing backup never changes.
pub fn check_update(old: &APIManagerBackupSpec, new: &APIManagerBackupSpec) -> Verdict {
    let mut verdict = Verdict::default();
    if old != new {
        verdict.errors.push(FieldError::forbidden(
            "spec",
            "spec is immutable once the backup is created; create a new APIManagerBackup to take another backup",
        ));
    }
    verdict
}

/// All CREATE rules (1–6) at once.
pub fn check_create(spec: &APIManagerBackupSpec, namespace: &str, apimanagers: &[APIManager]) -> Verdict {
    let mut verdict = check_spec(spec);
    let scope = check_apimanager(spec.api_manager_name.as_deref(), namespace, apimanagers);
    verdict.errors.extend(scope.errors);
    verdict.warnings.extend(scope.warnings);
    verdict
}

#[cfg(test)]
mod tests;
