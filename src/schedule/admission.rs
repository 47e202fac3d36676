//! Admission of an `APIManagerBackupSchedule`: `spec.template.apiManagerName` defaulted as a
//! backup's `spec.apiManagerName` is; every rule at once: the expression, the time zone and
//! `maxAge` read ([`super::spec`]), and the template passes the rules of an `APIManagerBackup` (the
//! backup's own checks, named under `spec.template`), and the Secrets a bucket destination names
//! exist where the operator may read them. A schedule's spec may change; an UPDATE is checked by
//! the same rules, without APIManager lookups, reading only the Secrets the template names anew
//! (the admission flow's rule, [`crate::admission::secrets`]).
//! (The name's length, which a label on each backup holds, is the CRD's CEL rule.)

use super::spec;
use crate::admission::field_error::FieldError;
use crate::admission::secrets::NamedSecret;
use crate::admission::{Admit, Change, ToDefault, Verdict, Webhook};
use crate::api::apimanager::APIManager;
use crate::api::schedule::{APIManagerBackupSchedule, APIManagerBackupScheduleSpec};
use crate::backup::admission::{default_name, destination_secrets};
use crate::backup::defaulting::set_name_patch_at;
use crate::backup::validation::{check_apimanager_at, check_spec_at};
use crate::lookup::{self, ApiManagerLookup, LookupError};

/// Path of the defaulting (mutating) webhook.
pub const MUTATE_PATH: &str = "/mutate-apps-3scale-net-v1alpha1-apimanagerbackupschedule";
/// Path of the validating webhook.
pub const VALIDATE_PATH: &str = "/validate-apps-3scale-net-v1alpha1-apimanagerbackupschedule";
/// Where the template is.
const TEMPLATE: &str = "spec.template";

impl Admit for APIManagerBackupSchedule {
    type Spec = APIManagerBackupScheduleSpec;
    const DEFAULTING: Webhook = Webhook { path: MUTATE_PATH, label: "schedule-defaulting" };
    const VALIDATING: Webhook = Webhook { path: VALIDATE_PATH, label: "schedule-validating" };

    /// The APIManager a template naming none means, as for a backup; on UPDATE the old template's.
    async fn default<L: ApiManagerLookup>(
        lookup: &L,
        asked: ToDefault<'_, Self::Spec>,
    ) -> Result<Option<json_patch::Patch>, LookupError> {
        let change = match asked.change {
            Change::Create => Change::Create,
            Change::Update { old } => Change::Update { old: old.map(|old| &old.template) },
        };
        let template = ToDefault { namespace: asked.namespace, spec: &asked.spec.template, change };
        let name = default_name(lookup, template).await?;
        Ok(name.map(|name| set_name_patch_at(&["spec", "template"], &name)))
    }

    /// Every rule against the lookup's APIManagers; when they refuse the template's APIManager,
    /// again against what the API server holds now.
    async fn validate_create<L: ApiManagerLookup>(
        lookup: &L,
        namespace: &str,
        spec: &APIManagerBackupScheduleSpec,
    ) -> Result<Verdict, LookupError> {
        let name = spec.template.api_manager_name.as_deref().filter(|name| !name.is_empty());
        let rules = |known: &[APIManager]| {
            let refused = !check_apimanager_at(name, namespace, known, TEMPLATE).errors.is_empty();
            let verdict = check_create(spec, namespace, known);
            if refused { Err(verdict) } else { Ok(verdict) }
        };
        Ok(lookup::cache_first(lookup, namespace, name, rules).await?.unwrap_or_else(|refused| refused))
    }

    fn validate_update(_old: &APIManagerBackupScheduleSpec, new: &APIManagerBackupScheduleSpec) -> Verdict {
        check_spec(new)
    }

    /// Those of the template's destination, named under `spec.template`.
    fn named_secrets(spec: &APIManagerBackupScheduleSpec) -> Vec<NamedSecret> {
        destination_secrets(&spec.template, TEMPLATE)
    }
}

