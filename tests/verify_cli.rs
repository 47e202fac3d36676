//! `verify DIR` and `job verify` on real backup folders: the exit status, one line per problem,
//! and the termination message the restore reads.

mod support;

use apimanager_backup_operator::job::manifest::{Manifest, hash_file};
use std::path::Path;
use std::process::{Command, Output};
use support::certs::TempDir;
use support::jobs::job_step;
use support::threescale_backup::{FILE_STORAGE_LINK, write_threescale_operator_backup};

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");

const APIMANAGER: &str = r#"{"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager",
 "metadata": {"name": "example"}, "spec": {"wildcardDomain": "example.com"}}"#;

/// A backup folder as the Jobs write it: `copy-files` run by the binary on a small tree, plus a
/// Secret and the APIManager recorded in the manifest as `export-objects` records them.
fn backup(scratch: &TempDir) -> std::path::PathBuf {
    let source = scratch.0.join("system-storage");
    let root = scratch.0.join("backup");
    std::fs::create_dir_all(source.join("uploads")).expect("source");
    std::fs::create_dir_all(&root).expect("backup");
    std::fs::write(source.join("uploads/logo.svg"), b"<svg/>\n").expect("file");
    std::os::unix::fs::symlink("uploads/logo.svg", source.join("logo")).expect("link");
    let copy = support::jobs::copy_files(Command::new(BIN), &source, &root, &scratch.0.join("copy-log"));
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    let mut manifest = Manifest::load(&root).expect("manifest");
    for (relative, content) in [
        ("secrets/zync.json", r#"{"kind": "Secret", "metadata": {"name": "zync"}, "data": {}}"#),
        ("apimanager/apimanager-backup.json", APIMANAGER),
    ] {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(&path, content).expect("object");
        manifest.add_files([hash_file(&path, relative).expect("hash")]);
    }
    manifest.save(&root).expect("save");
    root
}

fn verify(folder: &Path) -> (Option<i32>, String) {
    let output: Output = Command::new(BIN).arg("verify").arg(folder).output().expect("verify runs");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn an_unfinished_backup_is_refused_with_its_own_exit_status() {
    let scratch = TempDir::new("verify-unfinished");
    let root = backup(&scratch);
    let mut manifest = Manifest::load(&root).expect("manifest");
    manifest.begin(&root).expect("marked in progress, as the export step does first");
    assert_eq!(
        verify(&root),
        (
            Some(3),
            "not verified: manifest.json says the backup is in progress: it did not finish (its APIManagerBackup \
failed, was interrupted or is still running), so it cannot be restored\n"
                .to_owned()
        )
    );
}

#[test]
fn an_intact_backup_is_verified() {
    let scratch = TempDir::new("verify-intact");
    let root = backup(&scratch);
    assert_eq!(verify(&root), (Some(0), "verified: 3 files and 1 link match manifest.json\n".to_owned()));
}

#[test]
fn a_changed_byte_a_deleted_file_and_an_unlisted_file_are_each_one_line() {
    let scratch = TempDir::new("verify-damaged");
    let root = backup(&scratch);
    let logo = root.join("system-filestorage-pvc/uploads/logo.svg");
    let listed = hash_file(&logo, "x").expect("hash").sha256;
    std::fs::write(&logo, b"<svg/>!").expect("same size, one byte changed");
    let changed = hash_file(&logo, "x").expect("hash").sha256;
    std::fs::remove_file(root.join("secrets/zync.json")).expect("delete");
    std::fs::write(root.join("secrets/extra.json"), b"{}").expect("extra");
    let (code, out) = verify(&root);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        format!(
            "secrets/extra.json: not listed in manifest.json\nsecrets/zync.json: missing\n\
system-filestorage-pvc/uploads/logo.svg: sha256 {changed}, manifest.json says {listed}\n"
        )
    );
}

#[test]
fn a_changed_size_and_a_retargeted_link_are_reported() {
    let scratch = TempDir::new("verify-size");
    let root = backup(&scratch);
    std::fs::write(root.join("system-filestorage-pvc/uploads/logo.svg"), b"longer content").expect("write");
    std::fs::remove_file(root.join("system-filestorage-pvc/logo")).expect("unlink");
    std::os::unix::fs::symlink("/etc/passwd", root.join("system-filestorage-pvc/logo")).expect("link");
    let (code, out) = verify(&root);
    assert_eq!(code, Some(1));
    assert_eq!(
        out,
        "system-filestorage-pvc/logo: link to \"/etc/passwd\", manifest.json says \"uploads/logo.svg\"\n\
system-filestorage-pvc/uploads/logo.svg: size 14 bytes, manifest.json says 7\n"
    );
}

#[test]
fn a_backup_without_manifest_is_not_verified_and_an_empty_folder_is_no_backup() {
    let scratch = TempDir::new("verify-3scale-layout");
    let root = backup(&scratch);
    std::fs::remove_file(root.join("manifest.json")).expect("3scale-operator writes none");
    let (code, out) = verify(&root);
    assert_eq!(code, Some(2));
    assert_eq!(
        out,
        "not verified: no manifest.json (a backup in 3scale-operator's layout); sizes and checksums cannot be checked\n"
    );
    let empty = scratch.0.join("empty");
    std::fs::create_dir_all(&empty).expect("empty");
    assert_eq!(
        verify(&empty),
        (Some(1), "manifest.json: missing\napimanager/apimanager-backup.json: missing\n".to_owned())
    );
}

#[test]
fn job_verify_reports_to_the_restore_through_the_termination_message() {
    let scratch = TempDir::new("job-verify");
    let root = backup(&scratch);
    let log = scratch.0.join("termination-log");
    let backup_dir = [format!("--backup-dir={}", root.display())];
    let (ok, report) = job_step("verify", &backup_dir, &log);
    assert!(ok, "{report}");
    assert_eq!(
        report,
        format!(
            r#"{{"step":"verify","checked":{{"result":"verified","files":3,"links":1}},"apiManager":{{"name":"example","systemStorage":{{}},"fileStorageGroup":{}}}}}"#,
            files_group(&root)
        )
    );
    std::fs::write(root.join("secrets/zync.json"), b"{}").expect("damage");
    let (ok, message) = job_step("verify", &backup_dir, &log);
    assert!(!ok, "a damaged backup fails the step");
    assert!(
        message.starts_with(
            "the backup does not match manifest.json; nothing was restored: secrets/zync.json: size 2 bytes, manifest.json says "
        ),
        "{message}"
    );
}

#[test]
fn a_backup_in_3scale_operators_layout_is_not_verified_but_readable() {
    let scratch = TempDir::new("verify-3scale-operator");
    let root = scratch.0.join("backup");
    write_threescale_operator_backup(&root);
    let secrets = std::fs::read_dir(root.join("secrets")).expect("secrets").count();
    assert_eq!(secrets, 13, "every Secret 3scale-operator backs up");
    let zync = std::fs::read_to_string(root.join("secrets/zync.json")).expect("zync");
    assert!(zync.starts_with("{\n    \"apiVersion\": \"v1\",\n    \"data\": {"), "{zync}");

    assert_eq!(
        verify(&root),
        (
            Some(2),
            "not verified: no manifest.json (a backup in 3scale-operator's layout); sizes and checksums cannot be checked\n"
                .to_owned()
        )
    );
    let backup_dir = format!("--backup-dir={}", root.display());
    let (ok, report) = job_step("verify", std::slice::from_ref(&backup_dir), &scratch.0.join("verify-log"));
    assert!(ok, "not verified is no failure: {report}");
    assert_eq!(
        report,
        format!(
            r#"{{"step":"verify","checked":{{"result":"noManifest"}},"apiManager":{{"name":"example-apimanager","systemStorage":{{}},"fileStorageGroup":{}}}}}"#,
            files_group(&root)
        )
    );

    let target = scratch.0.join("system-storage");
    std::fs::create_dir_all(&target).expect("target claim");
    let args = [format!("--target={}", target.display()), backup_dir];
    let (ok, report) = job_step("restore-files", &args, &scratch.0.join("restore-files-log"));
    assert!(ok, "{report}");
    assert_eq!(report, r#"{"step":"restoreFiles","files":2,"links":1,"verified":false}"#);
    let (link, link_target) = FILE_STORAGE_LINK;
    assert_eq!(std::fs::read_link(target.join(link)).expect("link"), Path::new(link_target));
}

/// The group owning a backup's System FileStorage folder, which verify reports for the restore.
fn files_group(root: &Path) -> u32 {
    std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(root.join("system-filestorage-pvc")).expect("files folder"))
}
