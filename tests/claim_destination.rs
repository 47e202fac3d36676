//! The sealed layout on a backup claim (a folder standing in for the claim's root): a backup's
//! steps seal their objects and the FileStorage tree by content onto the claim, the last one
//! commits `manifest.json`; the claim holds nothing in clear; verify with and without the key; the
//! files restored with modes, times and links; a restore without the key fails naming the field
//! to set, a wrong key fails naming the key; a claim in the clear layout is read as ever.

mod support;

use apimanager_backup_operator::job::destination::index::{INDEX_FILE, INDEX_FORMAT, Index};
use apimanager_backup_operator::job::destination::read::{Committed, Coverage};
use apimanager_backup_operator::job::destination::steps::{CLAIM_KEY_FIELD, copy_files, verify};
use apimanager_backup_operator::job::destination::write::BucketBackup;
use apimanager_backup_operator::job::destination::{DestinationError, ObjectSink, reads_sealed, writes_sealed};
use apimanager_backup_operator::job::manifest::Manifest;
use apimanager_backup_operator::job::report::{Checked, StepReport};
use apimanager_backup_operator::job::{CommonArgs, CopyArgs, JobError};
use apimanager_backup_operator::layout::APIMANAGER_FILE;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::certs::TempDir;
use support::restore::{Entry, tree};
use support::sealed::{FILE_TEXT, PASSWORD, assert_file_tree_restored, export_sample, file_tree, keys};

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");

/// The settings of a step on the claim at `claim`, with the keys at `keys` (none: not given).
fn common(claim: &Path, keys: Option<&str>) -> CommonArgs {
    let mut common = CommonArgs::at(&claim.to_string_lossy());
    common.s3.s3_backup_uid = Some("uid-1".into());
    common.s3.encryption_keys = keys.map(str::to_owned);
    common
}

/// Both steps of a backup onto the claim: the export (a Secret and the APIManager) and the copy,
/// which commits.
async fn back_up(common: &CommonArgs, source: &Path) -> Result<Option<u64>, JobError> {
    export_sample(BucketBackup::begin(common, "export-objects").await?, "nightly", "uid-1").await?;
    let args = CopyArgs { source: source.to_owned(), last_step: true, common: common.clone() };
    Ok(copy_files(&args).await?.backup_uploaded)
}

