//! The Job steps as the Pod runs them: the binary, its exit code and its termination message.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::certs::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");

/// `copy-files` as an unprivileged user (root reads every file, a Pod's user does not).
fn copy_files_as_nobody(
    source: &std::path::Path,
    backup: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Output {
    let mut command = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    command
        .args(["job", "copy-files"])
        .arg(format!("--source={}", source.display()))
        .arg(format!("--backup-dir={}", backup.display()))
        .arg(format!("--termination-log={}", log.display()))
        .output()
        .expect("job runs")
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

#[test]
fn an_unreadable_file_fails_the_copy_naming_it() {
    let scratch = TempDir::new("unreadable");
    let source = scratch.0.join("system-storage");
    let backup = scratch.0.join("backup");
    std::fs::create_dir_all(source.join("uploads")).expect("source");
    std::fs::create_dir_all(&backup).expect("backup");
    std::fs::write(source.join("uploads/ok.txt"), b"fine").expect("readable file");
    std::fs::write(source.join("uploads/secret.bin"), b"no").expect("unreadable file");
    for (path, mode) in [(&scratch.0, 0o755), (&source, 0o755), (&source.join("uploads"), 0o755), (&backup, 0o777)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("mode");
    }
    std::fs::set_permissions(source.join("uploads/secret.bin"), std::fs::Permissions::from_mode(0o000)).expect("mode");
    let log = backup.join("termination-log");

    let output = copy_files_as_nobody(&source, &backup, &log);
    assert!(!output.status.success(), "the copy must fail");
    let message = std::fs::read_to_string(&log).expect("termination message written");
    assert_eq!(
        message,
        format!("reading {}: Permission denied (os error 13)", source.join("uploads/secret.bin").display())
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("uploads/secret.bin"), "also on stderr");
}
