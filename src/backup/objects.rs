//! The objects particular to a backup, built as plain values (no API calls), so their shape is
//! tested directly: the backup claim and the step Pods' RBAC.

use crate::api::GROUP;
use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackup;
use crate::names::{
    CLAIM_APIMANAGER_NAME, CLAIM_APIMANAGER_UID, CLAIM_BACKUP_NAME, CLAIM_BACKUP_STATE, CLAIM_BACKUP_UID,
    CLAIM_IN_PROGRESS, JOB_DATA_CLUSTER_ROLE, JOB_SERVICE_ACCOUNT,
};
use crate::reconcile::step::{cluster_role_binding, job_subjects, labels, owned_meta, service_account};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, ServiceAccount, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The backup claim, named after the backup. It has no owner: the claim is the backup and
/// outlives the APIManagerBackup. With `volumeName`, `storageClassName` is `""` so the claim binds
/// to that PersistentVolume instead of getting the default class.
pub fn backup_claim(backup: &APIManagerBackup, apimanager: &APIManager) -> PersistentVolumeClaim {
    let destination = backup.spec.backup_destination.persistent_volume_claim.clone().unwrap_or_default();
    let size = destination.resources.and_then(|r| r.requests).unwrap_or_else(|| Quantity("0".into()));
    let storage_class = match &destination.volume_name {
        Some(_) => Some(String::new()),
        None => destination.storage_class.clone(),
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(backup.name_any()),
            namespace: backup.namespace(),
            labels: Some(labels(backup)),
            annotations: Some(BTreeMap::from([
                (CLAIM_APIMANAGER_NAME.to_owned(), apimanager.name_any()),
                (CLAIM_APIMANAGER_UID.to_owned(), apimanager.uid().unwrap_or_default()),
                (CLAIM_BACKUP_NAME.to_owned(), backup.name_any()),
                (CLAIM_BACKUP_UID.to_owned(), backup.uid().unwrap_or_default()),
                (CLAIM_BACKUP_STATE.to_owned(), CLAIM_IN_PROGRESS.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            storage_class_name: storage_class,
            volume_name: destination.volume_name,
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The backup step Pods' ServiceAccount, shared by the backups of a namespace (no owner). It holds no
/// permission between backups: the bindings are removed when a backup ends.
pub fn job_service_account(namespace: &str) -> ServiceAccount {
    service_account(namespace, JOB_SERVICE_ACCOUNT)
}

/// Name of the per-backup Role and its RoleBinding (by UID: names cannot collide across backups).
pub fn rbac_name(backup: &APIManagerBackup) -> String {
    format!("apimanager-backup-{}", backup.uid().unwrap_or_default())
}

/// Name of the per-backup RoleBinding to the data ClusterRole.
pub fn data_binding_name(backup: &APIManagerBackup) -> String {
    format!("apimanager-backup-data-{}", backup.uid().unwrap_or_default())
}

/// A Role allowing `get` on exactly the backed-up APIManager and, by name, on the Secrets it
/// references (`secrets`), owned by the backup. With no referenced Secret there is no Secret rule:
/// a rule without names would allow every Secret.
pub fn apimanager_role(backup: &APIManagerBackup, apimanager: &str, secrets: &[String]) -> Role {
    let get = |group: &str, resource: &str, names: Vec<String>| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: Some(names),
        verbs: vec!["get".to_owned()],
        ..PolicyRule::default()
    };
    let mut rules = vec![get(GROUP, "apimanagers", vec![apimanager.to_owned()])];
    if !secrets.is_empty() {
        rules.push(get("", "secrets", secrets.to_vec()));
    }
    Role { metadata: owned_meta(backup, rbac_name(backup)), rules: Some(rules) }
}

/// Binds [`apimanager_role`] to the step Pods' ServiceAccount.
pub fn apimanager_role_binding(backup: &APIManagerBackup) -> RoleBinding {
    RoleBinding {
        metadata: owned_meta(backup, rbac_name(backup)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: rbac_name(backup),
        },
        subjects: Some(job_subjects(backup, JOB_SERVICE_ACCOUNT)),
    }
}

/// Binds the data ClusterRole (the named Secrets and ConfigMaps) to the step Pods' ServiceAccount in
/// the backup's namespace only.
pub fn data_role_binding(backup: &APIManagerBackup) -> RoleBinding {
    cluster_role_binding(backup, data_binding_name(backup), JOB_DATA_CLUSTER_ROLE, JOB_SERVICE_ACCOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::{BACKUP_UID, NAMESPACE, apimanager, backup};
    use serde_json::json;

    #[test]
    fn claim_with_volume_name_binds_to_that_volume_with_an_empty_storage_class() {
        let destination = json!({"volumeName": "pv-1", "storageClass": "fast", "resources": {"requests": "2Gi"}});
        let claim = backup_claim(&backup(destination, json!({})), &apimanager(json!({})));
        let spec = claim.spec.expect("spec");
        assert_eq!(spec.volume_name.as_deref(), Some("pv-1"));
        assert_eq!(spec.storage_class_name.as_deref(), Some(""), "never the default class");
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        let requests = spec.resources.and_then(|r| r.requests).expect("requests");
        assert_eq!(requests["storage"], Quantity("2Gi".into()));
    }

    #[test]
    fn claim_carries_its_class_annotations_and_no_owner() {
        let destination = json!({"storageClass": "fast", "resources": {"requests": "1Gi"}});
        let claim = backup_claim(&backup(destination, json!({})), &apimanager(json!({})));
        assert_eq!(claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()), Some("fast"));
        assert_eq!(claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()), None);
        assert_eq!(claim.metadata.name.as_deref(), Some("b"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(claim.metadata.owner_references, None, "the claim outlives the APIManagerBackup");
        let annotations = claim.metadata.annotations.expect("annotations");
        assert_eq!(
            annotations,
            BTreeMap::from([
                (CLAIM_APIMANAGER_NAME.to_owned(), "example".to_owned()),
                (CLAIM_APIMANAGER_UID.to_owned(), "am-uid".to_owned()),
                (CLAIM_BACKUP_NAME.to_owned(), "b".to_owned()),
                (CLAIM_BACKUP_UID.to_owned(), BACKUP_UID.to_owned()),
                (CLAIM_BACKUP_STATE.to_owned(), CLAIM_IN_PROGRESS.to_owned()),
            ])
        );
        assert_eq!(claim.metadata.labels.expect("labels")[crate::names::BACKUP_UID_LABEL], BACKUP_UID);
    }

    #[test]
    fn job_rbac_grants_exactly_the_apimanager_and_the_data_role() {
        let owner = backup(json!({"resources": {"requests": "1Gi"}}), json!({}));
        let role = apimanager_role(&owner, "example", &[]);
        let rules = role.rules.expect("rules");
        assert_eq!(rules.len(), 1, "no Secret rule without referenced Secrets: {rules:?}");
        assert_eq!(rules[0].resource_names, Some(vec!["example".to_owned()]));
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(role.metadata.name, Some(format!("apimanager-backup-{BACKUP_UID}")));
        let referenced = ["apicast-policy".to_owned(), "tls".to_owned()];
        let rules = apimanager_role(&owner, "example", &referenced).rules.expect("rules");
        assert_eq!(
            (rules[1].api_groups.as_deref(), rules[1].resources.as_deref(), rules[1].verbs.as_slice()),
            (Some(&[String::new()][..]), Some(&["secrets".to_owned()][..]), &["get".to_owned()][..])
        );
        assert_eq!(rules[1].resource_names.as_deref(), Some(&referenced[..]), "exactly the referenced Secrets");
        let data = data_role_binding(&owner);
        assert_eq!((data.role_ref.kind.as_str(), data.role_ref.name.as_str()), ("ClusterRole", JOB_DATA_CLUSTER_ROLE));
        let subject = &data.subjects.expect("subjects")[0];
        assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (JOB_SERVICE_ACCOUNT, Some(NAMESPACE)));
    }
}
