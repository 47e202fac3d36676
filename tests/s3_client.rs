//! The S3 client against a real S3 server (SeaweedFS, verifying SigV4): objects with metadata,
//! listings over several pages, batch deletes, multipart uploads streamed with bounded memory,
//! aborted uploads leaving nothing behind, and the typed errors of wrong credentials, a missing
//! bucket and a server killed mid-upload.

mod support;

use apimanager_backup_operator::s3::{
    ClientOptions, ErrorKind, MIN_PART_SIZE, ObjectMetadata, RetryPolicy, S3Client, S3Error,
};
use sha2::{Digest, Sha256};
use std::alloc::{GlobalAlloc, Layout, System};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use support::s3::{bucket_name, shared_s3, start_s3};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counts the bytes allocated and their peak, so a test can bound what an upload holds.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The memory test measures the whole process: it runs alone, the others together.
static GATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const MIB: usize = 1 << 20;

fn client_with(options: ClientOptions) -> S3Client {
    shared_s3().client(options).expect("client")
}

fn client() -> S3Client {
    client_with(ClientOptions::default())
}

async fn new_bucket(label: &str) -> String {
    let bucket = bucket_name(label);
    shared_s3().create_bucket(&bucket).await.expect("create bucket");
    bucket
}

/// Deterministic pseudo-random bytes (xorshift), hashed as they are produced; after
/// `fail_after` bytes it fails or, with `stall`, never yields again; `on_threshold` runs once
/// when `threshold` bytes were produced.
struct Source {
    remaining: usize,
    produced: usize,
    state: u64,
    hash: Sha256,
    fail_after: Option<usize>,
    stall: bool,
    threshold: usize,
    on_threshold: Option<Box<dyn FnOnce() + Send>>,
}

impl Source {
    fn new(len: usize) -> Self {
        Self {
            remaining: len,
            produced: 0,
            state: 0x9e37_79b9_7f4a_7c15,
            hash: Sha256::new(),
            fail_after: None,
            stall: false,
            threshold: usize::MAX,
            on_threshold: None,
        }
    }
}

impl AsyncRead for Source {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.produced >= self.threshold
            && let Some(hook) = self.on_threshold.take()
        {
            hook();
        }
        if let Some(limit) = self.fail_after
            && self.produced >= limit
        {
            if self.stall {
                return Poll::Pending;
            }
            return Poll::Ready(Err(std::io::Error::other("the source broke")));
        }
        let n = buf.remaining().min(self.remaining).min(64 << 10);
        let mut chunk = vec![0u8; n];
        for byte in &mut chunk {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *byte = (self.state >> 24) as u8;
        }
        self.hash.update(&chunk);
        buf.put_slice(&chunk);
        self.remaining -= n;
        self.produced += n;
        Poll::Ready(Ok(()))
    }
}

/// A sink that only hashes what it is given.
#[derive(Default)]
struct HashingSink {
    hash: Sha256,
    len: usize,
}

impl AsyncWrite for HashingSink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.hash.update(buf);
        self.len += buf.len();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn metadata() -> ObjectMetadata {
    ObjectMetadata {
        content_type: Some("application/json".into()),
        user: [
            ("sha256".to_owned(), "ab".repeat(32)),
            ("mode".to_owned(), "0640".to_owned()),
            ("original-name".to_owned(), "Logo café ☕.png".to_owned()),
        ]
        .into(),
    }
}

#[tokio::test]
async fn objects_round_trip_with_their_metadata() {
    let _gate = GATE.read().await;
    let client = client();
    let bucket = new_bucket("objects").await;
    assert!(client.bucket_exists(&bucket).await.unwrap());
    assert!(!client.bucket_exists("no-such-bucket-here").await.unwrap());

    let key = "ns/backup-1/secrets/system seed+1 &é.json";
    let stored = client.put_object(&bucket, key, "{\"a\":1}".into(), &metadata()).await.unwrap();
    assert_eq!((stored.size, stored.parts), (7, 0));

    let head = client.head_object(&bucket, key).await.unwrap().expect("the object exists");
    assert_eq!((head.size, head.etag.as_str()), (7, stored.etag.as_str()));
    assert_eq!(head.metadata, metadata());

    let mut read = Vec::new();
    let info = client.download(&bucket, key, &mut read).await.unwrap();
    assert_eq!(read, b"{\"a\":1}");
    assert_eq!(info.metadata, metadata());

    let empty = client.put_object(&bucket, "empty", bytes::Bytes::new(), &ObjectMetadata::default()).await.unwrap();
    assert_eq!(empty.size, 0);
    let mut read = Vec::new();
    assert_eq!(client.download(&bucket, "empty", &mut read).await.unwrap().size, 0);
    assert!(read.is_empty());

    assert_eq!(client.head_object(&bucket, "missing").await.unwrap(), None);
    let error = client.download(&bucket, "missing", Vec::new()).await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::NoSuchKey), "{error}");
    assert_eq!(error.to_string(), format!("GetObject of s3://{bucket}/missing: the object does not exist (NoSuchKey)"));

    client.delete_object(&bucket, key).await.unwrap();
    assert_eq!(client.head_object(&bucket, key).await.unwrap(), None);
    client.delete_object(&bucket, key).await.unwrap();
}

