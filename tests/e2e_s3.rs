//! Backups into an S3 bucket end to end: the real control plane runs the operator's step Pods
//! against a real S3 server (SeaweedFS, verifying SigV4). A backup leaves the cluster sealed (no
//! Secret value in clear in the bucket), a second one of an unchanged tree stores no file again,
//! and a restore from the bucket alone brings every object and file back into a namespace that
//! never held the installation, after the backup's own namespace is gone and its key Secret gained
//! a newer key. Wrong credentials, a missing bucket, a wrong key, a corrupted and a missing object
//! each end in a clear `Failed` reason, and nothing is restored; an S3 server killed while a backup
//! uploads fails it, never completed. An installation whose System FileStorage is an S3 bucket has
//! that bucket's objects sealed into the backup by content and written back into a fresh
//! FileStorage bucket.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::api::restore::APIManagerRestore;
use apimanager_backup_operator::api::s3::S3BackupLocation;
use apimanager_backup_operator::layout::NEVER_RESTORED;
use apimanager_backup_operator::local::s3_server::S3Server;
use apimanager_backup_operator::s3::ObjectMetadata;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;
use support::cluster::{finished_backup, kubectl_ok, namespace, namespace_with_installation, shared};
use support::restore::{Installation, finished_restore, sample};
use support::s3::{Objects, bucket_name, fill, raw_bucket, read_back, shared_s3, start_s3, use_s3_file_storage};

/// The credentials Secret every test creates (3scale's S3 keys reaching the test server).
const CREDENTIALS: &str = "backup-s3";
/// The key Secret.
const KEYS: &str = "backup-key";

/// The endpoint URL of `server`.
fn endpoint_of(server: &S3Server) -> String {
    let host = server.secret_keys().into_iter().find(|(key, _)| *key == "AWS_HOSTNAME").expect("host").1;
    format!("http://{host}")
}

/// The `s3` fields of a backup destination or restore source in `bucket` under prefix `prod`.
fn bucket_yaml(bucket: &str, indent: &str) -> String {
    bucket_yaml_at(&endpoint_of(shared_s3()), bucket, indent)
}

/// [`bucket_yaml`] of a bucket of the server at `endpoint`.
fn bucket_yaml_at(endpoint: &str, bucket: &str, indent: &str) -> String {
    [
        format!("bucket: {bucket}"),
        "prefix: prod".to_owned(),
        "region: us-east-1".to_owned(),
        format!("endpoint: {endpoint}"),
        "forcePathStyle: true".to_owned(),
        "allowHttp: true".to_owned(),
        format!("credentialsSecretRef:\n{indent}  name: {CREDENTIALS}"),
        format!("encryption:\n{indent}  keySecretRef:\n{indent}    name: {KEYS}"),
    ]
    .iter()
    .map(|line| format!("{indent}{line}\n"))
    .collect()
}

fn backup_yaml(name: &str, bucket: &str) -> String {
    backup_yaml_at(&endpoint_of(shared_s3()), name, bucket)
}

/// [`backup_yaml`] into a bucket of the server at `endpoint`.
fn backup_yaml_at(endpoint: &str, name: &str, bucket: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerBackup\nmetadata:\n  name: {name}\nspec:\n  backupDestination:\n    s3:\n{}",
        bucket_yaml_at(endpoint, bucket, "      ")
    )
}

fn restore_yaml(name: &str, bucket: &str, path: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerRestore\nmetadata:\n  name: {name}\nspec:\n  restoreSource:\n    s3:\n{}      backupPath: {path}\n",
        bucket_yaml(bucket, "      ")
    )
}

/// Creates (or replaces) Secret `name` of `ns` holding `data`.
async fn put_secret(ns: &str, name: &str, data: &[(&str, Vec<u8>)]) {
    let admin = shared().admin_client().await.expect("client");
    let secrets: Api<Secret> = Api::namespaced(admin, ns);
    let data: BTreeMap<String, ByteString> =
        data.iter().map(|(key, value)| ((*key).to_owned(), ByteString(value.clone()))).collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        data: Some(data),
        ..Secret::default()
    };
    let patch = PatchParams::apply("e2e-s3").force();
    let mut value = serde_json::to_value(&secret).expect("json");
    value["apiVersion"] = "v1".into();
    value["kind"] = "Secret".into();
    secrets.patch(name, &patch, &Patch::Apply(value)).await.expect("secret applied");
}

