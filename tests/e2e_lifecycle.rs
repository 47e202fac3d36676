//! Each test here owns a control plane of its own: the CRD's CEL rules without the webhooks, and
//! the harness leaving no process behind, even when a test panics.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;
use support::cluster::{kubectl_run, start_cluster};

/// The tests of this binary each start processes; one at a time keeps `pgrep -P` meaningful.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn children_of_this_process() -> String {
    let output = Command::new("pgrep").arg("-P").arg(std::process::id().to_string()).output().expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn backup(name: &str, spec: &str) -> String {
    format!("apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

#[test]
fn crd_rules_still_refuse_without_the_webhooks() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (cluster, dir) = start_cluster("cel");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let admin = cluster.admin_client().await.expect("admin client");
        apimanager_backup_operator::local::install::unregister_webhooks(&admin).await.expect("webhooks removed");
    });
    // The API server drops its webhook clients asynchronously; a valid object being accepted
    // without apiManagerName (which the webhook would refuse here) shows they are gone.
    let sized = "  backupDestination:\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n";
    let mut accepted = false;
    for attempt in 0..100 {
        let output = kubectl_run(
            &cluster,
            &["-n", "default", "create", "--dry-run=server", "-f", "-"],
            &backup(&format!("probe-{attempt}"), sized),
        );
        if output.status.success() {
            accepted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(accepted, "the webhooks still answer after their configurations were deleted");

    let output =
        kubectl_run(&cluster, &["-n", "default", "create", "-f", "-"], &backup("b", "  backupDestination: {}\n"));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"The APIManagerBackup "b" is invalid: spec.backupDestination: Required value: exactly one backup destination must be set; supported: persistentVolumeClaim, s3"#
    );
    let spec = "  backupDestination:\n    persistentVolumeClaim:\n      volumeName: pv-1\n      resources: {}\n";
    let output = kubectl_run(&cluster, &["-n", "default", "create", "-f", "-"], &backup("c", spec));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        r#"The APIManagerBackup "c" is invalid: spec.backupDestination.persistentVolumeClaim.resources.requests: Required value: the backup claim's size must be set, also when volumeName is set (for example 10Gi)"#
    );
    // S3: a claim and a bucket are two destinations; the encryption is chosen, never both ways.
    let bucket =
        "    s3:\n      bucket: backups\n      region: us-east-1\n      credentialsSecretRef:\n        name: s3\n";
    let cases = [
        (
            format!(
                "  backupDestination:\n{bucket}      encryption:\n        disabled: true\n    persistentVolumeClaim:\n      resources:\n        requests: 1Gi\n"
            ),
            r#"The APIManagerBackup "d" is invalid: spec.backupDestination: Required value: exactly one backup destination must be set; supported: persistentVolumeClaim, s3"#,
        ),
        (
            format!("  backupDestination:\n{bucket}"),
            r#"The APIManagerBackup "d" is invalid: spec.backupDestination.s3.encryption: Required value: set encryption.keySecretRef to a Secret of keys (docs/encryption.md) or, to store the backup in clear, encryption.disabled: true"#,
        ),
        (
            format!(
                "  backupDestination:\n{bucket}      encryption:\n        disabled: true\n        keySecretRef:\n          name: k\n"
            ),
            r#"The APIManagerBackup "d" is invalid: spec.backupDestination.s3.encryption.disabled: Forbidden: disabled: true contradicts keySecretRef; remove one of them"#,
        ),
    ];
    for (spec, refused) in cases {
        let output = kubectl_run(&cluster, &["-n", "default", "create", "-f", "-"], &backup("d", &spec));
        assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end(), refused, "{spec}");
    }
    let mut cluster = cluster;
    let ended = cluster.operator.terminate(Duration::from_secs(20)).expect("operator reaped");
    assert!(ended.success(), "SIGTERM stops the operator cleanly: {ended}");
    let log = std::fs::read_to_string(cluster.operator.log()).expect("operator log");
    assert!(log.contains("shutting down the HTTPS server") && log.contains("backup controller stopped"), "{log}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(children_of_this_process(), "", "processes left after drop");
}

#[test]
fn every_process_stops_when_a_test_panics() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (sender, receiver) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let (cluster, dir) = start_cluster("panic");
        let mut pids = cluster.plane.pids().to_vec();
        pids.push(cluster.operator.pid());
        sender.send((pids, dir)).expect("report pids");
        panic!("a test failing while it owns a cluster");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (pids, dir) = receiver.recv().expect("pids reported");
    assert_eq!(pids.len(), 4);
    for pid in pids {
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still exists");
    }
    assert_eq!(children_of_this_process(), "", "processes left after the panic");
    let _ = std::fs::remove_dir_all(dir);
}