#[tokio::test]
async fn listings_page_through_more_than_a_thousand_keys_and_batch_and_prefix_deletes_remove_them() {
    use futures::StreamExt;
    let _gate = GATE.read().await;
    let client = client();
    let bucket = new_bucket("listing").await;
    let mut keys: Vec<String> = (0..1050).map(|i| format!("prefix/{i:05}")).collect();
    keys.extend(["prefix/a b".to_owned(), "prefix/plus+sign&amp".to_owned(), "prefix/ünï".to_owned()]);
    let none = ObjectMetadata::default();
    let results: Vec<Result<_, S3Error>> = futures::stream::iter(keys.iter())
        .map(|key| client.put_object(&bucket, key, key.clone().into(), &none))
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
    client.put_object(&bucket, "other/x", "x".into(), &ObjectMetadata::default()).await.unwrap();
    keys.sort();

    let all = client.list_all(&bucket, "prefix/").await.unwrap();
    assert_eq!(all.iter().map(|o| o.key.clone()).collect::<Vec<_>>(), keys);
    let sized = all.iter().find(|o| o.key == "prefix/ünï").unwrap();
    assert_eq!(sized.size, "prefix/ünï".len() as u64);

    let mut pages = 0;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client.list_page(&bucket, "prefix/", token.as_deref(), 400).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 400);
        seen.extend(page.objects.into_iter().map(|o| o.key));
        match page.next_continuation_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!((pages, seen), (3, keys.clone()));

    let (first, rest) = keys.split_at(1020);
    client.delete_objects(&bucket, first).await.unwrap();
    assert_eq!(client.list_all(&bucket, "prefix/").await.unwrap().len(), rest.len());
    assert_eq!(client.delete_prefix(&bucket, "prefix/").await.unwrap(), rest.len() as u64);
    assert_eq!(client.list_all(&bucket, "prefix/").await.unwrap(), vec![]);
    assert_eq!(client.list_all(&bucket, "").await.unwrap().len(), 1, "only what is outside the prefix is left");
    assert!(client.delete_prefix(&bucket, "").await.is_err());
}