/// The credentials Secret, with the shared test server's keys (the secret key replaced when `wrong`).
async fn credentials(ns: &str, wrong: bool) {
    credentials_of(shared_s3(), ns, wrong).await;
}

/// [`credentials`] of `server`.
async fn credentials_of(server: &S3Server, ns: &str, wrong: bool) {
    let keys: Vec<(&str, Vec<u8>)> = server
        .secret_keys()
        .into_iter()
        .map(|(key, value)| {
            let value = if wrong && key == "AWS_SECRET_ACCESS_KEY" { "not-the-secret-key".to_owned() } else { value };
            (key, value.into_bytes())
        })
        .collect();
    put_secret(ns, CREDENTIALS, &keys).await;
}

/// A 32-byte key in base64, as `openssl rand -base64 32` writes it.
fn key(byte: u8) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32]).into_bytes()
}

fn create(ns: &str, yaml: &str) {
    kubectl_ok(shared(), &["-n", ns, "create", "-f", "-"], yaml);
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (String, String) {
    let found = conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_}: {conditions:?}"));
    (found.reason.clone(), found.message.clone())
}

fn content_keys(objects: &[(String, Vec<u8>)]) -> Vec<&str> {
    objects.iter().map(|(key, _)| key.as_str()).filter(|key| key.starts_with("prod/_content/")).collect()
}

/// Fails naming the object when any of `objects` holds one of `values` (`what`) in clear.
fn assert_none_in_clear(objects: &[(String, Vec<u8>)], values: &[Vec<u8>], what: &str) {
    for (key, bytes) in objects {
        for value in values {
            assert!(
                !bytes.windows(value.len()).any(|window| window == value.as_slice()),
                "{key} holds {what} in clear"
            );
        }
    }
}

/// A completed backup `name` of namespace `ns` into `bucket`, and where it is.
async fn completed_backup(ns: &str, name: &str, bucket: &str) -> (APIManagerBackup, S3BackupLocation) {
    completed(ns, name, &backup_yaml(name, bucket)).await
}

