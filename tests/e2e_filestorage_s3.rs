//! System FileStorage in S3 end to end, on the real control plane with a real S3 server
//! (SeaweedFS): an installation whose APIManager keeps System's files in a bucket is backed up
//! (every object with its key, size, content type, metadata and SHA-256 in manifest.json) and
//! restored into the bucket the restored installation's Secret names.

mod support;

use apimanager_backup_operator::job::filestorage_s3::{DIR, S3Object, object_path};
use apimanager_backup_operator::job::manifest::{Manifest, hash_file};
use apimanager_backup_operator::local::LocalCluster;
use apimanager_backup_operator::s3::ObjectMetadata;
use bytes::Bytes;
use std::collections::BTreeMap;
use support::cluster::{create_backup, finished_backup, kubectl_ok, namespace_with_installation, shared};
use support::s3::{Objects, bucket_name, fill, read_back, shared_s3, use_s3_file_storage};

/// Small objects in the bucket, besides the large ones.
const SMALL: usize = 2500;
/// Sizes of the large objects: one above the multipart part size, one below it.
const LARGE: [(&str, usize); 2] = [("uploads/videos/intro.mp4", 13 << 20), ("uploads/archive.zip", 3 << 20)];

/// The objects of a System FileStorage: thousands of small files of several content types with
/// user metadata, a few without, and two of several MiB.
fn fixture() -> Objects {
    let mut objects = Objects::new();
    for i in 0..SMALL {
        let (folder, content_type) = match i % 3 {
            0 => ("logos", "image/png"),
            1 => ("attachments", "application/pdf"),
            _ => ("cms", "text/html; charset=utf-8"),
        };
        let key = format!("provider-{}/{folder}/file-{i:05}.bin", i % 7);
        let mut user = BTreeMap::new();
        if i % 5 != 0 {
            user.insert("uploaded-by".to_owned(), format!("user-{}", i % 11));
            user.insert("original-name".to_owned(), format!("Fichier n° {i} — café.bin"));
        }
        let metadata = ObjectMetadata { content_type: (i % 10 != 9).then(|| content_type.to_owned()), user };
        let body = Bytes::from(format!("object {i} of the System FileStorage\n").repeat(1 + i % 13));
        objects.insert(key, (metadata, body));
    }
    for (key, size) in LARGE {
        let body: Vec<u8> = (0..size).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let metadata = ObjectMetadata {
            content_type: Some("application/octet-stream".into()),
            user: BTreeMap::from([("large".to_owned(), "yes".to_owned())]),
        };
        objects.insert(key.to_owned(), (metadata, Bytes::from(body)));
    }
    objects
}

/// A Secret `name` as 3scale's System reads its FileStorage bucket from, naming `bucket` on the
/// shared S3 server.
fn create_secret(cluster: &LocalCluster, namespace: &str, name: &str, bucket: &str) {
    let mut data: Vec<String> = shared_s3().secret_keys().into_iter().map(|(k, v)| format!("  {k}: {v:?}\n")).collect();
    data.push(format!("  AWS_BUCKET: {bucket:?}\n"));
    let yaml = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n{}", data.concat());
    kubectl_ok(cluster, &["-n", namespace, "create", "-f", "-"], &yaml);
}

#[tokio::test]
async fn a_backup_copies_every_object_of_the_file_storage_bucket_with_its_metadata() {
    let cluster = shared();
    let objects = fixture();
    let bucket = bucket_name("fs-backup");
    fill(&bucket, &objects).await;
    // What the bucket serves (the server gives an object stored without a content type one).
    let served = read_back(&bucket).await;
    assert_eq!(served.len(), objects.len());
    let ns = namespace_with_installation(cluster, "s3-fs-backup").await;
    create_secret(cluster, &ns, "fs-s3", &bucket);
    use_s3_file_storage(cluster, &ns, "fs-s3");

    create_backup(cluster, &ns, "nightly");
    let backup = finished_backup(cluster, &ns, "nightly").await;
    let status = backup.status.clone().expect("status");
    assert_eq!(status.completed, Some(true), "{status:?}");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready condition");
    assert_eq!(ready.message, "backup written to PersistentVolumeClaim nightly", "no note about S3");

    let root = cluster.volume(&ns, "nightly");
    let manifest = Manifest::load(&root).expect("manifest.json");
    assert_eq!(manifest.steps.keys().collect::<Vec<_>>(), ["backup-s3-files", "export-objects"]);
    let section = manifest.system_file_storage_s3.clone().expect("systemFileStorageS3 in manifest.json");
    assert_eq!((section.bucket.as_str(), section.secret.as_str()), (bucket.as_str(), "fs-s3"));
    let keys: Vec<&String> = section.objects.iter().map(|o| &o.key).collect();
    assert_eq!(keys, served.keys().collect::<Vec<_>>(), "every key, in key order");
    let sha256 = |bytes: &[u8]| {
        use sha2::Digest;
        apimanager_backup_operator::job::manifest::hex(&sha2::Sha256::digest(bytes))
    };
    for S3Object { key, path, size, sha256: recorded, content_type, metadata } in &section.objects {
        let (expected, body) = &served[key];
        assert_eq!(body, &objects[key].1, "{key}");
        assert_eq!(path, &object_path(key));
        assert_eq!(*size, body.len() as u64, "{key}");
        assert_eq!(recorded, &sha256(body), "{key}");
        assert_eq!(content_type, &expected.content_type, "{key}");
        assert_eq!(metadata, &expected.user, "{key}");
        assert_eq!(std::fs::read(root.join(path)).expect("the object's file"), body.as_ref(), "{key}");
    }
    let listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).filter(|p| p.starts_with(DIR)).collect();
    assert_eq!(listed.len(), objects.len(), "each object's file is under files, for verify");
    for entry in manifest.files.iter().filter(|f| f.path.starts_with(DIR)).take(50) {
        assert_eq!(&hash_file(&root.join(&entry.path), &entry.path).expect("hash"), entry);
    }
    assert!(!root.join("system-filestorage-pvc").exists(), "no claim to copy");
    assert!(!root.join(format!("{DIR}.partial")).exists(), "no staging folder left");
    assert_eq!(read_back(&bucket).await, served, "the backup leaves the bucket as it was");
}

