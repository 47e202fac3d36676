//! The S3 destination's data path against a real S3 server (SeaweedFS, verifying SigV4): a
//! backup's steps write sealed objects and the FileStorage tree by content, the last one commits
//! `manifest.json`; verify with and without the key; the files restored with modes, times and
//! links; nothing of a Secret's value or a file's content in clear in the bucket; a second backup
//! of the same tree uploads no file and reads none, a file changed in place behind the same size
//! and modification time is read again; a corrupted, a missing and an uncommitted backup, a wrong key
//! and key rotation.

mod support;

use apimanager_backup_operator::job::destination::index::{CONTENTS_FILE, INDEX_FILE, Index};
use apimanager_backup_operator::job::destination::read::{Committed, Coverage};
use apimanager_backup_operator::job::destination::steps::copy_files;
use apimanager_backup_operator::job::destination::unchanged::SETTLED;
use apimanager_backup_operator::job::destination::write::{BucketBackup, Traffic};
use apimanager_backup_operator::job::destination::{DestinationError, ObjectSink, S3Args};
use apimanager_backup_operator::job::manifest::Manifest;
use apimanager_backup_operator::job::report::{Checked, StepReport};
use apimanager_backup_operator::job::{CommonArgs, CopyArgs, JobError};
use apimanager_backup_operator::layout::APIMANAGER_FILE;
use std::fs;
use std::path::{Path, PathBuf};
use support::s3::{bucket_name, raw_bucket, shared_s3};
use support::sealed::{FILE_TEXT, PASSWORD, assert_file_tree_restored, export_sample, file_tree, keys};

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("abo-s3dest-{label}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch");
    dir
}

/// A folder of 3scale's S3 Secret keys, as the Secret is mounted.
fn credentials(dir: &Path) -> String {
    let folder = dir.join("credentials");
    fs::create_dir_all(&folder).expect("credentials");
    for (key, value) in shared_s3().secret_keys() {
        fs::write(folder.join(key), value).expect("key file");
    }
    folder.to_string_lossy().into_owned()
}

struct Setup {
    dir: PathBuf,
    source: PathBuf,
    args: S3Args,
}

async fn setup(label: &str) -> Setup {
    let dir = scratch(label);
    let source = dir.join("source");
    file_tree(&source, 17 << 20);
    let bucket = bucket_name(label);
    shared_s3().create_bucket(&bucket).await.expect("bucket");
    let args = S3Args {
        s3_bucket: Some(bucket),
        s3_prefix: Some("prod/backups".into()),
        s3_credentials: Some(credentials(&dir)),
        s3_allow_http: Some(true),
        encryption_keys: Some(keys(&dir, "keys", &[("2026-01", [7; 32])])),
        ..S3Args::default()
    };
    Setup { dir, source, args }
}

/// Both steps of one backup named `name`: the export (a Secret and the APIManager) and the copy,
/// which commits when `commit`; what the copy moved.
async fn back_up(setup: &Setup, name: &str, uid: &str, commit: bool) -> Result<Traffic, JobError> {
    let mut args = setup.args.clone();
    args.s3_backup = Some(format!("3scale/{name}-{uid}"));
    args.s3_backup_uid = Some(uid.into());
    export_sample(BucketBackup::begin(&common(&args), "export-objects").await?, name, uid).await?;
    let common = CommonArgs { s3: args, ..CommonArgs::at("/unused") };
    copy_files(&CopyArgs { source: setup.source.clone(), last_step: commit, common }).await
}

