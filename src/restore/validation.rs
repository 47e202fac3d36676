//! The admission rules of an `APIManagerRestore` as plain functions over the typed object, the
//! claim it names and the APIManagers of its namespace, so they are tested without a cluster.

use crate::admission::field_error::{FieldError, check_dns1123_subdomain};
use crate::admission::verdict::Verdict;
use crate::api::apimanager::APIManager;
use crate::api::restore::{APIManagerRestoreSpec, SOURCE_REQUIRED, SPEC_IMMUTABLE};
use crate::names::{CLAIM_APIMANAGER_NAME, CLAIM_BACKUP_NAME, CLAIM_BACKUP_STATE, CLAIM_BACKUP_UID, CLAIM_COMPLETED};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;

const SOURCE: &str = "spec.restoreSource";
/// Where a restore's bucket source is.
pub const S3_SOURCE: &str = "spec.restoreSource.s3";
const BACKUP_PATH_RULE: &str = "the backup's folder under the prefix, <namespace>/<backup name>-<backup uid>, as the \
APIManagerBackup's status.s3.path gave it";
/// The field naming the backup claim.
pub const CLAIM_NAME: &str = "spec.restoreSource.persistentVolumeClaim.claimSource.claimName";

/// The APIManager a backup claim holds, from its annotations; `None` when the claim does not
/// carry them (it was not written by an APIManagerBackup).
pub fn backed_up_apimanager(claim: &PersistentVolumeClaim) -> Option<String> {
    let annotations = claim.metadata.annotations.as_ref()?;
    annotations.get(CLAIM_BACKUP_UID)?;
    annotations.get(CLAIM_APIMANAGER_NAME).filter(|name| !name.is_empty()).cloned()
}

/// Exactly one source, with a claim name: the rules that need no lookup.
pub fn check_spec(spec: &APIManagerRestoreSpec) -> Verdict {
    let mut verdict = Verdict::default();
    if spec.restore_source.configured().len() != 1 {
        verdict.errors.push(FieldError::required(SOURCE, SOURCE_REQUIRED));
    }
    if spec.restore_source.claim_name() == Some("") {
        verdict.errors.push(FieldError::required(
            CLAIM_NAME,
            "name the PersistentVolumeClaim holding the backup (the APIManagerBackup's status.backupPersistentVolumeClaimName)",
        ));
    }
    if let Some(claim) = &spec.restore_source.persistent_volume_claim {
        let at = "spec.restoreSource.persistentVolumeClaim";
        crate::admission::s3::check_claim_encryption(claim.encryption.as_ref(), at, &mut verdict);
    }
    if let Some(source) = &spec.restore_source.s3 {
        crate::admission::s3::check_bucket(&source.bucket, S3_SOURCE, &mut verdict);
        verdict.errors.extend(check_backup_path(&source.backup_path));
    }
    verdict
}