#[tokio::test]
async fn a_restore_writes_every_object_back_into_the_bucket_its_secret_names_and_refuses_a_non_empty_one() {
    use apimanager_backup_operator::layout::{CONFIG_MAPS, NEVER_RESTORED, SECRETS};
    use support::restore::{create_restore, finished_restore};
    let cluster = shared();
    let objects = fixture();
    let bucket = bucket_name("fs-source");
    fill(&bucket, &objects).await;
    let served = read_back(&bucket).await;
    let ns = namespace_with_installation(cluster, "s3-fs-restore").await;
    create_secret(cluster, &ns, "fs-s3", &bucket);
    use_s3_file_storage(cluster, &ns, "fs-s3");
    create_backup(cluster, &ns, "nightly");
    let backup = finished_backup(cluster, &ns, "nightly").await;
    assert_eq!(backup.status.and_then(|s| s.completed), Some(true));

    // The installation goes (but the database Secrets and the S3 Secret, which still names the
    // original, non-empty bucket).
    let restorable: Vec<&str> = SECRETS.into_iter().filter(|name| !NEVER_RESTORED.contains(name)).collect();
    kubectl_ok(cluster, &[&["-n", &ns, "delete", "secret"][..], &restorable].concat(), "");
    kubectl_ok(cluster, &[&["-n", &ns, "delete", "configmap"][..], &CONFIG_MAPS].concat(), "");
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanager", "example-apimanager"], "");

    create_restore(cluster, &ns, "refused", "nightly");
    let refused = finished_restore(cluster, &ns, "refused").await;
    let status = refused.status.expect("status");
    assert_ne!(status.completed, Some(true));
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").expect("Failed condition");
    let uid = refused.metadata.uid.clone().expect("uid");
    assert_eq!(
        failed.message,
        format!(
            "Pod restore-s3-files-{uid}-0 failed after 1 attempt: System FileStorage bucket {bucket} (Secret fs-s3) already \
holds objects; nothing was written. Empty it, or set spec.overwriteFileStorageObjects: true on the APIManagerRestore \
to write the backed-up objects over it"
        )
    );
    assert_eq!(read_back(&bucket).await, served, "the non-empty bucket is left as it was");
    kubectl_ok(cluster, &["-n", &ns, "delete", "apimanagerrestore", "refused"], "");

    // The restored installation's Secret names a fresh, empty bucket.
    let fresh = bucket_name("fs-restored");
    shared_s3().create_bucket(&fresh).await.expect("create bucket");
    kubectl_ok(cluster, &["-n", &ns, "delete", "secret", "fs-s3"], "");
    create_secret(cluster, &ns, "fs-s3", &fresh);
    create_restore(cluster, &ns, "back", "nightly");
    let restored = finished_restore(cluster, &ns, "back").await;
    let status = restored.status.expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    assert_eq!(status.file_storage_s3_secret_name.as_deref(), Some("fs-s3"));
    assert_eq!(read_back(&fresh).await, served, "every key with its content type, metadata and bytes");
}

#[tokio::test]
async fn the_s3_sample_of_local_backs_up_the_uploads_of_its_bucket() {
    use apimanager_backup_operator::local::{s3_sample, session::SAMPLE_INSTALLATION};
    let cluster = shared();
    let admin = cluster.admin_client().await.expect("admin client");
    let (ns, bucket) = ("s3-fs-sample", bucket_name("fs-sample"));
    s3_sample::install(&admin, shared_s3(), SAMPLE_INSTALLATION, ns, &bucket).await.expect("the S3 sample");
    let backup = finished_backup(cluster, ns, s3_sample::BACKUP_NAME).await;
    let status = backup.status.expect("status");
    assert_eq!(status.completed, Some(true), "{:?}", status.conditions);
    let claim = status.backup_persistent_volume_claim_name.expect("claim");
    let manifest = Manifest::load(&cluster.volume(ns, &claim)).expect("manifest.json");
    let section = manifest.system_file_storage_s3.expect("systemFileStorageS3 in manifest.json");
    assert_eq!((section.bucket.as_str(), section.secret.as_str()), (bucket.as_str(), s3_sample::SECRET));
    let mut expected = s3_sample::OBJECTS.to_vec();
    expected.sort();
    let recorded: Vec<_> = section
        .objects
        .iter()
        .map(|o| (o.key.as_str(), o.content_type.as_deref().unwrap_or_default(), o.metadata["original-name"].as_str()))
        .collect();
    let expected: Vec<_> = expected.iter().map(|(key, content_type, name, _)| (*key, *content_type, *name)).collect();
    assert_eq!(recorded, expected, "each upload with its content type and its (non-ASCII) original name");
}