/// Waits until every file under `root` last changed more than [`SETTLED`] ago, so a backup
/// records them as reusable by the next one.
fn wait_until_settled(root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let mut newest = std::time::UNIX_EPOCH;
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("folder") {
            let meta = entry.expect("entry").metadata().expect("meta");
            let changed = std::time::UNIX_EPOCH
                + std::time::Duration::new(meta.ctime().try_into().expect("after 1970"), meta.ctime_nsec() as u32);
            newest = newest.max(changed);
        }
        folders
            .extend(fs::read_dir(&folder).expect("folder").flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
    }
    while std::time::SystemTime::now() <= newest + SETTLED {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Restores the files of backup `uid` onto the fresh folder `target`.
async fn restore_files(setup: &Setup, uid: &str, target: &Path) {
    let _ = fs::remove_dir_all(target);
    fs::create_dir_all(target).expect("target");
    let committed = open_committed(&at(setup, "nightly", uid)).await.expect("open");
    let contents = committed.contents().await.expect("sealed manifest");
    committed.restore_tree(&contents, "system-filestorage-pvc", target).await.expect("restored");
}

/// The step settings of a backup in the bucket `args` name.
fn common(args: &S3Args) -> CommonArgs {
    CommonArgs { s3: args.clone(), ..CommonArgs::at("/unused") }
}

/// `job verify` of the backup `args` name.
async fn verify(args: &S3Args) -> Result<StepReport, JobError> {
    apimanager_backup_operator::job::destination::steps::verify(&common(args)).await
}

/// The committed backup `args` name.
async fn open_committed(args: &S3Args) -> Result<Committed, DestinationError> {
    Committed::open(&common(args)).await
}

fn at(setup: &Setup, name: &str, uid: &str) -> S3Args {
    S3Args { s3_backup: Some(format!("3scale/{name}-{uid}")), ..setup.args.clone() }
}

async fn overwrite(args: &S3Args, key: &str, bytes: Vec<u8>) {
    let client = shared_s3().client(Default::default()).expect("client");
    let bucket = args.s3_bucket.as_deref().expect("bucket");
    client.put_object(bucket, key, bytes.into(), &Default::default()).await.expect("put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_backup_round_trips_by_content_and_holds_nothing_in_clear() {
    let setup = setup("round-trip").await;
    wait_until_settled(&setup.source);
    let traffic = back_up(&setup, "nightly", "uid-1", true).await.expect("backup");
    assert_eq!(traffic.files_uploaded, 3, "logo, robots.txt and big.bin; the hard link shares the logo's content");
    assert_eq!((traffic.files_hashed, traffic.files_unchanged), (3, 0));

    // Nothing in clear: no Secret value, no file content, no file name.
    let objects = raw_bucket(setup.args.s3_bucket.as_deref().expect("bucket")).await;
    for (key, bytes) in &objects {
        for needle in [PASSWORD.as_bytes(), FILE_TEXT, b"logo.png", b"wildcardDomain"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{key} holds {:?} in clear",
                String::from_utf8_lossy(needle)
            );
        }
    }
    let index_key = "prod/backups/3scale/nightly-uid-1/manifest.json";
    let index: Index =
        serde_json::from_slice(&objects.iter().find(|(k, _)| k == index_key).expect("committed").1).expect("index");
    assert_eq!(index.key_id.as_deref(), Some("2026-01"));
    assert_eq!(index.backup_uid, "uid-1");

    // Downloaded with its prefix (as `aws s3 cp --recursive` copies it), the backup verifies
    // offline with the binary alone, without the key and with it.
    let downloaded = setup.dir.join("downloaded");
    for (key, bytes) in &objects {
        let path = downloaded.join(key.strip_prefix("prod/backups/").expect("under the prefix"));
        fs::create_dir_all(path.parent().expect("parent")).expect("folders");
        fs::write(path, bytes).expect("object");
    }
    let folder = downloaded.join("3scale/nightly-uid-1");
    let verify_cli = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_apimanager-backup-operator"))
            .arg("verify")
            .args(args)
            .output()
            .expect("verify runs");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let (code, stdout) = verify_cli(&[folder.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("verified without the key: 6 stored objects"), "{stdout}");
    let keys_folder = std::ffi::OsString::from(setup.args.encryption_keys.clone().expect("keys"));
    let (code, stdout) = verify_cli(&["--key".as_ref(), keys_folder.as_os_str(), folder.as_os_str()]);
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "verified: 5 files and 2 links match the sealed manifest (every object opened with the key)")
    );
    assert_eq!(index.objects.iter().filter(|o| o.key.starts_with("_content/")).count(), 3);

    // Verified with the key (everything opened) and the backed-up APIManager named.
    let report = verify(&at(&setup, "nightly", "uid-1")).await.expect("verified");
    let StepReport::Verify { checked, api_manager } = report else { panic!("a verify report") };
    assert_eq!(checked, Checked::Verified { files: 5, links: 2 });
    assert_eq!(api_manager.name, "example");
    // And without it: every stored object's digest.
    let keyless = S3Args { encryption_keys: None, ..at(&setup, "nightly", "uid-1") };
    let committed = open_committed(&keyless).await.expect("index readable without the key");
    assert_eq!(committed.verify().await.expect("digests match"), Coverage::Stored { objects: 6 });

    // Restored onto an empty folder: contents, modes, times, links.
    let target = setup.dir.join("restored");
    restore_files(&setup, "uid-1", &target).await;
    assert_eq!(fs::read(target.join("uploads/logos/logo.png")).expect("logo"), FILE_TEXT);
    assert_eq!(
        fs::read(target.join("uploads/big.bin")).expect("big"),
        fs::read(setup.source.join("uploads/big.bin")).expect("src")
    );
    assert_file_tree_restored(&target);

    // A second backup of the unchanged tree references every file and reads none: each keeps
    // the first backup's content name and digests; it verifies and restores as the tree.
    let traffic = back_up(&setup, "nightly", "uid-2", true).await.expect("second backup");
    assert_eq!((traffic.files_uploaded, traffic.files_hashed, traffic.files_unchanged), (0, 0, 3));
    verify(&at(&setup, "nightly", "uid-2")).await.expect("second verified");
    restore_files(&setup, "uid-2", &target).await;
    assert_eq!(
        fs::read(target.join("uploads/big.bin")).expect("big"),
        fs::read(setup.source.join("uploads/big.bin")).expect("src")
    );
    assert_eq!(fs::read(target.join("uploads/logos/logo.png")).expect("logo"), FILE_TEXT);
    assert_file_tree_restored(&target);

    // big.bin changed in place, its size kept and its modification time set back as `touch -d`
    // does: its change time moved, so it is read again and its new content stored.
    let big = setup.source.join("uploads/big.bin");
    let before = fs::metadata(&big).expect("big");
    let mut changed = fs::read(&big).expect("big");
    changed[4096..4104].copy_from_slice(b"changed!");
    fs::write(&big, &changed).expect("changed in place");
    filetime::set_file_mtime(&big, filetime::FileTime::from_last_modification_time(&before)).expect("mtime back");
    let after = fs::metadata(&big).expect("big");
    assert_eq!((after.len(), after.modified().expect("mtime")), (before.len(), before.modified().expect("mtime")));
    let traffic = back_up(&setup, "nightly", "uid-3", true).await.expect("backup of the changed file");
    assert_eq!((traffic.files_uploaded, traffic.files_hashed, traffic.files_unchanged), (1, 1, 2));
    verify(&at(&setup, "nightly", "uid-3")).await.expect("third verified");
    restore_files(&setup, "uid-3", &target).await;
    assert_eq!(fs::read(target.join("uploads/big.bin")).expect("big"), changed);
    assert_file_tree_restored(&target);

    // Key rotation: a newer key seals new backups; the old backup opens while the Secret keeps its key.
    let rotated = keys(&setup.dir, "rotated", &[("2026-01", [7; 32]), ("2026-06", [9; 32])]);
    let after = S3Args { encryption_keys: Some(rotated.clone()), ..at(&setup, "nightly", "uid-1") };
    verify(&after).await.expect("old backup opens after rotation");
    let rotated_setup = Setup { args: S3Args { encryption_keys: Some(rotated), ..setup.args.clone() }, ..setup };
    let traffic = back_up(&rotated_setup, "nightly", "uid-4", true).await.expect("after rotation");
    assert_eq!(traffic.files_uploaded, 3, "new names under the new key");
    assert_eq!((traffic.files_hashed, traffic.files_unchanged), (3, 0), "names of the old key are not reused");
    let index = open_committed(&at(&rotated_setup, "nightly", "uid-4")).await.expect("open").index;
    assert_eq!(index.key_id.as_deref(), Some("2026-06"));

    // A wrong key of the same id fails naming the key, never its bytes.
    let wrong = keys(&rotated_setup.dir, "wrong", &[("2026-01", [1; 32])]);
    let error = verify(&S3Args { encryption_keys: Some(wrong), ..at(&rotated_setup, "nightly", "uid-1") })
        .await
        .expect_err("wrong key");
    assert!(error.to_string().contains("key 2026-01 does not open the object's data key"), "{error}");
    let _ = fs::remove_dir_all(&rotated_setup.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_sent_side_by_side_and_equal_content_is_stored_once() {
    let setup = setup("side-by-side").await;
    // Copies of the same content follow one another, so a copy is named while the first one is
    // still being uploaded; a 9 MiB content goes in parts beside the small ones.
    let source = setup.dir.join("many");
    let contents: Vec<Vec<u8>> = [64 << 10, 9 << 20, 1, 0]
        .iter()
        .enumerate()
        .map(|(seed, &len)| (0..len).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> (seed + 3)) as u8).collect())
        .collect();
    let mut written = Vec::new();
    for copy in 0..5 {
        for (index, content) in contents.iter().enumerate() {
            let path = source.join(format!("{copy}/{index}.bin"));
            fs::create_dir_all(path.parent().expect("parent")).expect("folder");
            fs::write(&path, content).expect("file");
            written.push((format!("{copy}/{index}.bin"), content));
        }
    }
    let many = Setup { source, ..setup };
    let traffic = back_up(&many, "nightly", "uid-1", true).await.expect("backup");
    assert_eq!((traffic.files_hashed, traffic.files_uploaded), (20, 4), "each content is uploaded once");
    assert_eq!(traffic.files_referenced, 16);
    let index = open_committed(&at(&many, "nightly", "uid-1")).await.expect("open").index;
    assert_eq!(index.objects.iter().filter(|o| o.key.starts_with("_content/")).count(), 4);
    let report = verify(&at(&many, "nightly", "uid-1")).await.expect("verified");
    let StepReport::Verify { checked, .. } = report else { panic!("a verify report") };
    assert_eq!(checked, Checked::Verified { files: 22, links: 0 });

    let target = many.dir.join("restored");
    restore_files(&many, "uid-1", &target).await;
    for (path, content) in written {
        assert_eq!(&fs::read(target.join(&path)).expect("restored file"), content, "{path}");
    }
    let _ = fs::remove_dir_all(&many.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unencrypted_second_backup_reads_no_unchanged_file_either() {
    let mut setup = setup("clear-again").await;
    setup.args.encryption_keys = None;
    wait_until_settled(&setup.source);
    let traffic = back_up(&setup, "nightly", "uid-1", true).await.expect("backup");
    assert_eq!((traffic.files_uploaded, traffic.files_hashed, traffic.files_unchanged), (3, 3, 0));
    let traffic = back_up(&setup, "nightly", "uid-2", true).await.expect("second backup");
    assert_eq!((traffic.files_uploaded, traffic.files_hashed, traffic.files_unchanged), (0, 0, 3));
    verify(&at(&setup, "nightly", "uid-2")).await.expect("second verified");
    let target = setup.dir.join("restored");
    restore_files(&setup, "uid-2", &target).await;
    assert_eq!(
        fs::read(target.join("uploads/big.bin")).expect("big"),
        fs::read(setup.source.join("uploads/big.bin")).expect("src")
    );
    assert_file_tree_restored(&target);

    // Encrypted from now on: the clear backup's SHA-256 names are not the key's, every file is read.
    let keyed = Setup {
        args: S3Args { encryption_keys: Some(keys(&setup.dir, "keys", &[("2026-01", [7; 32])])), ..setup.args.clone() },
        ..setup
    };
    let traffic = back_up(&keyed, "nightly", "uid-3", true).await.expect("encrypted backup");
    assert_eq!((traffic.files_uploaded, traffic.files_hashed, traffic.files_unchanged), (3, 3, 0));
    let _ = fs::remove_dir_all(&keyed.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_missing_and_uncommitted_backups_are_refused() {
    let setup = setup("damaged").await;
    back_up(&setup, "nightly", "uid-1", true).await.expect("backup");
    let index = open_committed(&at(&setup, "nightly", "uid-1")).await.expect("open").index;
    let content = index.objects.iter().find(|o| o.key.starts_with("_content/")).expect("content").key.clone();

    // One changed byte of a content object: both checks name it.
    let objects = raw_bucket(setup.args.s3_bucket.as_deref().expect("bucket")).await;
    let mut bytes = objects.iter().find(|(k, _)| *k == format!("prod/backups/{content}")).expect("stored").1.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    overwrite(&setup.args, &format!("prod/backups/{content}"), bytes).await;
    let error = verify(&at(&setup, "nightly", "uid-1")).await.expect_err("corrupted");
    let message = error.to_string();
    assert!(message.contains("does not match its manifest") && message.contains(&content), "{message}");
    assert!(message.contains("fails authentication"), "{message}");
    let keyless = S3Args { encryption_keys: None, ..at(&setup, "nightly", "uid-1") };
    let error = open_committed(&keyless).await.expect("open").verify().await.expect_err("digest differs");
    assert!(error.to_string().contains(&format!("{content} differs from manifest.json")), "{error}");

    // A missing object.
    let client = shared_s3().client(Default::default()).expect("client");
    let bucket = setup.args.s3_bucket.clone().expect("bucket");
    client.delete_object(&bucket, "prod/backups/3scale/nightly-uid-1/secrets/system-seed.json").await.expect("delete");
    let error = verify(&at(&setup, "nightly", "uid-1")).await.expect_err("missing");
    assert!(error.to_string().contains("3scale/nightly-uid-1/secrets/system-seed.json is missing"), "{error}");

    // A backup whose last step did not commit: incomplete, whatever else is there.
    back_up(&setup, "broken", "uid-9", false).await.expect("steps without the commit");
    let error = verify(&at(&setup, "broken", "uid-9")).await.expect_err("incomplete");
    assert!(matches!(error, JobError::Destination(DestinationError::Incomplete { .. })), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("no manifest.json under s3://{bucket}/prod/backups/3scale/broken-uid-9/")),
        "{error}"
    );
    let listed = client.list_all(&bucket, "prod/backups/3scale/broken-uid-9/").await.expect("list");
    let names: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert!(names.iter().any(|k| k.ends_with("/parts/copy-files.sealed")), "{names:?}");
    assert!(!names.iter().any(|k| k.ends_with(CONTENTS_FILE) || k.ends_with(INDEX_FILE)), "{names:?}");

    // Wrong credentials and a missing bucket: typed S3 errors.
    let wrong = setup.dir.join("wrong-credentials");
    fs::create_dir_all(&wrong).expect("dir");
    for (key, value) in shared_s3().secret_keys() {
        let value = if key == "AWS_SECRET_ACCESS_KEY" { "not-the-secret".to_owned() } else { value };
        fs::write(wrong.join(key), value).expect("file");
    }
    let args = S3Args { s3_credentials: Some(wrong.to_string_lossy().into_owned()), ..at(&setup, "nightly", "uid-1") };
    let error = verify(&args).await.expect_err("wrong credentials");
    // A HEAD answer has no body: SeaweedFS's status says access denied.
    assert!(error.to_string().starts_with(&format!("HeadBucket of s3://{bucket}: access denied")), "{error}");
    let args = S3Args { s3_bucket: Some("no-such-bucket-here".into()), ..at(&setup, "nightly", "uid-1") };
    let error = verify(&args).await.expect_err("missing bucket");
    assert!(error.to_string().contains("NoSuchBucket"), "{error}");
    let _ = fs::remove_dir_all(&setup.dir);
}

/// The steps as a Pod runs them: the binary with the arguments the operator renders
/// ([`JobCommand::argv`]), the Secrets as mounted folders; failures in the termination message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_the_steps_from_their_command_lines() {
    use apimanager_backup_operator::job::{JobCommand, RestoreFilesArgs};
    const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");
    let setup = setup("binary").await;
    let log = setup.dir.join("termination-log");
    let run = |command: JobCommand| {
        let output = std::process::Command::new(BIN).args(command.argv()).output().expect("runs");
        let message = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        (output.status.success(), message, String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let common =
        |args: S3Args| CommonArgs { termination_log: log.clone(), s3: args, ..CommonArgs::at("/nonexistent-claim") };
    let step_args = S3Args { s3_backup_uid: Some("uid-b".into()), ..at(&setup, "nightly", "uid-b") };

    // Only the export's part: the backup is not committed, and verify says so.
    let mut export = BucketBackup::begin(&common(step_args.clone()), "export-objects").await.expect("begin");
    let mut manifest = Manifest::default();
    let apimanager = serde_json::json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager",
        "metadata": {"name": "example"}, "spec": {"wildcardDomain": "example.com"}});
    export.put(APIMANAGER_FILE, serde_json::to_vec(&apimanager).expect("json"), &mut manifest).await.expect("put");
    export.finish(manifest, false).await.expect("part");
    let (ok, message, _) = run(JobCommand::Verify(common(step_args.clone())));
    assert!(!ok);
    let bucket = setup.args.s3_bucket.clone().expect("bucket");
    assert!(
        message.starts_with(&format!("no manifest.json under s3://{bucket}/prod/backups/3scale/nightly-uid-b/")),
        "{message}"
    );

    // The copy commits; verify reports what it checked and the APIManager.
    let copy = CopyArgs { source: setup.source.clone(), last_step: true, common: common(step_args.clone()) };
    let (ok, message, stderr) = run(JobCommand::CopyFiles(copy));
    assert!(ok, "{message} {stderr}");
    let (ok, message, _) = run(JobCommand::Verify(common(step_args.clone())));
    assert!(ok, "{message}");
    let report = StepReport::from_message(&message).expect("a report");
    let StepReport::Verify { checked, api_manager } = report else { panic!("a verify report: {message}") };
    assert_eq!(checked, Checked::Verified { files: 4, links: 2 });
    assert_eq!(api_manager.name, "example");

    // restore-files onto an empty claim.
    let target = setup.dir.join("claim");
    fs::create_dir_all(&target).expect("claim");
    let restore = RestoreFilesArgs { target: target.clone(), group: None, common: common(step_args.clone()) };
    let (ok, message, _) = run(JobCommand::RestoreFiles(restore));
    assert!(ok, "{message}");
    assert_eq!(fs::read(target.join("uploads/logos/logo.png")).expect("restored"), FILE_TEXT);
    assert!(!target.join(".apimanager-restore.partial").exists());

    // No Secret value on any command line: the credentials are a folder.
    let argv = JobCommand::Verify(common(step_args)).argv().join(" ");
    for (_, value) in shared_s3().secret_keys().into_iter().filter(|(key, _)| key.contains("SECRET")) {
        assert!(!argv.contains(&value), "{argv}");
    }
    let _ = fs::remove_dir_all(&setup.dir);
}