/// The rule of `spec.restoreSource.s3.backupPath`: `<namespace>/<backup name>-<backup uid>`.
fn check_backup_path(path: &str) -> Option<FieldError> {
    let field = format!("{S3_SOURCE}.backupPath");
    if path.is_empty() {
        return Some(FieldError::required(field, BACKUP_PATH_RULE));
    }
    let well_formed = path.split_once('/').is_some_and(|(namespace, folder)| {
        let uid = folder.len().checked_sub(36).and_then(|at| folder.get(at..));
        let name = folder.len().checked_sub(37).and_then(|at| folder.get(..at));
        check_dns1123_subdomain("", namespace).is_none()
            && !namespace.contains('.')
            && name.is_some_and(|name| check_dns1123_subdomain("", name).is_none())
            && folder.as_bytes().get(folder.len().wrapping_sub(37)) == Some(&b'-')
            && uid.is_some_and(|uid| uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
    });
    (!well_formed).then(|| FieldError::invalid(field, path, BACKUP_PATH_RULE))
}

/// All CREATE rules at once: the spec rules; the claim exists in the namespace (`claim` is what a
/// lookup of the named claim found) and holds a backup; no APIManager of the backed-up name lives
/// in the namespace (`apimanagers`).
pub fn check_create(
    spec: &APIManagerRestoreSpec,
    namespace: &str,
    claim: Option<&PersistentVolumeClaim>,
    apimanagers: &[APIManager],
) -> Verdict {
    let mut verdict = check_spec(spec);
    let Some(name) = spec.restore_source.claim_name().filter(|name| !name.is_empty()) else {
        return verdict;
    };
    let Some(claim) = claim else {
        verdict.errors.push(FieldError::invalid(
            CLAIM_NAME,
            name,
            format!("no PersistentVolumeClaim of that name in namespace {namespace:?}; a restore reads a backup claim of its own namespace"),
        ));
        return verdict;
    };
    let Some(apimanager) = backed_up_apimanager(claim) else {
        verdict.errors.push(FieldError::invalid(
            CLAIM_NAME,
            name,
            format!(
                "the PersistentVolumeClaim holds no backup: it lacks the annotations {CLAIM_APIMANAGER_NAME} and \
{CLAIM_BACKUP_UID} that an APIManagerBackup (of this operator or of 3scale-operator) puts on its claim"
            ),
        ));
        return verdict;
    };
    if let Some(state) = claim.annotations().get(CLAIM_BACKUP_STATE).filter(|state| *state != CLAIM_COMPLETED) {
        let backup = claim.annotations().get(CLAIM_BACKUP_NAME).cloned().unwrap_or_default();
        verdict.errors.push(FieldError::invalid(
            CLAIM_NAME,
            name,
            format!(
                "the PersistentVolumeClaim holds an unfinished backup (annotation {CLAIM_BACKUP_STATE} is {state:?}): \
APIManagerBackup {backup:?} failed, was interrupted or is still running; restore from the claim of a completed backup"
            ),
        ));
    }
    if apimanagers.iter().any(|am| am.name_any() == apimanager) {
        verdict.errors.push(FieldError::invalid(
            CLAIM_NAME,
            name,
            format!(
                "the backup is of APIManager {apimanager:?}, which exists in namespace {namespace:?}; restoring over a live \
installation is refused: delete that APIManager (and its Secrets, ConfigMaps and system-storage claim) first, or \
restore into another namespace"
            ),
        ));
    }
    verdict
}

/// UPDATE: the spec never changes.
pub fn check_update(old: &APIManagerRestoreSpec, new: &APIManagerRestoreSpec) -> Verdict {
    let mut verdict = Verdict::default();
    if old != new {
        verdict.errors.push(FieldError::forbidden("spec", SPEC_IMMUTABLE));
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::APIManagerSpec;
    use serde_json::{Value, json};

    fn spec(value: Value) -> APIManagerRestoreSpec {
        serde_json::from_value(value).expect("test spec deserializes")
    }

    fn from_claim(name: &str) -> APIManagerRestoreSpec {
        spec(json!({"restoreSource": {"persistentVolumeClaim": {"claimSource": {"claimName": name}}}}))
    }

    const S3_PATH: &str = "3scale/nightly-4b1d2c3e-0000-4000-8000-123456789abc";

    fn s3_source(path: Value) -> Value {
        json!({"bucket": "backups", "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"},
            "encryption": {"keySecretRef": {"name": "backup-key"}}, "backupPath": path})
    }

    fn from_s3(path: Value) -> APIManagerRestoreSpec {
        spec(json!({"restoreSource": {"s3": s3_source(path)}}))
    }

    fn claim(annotations: Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "nightly", "annotations": annotations}})).expect("claim")
    }

    fn backup_claim() -> PersistentVolumeClaim {
        claim(json!({"apiManagerName": "example", "apiManagerBackupUID": "u-1"}))
    }

    fn messages(verdict: &Verdict) -> Vec<String> {
        verdict.errors.iter().map(ToString::to_string).collect()
    }

    /// A named case: the spec, the claim a lookup finds, the namespace's APIManagers, the messages.
    type Case<'a> = (&'a str, APIManagerRestoreSpec, Option<&'a PersistentVolumeClaim>, Vec<APIManager>, Vec<String>);

    #[test]
    fn create_rules() {
        let example = APIManager::new("example", APIManagerSpec::default());
        let other = APIManager::new("other", APIManagerSpec::default());
        let backup = backup_claim();
        let ours = |state: &str| {
            claim(json!({"apiManagerName": "example", "apiManagerBackupUID": "u-1", "apiManagerBackupName": "nightly",
                "apps.3scale.net/backup-state": state}))
        };
        let (completed, unfinished) = (ours("Completed"), ours("InProgress"));
        let bare = claim(json!({"owner": "me"}));
        let cases: Vec<Case> = vec![
            ("a backup claim, no APIManager", from_claim("nightly"), Some(&backup), vec![other.clone()], vec![]),
            ("a completed backup of this operator", from_claim("nightly"), Some(&completed), vec![], vec![]),
            (
                "an unfinished backup of this operator, and a live APIManager",
                from_claim("nightly"),
                Some(&unfinished),
                vec![example.clone()],
                vec![
                    format!(
                        "{CLAIM_NAME}: Invalid value: \"nightly\": the PersistentVolumeClaim holds an unfinished backup (annotation apps.3scale.net/backup-state is \"InProgress\"): APIManagerBackup \"nightly\" failed, was interrupted or is still running; restore from the claim of a completed backup"
                    ),
                    format!(
                        "{CLAIM_NAME}: Invalid value: \"nightly\": the backup is of APIManager \"example\", which exists in namespace \"3scale\"; restoring over a live installation is refused: delete that APIManager (and its Secrets, ConfigMaps and system-storage claim) first, or restore into another namespace"
                    ),
                ],
            ),
            ("an S3 backup", from_s3(json!(S3_PATH)), None, vec![example.clone()], vec![]),
            (
                "a claim and a bucket",
                spec(json!({"restoreSource": {"persistentVolumeClaim": {"claimSource": {"claimName": "nightly"}},
                    "s3": s3_source(json!(S3_PATH))}})),
                Some(&backup),
                vec![],
                vec![format!("spec.restoreSource: Required value: {SOURCE_REQUIRED}")],
            ),
            (
                "an S3 backup path that is not one",
                from_s3(json!("3scale/nightly")),
                None,
                vec![],
                vec![format!(
                    "spec.restoreSource.s3.backupPath: Invalid value: \"3scale/nightly\": {BACKUP_PATH_RULE}"
                )],
            ),
            (
                "an empty S3 backup path",
                from_s3(json!("")),
                None,
                vec![],
                vec![format!("spec.restoreSource.s3.backupPath: Required value: {BACKUP_PATH_RULE}")],
            ),
            (
                "no source",
                spec(json!({"restoreSource": {}})),
                None,
                vec![],
                vec![format!("spec.restoreSource: Required value: {SOURCE_REQUIRED}")],
            ),
            (
                "empty claim name",
                from_claim(""),
                None,
                vec![],
                vec![format!(
                    "{CLAIM_NAME}: Required value: name the PersistentVolumeClaim holding the backup (the APIManagerBackup's status.backupPersistentVolumeClaimName)"
                )],
            ),
            (
                "no such claim",
                from_claim("nightly"),
                None,
                vec![],
                vec![format!(
                    "{CLAIM_NAME}: Invalid value: \"nightly\": no PersistentVolumeClaim of that name in namespace \"3scale\"; a restore reads a backup claim of its own namespace"
                )],
            ),
            (
                "a claim without backup annotations",
                from_claim("nightly"),
                Some(&bare),
                vec![],
                vec![format!(
                    "{CLAIM_NAME}: Invalid value: \"nightly\": the PersistentVolumeClaim holds no backup: it lacks the annotations apiManagerName and apiManagerBackupUID that an APIManagerBackup (of this operator or of 3scale-operator) puts on its claim"
                )],
            ),
            (
                "a live APIManager of the backed-up name",
                from_claim("nightly"),
                Some(&backup),
                vec![other, example],
                vec![format!(
                    "{CLAIM_NAME}: Invalid value: \"nightly\": the backup is of APIManager \"example\", which exists in namespace \"3scale\"; restoring over a live installation is refused: delete that APIManager (and its Secrets, ConfigMaps and system-storage claim) first, or restore into another namespace"
                )],
            ),
        ];
        for (name, spec, claim, apimanagers, expected) in cases {
            assert_eq!(messages(&check_create(&spec, "3scale", claim, &apimanagers)), expected, "{name}");
        }
    }

    #[test]
    fn the_spec_is_immutable() {
        assert!(check_update(&from_claim("a"), &from_claim("a")).errors.is_empty());
        assert_eq!(
            messages(&check_update(&from_claim("a"), &from_claim("b"))),
            [format!("spec: Forbidden: {SPEC_IMMUTABLE}")]
        );
    }
}