#[tokio::test]
async fn a_large_upload_is_multipart_streamed_in_bounded_memory_and_reads_back_equal() {
    let _gate = GATE.write().await;
    let options = ClientOptions { part_size: MIN_PART_SIZE, concurrency: 2, ..ClientOptions::default() };
    let client = client_with(options);
    let bucket = new_bucket("multipart").await;
    // A small object is held in a buffer of about its size, not of a part's.
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let small = client.upload(&bucket, "small/logo.png", &mut Source::new(100_000), &metadata()).await.unwrap();
    let held = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(held < 2 * MIB, "a 100 kB upload held {held} bytes at its peak");
    assert_eq!((small.size, small.parts), (100_000, 0), "a single PUT");

    let len = 33 * MIB + 12_345;
    let mut source = Source::new(len);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let stored = client.upload(&bucket, "big/archive.tar", &mut source, &metadata()).await.unwrap();
    let held = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    // At most two 5 MiB parts (in flight, or one in flight and one being read), plus the
    // client's own buffers.
    let bound = MIN_PART_SIZE * options.concurrency + 4 * MIB;
    assert!(held < bound, "the upload held {held} bytes at its peak (bound {bound}; the object is {len})");
    assert_eq!((stored.size, stored.parts), (len as u64, 7));

    let head = client.head_object(&bucket, "big/archive.tar").await.unwrap().unwrap();
    assert_eq!((head.size, head.etag.as_str()), (len as u64, stored.etag.as_str()));
    assert_eq!(head.metadata, metadata());

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut sink = HashingSink::default();
    let info = client.download(&bucket, "big/archive.tar", &mut sink).await.unwrap();
    let held = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(held < 4 * MIB, "the download held {held} bytes at its peak");
    assert_eq!((info.size, sink.len), (len as u64, len));
    assert_eq!(sink.hash.finalize(), source.hash.finalize(), "the object read back differs");
    assert!(client.list_multipart_uploads(&bucket, "").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_or_cancelled_upload_is_aborted_and_leaves_no_parts() {
    let _gate = GATE.read().await;
    let client = client_with(ClientOptions { part_size: MIN_PART_SIZE, ..ClientOptions::default() });
    let bucket = new_bucket("aborted").await;

    let mut broken = Source::new(20 * MIB);
    broken.fail_after = Some(12 * MIB);
    let error = client.upload(&bucket, "broken", &mut broken, &ObjectMetadata::default()).await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::Source(_)), "{error}");
    assert_eq!(error.bucket, bucket);
    assert_eq!(error.key.as_deref(), Some("broken"));
    assert!(client.list_multipart_uploads(&bucket, "").await.unwrap().is_empty());
    assert_eq!(client.head_object(&bucket, "broken").await.unwrap(), None);

    // A cancelled upload: the source stalls after two parts; the upload is seen in progress, then
    // its future is dropped, and the abort it leaves behind clears it.
    let mut stalled = Source::new(20 * MIB);
    stalled.fail_after = Some(11 * MIB);
    stalled.stall = true;
    let (reached, mut reached_rx) = tokio::sync::mpsc::unbounded_channel();
    stalled.threshold = 11 * MIB;
    stalled.on_threshold = Some(Box::new(move || {
        let _ = reached.send(());
    }));
    let metadata = ObjectMetadata::default();
    let mut upload = Box::pin(client.upload(&bucket, "cancelled", &mut stalled, &metadata));
    tokio::select! {
        outcome = &mut upload => panic!("the stalled upload ended: {outcome:?}"),
        _ = reached_rx.recv() => {}
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.list_multipart_uploads(&bucket, "").await.unwrap().is_empty() {
        // Keep the upload going (its parts are in flight) until the server lists it.
        let _ = tokio::time::timeout(Duration::from_millis(100), &mut upload).await;
        assert!(Instant::now() < deadline, "the stalled upload never showed up as in progress");
    }
    drop(upload);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = client.list_multipart_uploads(&bucket, "").await.unwrap();
        if pending.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the cancelled upload was not aborted: {pending:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retry waits long enough that a retried request could not finish within the test's bound.
fn slow_retries() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy { max_attempts: 5, base_delay: Duration::from_secs(20), max_delay: Duration::from_secs(20) },
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn a_wrong_secret_is_signature_does_not_match_at_once() {
    let _gate = GATE.read().await;
    let server = shared_s3();
    let bucket = new_bucket("signature").await;
    let wrong = apimanager_backup_operator::s3::Credentials::new(&server.access_key_id, "not-the-secret", None);
    let client = S3Client::new(server.connection().unwrap(), &wrong, slow_retries()).unwrap();
    let started = Instant::now();
    let error = client.put_object(&bucket, "k", "v".into(), &ObjectMetadata::default()).await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::SignatureDoesNotMatch), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15), "a definite refusal was retried");
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "PutObject of s3://{bucket}/k: the request signature does not match (SignatureDoesNotMatch): \
             check the secret access key"
        )
    );
    assert!(!message.contains(&server.secret_access_key) && !message.contains(&server.access_key_id));

    let unknown = apimanager_backup_operator::s3::Credentials::new("AKNOBODY", "x", None);
    let client = S3Client::new(server.connection().unwrap(), &unknown, slow_retries()).unwrap();
    let error = client.list_page(&bucket, "", None, 10).await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::InvalidAccessKeyId | ErrorKind::AccessDenied), "{error}");
}

#[tokio::test]
async fn a_missing_bucket_is_no_such_bucket_at_once() {
    let _gate = GATE.read().await;
    let client = S3Client::new(shared_s3().connection().unwrap(), &shared_s3().credentials(), slow_retries()).unwrap();
    let started = Instant::now();
    let error = client.put_object("never-created", "k", "v".into(), &ObjectMetadata::default()).await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::NoSuchBucket), "{error}");
    assert_eq!(error.to_string(), "PutObject of s3://never-created/k: the bucket does not exist (NoSuchBucket)");
    let error = client.list_all("never-created", "").await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::NoSuchBucket), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15), "a definite refusal was retried");
}

