//! `decrypt` on objects sealed as the step Pods seal them: a single object, a downloaded folder
//! with a damaged object, content objects after a key rotation, and what it refuses.

mod support;

use apimanager_backup_operator::seal::{ContentName, ContentNamer, Context, KeyRing, Sealer};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::certs::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");
const UID: &str = "0f6c2c1e-5d7a-4d4e-9b7e-2b0c1f3a9d11";
const OLD_KEY: &str = "2026-01";
const NEW_KEY: &str = "2026-12";

/// A key folder as the key Secret is made from: the old key in base64 (as `openssl rand -base64
/// 32` writes it), and with `rotated` also a newer raw key.
fn key_folder(scratch: &TempDir, rotated: bool) -> PathBuf {
    let folder = scratch.0.join(if rotated { "keys-rotated" } else { "keys" });
    std::fs::create_dir_all(&folder).expect("keys");
    std::fs::write(folder.join(OLD_KEY), "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n").expect("old key");
    if rotated {
        std::fs::write(folder.join(NEW_KEY), [0x5a; 32]).expect("new key");
    }
    folder
}

async fn seal_file(sealer: &Sealer, context: Context<'_>, plaintext: &[u8], to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("folder");
    let mut file = tokio::fs::File::create(to).await.expect("create");
    sealer.seal(context, &mut &plaintext[..], &mut file).await.expect("seals");
}

fn decrypt(args: &[&str], input: &Path, output: &Path) -> (Option<i32>, String, String) {
    let run: Output =
        Command::new(BIN).arg("decrypt").args(args).arg(input).arg(output).output().expect("decrypt runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (run.status.code(), text(&run.stdout), text(&run.stderr))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn a_single_object_decrypts_with_the_key_folder_into_a_private_file() {
    let scratch = TempDir::new("decrypt-one");
    let keys = key_folder(&scratch, false);
    let ring = KeyRing::load(std::slice::from_ref(&keys)).expect("ring");
    let sealed = scratch.0.join("system-app.sealed");
    let secret = br#"{"kind": "Secret", "data": {"SECRET_KEY_BASE": "c2VjcmV0"}}"#;
    let context = Context::BackupObject { backup_uid: UID, path: "secrets/system-app.json" };
    seal_file(&Sealer::new(&ring).expect("sealer"), context, secret, &sealed).await;
    let out = scratch.0.join("plain/system-app.json");
    let key = format!("--key={}", keys.display());
    let (code, stdout, stderr) =
        decrypt(&[&key, "--backup-uid", UID, "--path", "secrets/system-app.json"], &sealed, &out);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "decrypted: 1 object, 59 bytes of plaintext\n", ""));
    assert_eq!(std::fs::read(&out).expect("plaintext"), secret);
    assert_eq!((mode(&out), mode(out.parent().expect("folder"))), (0o600, 0o700));

    let (code, stdout, _) = decrypt(&[&key, "--backup-uid", UID, "--path", "secrets/system-app.json"], &sealed, &out);
    assert_eq!(code, Some(1));
    assert_eq!(
        stdout,
        format!(
            ".: {} exists already; not overwritten\ndecrypted: 0 of 1 object, 0 bytes of plaintext\n",
            out.display()
        )
    );
    let (code, stdout, _) =
        decrypt(&[&key, "--backup-uid", UID, "--path", "secrets/zync.json"], &sealed, &scratch.0.join("zync"));
    assert_eq!(code, Some(1));
    assert!(stdout.starts_with(".: segment 0 fails authentication: "), "{stdout}");
    assert!(!scratch.0.join("zync").exists() && !scratch.0.join("zync.partial").exists());
}

