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
    let command = if running_as_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    support::jobs::copy_files(command, source, backup, log)
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

#[test]
fn an_unreadable_file_fails_the_copy_naming_it_its_owner_group_and_the_fix() {
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
    let file = std::fs::metadata(source.join("uploads/secret.bin")).expect("metadata");
    let root_group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&source).expect("root"));
    let (owner, group) = (std::os::unix::fs::MetadataExt::uid(&file), std::os::unix::fs::MetadataExt::gid(&file));
    let id = |flag: &str| {
        let output = Command::new("id").arg(flag).output().expect("id");
        String::from_utf8_lossy(&output.stdout).trim().replace(' ', ",")
    };
    let (uid, groups) = if running_as_root() { ("65534".to_owned(), "65534".to_owned()) } else { (id("-u"), id("-G")) };
    assert_eq!(
        message,
        format!(
            "cannot read {}: owned by uid {owner} and gid {group} with mode 0000, while this step runs as uid {uid} with \
groups {groups}; fix: make it readable by the group owning the System FileStorage claim's root (gid {root_group}): \
chgrp {root_group} and chmod g+r (g+rx for a folder), as System writes its files, or run the operator with \
--file-storage-group={group}",
            source.join("uploads/secret.bin").display()
        )
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("uploads/secret.bin"), "also on stderr");
}

#[test]
fn a_failure_deeper_than_path_max_reports_the_reason_first_and_cuts_the_path() {
    let scratch = TempDir::new("deep-unreadable");
    let source = scratch.0.join("system-storage");
    let backup = scratch.0.join("backup");
    let folder = "f".repeat(250);
    std::fs::create_dir_all(&source).expect("source");
    std::fs::create_dir_all(&backup).expect("backup");
    std::fs::set_permissions(&backup, std::fs::Permissions::from_mode(0o777)).expect("mode");
    // Created one level at a time through a relative path: the whole path is longer than PATH_MAX.
    let mut parent = std::fs::File::open(&source).expect("open source");
    for _ in 0..20 {
        rustix::fs::mkdirat(&parent, folder.as_str(), rustix::fs::Mode::from_raw_mode(0o755)).expect("mkdir");
        parent = std::fs::File::from(
            rustix::fs::openat(&parent, folder.as_str(), rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
                .expect("open"),
        );
    }
    let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE;
    drop(rustix::fs::openat(&parent, "secret.bin", flags, rustix::fs::Mode::empty()).expect("unreadable file"));
    let log = backup.join("termination-log");

    let output = copy_files_as_nobody(&source, &backup, &log);
    assert!(!output.status.success(), "the copy must fail");
    let message = std::fs::read_to_string(&log).expect("termination message written");
    assert!(message.len() <= 4096, "Kubernetes keeps 4096 bytes; the message has {}", message.len());
    assert!(
        message.starts_with(&format!("Permission denied (os error 13) while reading {}/", source.display())),
        "{message}"
    );
    assert!(message.ends_with(&format!("{folder}/secret.bin")), "the file's name is kept: {message}");
    assert!(message.contains('…'), "the middle of the path is cut: {message}");
}