/// Every file under `root`, by path relative to it, with its bytes.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    tree(root)
        .into_iter()
        .filter_map(|(path, entry)| match entry {
            Entry::File { bytes, .. } => Some((path.to_string_lossy().into_owned(), bytes)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_sealed_claim_round_trips_and_holds_nothing_in_clear() {
    let scratch = TempDir::new("claimdest-round-trip");
    let (source, claim) = (scratch.0.join("source"), scratch.0.join("claim"));
    file_tree(&source, (3 << 20) + 5);
    fs::create_dir_all(&claim).expect("claim");
    let key = keys(&scratch.0, "keys", &[("2026-01", [7; 32])]);
    let sealed = common(&claim, Some(&key));
    assert!(writes_sealed(&sealed) && !writes_sealed(&CommonArgs::at("/unused")));
    let written = back_up(&sealed, &source).await.expect("backup").expect("the last step reports its bytes");

    // The claim: the sealed layout at its root, every object 0600, nothing in clear.
    let stored = files(&claim);
    let keys_on_claim: Vec<&str> = stored.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        keys_on_claim.contains(&"manifest.json") && keys_on_claim.contains(&"manifest.sealed"),
        "{keys_on_claim:?}"
    );
    assert!(
        keys_on_claim.contains(&"secrets/system-seed.json") && keys_on_claim.contains(&"parts/export-objects.sealed")
    );
    assert_eq!(keys_on_claim.iter().filter(|k| k.starts_with("_content/")).count(), 3, "{keys_on_claim:?}");
    assert_eq!(written, stored.iter().map(|(_, bytes)| bytes.len() as u64).sum::<u64>(), "bytes written");
    for (key, bytes) in &stored {
        let mode = fs::metadata(claim.join(key)).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
        for secret in [PASSWORD.as_bytes(), FILE_TEXT, b"wildcardDomain"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{key} holds plaintext");
        }
    }
    let index: Index = serde_json::from_slice(&fs::read(claim.join(INDEX_FILE)).expect("index")).expect("index");
    assert_eq!((index.format.as_str(), index.key_id.as_deref()), (INDEX_FORMAT, Some("2026-01")));

    // A restore step finds the sealed layout, with or without keys.
    assert!(reads_sealed(&common(&claim, None)));
    assert!(!reads_sealed(&common(&source, Some(&key))), "a folder without the index is the claim layout");

    // Verified with the key; without it, the stored digests only; the restore's verify step
    // refuses to go on without it, naming the field.
    let report = verify(&sealed).await.expect("verified");
    let StepReport::Verify { checked, api_manager } = report else { panic!("a verify report") };
    assert_eq!(checked, Checked::Verified { files: 5, links: 2 });
    assert_eq!(api_manager.name, "example");
    let keyless = Committed::open(&common(&claim, None)).await.expect("index readable without the key");
    assert_eq!(keyless.verify().await.expect("digests match"), Coverage::Stored { objects: 6 });
    let error = verify(&common(&claim, None)).await.expect_err("no key");
    assert!(matches!(error, JobError::Destination(DestinationError::KeyRequired { .. })), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "the backup in {}/ is encrypted (key 2026-01) and no key was given: set {CLAIM_KEY_FIELD}; nothing was \
restored",
            claim.display()
        )
    );

    // Key rotation: the key Secret gains a newer key, the backup still opens with the older.
    let rotated = keys(&scratch.0, "rotated", &[("2026-01", [7; 32]), ("2026-06", [9; 32])]);
    verify(&common(&claim, Some(&rotated))).await.expect("opens after rotation");

    // A wrong key of the same id fails naming the key, never its bytes.
    let wrong = keys(&scratch.0, "wrong", &[("2026-01", [1; 32])]);
    let error = verify(&common(&claim, Some(&wrong))).await.expect_err("wrong key").to_string();
    assert!(error.contains("2026-01") && error.contains("manifest.sealed"), "{error}");

    // Restored onto an empty folder: contents, modes, times, links.
    let target = scratch.0.join("restored");
    fs::create_dir_all(&target).expect("target");
    let committed = Committed::open(&sealed).await.expect("open");
    let contents = committed.contents().await.expect("sealed manifest");
    committed.restore_tree(&contents, "system-filestorage-pvc", &target).await.expect("restored");
    assert_eq!(tree(&target), tree(&source));
    assert_file_tree_restored(&target);

    // Offline, with the binary alone: verify without the key, with it, and extract the plaintext
    // in the claim layout, which verifies as a claim's backup.
    let verify_cli = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(BIN).arg("verify").args(args).output().expect("verify runs");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    assert_eq!(
        verify_cli(&[claim.as_os_str()]),
        (
            Some(0),
            "verified without the key: 6 stored objects match the digests manifest.json lists (give --key to open them)"
                .to_owned()
        )
    );
    let key_arg = std::ffi::OsString::from(&key);
    let extracted = scratch.0.join("extracted");
    let (code, stdout) = verify_cli(&[
        "--key".as_ref(),
        key_arg.as_os_str(),
        "--extract".as_ref(),
        extracted.as_os_str(),
        claim.as_os_str(),
    ]);
    assert_eq!(
        (code, stdout),
        (
            Some(0),
            format!(
                "verified: 5 files and 2 links match the sealed manifest (every object opened with the key)\n\
extracted: 5 files into {}",
                extracted.display()
            )
        )
    );
    assert_eq!(tree(&extracted.join("system-filestorage-pvc")), tree(&source));
    let seed = fs::read_to_string(extracted.join("secrets/system-seed.json")).expect("extracted Secret");
    assert!(seed.contains(PASSWORD), "{seed}");
    assert_eq!(
        fs::metadata(extracted.join("secrets/system-seed.json")).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let (code, stdout) = verify_cli(&[extracted.as_os_str()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("verified: 5 files"), "{stdout}");
    let (code, _) = verify_cli(&["--extract".as_ref(), scratch.0.join("no-key").as_os_str(), claim.as_os_str()]);
    assert_eq!(code, Some(1), "extracting an encrypted backup needs the key");
    assert!(!scratch.0.join("no-key").exists());

    // A changed object is found without the key and with it.
    let victim = stored.iter().find(|(k, _)| k.starts_with("_content/")).expect("content").0.clone();
    let mut bytes = fs::read(claim.join(&victim)).expect("victim");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(claim.join(&victim), bytes).expect("corrupt");
    let error = Committed::open(&common(&claim, None)).await.expect("open").verify().await.expect_err("differs");
    let (code, stdout) = verify_cli(&[claim.as_os_str()]);
    assert_eq!((code, stdout), (Some(1), format!("{victim} differs from manifest.json")));
    assert!(error.to_string().contains(&format!("{victim} differs from manifest.json")), "{error}");
    let error = verify(&sealed).await.expect_err("corrupted").to_string();
    assert!(error.contains("does not match its manifest") && error.contains(&victim), "{error}");
}

#[tokio::test]
async fn an_uncommitted_sealed_claim_is_incomplete() {
    let scratch = TempDir::new("claimdest-uncommitted");
    let claim = scratch.0.join("claim");
    fs::create_dir_all(&claim).expect("claim");
    let key = keys(&scratch.0, "keys", &[("2026-01", [7; 32])]);
    let mut export = BucketBackup::begin(&common(&claim, Some(&key)), "export-objects").await.expect("begin");
    let mut manifest = Manifest::default();
    export.put(APIMANAGER_FILE, b"{}".to_vec(), &mut manifest).await.expect("put");
    export.finish(manifest, false).await.expect("part");
    assert!(reads_sealed(&common(&claim, None)), "its parts say it is sealed, uncommitted");
    let error = verify(&common(&claim, Some(&key))).await.expect_err("incomplete");
    assert_eq!(
        error.to_string(),
        format!(
            "no manifest.json under {}/: the backup is incomplete (its step did not finish) or there is none; \
nothing was restored",
            claim.display()
        )
    );
}
