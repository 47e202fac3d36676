//! A real S3 server (SeaweedFS, verifying SigV4) for the tests: one shared per test binary,
//! started on first use and killed when the binary exits, or a fresh one for a test that
//! stops it. Each test works in buckets of its own.

use super::cluster::kubectl_ok;
use apimanager_backup_operator::local::s3_server::S3Server;
use apimanager_backup_operator::local::{LocalCluster, process, repo_dir};
use apimanager_backup_operator::s3::{ClientOptions, ObjectMetadata};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Starts a fresh server in a new scratch directory (on a runtime of its own, so it outlives
/// none of the test's); returns it with the directory, which the caller removes.
pub fn start_s3(label: &str) -> (S3Server, PathBuf) {
    let dir = std::env::temp_dir().join(format!("abo-s3-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let work = dir.clone();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(S3Server::start(&repo_dir(), &work))
    })
    .join()
    .expect("S3 server start thread");
    match server {
        Ok(server) => (server, dir),
        Err(error) => panic!("the S3 server did not start: {error}"),
    }
}

/// The server shared by the tests of this binary.
pub fn shared_s3() -> &'static S3Server {
    static SHARED: OnceLock<S3Server> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (server, dir) = start_s3("shared");
        process::remove_at_exit(&dir);
        server
    })
}

/// A bucket name of its own for each call in this binary: `<label>-<n>` (lowercase, as S3
/// wants).
pub fn bucket_name(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{label}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Every object of `bucket` on the shared server: key and bytes, as stored.
pub async fn raw_bucket(bucket: &str) -> Vec<(String, Vec<u8>)> {
    let client = shared_s3().client(Default::default()).expect("client");
    let mut objects = Vec::new();
    for listed in client.list_all(bucket, "").await.expect("list") {
        let mut bytes = Vec::new();
        client.download(bucket, &listed.key, &mut bytes).await.expect("download");
        objects.push((listed.key, bytes));
    }
    objects
}

/// What the bucket of an installation holds: each key with its metadata and bytes.
pub type Objects = BTreeMap<String, (ObjectMetadata, Bytes)>;

/// Stores `objects` in `bucket` (created first).
pub async fn fill(bucket: &str, objects: &Objects) {
    shared_s3().create_bucket(bucket).await.expect("create bucket");
    let client = shared_s3().client(ClientOptions::default()).expect("S3 client");
    futures::stream::iter(objects.iter())
        .map(|(key, (metadata, body))| {
            let client = client.clone();
            async move { client.upload(bucket, key, std::io::Cursor::new(body.clone()), metadata).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("fill the bucket");
}

/// Everything `bucket` holds, read back through GET (bytes, content type, user metadata).
pub async fn read_back(bucket: &str) -> Objects {
    let client = shared_s3().client(ClientOptions::default()).expect("S3 client");
    let listed = client.list_all(bucket, "").await.expect("list");
    futures::stream::iter(listed)
        .map(|object| {
            let client = client.clone();
            async move {
                let mut body = Vec::new();
                let info = client.download(bucket, &object.key, &mut body).await?;
                Ok::<_, apimanager_backup_operator::s3::S3Error>((object.key, (info.metadata, Bytes::from(body))))
            }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .expect("read the bucket back")
}

/// Moves the sample installation's System FileStorage into the S3 bucket Secret `secret` names.
pub fn use_s3_file_storage(cluster: &LocalCluster, namespace: &str, secret: &str) {
    let patch = format!(
        r#"{{"spec":{{"system":{{"fileStorage":{{"simpleStorageService":{{"configurationSecretRef":{{"name":"{secret}"}}}}}}}}}}}}"#
    );
    kubectl_ok(
        cluster,
        &["-n", namespace, "patch", "apimanager", "example-apimanager", "--type=merge", "-p", &patch],
        "",
    );
}