#[tokio::test]
async fn a_downloaded_folder_decrypts_into_the_same_paths_and_each_damaged_object_is_one_line() {
    let scratch = TempDir::new("decrypt-tree");
    let keys = key_folder(&scratch, false);
    let ring = KeyRing::load(std::slice::from_ref(&keys)).expect("ring");
    let sealer = Sealer::new(&ring).expect("sealer");
    let backup = scratch.0.join(format!("nightly-{UID}"));
    let large: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let objects: [(&str, &[u8]); 4] = [
        ("apimanager/apimanager-backup.json", b"{\"kind\": \"APIManager\"}"),
        ("secrets/zync.json", b"{\"kind\": \"Secret\"}"),
        ("system-filestorage-pvc/uploads/logo.bin", &large),
        ("secrets/system-app.json", b"{}"),
    ];
    for (path, plaintext) in objects {
        seal_file(&sealer, Context::BackupObject { backup_uid: UID, path }, plaintext, &backup.join(path)).await;
    }
    let zync = backup.join("secrets/zync.json");
    let mut damaged = std::fs::read(&zync).expect("sealed");
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    std::fs::write(&zync, damaged).expect("damage");
    std::fs::rename(backup.join("secrets/system-app.json"), backup.join("secrets/moved.json")).expect("move");
    let logo = backup.join("system-filestorage-pvc/uploads/logo.bin");
    let length = std::fs::metadata(&logo).expect("logo").len();
    std::fs::File::options().write(true).open(&logo).expect("open").set_len(length - 100).expect("truncate");

    let out = scratch.0.join("plain");
    let key = format!("--key={}", keys.display());
    let (code, stdout, stderr) = decrypt(&[&key, "--backup-uid", UID], &backup, &out);
    let rejected = "fails authentication: the object was changed, cut inside a segment, reordered or extended, or it \
belongs to another backup, path or content name";
    assert_eq!(
        (code, stdout, stderr),
        (
            Some(1),
            format!(
                "secrets/moved.json: segment 0 {rejected}\nsecrets/zync.json: segment 0 {rejected}\n\
system-filestorage-pvc/uploads/logo.bin: segment 3 {rejected}\ndecrypted: 1 of 4 objects, 22 bytes of plaintext\n"
            ),
            String::new()
        )
    );
    assert_eq!(std::fs::read(out.join("apimanager/apimanager-backup.json")).expect("plain"), objects[0].1);
    let mut written: Vec<String> = Vec::new();
    for folder in ["apimanager", "secrets", "system-filestorage-pvc/uploads"] {
        for entry in std::fs::read_dir(out.join(folder)).into_iter().flatten().flatten() {
            written.push(format!("{folder}/{}", entry.file_name().to_string_lossy()));
        }
    }
    assert_eq!(written, ["apimanager/apimanager-backup.json"], "no plaintext of a failed object is left");
}

#[tokio::test]
async fn content_sealed_before_a_rotation_decrypts_with_the_rotated_keys_and_names_a_missing_key() {
    let scratch = TempDir::new("decrypt-content");
    let old_ring = KeyRing::load(&[key_folder(&scratch, false)]).expect("old ring");
    let file = b"an uploaded attachment, unchanged for months".repeat(50);
    let name: ContentName = ContentNamer::new(&old_ring).name(&Sha256::digest(&file).into());
    let content = scratch.0.join("content");
    seal_file(&Sealer::new(&old_ring).expect("sealer"), Context::Content(&name), &file, &content.join(name.as_str()))
        .await;

    let rotated = key_folder(&scratch, true);
    let new_ring = KeyRing::load(std::slice::from_ref(&rotated)).expect("rotated ring");
    assert_eq!(new_ring.current().as_str(), NEW_KEY);
    let out = scratch.0.join("plain-content");
    let (code, stdout, _) = decrypt(&[&format!("--key={}", rotated.display()), "--content"], &content, &out);
    assert_eq!((code, stdout.as_str()), (Some(0), "decrypted: 1 object, 2200 bytes of plaintext\n"));
    assert_eq!(std::fs::read(out.join(name.as_str())).expect("plain"), file);

    let only_new = rotated.join(NEW_KEY);
    let (code, stdout, _) = decrypt(
        &[&format!("--key={}", only_new.display()), "--content"],
        &content.join(name.as_str()),
        &scratch.0.join("x"),
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        stdout,
        ".: the object was sealed with key 2026-01, which is not among the keys given (2026-12)\n\
decrypted: 0 of 1 object, 0 bytes of plaintext\n"
    );
}

#[test]
fn unusable_keys_and_arguments_are_refused_before_anything_is_written() {
    let scratch = TempDir::new("decrypt-refused");
    let keys = key_folder(&scratch, false);
    let sealed = scratch.0.join("object");
    std::fs::write(&sealed, b"not sealed").expect("object");
    let out = scratch.0.join("out");
    let missing = scratch.0.join("no-keys");
    let cases: [(Vec<String>, String); 4] = [
        (
            vec![format!("--key={}", missing.display()), "--content".into()],
            format!(
                "error: loading the keys: No such file or directory (os error 2) while reading the key {}\n",
                missing.display()
            ),
        ),
        (
            vec![format!("--key={}", keys.display()), format!("--backup-uid={UID}")],
            format!(
                "error: decrypting {}: a single object of a backup needs --path, its path under the backup's folder\n",
                sealed.display()
            ),
        ),
        (
            vec![format!("--key={}", keys.join(OLD_KEY).display()), format!("--backup-uid={UID}"), "--path=x".into()],
            String::new(),
        ),
        (
            vec![format!("--key={}", keys.display())],
            "error: the following required arguments were not provided:\n  --backup-uid <UID>\n".into(),
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = decrypt(&args, &sealed, &out);
        if expected.is_empty() {
            assert_eq!(
                (code, stdout.as_str()),
                (
                    Some(1),
                    ".: not a sealed object (no \"AMBKSEAL\" magic at its start)\ndecrypted: 0 of 1 object, 0 bytes of plaintext\n"
                )
            );
        } else {
            assert!(code.is_some_and(|c| c != 0), "{args:?}");
            assert!(stderr.starts_with(&expected), "{args:?}: {stderr}");
        }
        assert!(!out.exists() && !scratch.0.join("out.partial").exists(), "{args:?}");
    }
}
