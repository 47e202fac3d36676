//! The defaulting rule of a backup (README, "Admission rules"): fill in `spec.apiManagerName` when the backup
//! means exactly one APIManager ([`crate::rules::unnamed_choice`]).

use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackupSpec;
use crate::rules;
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use kube::ResourceExt;
use serde_json::Value;

/// The `spec.apiManagerName` of a spec, when it is set and not empty.
pub fn api_manager_name(spec: &APIManagerBackupSpec) -> Option<&str> {
    spec.api_manager_name.as_deref().filter(|name| !name.is_empty())
}

/// Whether the spec needs a default: it names no APIManager.
pub fn needs_default(spec: &APIManagerBackupSpec) -> bool {
    api_manager_name(spec).is_none()
}

/// The name to default to: the old spec's on UPDATE (so a replace keeps it), otherwise the
/// APIManager a backup naming none means; `None` when there is none (validation explains why).
pub fn choose_name(old: Option<&APIManagerBackupSpec>, apimanagers: &[APIManager]) -> Option<String> {
    if let Some(old) = old.and_then(api_manager_name) {
        return Some(old.to_owned());
    }
    rules::unnamed_choice(apimanagers).map(ResourceExt::name_any)
}

/// The JSONPatch that sets `spec.apiManagerName`.
pub fn set_name_patch(name: &str) -> Patch {
    set_name_patch_at(&["spec"], name)
}

/// The JSONPatch that sets `apiManagerName` in the backup spec at `at` (a schedule's template is
/// at `spec`, `template`).
pub fn set_name_patch_at(at: &[&str], name: &str) -> Patch {
    Patch(vec![PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(at.iter().copied().chain(["apiManagerName"])),
        value: Value::String(name.to_owned()),
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::APIManagerSpec;
    use serde_json::json;

    fn apimanagers(names: &[&str]) -> Vec<APIManager> {
        names.iter().map(|n| APIManager::new(n, APIManagerSpec::default())).collect()
    }

    fn spec(name: Option<&str>) -> APIManagerBackupSpec {
        APIManagerBackupSpec { api_manager_name: name.map(str::to_owned), backup_destination: Default::default() }
    }

    #[test]
    fn needs_default_only_without_a_name() {
        assert!(needs_default(&spec(None)));
        assert!(needs_default(&spec(Some(""))));
        assert!(!needs_default(&spec(Some("x"))));
    }

    #[test]
    fn chooses_the_only_apimanager() {
        assert_eq!(choose_name(None, &apimanagers(&["example"])), Some("example".to_owned()));
        assert_eq!(choose_name(None, &apimanagers(&[])), None);
        assert_eq!(choose_name(None, &apimanagers(&["a", "b"])), None);
    }

    #[test]
    fn update_keeps_the_old_name() {
        let old = spec(Some("first"));
        assert_eq!(choose_name(Some(&old), &apimanagers(&["a", "b"])), Some("first".to_owned()));
    }

    #[test]
    fn patch_adds_the_name_and_applies() {
        let mut object = json!({"spec": {"backupDestination": {}}});
        json_patch::patch(&mut object, &set_name_patch("example")).expect("patch applies");
        assert_eq!(object, json!({"spec": {"backupDestination": {}, "apiManagerName": "example"}}));
        assert_eq!(
            serde_json::to_value(set_name_patch("example")).expect("patch serializes"),
            json!([{"op": "add", "path": "/spec/apiManagerName", "value": "example"}])
        );
    }
}
