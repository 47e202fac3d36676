//! Sealed backups on a claim end to end on the real control plane: an APIManagerBackup whose
//! `persistentVolumeClaim.encryption.keySecretRef` names a key Secret leaves its claim holding the
//! sealed layout (nothing of a Secret's value or a file's content in clear, verifiable offline
//! with the binary alone), and an APIManagerRestore naming the same keys brings every object and
//! file back into the emptied namespace. Without the keys the restore fails naming the field to
//! set, with a wrong key it fails naming the key; neither writes anything.

mod support;

use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::job::destination::holds_sealed_layout;
use apimanager_backup_operator::layout::FILE_STORAGE_DIR;
use std::path::Path;
use support::certs::TempDir;
use support::cluster::{delete_restorable, finished_backup, kubectl_ok, namespace_with_installation, shared};
use support::restore::{Entry, Installation, finished_restore, tree};

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");
/// The key Secret.
const KEYS: &str = "backup-key";
/// The field a restore of a sealed claim names its keys in.
const KEY_FIELD: &str = "spec.restoreSource.persistentVolumeClaim.encryption.keySecretRef";

/// A 32-byte key of `byte`s in base64, as `openssl rand -base64 32` writes one.
fn key(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// Creates the key Secret `name` of `ns` holding key `2026-01` of `byte`s.
fn key_secret(ns: &str, name: &str, byte: u8) {
    let entry = format!("--from-literal=2026-01={}", key(byte));
    kubectl_ok(shared(), &["-n", ns, "create", "secret", "generic", name, &entry], "");
}

/// Creates the sealed backup `name` of `ns` onto a claim of its own.
fn create_sealed_backup(ns: &str, name: &str) {
    let yaml = format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n      encryption:\n        keySecretRef:\n          name: {KEYS}\n"
    );
    kubectl_ok(shared(), &["-n", ns, "create", "-f", "-"], &yaml);
}

/// Creates restore `name` of claim `claim` in `ns`, opened by the key Secret `keys` when given.
fn create_restore(ns: &str, name: &str, claim: &str, keys: Option<&str>) {
    let encryption = keys
        .map(|keys| format!("      encryption:\n        keySecretRef:\n          name: {keys}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerRestore\nmetadata:\n  name: {name}\nspec:\n  restoreSource:\n    persistentVolumeClaim:\n      claimSource:\n        claimName: {claim}\n{encryption}"
    );
    kubectl_ok(shared(), &["-n", ns, "create", "-f", "-"], &yaml);
}

/// The reason and message of condition `type_`.
fn condition_of(restore: &APIManagerRestore, type_: &str) -> (String, String) {
    let conditions = restore.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let found = conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_}: {conditions:?}"));
    (found.reason.clone(), found.message.clone())
}

