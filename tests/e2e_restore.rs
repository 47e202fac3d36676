//! Restores end to end on the real control plane: admission of APIManagerRestores through the
//! operator's webhooks and the CRD's CEL rules, driven by `kubectl` as users type it.

mod support;

use support::cluster::{apimanager_yaml, create_rejected, kubectl_ok, kubectl_run, namespace, shared};

fn restore_yaml(name: &str, claim: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerRestore\nmetadata:\n  name: {name}\nspec:\n  restoreSource:\n    persistentVolumeClaim:\n      claimSource:\n        claimName: {claim}\n"
    )
}

/// A claim as an APIManagerBackup leaves it (same annotations for both operators).
fn backup_claim_yaml(name: &str, apimanager: &str) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  annotations:\n    apiManagerName: {apimanager}\n    apiManagerUID: am-uid\n    apiManagerBackupName: {name}\n    apiManagerBackupUID: backup-uid\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n"
    )
}

#[test]
fn restore_over_a_live_apimanager_is_refused_with_what_to_do() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-live");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &apimanager_yaml("example", true));
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_claim_yaml("nightly", "example"));
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "nightly")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "nightly": the backup is of APIManager "example", which exists in namespace "restore-live"; restoring over a live installation is refused: delete that APIManager (and its Secrets, ConfigMaps and system-storage claim) first, or restore into another namespace"#
    );
}

#[test]
fn a_missing_claim_and_a_claim_holding_no_backup_are_refused() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-claims");
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "nowhere")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "nowhere": no PersistentVolumeClaim of that name in namespace "restore-claims"; a restore reads a backup claim of its own namespace"#
    );
    let plain = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: plain\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 1Gi\n";
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], plain);
    assert_eq!(
        create_rejected(&ns, &restore_yaml("r", "plain")),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource.persistentVolumeClaim.claimSource.claimName: Invalid value: "plain": the PersistentVolumeClaim holds no backup: it lacks the annotations apiManagerName and apiManagerBackupUID that an APIManagerBackup (of this operator or of 3scale-operator) puts on its claim"#
    );
}

#[test]
fn no_source_is_refused_by_the_crd_itself() {
    let ns = namespace(shared(), "restore-no-source");
    let yaml = "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerRestore\nmetadata:\n  name: r\nspec:\n  restoreSource: {}\n";
    assert_eq!(
        create_rejected(&ns, yaml),
        r#"The APIManagerRestore "r" is invalid: spec.restoreSource: Required value: exactly one restore source must be set; supported: persistentVolumeClaim"#
    );
}

#[test]
fn an_accepted_restore_mounts_read_only_and_its_spec_never_changes() {
    let cluster = shared();
    let ns = namespace(cluster, "restore-accepted");
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_claim_yaml("nightly", "example"));
    kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &backup_claim_yaml("weekly", "example"));
    let out = kubectl_ok(cluster, &["-n", &ns, "create", "-f", "-"], &restore_yaml("r", "nightly"));
    assert_eq!(out.trim(), "apimanagerrestore.apps.3scale.net/r created");
    let read_only = kubectl_ok(
        cluster,
        &[
            "-n",
            &ns,
            "get",
            "apimanagerrestore",
            "r",
            "-o",
            "jsonpath={.spec.restoreSource.persistentVolumeClaim.claimSource.readOnly}",
        ],
        "",
    );
    assert_eq!(read_only, "true");
    let patch = r#"{"spec":{"restoreSource":{"persistentVolumeClaim":{"claimSource":{"claimName":"weekly"}}}}}"#;
    let output = kubectl_run(cluster, &["-n", &ns, "patch", "apimanagerrestore", "r", "--type=merge", "-p", patch], "");
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"The APIManagerRestore "r" is invalid: spec: Forbidden: spec is immutable once the restore is created; create a new APIManagerRestore to restore another backup"#
    );
}