#[tokio::test]
async fn a_server_killed_mid_upload_fails_the_upload_with_a_typed_error() {
    let _gate = GATE.read().await;
    let (server, dir) = start_s3("killed");
    server.create_bucket("victim").await.unwrap();
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        connect_timeout: Duration::from_secs(2),
        part_size: MIN_PART_SIZE,
        ..ClientOptions::default()
    };
    let client = server.client(options).unwrap();
    let server = std::sync::Arc::new(std::sync::Mutex::new(server));
    let mut source = Source::new(30 * MIB);
    source.threshold = 12 * MIB;
    let victim = server.clone();
    source.on_threshold = Some(Box::new(move || victim.lock().expect("server").kill()));

    let started = Instant::now();
    let error = client.upload("victim", "big", &mut source, &ObjectMetadata::default()).await.unwrap_err();
    assert!(
        matches!(error.kind, ErrorKind::Connection { attempts: 3, .. }),
        "not a connection failure after 3 attempts: {error}"
    );
    assert_eq!((error.bucket.as_str(), error.key.as_deref()), ("victim", Some("big")));
    assert!(started.elapsed() < Duration::from_secs(60));

    let error = client.download("victim", "big", Vec::new()).await.unwrap_err();
    assert!(matches!(error.kind, ErrorKind::Connection { .. }), "{error}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_keys_of_a_3scale_s3_secret_reach_the_server() {
    use apimanager_backup_operator::s3::config;
    let _gate = GATE.read().await;
    let server = shared_s3();
    let bucket = new_bucket("secret").await;
    // As a Pod sees a Secret mounted as files: one file per key.
    let mounted = std::env::temp_dir().join(format!("abo-s3-secret-{}", std::process::id()));
    std::fs::create_dir_all(&mounted).unwrap();
    let env_file = std::fs::read_to_string(&server.env_file).unwrap();
    for line in env_file.lines() {
        let (key, value) = line.split_once('=').unwrap();
        std::fs::write(mounted.join(key), value).unwrap();
    }
    std::fs::write(mounted.join("AWS_BUCKET"), &bucket).unwrap();
    let settings = config::from_dir(&mounted, true);
    std::fs::remove_dir_all(&mounted).unwrap();
    let settings = settings.unwrap();
    assert_eq!(settings.bucket.as_deref(), Some(bucket.as_str()));
    assert_eq!(
        config::from_dir(std::path::Path::new("/nonexistent"), true),
        Err(config::ConfigError::Missing { key: "AWS_ACCESS_KEY_ID" })
    );

    let client = S3Client::new(settings.endpoint, &settings.credentials, ClientOptions::default()).unwrap();
    client.put_object(&bucket, "from-secret", "ok".into(), &ObjectMetadata::default()).await.unwrap();
    assert_eq!(client.list_all(&bucket, "").await.unwrap()[0].key, "from-secret");
}

#[tokio::test]
async fn a_private_endpoint_is_trusted_through_its_ca_bundle_only() {
    use apimanager_backup_operator::s3::{Addressing, Endpoint};
    let _gate = GATE.read().await;
    let server = shared_s3();
    let bucket = new_bucket("tls").await;
    let client =
        S3Client::new(server.https_connection().unwrap(), &server.credentials(), ClientOptions::default()).unwrap();
    client.put_object(&bucket, "over-tls", "sealed".into(), &ObjectMetadata::default()).await.unwrap();
    let mut read = Vec::new();
    client.download(&bucket, "over-tls", &mut read).await.unwrap();
    assert_eq!(read, b"sealed");

    // Without the bundle the certificate is refused, once: retrying cannot help.
    let untrusted = Endpoint::new(&server.https_endpoint, "us-east-1", Addressing::Path, false).unwrap();
    let client = S3Client::new(untrusted, &server.credentials(), slow_retries()).unwrap();
    let started = Instant::now();
    let error = client.head_object(&bucket, "over-tls").await.unwrap_err();
    match &error.kind {
        ErrorKind::Connection { reason, attempts: 1 } => assert!(reason.contains("UnknownIssuer"), "{reason}"),
        other => panic!("not a TLS refusal: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}