/// `verify ARGS…` of the binary: its exit status and standard output.
fn verify_cli(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let output = std::process::Command::new(BIN).arg("verify").args(args).output().expect("verify runs");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A completed sealed backup `name` of `ns`, and its claim's folder.
async fn completed_sealed_backup(ns: &str, name: &str) -> std::path::PathBuf {
    create_sealed_backup(ns, name);
    let backup = finished_backup(shared(), ns, name).await;
    let status = backup.status.expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(status.backup_persistent_volume_claim_name.as_deref(), Some(name));
    let claim = shared().volume(ns, name);
    let stored: u64 = tree(&claim)
        .values()
        .map(|entry| match entry {
            Entry::File { bytes, .. } => bytes.len() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(status.bytes_written, Some(i64::try_from(stored).expect("bytes")), "bytesWritten: the claim's objects");
    claim
}

#[tokio::test]
async fn a_sealed_claim_holds_nothing_in_clear_and_restores_an_emptied_namespace() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "sealed-claim").await;
    key_secret(&ns, KEYS, 7);
    let claim = completed_sealed_backup(&ns, "nightly").await;

    // The claim holds the sealed layout: no clear file tree, no Secret value nor file content.
    assert!(holds_sealed_layout(&claim), "manifest.json is the sealed layout's index");
    assert!(!claim.join(FILE_STORAGE_DIR).exists(), "no file tree in clear");
    let original = Installation::of(cluster, &ns).await;
    let values = original.clear_values();
    for (path, entry) in tree(&claim) {
        let Entry::File { bytes, mode, .. } = entry else { continue };
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        for value in &values {
            assert!(!bytes.windows(value.len()).any(|w| w == value.as_slice()), "{} holds a value", path.display());
        }
    }

    // Offline, with the binary alone: verified without the key and with it.
    let (code, stdout) = verify_cli(&[claim.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("verified without the key: "), "{stdout}");
    let keys = TempDir::new("sealed-claim-keys");
    std::fs::write(keys.0.join("2026-01"), key(7)).expect("key file");
    let (code, stdout) = verify_cli(&["--key".as_ref(), keys.0.as_os_str(), claim.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("verified: ") && stdout.ends_with("(every object opened with the key)"), "{stdout}");

    delete_restorable(cluster, &ns).await;

    create_restore(&ns, "back", "nightly", Some(KEYS));
    let restore = finished_restore(cluster, &ns, "back").await;
    let completed = restore.status.as_ref().and_then(|status| status.completed);
    let (reason, message) = condition_of(&restore, "Ready");
    assert_eq!((completed, reason.as_str()), (Some(true), "RestoreCompleted"), "{message}");
    assert_eq!(message, "APIManager example-apimanager restored from PersistentVolumeClaim nightly and available");
    let (reason, message) = condition_of(&restore, "Verified");
    assert_eq!(reason, "Verified");
    assert!(message.starts_with("the backup matches manifest.json: "), "{message}");
    original.assert_restored_in(cluster, &ns).await;
}

#[tokio::test]
async fn a_sealed_claim_restored_without_its_key_or_with_a_wrong_one_fails_clearly_and_writes_nothing() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "sealed-claim-keys").await;
    key_secret(&ns, KEYS, 7);
    completed_sealed_backup(&ns, "nightly").await;
    let gone = [
        ("secret", "zync"),
        ("configmap", "system-environment"),
        ("apimanager", "example-apimanager"),
        ("persistentvolumeclaim", "system-storage"),
    ];
    for (kind, name) in gone {
        kubectl_ok(cluster, &["-n", &ns, "delete", kind, name], "");
    }
    let assert_nothing_written = |what: &str| {
        for (kind, name) in gone {
            let found = kubectl_ok(cluster, &["-n", &ns, "get", kind, "--ignore-not-found", "-o", "name"], "");
            assert!(!found.lines().any(|line| line.ends_with(&format!("/{name}"))), "{what}: {kind} {name} written");
        }
    };

    create_restore(&ns, "without-key", "nightly", None);
    let restore = finished_restore(cluster, &ns, "without-key").await;
    let (reason, message) = condition_of(&restore, "Failed");
    assert_eq!(reason, "JobFailed");
    assert!(
        message.ends_with(&format!(
            "is encrypted (key 2026-01) and no key was given: set {KEY_FIELD}; nothing was restored"
        )),
        "{message}"
    );
    assert_eq!(restore.status.and_then(|s| s.api_manager_to_restore_ref), None, "failed at verify");
    assert_nothing_written("without the key");

    key_secret(&ns, "wrong-key", 8);
    create_restore(&ns, "wrong-key", "nightly", Some("wrong-key"));
    let restore = finished_restore(cluster, &ns, "wrong-key").await;
    let (reason, message) = condition_of(&restore, "Failed");
    assert_eq!(reason, "JobFailed");
    assert!(message.contains("key 2026-01 does not open the object's data key"), "{message}");
    assert_eq!(restore.status.and_then(|s| s.api_manager_to_restore_ref), None, "failed at verify");
    assert_nothing_written("with a wrong key");
    assert!(Path::new(&cluster.volume(&ns, "nightly")).join("manifest.json").exists(), "the backup is untouched");
}
