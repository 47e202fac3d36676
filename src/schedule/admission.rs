//! The admission rules of an `APIManagerBackupSchedule`, every violation at once: its name fits
//! the label its backups carry; the expression, the time zone and `maxAge` read ([`super::spec`]);
//! the template passes the rules of an `APIManagerBackup` (the backup's own checks, under
//! `spec.template`), its APIManager being the one defaulting would give a backup when unnamed.

use super::spec::{self, NAME_MAX};
use crate::api::apimanager::APIManager;
use crate::api::schedule::APIManagerBackupScheduleSpec;
use crate::rules;
use crate::webhook::field_error::FieldError;
use crate::webhook::validation::{Verdict, check_apimanager, check_spec};
use kube::ResourceExt;

/// Where the backup's rules name their fields, and where the template's fields are.
const BACKUP_SPEC: &str = "spec.";
const TEMPLATE: &str = "spec.template.";

/// Every rule of a schedule named `name` in `namespace`, beside `apimanagers` (that namespace's).
pub fn check(name: &str, spec: &APIManagerBackupScheduleSpec, namespace: &str, apimanagers: &[APIManager]) -> Verdict {
    let mut verdict = Verdict::default();
    if name.len() > NAME_MAX {
        verdict.errors.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be no more than {NAME_MAX} characters (it labels each backup of the schedule)"),
        ));
    }
    if let Err(errors) = spec::settings(spec) {
        verdict.errors.extend(errors.iter().map(|e| FieldError::invalid(e.field(), e.value(spec), e.to_string())));
    }
    let template = &spec.template;
    // A backup of the schedule names the APIManager defaulting gives it when the template does not.
    let meant = rules::apimanager_meant(None, namespace, apimanagers).ok().map(|only| only.name_any());
    let named = template.api_manager_name.clone().filter(|n| !n.is_empty()).or(meant);
    for backup in [check_spec(template), check_apimanager(named.as_deref(), namespace, apimanagers)] {
        verdict.errors.extend(backup.errors.into_iter().map(|mut error| {
            error.field = under_template(&error.field);
            error
        }));
        verdict.warnings.extend(backup.warnings.into_iter().map(|warning| under_template(&warning)));
    }
    verdict
}

/// A backup rule's field path (or a message starting with one) moved under `spec.template`.
fn under_template(text: &str) -> String {
    match text.strip_prefix(BACKUP_SPEC) {
        Some(rest) => format!("{TEMPLATE}{rest}"),
        None => text.to_owned(),
    }
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
    fn a_good_schedule_is_allowed_and_its_template_defaults_to_the_only_apimanager() {
        let good = spec(serde_json::json!({
            "schedule": "30 2 * * *", "timeZone": "Europe/Madrid",
            "template": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}},
            "retention": {"keepDaily": 7, "maxAge": "720h"}
        }));
        let verdict = check("nightly", &good, "3scale", &[apimanager("example", true)]);
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn every_violation_at_once_the_templates_under_spec_template() {
        let bad = spec(serde_json::json!({
            "schedule": "0 0 * * MONDAY", "timeZone": "Europe/Atlantis",
            "template": {"apiManagerName": "example",
                "backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "0"}, "storageClass": "Fast_SSD"}}},
            "retention": {"maxAge": "0s"}
        }));
        let verdict = check(&"n".repeat(64), &bad, "3scale", &[apimanager("example", false)]);
        assert_eq!(
            rendered(&verdict),
            [
                format!("metadata.name: Invalid value: \"{}\": must be no more than 63 characters (it labels each backup of the schedule)", "n".repeat(64)),
                "spec.schedule: Invalid value: \"0 0 * * MONDAY\": day-of-week field: a value is neither a number nor a name this field accepts (0-7 or SUN-SAT)".to_owned(),
                "spec.timeZone: Invalid value: \"Europe/Atlantis\": unknown time zone: use an IANA name such as Europe/Madrid or UTC".to_owned(),
                "spec.retention.maxAge: Invalid value: \"0s\": must be a positive duration such as 720h, 30d or 2w".to_owned(),
            ]
            .into_iter()
            .chain(check_spec(&bad.template).errors.iter().map(|e| under_template(&e.to_string())))
            .chain(
                check_apimanager(Some("example"), "3scale", &[apimanager("example", false)])
                    .errors
                    .iter()
                    .map(|e| under_template(&e.to_string()))
            )
            .collect::<Vec<_>>()
        );
        assert!(
            verdict
                .errors
                .iter()
                .any(|e| e.field == "spec.template.backupDestination.persistentVolumeClaim.resources.requests")
        );
        assert!(
            verdict
                .errors
                .iter()
                .any(|e| e.field == "spec.template.backupDestination.persistentVolumeClaim.storageClass")
        );
        assert!(verdict.errors.iter().any(|e| e.field == "spec.template.apiManagerName"));
        assert_eq!(verdict.errors.len(), 7, "{:#?}", rendered(&verdict));
    }

    #[test]
    fn an_unnamed_template_with_no_or_several_apimanagers_says_so() {
        let unnamed = spec(serde_json::json!({
            "schedule": "@daily",
            "template": {"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}}
        }));
        for apimanagers in [vec![], vec![apimanager("a", true), apimanager("b", true)]] {
            let verdict = check("nightly", &unnamed, "3scale", &apimanagers);
            assert_eq!(verdict.errors.len(), 1, "{:?}", rendered(&verdict));
            assert_eq!(verdict.errors[0].field, "spec.template.apiManagerName");
        }
    }
}