/// The rules that need no lookup: the schedule's own fields and the template's backup rules 1–4.
pub fn check_spec(spec: &APIManagerBackupScheduleSpec) -> Verdict {
    let mut verdict = Verdict::default();
    if let Err(errors) = spec::settings(spec) {
        verdict.errors.extend(errors.iter().map(|e| FieldError::invalid(e.field(), e.value(spec), e.to_string())));
    }
    let template = check_spec_at(&spec.template, TEMPLATE);
    verdict.errors.extend(template.errors);
    verdict.warnings.extend(template.warnings);
    verdict
}

/// Every CREATE rule at once: [`check_spec`] and the template's APIManager (backup rules 5–6).
pub fn check_create(spec: &APIManagerBackupScheduleSpec, namespace: &str, apimanagers: &[APIManager]) -> Verdict {
    let mut verdict = check_spec(spec);
    let name = spec.template.api_manager_name.as_deref();
    let scope = check_apimanager_at(name, namespace, apimanagers, TEMPLATE);
    verdict.errors.extend(scope.errors);
    verdict.warnings.extend(scope.warnings);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apimanager(name: &str, external: bool) -> APIManager {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager",
            "metadata": {"name": name, "namespace": "3scale"},
            "spec": {"externalComponents": {"system": {"database": external, "redis": external}, "backend": {"redis": external}}}
        }))
        .unwrap()
    }

    fn spec(value: serde_json::Value) -> APIManagerBackupScheduleSpec {
        serde_json::from_value(value).unwrap()
    }

    fn rendered(verdict: &Verdict) -> Vec<String> {
        verdict.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_schedule_is_allowed() {
        let good = spec(serde_json::json!({
            "schedule": "30 2 * * *", "timeZone": "Europe/Madrid",
            "template": {"apiManagerName": "example",
                "backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}},
            "retention": {"keepDaily": 7, "maxAge": "720h"}
        }));
        assert_eq!(check_create(&good, "3scale", &[apimanager("example", true)]), Verdict::default());
    }

    #[test]
    fn every_violation_at_once_the_templates_under_spec_template() {
        let bad = spec(serde_json::json!({
            "schedule": "0 0 * * MONDAY", "timeZone": "Europe/Atlantis",
            "template": {"apiManagerName": "example",
                "backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "0"}, "storageClass": "Fast_SSD"}}},
            "retention": {"maxAge": "0s"}
        }));
        let verdict = check_create(&bad, "3scale", &[apimanager("example", false)]);
        let errors = rendered(&verdict);
        assert_eq!(
            errors[..5],
            [
                "spec.schedule: Invalid value: \"0 0 * * MONDAY\": day-of-week field: a value is neither a number nor a name this field accepts (0-7 or SUN-SAT)",
                "spec.timeZone: Invalid value: \"Europe/Atlantis\": unknown time zone: use an IANA name such as Europe/Madrid or UTC",
                "spec.retention.maxAge: Invalid value: \"0s\": must be a positive duration such as 720h, 30d or 2w",
                "spec.template.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: \"0\": must be greater than zero, for example 10Gi",
                "spec.template.backupDestination.persistentVolumeClaim.storageClass: Invalid value: \"Fast_SSD\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')",
            ]
        );
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[5].starts_with("spec.template.apiManagerName: Invalid value: \"example\": "), "{}", errors[5]);
        // An UPDATE checks the same fields, without the lookup.
        assert_eq!(rendered(&check_spec(&bad)), errors[..5]);
    }

    #[test]
    fn the_templates_secrets_are_named_under_spec_template() {
        let into_bucket = spec(serde_json::json!({"schedule": "@daily", "template": {
            "backupDestination": {"s3": {"bucket": "backups", "region": "us-east-1",
            "credentialsSecretRef": {"name": "s3"}, "encryption": {"disabled": true}}}}}));
        assert_eq!(
            <APIManagerBackupSchedule as Admit>::named_secrets(&into_bucket),
            [NamedSecret::new("spec.template.backupDestination.s3.credentialsSecretRef.name", "s3")]
        );
    }

    #[test]
    fn an_unnamed_template_with_no_apimanager_says_so_under_spec_template() {
        let unnamed = spec(serde_json::json!({
            "schedule": "@daily",
            "template": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}}
        }));
        let verdict = check_create(&unnamed, "3scale", &[]);
        assert_eq!(verdict.errors.len(), 1, "{:?}", rendered(&verdict));
        assert_eq!(verdict.errors[0].field, "spec.template.apiManagerName");
    }
}