/// A completed backup `name` of namespace `ns` created from `yaml`, and where it is.
async fn completed(ns: &str, name: &str, yaml: &str) -> (APIManagerBackup, S3BackupLocation) {
    create(ns, yaml);
    let backup = finished_backup(shared(), ns, name).await;
    let status = backup.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    let location = status.s3.clone().expect("status.s3");
    (backup, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_backup_in_a_bucket_restores_after_its_namespace_is_gone_and_a_key_rotation() {
    let cluster = shared();
    let source = namespace_with_installation(cluster, "s3-source").await;
    credentials(&source, false).await;
    put_secret(&source, KEYS, &[("2026-01", key(7))]).await;
    let bucket = bucket_name("e2e-round-trip");
    shared_s3().create_bucket(&bucket).await.expect("bucket");

    let (backup, location) = completed_backup(&source, "nightly", &bucket).await;
    let uid = backup.uid().expect("uid");
    let path = format!("{source}/nightly-{uid}");
    assert_eq!(location, S3BackupLocation { bucket: bucket.clone(), prefix: "prod".into(), path: path.clone() });
    let status = backup.status.clone().expect("status");
    assert_eq!(
        condition(&status.conditions, "Ready"),
        ("BackupCompleted".to_owned(), format!("backup written to s3://{bucket}/prod/{path}/"))
    );
    assert_eq!(status.backup_persistent_volume_claim_name, None, "no claim for a backup in a bucket");
    let claims = kubectl_ok(cluster, &["-n", &source, "get", "pvc", "-o", "name"], "");
    assert_eq!(claims.trim(), "persistentvolumeclaim/system-storage", "no backup claim was made");

    // Nothing of a Secret's value, nor a file's content, is in the bucket in clear.
    let objects = raw_bucket(&bucket).await;
    assert!(objects.iter().any(|(key, _)| key == &format!("prod/{path}/manifest.json")), "committed");
    let original = Installation::of(cluster, &source).await;
    let secret_values = original.clear_values();
    assert_none_in_clear(&objects, &secret_values, "a value");

    // A second backup of the unchanged tree stores no file content again.
    let content_before: Vec<String> = content_keys(&objects).into_iter().map(str::to_owned).collect();
    assert!(content_before.len() >= 2, "{content_before:?}");
    let (again, _) = completed_backup(&source, "again", &bucket).await;
    let after = raw_bucket(&bucket).await;
    assert_eq!(content_keys(&after), content_before, "no new content object");
    let written =
        |backup: &APIManagerBackup| backup.status.as_ref().and_then(|s| s.bytes_written).expect("bytesWritten");
    let (first, second) = (written(&backup), written(&again));
    let stored: usize = objects.iter().map(|(_, bytes)| bytes.len()).sum();
    assert_eq!(usize::try_from(first).expect("bytes"), stored, "the first backup wrote what the bucket holds");
    let again_folder = format!("prod/{}/", again.status.as_ref().and_then(|s| s.s3.clone()).expect("status.s3").path);
    let own: usize = after.iter().filter(|(key, _)| key.starts_with(&again_folder)).map(|(_, bytes)| bytes.len()).sum();
    assert_eq!(usize::try_from(second).expect("bytes"), own, "the second backup wrote its own folder, no content");
    assert!(second < first, "{second} < {first}");
    let counted = sample(cluster, r#"apimanager_backup_bytes_written_total{destination="s3"}"#).await;
    assert!(counted >= (first + second) as f64, "{counted}");

    // The key Secret gains a newer key; the first backup (sealed with the older) still restores.
    kubectl_ok(cluster, &["delete", "namespace", &source, "--wait=true", "--timeout=90s"], "");

    // A namespace that never held the installation: only the bucket's Secrets and the database
    // Secrets a restore never makes.
    let target = namespace(cluster, "s3-target");
    credentials(&target, false).await;
    put_secret(&target, KEYS, &[("2026-01", key(7)), ("2026-02", key(9))]).await;
    for secret in original.secrets.iter().filter(|s| NEVER_RESTORED.contains(&s.name_any().as_str())) {
        let data: Vec<(&str, Vec<u8>)> =
            secret.data.iter().flatten().map(|(key, value)| (key.as_str(), value.0.clone())).collect();
        put_secret(&target, &secret.name_any(), &data).await;
    }
    create(&target, &restore_yaml("back", &bucket, &path));
    let restore: APIManagerRestore = finished_restore(cluster, &target, "back").await;
    let status = restore.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(
        condition(&status.conditions, "Ready").1,
        format!("APIManager example-apimanager restored from s3://{bucket}/prod/{path}/ and available")
    );
    let (reason, message) = condition(&status.conditions, "Verified");
    assert_eq!(reason, "Verified");
    assert!(message.starts_with("the backup matches manifest.json: "), "{message}");

    original.assert_restored_in(cluster, &target).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_a_missing_bucket_a_wrong_key_and_damaged_objects_fail_clearly() {
    let cluster = shared();
    let source = namespace_with_installation(cluster, "s3-failures").await;
    put_secret(&source, KEYS, &[("2026-01", key(7))]).await;
    let bucket = bucket_name("e2e-failures");
    shared_s3().create_bucket(&bucket).await.expect("bucket");

    // Wrong credentials and a missing bucket: the backup fails, naming what is wrong.
    credentials(&source, true).await;
    create(&source, &backup_yaml("wrong-credentials", &bucket));
    let failed = finished_backup(cluster, &source, "wrong-credentials").await.status.expect("status");
    assert_eq!(failed.completed, None);
    let uid = kubectl_ok(
        cluster,
        &["-n", &source, "get", "apimanagerbackup", "wrong-credentials", "-o", "jsonpath={.metadata.uid}"],
        "",
    );
    assert_eq!(
        condition(&failed.conditions, "Failed"),
        (
            "JobFailed".to_owned(),
            format!(
                "Pod backup-{uid}-0 failed at step export-objects after 1 attempt: HeadBucket of s3://{bucket}: access denied (AccessDenied): the credentials may not do this"
            )
        )
    );
    credentials(&source, false).await;
    create(&source, &backup_yaml("no-bucket", "e2e-never-created"));
    let failed = finished_backup(cluster, &source, "no-bucket").await.status.expect("status");
    let (reason, message) = condition(&failed.conditions, "Failed");
    assert_eq!(reason, "JobFailed");
    assert!(message.contains("e2e-never-created") && message.contains("does not exist"), "{message}");
    assert!(raw_bucket(&bucket).await.is_empty(), "nothing was written by the failed backups");

    // A good backup (the endpoint, protocol and path style from the credentials Secret's 3scale
    // keys, as the README's `local` example does), then restores of it that must fail before
    // writing anything.
    let from_secret = backup_yaml("nightly", &bucket)
        .lines()
        .filter(|line| !line.contains("endpoint:") && !line.contains("forcePathStyle:"))
        .map(|line| format!("{line}\n"))
        .collect::<String>();
    let (backup, location) = completed(&source, "nightly", &from_secret).await;
    let path = location.path.clone();
    let objects = raw_bucket(&bucket).await;
    let restore_into = |label: &'static str, keys: Vec<(&'static str, Vec<u8>)>| {
        let (bucket, path) = (bucket.clone(), path.clone());
        async move {
            let ns = namespace(shared(), label);
            credentials(&ns, false).await;
            put_secret(&ns, KEYS, &keys).await;
            create(&ns, &restore_yaml("back", &bucket, &path));
            ns
        }
    };
    let wrong_key = restore_into("s3-wrong-key", vec![("2026-01", key(8))]).await;
    let failed = finished_restore(cluster, &wrong_key, "back").await.status.expect("status");
    let (reason, message) = condition(&failed.conditions, "Failed");
    assert_eq!(reason, "JobFailed");
    assert!(message.contains("key 2026-01 does not open"), "{message}");

    // One byte of a content object changed: verify names the object and nothing is restored.
    let client = shared_s3().client(Default::default()).expect("client");
    let (content, bytes) =
        objects.iter().find(|(key, _)| key.starts_with("prod/_content/")).expect("a content object").clone();
    let mut changed = bytes.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    client.put_object(&bucket, &content, changed.into(), &Default::default()).await.expect("changed");
    let corrupted = restore_into("s3-corrupted", vec![("2026-01", key(7))]).await;
    let failed = finished_restore(cluster, &corrupted, "back").await;
    let status = failed.status.clone().expect("status");
    let (reason, message) = condition(&status.conditions, "Failed");
    assert_eq!(reason, "JobFailed");
    let relative = content.strip_prefix("prod/").expect("under the prefix");
    assert!(
        message.contains(&format!("{relative}: segment 0 fails authentication: the object was changed")),
        "{message}"
    );
    assert_eq!(status.api_manager_to_restore_ref, None, "failed at verify");
    let written = kubectl_ok(cluster, &["-n", &corrupted, "get", "configmaps,apimanagers", "-o", "name"], "");
    assert!(!written.contains("system-environment") && !written.contains("apimanager"), "{written}");
    client.put_object(&bucket, &content, bytes.into(), &Default::default()).await.expect("restored bytes");

    // An object of the backup missing.
    let own = format!("prod/{path}/configmaps/system-environment.json");
    assert!(objects.iter().any(|(key, _)| *key == own), "{own}");
    client.delete_object(&bucket, &own).await.expect("deleted");
    let missing = restore_into("s3-missing", vec![("2026-01", key(7))]).await;
    let failed = finished_restore(cluster, &missing, "back").await.status.expect("status");
    let (reason, message) = condition(&failed.conditions, "Failed");
    assert_eq!(reason, "JobFailed");
    assert!(
        message.ends_with(&format!(
            "the backup in s3://{bucket}/prod/{path}/ does not match its manifest; nothing was restored: \
{path}/configmaps/system-environment.json is missing"
        )),
        "{message}"
    );
    let written = kubectl_ok(cluster, &["-n", &missing, "get", "configmaps,apimanagers", "-o", "name"], "");
    assert!(!written.contains("system-environment") && !written.contains("apimanager"), "{written}");
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_server_killed_mid_upload_fails_the_backup_never_completed() {
    let cluster = shared();
    let ns = namespace_with_installation(cluster, "s3-killed").await;
    // A file large enough that the copy is still sealing and uploading it when the server dies.
    let large = cluster.volume(&ns, "system-storage").join("uploads/large.bin");
    let mut random = std::fs::File::open("/dev/urandom").expect("urandom");
    let mut file = std::fs::File::create(&large).expect("large file");
    std::io::copy(&mut std::io::Read::take(&mut random, 192 << 20), &mut file).expect("192 MiB");
    drop(file);
    let (mut server, dir) = start_s3("killed");
    credentials_of(&server, &ns, false).await;
    put_secret(&ns, KEYS, &[("2026-01", key(7))]).await;
    server.create_bucket("killed").await.expect("bucket");
    create(&ns, &backup_yaml_at(&endpoint_of(&server), "nightly", "killed"));

    let admin = cluster.admin_client().await.expect("client");
    let backups: Api<APIManagerBackup> = Api::namespaced(admin, &ns);
    support::cluster::eventually(std::time::Duration::from_secs(60), "the copy runs", || async {
        let status = backups.get("nightly").await.expect("backup").status.unwrap_or_default();
        status.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "CopyingFiles")
    })
    .await;
    server.kill();

    let status = finished_backup(cluster, &ns, "nightly").await.status.expect("status");
    assert_eq!((status.completed, status.bytes_written), (None, None), "never completed: {:?}", status.conditions);
    let (reason, message) = condition(&status.conditions, "Failed");
    assert_eq!(reason, "JobFailed");
    assert!(message.contains("at step copy-files") && message.contains("connection failed"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The objects of an S3 System FileStorage: attachments with non-ASCII metadata (some sharing
/// their content, a few without a content type), an empty one, and one larger than a step holds
/// in memory.
fn file_storage_objects() -> Objects {
    let mut objects = Objects::new();
    for i in 0..24 {
        let key = format!("provider-{}/attachments/pièce-{i:02}.txt", i % 3);
        let body = format!("attachment {} of the System FileStorage, to be kept sealed\n", i % 20).repeat(3);
        let user = BTreeMap::from([("original-name".to_owned(), format!("Pièce jointe n° {i} — reçu.txt"))]);
        let content_type = (i % 6 != 5).then(|| "text/plain; charset=utf-8".to_owned());
        objects.insert(key, (ObjectMetadata { content_type, user }, bytes::Bytes::from(body)));
    }
    let large: Vec<u8> = (0..3usize << 20).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let video = ObjectMetadata { content_type: Some("video/mp4".into()), user: BTreeMap::new() };
    objects.insert("uploads/videos/intro.mp4".into(), (video, large.into()));
    objects.insert("uploads/empty".into(), (ObjectMetadata::default(), bytes::Bytes::new()));
    objects
}

/// 3scale's FileStorage S3 Secret keys naming `bucket` on the test server.
fn file_storage_keys(bucket: &str) -> Vec<(&'static str, Vec<u8>)> {
    let mut keys: Vec<(&str, Vec<u8>)> =
        shared_s3().secret_keys().into_iter().map(|(key, value)| (key, value.into_bytes())).collect();
    keys.push(("AWS_BUCKET", bucket.as_bytes().to_vec()));
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_file_storage_is_sealed_into_the_bucket_by_content_and_restored_into_a_fresh_one() {
    let cluster = shared();
    let admin = cluster.admin_client().await.expect("client");
    let fixture = file_storage_objects();
    let files = bucket_name("fs-to-bucket");
    fill(&files, &fixture).await;
    let served = read_back(&files).await;
    let source = namespace_with_installation(cluster, "s3-fs-source").await;
    credentials(&source, false).await;
    put_secret(&source, KEYS, &[("2026-01", key(7))]).await;
    put_secret(&source, "fs-s3", &file_storage_keys(&files)).await;
    use_s3_file_storage(cluster, &source, "fs-s3");
    let bucket = bucket_name("e2e-fs-dest");
    shared_s3().create_bucket(&bucket).await.expect("bucket");

    let (_, location) = completed_backup(&source, "nightly", &bucket).await;
    let stored = raw_bucket(&bucket).await;
    let distinct: std::collections::BTreeSet<&bytes::Bytes> = fixture.values().map(|(_, body)| body).collect();
    let content = content_keys(&stored);
    assert_eq!(content.len(), distinct.len(), "one content object per distinct object content: {content:?}");
    // Neither an object's bytes, nor its key, nor its metadata is in the bucket in clear.
    let mut clear: Vec<Vec<u8>> = fixture
        .iter()
        .flat_map(|(key, (metadata, body))| {
            let middle = body.len() / 2;
            let sample = body.get(middle.saturating_sub(32)..(middle + 32).min(body.len())).unwrap_or_default();
            [key.as_bytes().to_vec(), sample.to_vec()]
                .into_iter()
                .chain(metadata.user.values().map(|v| v.clone().into_bytes()))
        })
        .filter(|needle| needle.len() >= 16)
        .collect();
    clear.sort();
    clear.dedup();
    assert!(clear.len() > 50, "keys, metadata and contents: {}", clear.len());
    assert_none_in_clear(&stored, &clear, "FileStorage data");
    assert_eq!(read_back(&files).await, served, "the backup leaves the FileStorage bucket as it was");

    // A second backup of the unchanged bucket stores no object again.
    completed_backup(&source, "again", &bucket).await;
    assert_eq!(content_keys(&raw_bucket(&bucket).await), content, "no new content object");

    // A namespace that never held the installation, whose FileStorage Secret names a fresh bucket.
    let target = namespace(cluster, "s3-fs-target");
    credentials(&target, false).await;
    put_secret(&target, KEYS, &[("2026-01", key(7))]).await;
    let fresh = bucket_name("fs-restored");
    shared_s3().create_bucket(&fresh).await.expect("bucket");
    put_secret(&target, "fs-s3", &file_storage_keys(&fresh)).await;
    let originals: Api<Secret> = Api::namespaced(admin.clone(), &source);
    for name in NEVER_RESTORED {
        let secret = originals.get(name).await.expect("database secret");
        let data: Vec<(&str, Vec<u8>)> = secret.data.iter().flatten().map(|(k, v)| (k.as_str(), v.0.clone())).collect();
        put_secret(&target, name, &data).await;
    }
    create(&target, &restore_yaml("back", &bucket, &location.path));
    let restore: APIManagerRestore = finished_restore(cluster, &target, "back").await;
    let status = restore.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(status.file_storage_s3_secret_name.as_deref(), Some("fs-s3"));
    let (reason, message) = condition(&status.conditions, "Verified");
    assert_eq!(reason, "Verified");
    assert!(message.starts_with("the backup matches manifest.json: "), "{message}");
    assert_eq!(read_back(&fresh).await, served, "every key with its content type, metadata and bytes");

    // verify opens every FileStorage object: one changed byte fails the restore before it writes.
    let client = shared_s3().client(Default::default()).expect("client");
    let (largest, bytes) = stored
        .iter()
        .filter(|(key, _)| key.starts_with("prod/_content/"))
        .max_by_key(|(_, bytes)| bytes.len())
        .expect("a content object")
        .clone();
    let mut changed = bytes.clone();
    changed[bytes.len() / 2] ^= 1;
    client.put_object(&bucket, &largest, changed.into(), &Default::default()).await.expect("changed");
    let damaged = namespace(cluster, "s3-fs-damaged");
    credentials(&damaged, false).await;
    put_secret(&damaged, KEYS, &[("2026-01", key(7))]).await;
    create(&damaged, &restore_yaml("back", &bucket, &location.path));
    let failed = finished_restore(cluster, &damaged, "back").await.status.expect("status");
    let (reason, message) = condition(&failed.conditions, "Failed");
    assert_eq!(reason, "JobFailed");
    let relative = largest.strip_prefix("prod/").expect("under the prefix");
    assert!(
        message.contains(&format!("{relative}: segment ")) && message.contains("fails authentication"),
        "{message}"
    );
    assert_eq!(failed.api_manager_to_restore_ref, None, "failed at verify");
    client.put_object(&bucket, &largest, bytes.into(), &Default::default()).await.expect("restored bytes");
}
