//! The S3 client: signed requests (SigV4 by `rusty-s3`, sans-IO) sent over [`Transport`], each
//! retried per [`RetryPolicy`] when the failure is transient, and the single-request operations
//! on buckets and objects. Streaming uploads and downloads are in `upload` and `download`.

use super::config::{Addressing, ConfigError, Credentials, Endpoint};
use super::error::{ErrorKind, Operation, Retry, S3Error, classify, kind_of};
use super::retry::RetryPolicy;
use super::transport::{Transport, read_limited};
use super::xml::{self, ListPage, ListedObject, PendingUpload};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The smallest part S3 accepts (except the last).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The most parts of one multipart upload.
pub const MAX_PARTS: u32 = 10_000;
/// The most keys of one `DeleteObjects`.
const DELETE_BATCH: usize = 1000;
/// Longest error body read.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// Validity of each request's signature: the request must reach the server within it.
const SIGNATURE_EXPIRY_SECONDS: u64 = 900;
/// The most bytes of user metadata S3 stores with an object.
const MAX_METADATA_BYTES: usize = 2048;

/// Timeouts, retries and the shape of multipart uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Attempts and back-off of each request (each part of an upload on its own).
    pub retry: RetryPolicy,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for an answer's head, from the start of sending (the body included).
    pub request_timeout: Duration,
    /// Longest wait for the next chunk of an answer's body.
    pub idle_timeout: Duration,
    /// Size of each part of a multipart upload (at least [`MIN_PART_SIZE`]); objects smaller
    /// than one part go in a single PUT.
    pub part_size: usize,
    /// Parts uploaded at once. An upload holds at most `part_size × concurrency` bytes.
    pub concurrency: usize,
}

impl Default for ClientOptions {
    /// 8 MiB parts, two in flight (at most 16 MiB held per upload); 10 s to connect, 5 min for an
    /// answer, 60 s between chunks; the default [`RetryPolicy`].
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            part_size: 8 << 20,
            concurrency: 2,
        }
    }
}

/// What is stored with an object besides its bytes: its content type and user metadata
/// (`x-amz-meta-<name>`; names lowercase). Values are kept as the server sends them: plain
/// ASCII, RFC 2047 words (AWS's form of non-ASCII values, which it decodes again when they are
/// written back) or raw UTF-8 (what SeaweedFS, MinIO and Ceph store and return).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMetadata {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// User metadata by name (without the `x-amz-meta-` prefix).
    pub user: BTreeMap<String, String>,
}

impl ObjectMetadata {
    /// The request headers carrying this metadata, or why it cannot be sent.
    pub(crate) fn headers(&self) -> Result<BTreeMap<String, String>, String> {
        let mut headers = BTreeMap::new();
        if let Some(content_type) = &self.content_type {
            if !content_type.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err("the content type must be printable ASCII".into());
            }
            headers.insert("content-type".to_owned(), content_type.clone());
        }
        let mut total = 0;
        for (name, value) in &self.user {
            let valid_name = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
            if !valid_name {
                return Err("metadata names are lowercase letters, digits, '-', '_' and '.'".into());
            }
            if value.chars().any(char::is_control) {
                return Err("metadata values cannot hold control characters".into());
            }
            total += name.len() + value.len();
            headers.insert(format!("x-amz-meta-{name}"), value.trim().to_owned());
        }
        if total > MAX_METADATA_BYTES {
            return Err(format!("user metadata exceeds {MAX_METADATA_BYTES} bytes"));
        }
        Ok(headers)
    }

    /// The metadata an answer's headers carry, every value kept: one that is not UTF-8, or
    /// entries the server says it withheld (`x-amz-missing-meta`), are an error, never dropped.
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Result<Self, String> {
        if let Some(missing) = headers.get(MISSING_METADATA_HEADER) {
            let count = String::from_utf8_lossy(missing.as_bytes()).into_owned();
            return Err(format!(
                "the server withheld {count} metadata entries it cannot send ({MISSING_METADATA_HEADER})"
            ));
        }
        let mut user = BTreeMap::new();
        for (name, value) in headers {
            let Some(name) = name.as_str().strip_prefix("x-amz-meta-") else { continue };
            let value = String::from_utf8(value.as_bytes().to_vec())
                .map_err(|_| format!("the value of metadata {name:?} is not UTF-8"))?;
            user.insert(name.to_owned(), value);
        }
        let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self { content_type, user })
    }
}

/// An object as HEAD or GET describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// Entity tag, without quotes.
    pub etag: String,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<String>,
    /// Content type and user metadata.
    pub metadata: ObjectMetadata,
}

impl ObjectInfo {
    /// The object an answer's headers describe, or why its metadata cannot be kept.
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> Result<Self, String> {
        let text = |name: http::header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self {
            size: text(http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()).unwrap_or_default(),
            etag: etag_of(headers),
            last_modified: text(http::header::LAST_MODIFIED),
            metadata: ObjectMetadata::from_headers(headers)?,
        })
    }
}

/// The entity tag an answer carries, without quotes (empty when it has none).
pub(crate) fn etag_of(headers: &http::HeaderMap) -> String {
    headers.get(http::header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().trim_matches('"').to_owned()
}

/// The header by which S3 says it withheld metadata that HTTP headers cannot carry.
const MISSING_METADATA_HEADER: &str = "x-amz-missing-meta";

/// What a finished upload stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// The object's entity tag.
    pub etag: String,
    /// Bytes stored.
    pub size: u64,
    /// Parts of the multipart upload; 0 for a single PUT.
    pub parts: u32,
}

/// One request before signing.
pub(crate) struct Call<'a> {
    pub(crate) operation: Operation,
    pub(crate) bucket: &'a str,
    pub(crate) key: Option<&'a str>,
    pub(crate) method: rusty_s3::Method,
    /// Query parameters, sorted by name.
    pub(crate) query: BTreeMap<&'static str, String>,
    /// Headers to send and sign; names lowercase.
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Bytes,
}

impl<'a> Call<'a> {
    pub(crate) fn new(operation: Operation, bucket: &'a str, key: Option<&'a str>, method: rusty_s3::Method) -> Self {
        Self { operation, bucket, key, method, query: BTreeMap::new(), headers: BTreeMap::new(), body: Bytes::new() }
    }

    pub(crate) fn error(&self, kind: ErrorKind) -> S3Error {
        S3Error { operation: self.operation, bucket: self.bucket.to_owned(), key: self.key.map(str::to_owned), kind }
    }
}

struct Inner {
    endpoint: Endpoint,
    credentials: rusty_s3::Credentials,
    transport: Transport,
    options: ClientOptions,
}

/// A client of one endpoint with one set of credentials; cheap to clone (clones share
/// connections).
#[derive(Clone)]
pub struct S3Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client").field("endpoint", &self.inner.endpoint.url()).finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client of `endpoint` signing with `credentials`.
    pub fn new(endpoint: Endpoint, credentials: &Credentials, options: ClientOptions) -> Result<Self, ConfigError> {
        if options.part_size < MIN_PART_SIZE {
            return Err(ConfigError::Invalid { key: "part size", reason: "S3 parts are at least 5 MiB" });
        }
        if options.concurrency == 0 || options.retry.max_attempts == 0 {
            return Err(ConfigError::Invalid { key: "options", reason: "concurrency and attempts are at least 1" });
        }
        let transport = Transport::new(&endpoint, options.connect_timeout)?;
        Ok(Self { inner: Arc::new(Inner { endpoint, credentials: credentials.signing(), transport, options }) })
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The signed URL and headers of one attempt.
    fn request(&self, call: &Call<'_>) -> Result<http::Request<Full<Bytes>>, S3Error> {
        let endpoint = &self.inner.endpoint;
        let invalid = |reason: String| call.error(ErrorKind::Invalid(reason));
        check_bucket(call)?;
        let style = match endpoint.addressing() {
            Addressing::Path => rusty_s3::UrlStyle::Path,
            Addressing::VirtualHost => rusty_s3::UrlStyle::VirtualHost,
        };
        let bucket = rusty_s3::Bucket::new(
            endpoint.parsed_url().clone(),
            style,
            call.bucket.to_owned(),
            endpoint.region().to_owned(),
        )
        .map_err(|e| invalid(format!("the bucket cannot be addressed: {e}")))?;
        let url = match call.key {
            Some(key) => bucket.object_url(key),
            None => bucket.base_url().clone(),
        };
        let credentials = &self.inner.credentials;
        let signed = rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            call.method,
            url,
            credentials.key(),
            credentials.secret(),
            credentials.token(),
            endpoint.region(),
            SIGNATURE_EXPIRY_SECONDS,
            call.query.iter().map(|(k, v)| (*k, v.as_str())),
            call.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let mut builder = http::Request::builder().method(call.method.to_str()).uri(signed.as_str());
        for (name, value) in &call.headers {
            // From bytes: a metadata value may be UTF-8 beyond ASCII, which `&str` headers refuse.
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        if matches!(call.method, rusty_s3::Method::Put | rusty_s3::Method::Post) {
            builder = builder.header(http::header::CONTENT_LENGTH, call.body.len());
        }
        builder.body(Full::new(call.body.clone())).map_err(|_| invalid("a header value is not valid in HTTP".into()))
    }

    /// Sends `call` until it succeeds (2xx) or fails for good: transient failures are tried
    /// again per the retry policy; definite answers become typed errors.
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<http::Response<Incoming>, S3Error> {
        let options = &self.inner.options;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.request(call)?;
            let failure = match self.inner.transport.send(request, options.request_timeout).await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = if call.method == rusty_s3::Method::Head {
                        None
                    } else {
                        read_limited(response.into_body(), ERROR_BODY_LIMIT, options.idle_timeout)
                            .await
                            .ok()
                            .and_then(|bytes| xml::parse_error(&bytes))
                    };
                    let code = body.as_ref().map(|b| b.code.clone()).unwrap_or_default();
                    match classify(status, &code) {
                        Retry::No => return Err(call.error(kind_of(call.operation, status, body.as_ref()))),
                        Retry::Yes => ErrorKind::Unavailable { status, code, attempts: attempt },
                    }
                }
                Err(error) if error.transient => ErrorKind::Connection { reason: error.reason, attempts: attempt },
                Err(error) => return Err(call.error(ErrorKind::Connection { reason: error.reason, attempts: attempt })),
            };
            if !options.retry.again(attempt) {
                return Err(call.error(failure));
            }
            tracing::debug!(operation = %call.operation, bucket = call.bucket, attempt, error = %failure, "S3 request failed; retrying");
            options.retry.wait(attempt).await;
        }
    }

    /// Sends `call` and reads its (XML) answer body.
    pub(crate) async fn execute_read(&self, call: &Call<'_>) -> Result<Vec<u8>, S3Error> {
        let options = &self.inner.options;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self.execute(call).await?;
            match read_limited(response.into_body(), xml::MAX_BODY, options.idle_timeout).await {
                Ok(body) => return Ok(body),
                Err(error) if error.transient && options.retry.again(attempt) => options.retry.wait(attempt).await,
                Err(error) => {
                    return Err(call.error(ErrorKind::Connection { reason: error.reason, attempts: attempt }));
                }
            }
        }
    }

    /// Whether `bucket` exists (and these credentials may see it).
    pub async fn bucket_exists(&self, bucket: &str) -> Result<bool, S3Error> {
        let call = Call::new(Operation::HeadBucket, bucket, None, rusty_s3::Method::Head);
        match self.execute(&call).await {
            Ok(_) => Ok(true),
            Err(S3Error { kind: ErrorKind::NoSuchBucket, .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Creates `bucket` in the endpoint's region; one these credentials own already is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let mut call = Call::new(Operation::CreateBucket, bucket, None, rusty_s3::Method::Put);
        let region = self.inner.endpoint.region();
        if region != "us-east-1" {
            call.body = Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            ));
        }
        match self.execute(&call).await {
            Ok(_) => Ok(()),
            Err(S3Error { kind: ErrorKind::Rejected { code, .. }, .. }) if code == "BucketAlreadyOwnedByYou" => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Stores `data` as `key` in a single PUT, with `metadata`.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        data: Bytes,
        metadata: &ObjectMetadata,
    ) -> Result<Uploaded, S3Error> {
        let mut call = Call::new(Operation::PutObject, bucket, Some(key), rusty_s3::Method::Put);
        check_key(&call, key)?;
        call.headers = metadata.headers().map_err(|reason| call.error(ErrorKind::Invalid(reason)))?;
        let size = data.len() as u64;
        call.body = data;
        let response = self.execute(&call).await?;
        Ok(Uploaded { etag: etag_of(response.headers()), size, parts: 0 })
    }

    /// Size, entity tag and metadata of `key`, or `None` when it does not exist.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, S3Error> {
        let call = Call::new(Operation::HeadObject, bucket, Some(key), rusty_s3::Method::Head);
        check_key(&call, key)?;
        match self.execute(&call).await {
            Ok(response) => ObjectInfo::from_headers(response.headers())
                .map(Some)
                .map_err(|reason| call.error(ErrorKind::Metadata(reason))),
            Err(S3Error { kind: ErrorKind::NoSuchKey, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Deletes `key` (a missing key is no error, as in S3).
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let call = Call::new(Operation::DeleteObject, bucket, Some(key), rusty_s3::Method::Delete);
        check_key(&call, key)?;
        self.execute(&call).await.map(drop)
    }

    /// Deletes `keys`, up to 1000 per request; fails listing the keys the server did not
    /// delete.
    pub async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), S3Error> {
        use base64::Engine as _;
        use md5::Digest as _;
        let mut failures = Vec::new();
        for batch in keys.chunks(DELETE_BATCH) {
            let mut call = Call::new(Operation::DeleteObjects, bucket, None, rusty_s3::Method::Post);
            call.query.insert("delete", String::new());
            let body = xml::delete_body(batch);
            call.headers.insert(
                "content-md5".into(),
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes())),
            );
            call.headers.insert("content-type".into(), "application/xml".into());
            call.body = Bytes::from(body);
            let answer = self.execute_read(&call).await?;
            failures.extend(xml::parse_delete_result(&answer).map_err(|e| call.error(e.into()))?);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(S3Error {
                operation: Operation::DeleteObjects,
                bucket: bucket.to_owned(),
                key: None,
                kind: ErrorKind::NotDeleted(failures),
            })
        }
    }

    /// Deletes every object under `prefix` (which must not be empty), a page of up to 1000 at a
    /// time; returns how many were deleted.
    pub async fn delete_prefix(&self, bucket: &str, prefix: &str) -> Result<u64, S3Error> {
        if prefix.is_empty() {
            let call = Call::new(Operation::DeleteObjects, bucket, None, rusty_s3::Method::Post);
            return Err(call.error(ErrorKind::Invalid("refusing to delete a whole bucket's objects".into())));
        }
        let mut deleted = 0;
        loop {
            let page = self.list_page(bucket, prefix, None, 1000).await?;
            if page.objects.is_empty() {
                return Ok(deleted);
            }
            let keys: Vec<String> = page.objects.into_iter().map(|o| o.key).collect();
            self.delete_objects(bucket, &keys).await?;
            deleted += keys.len() as u64;
        }
    }

    /// One page of the keys under `prefix`: at most `max_keys` (S3 caps it at 1000), after
    /// `continuation` (the previous page's token).
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        let mut call = Call::new(Operation::ListObjects, bucket, None, rusty_s3::Method::Get);
        call.query.insert("list-type", "2".into());
        call.query.insert("encoding-type", "url".into());
        call.query.insert("max-keys", max_keys.clamp(1, 1000).to_string());
        if !prefix.is_empty() {
            call.query.insert("prefix", prefix.to_owned());
        }
        if let Some(token) = continuation {
            call.query.insert("continuation-token", token.to_owned());
        }
        let body = self.execute_read(&call).await?;
        xml::parse_list_objects(&body).map_err(|e| call.error(e.into()))
    }

    /// Every object under `prefix`, page after page.
    pub async fn list_all(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>, S3Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(bucket, prefix, token.as_deref(), 1000).await?;
            objects.extend(page.objects);
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// The multipart uploads in progress under `prefix`.
    pub async fn list_multipart_uploads(&self, bucket: &str, prefix: &str) -> Result<Vec<PendingUpload>, S3Error> {
        let mut uploads = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut call = Call::new(Operation::ListMultipartUploads, bucket, None, rusty_s3::Method::Get);
            call.query.insert("uploads", String::new());
            call.query.insert("encoding-type", "url".into());
            if !prefix.is_empty() {
                call.query.insert("prefix", prefix.to_owned());
            }
            if let Some((key, upload_id)) = marker.take() {
                call.query.insert("key-marker", key);
                call.query.insert("upload-id-marker", upload_id);
            }
            let body = self.execute_read(&call).await?;
            let page = xml::parse_list_uploads(&body).map_err(|e| call.error(e.into()))?;
            uploads.extend(page.uploads);
            match page.next {
                Some(next) => marker = Some(next),
                None => return Ok(uploads),
            }
        }
    }

    /// Aborts multipart upload `upload_id` of `key`, discarding its parts.
    pub async fn abort_multipart_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(), S3Error> {
        let mut call = Call::new(Operation::AbortMultipartUpload, bucket, Some(key), rusty_s3::Method::Delete);
        call.query.insert("uploadId", upload_id.to_owned());
        self.execute(&call).await.map(drop)
    }
}

/// Refuses keys S3 cannot store (empty or longer than 1024 bytes) and keys a URL cannot name
/// (a `.` or `..` segment would be resolved away, addressing another key or the bucket).
pub(crate) fn check_key(call: &Call<'_>, key: &str) -> Result<(), S3Error> {
    if key.is_empty() || key.len() > 1024 {
        return Err(call.error(ErrorKind::Invalid("a key is 1 to 1024 bytes long".into())));
    }
    if key.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(call.error(ErrorKind::Invalid("a key must not have a '.' or '..' segment".into())));
    }
    Ok(())
}

/// Refuses bucket names that would not address one bucket: empty, or with characters outside
/// letters, digits, `.`, `-` and `_` (what AWS accepts, including its legacy names).
fn check_bucket(call: &Call<'_>) -> Result<(), S3Error> {
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"._-".contains(&b);
    if call.bucket.is_empty()
        || call.bucket.len() > 255
        || !call.bucket.bytes().all(valid)
        || call.bucket.contains("..")
    {
        return Err(call.error(ErrorKind::Invalid("not a bucket name".into())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_becomes_signed_headers_and_comes_back() {
        let metadata = ObjectMetadata {
            content_type: Some("application/json".into()),
            user: [("sha256".to_owned(), "ab12".to_owned()), ("mode".to_owned(), "0640".to_owned())].into(),
        };
        let headers = metadata.headers().unwrap();
        assert_eq!(
            headers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
            ["content-type: application/json", "x-amz-meta-mode: 0640", "x-amz-meta-sha256: ab12"]
        );
        let mut map = http::HeaderMap::new();
        for (k, v) in &headers {
            map.insert(http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        map.insert(http::header::ETAG, "\"e1\"".parse().unwrap());
        map.insert(http::header::CONTENT_LENGTH, "42".parse().unwrap());
        let info = ObjectInfo::from_headers(&map).unwrap();
        assert_eq!(info.metadata, metadata);
        assert_eq!((info.size, info.etag.as_str()), (42, "e1"));
    }

    #[test]
    fn metadata_values_come_back_as_sent_and_none_is_dropped() {
        let mut map = http::HeaderMap::new();
        map.insert("x-amz-meta-name", http::HeaderValue::from_bytes("café.png".as_bytes()).unwrap());
        map.insert("x-amz-meta-encoded", http::HeaderValue::from_static("=?UTF-8?B?Y2Fmw6k=?="));
        let metadata = ObjectMetadata::from_headers(&map).unwrap();
        assert_eq!(metadata.user["name"], "café.png");
        assert_eq!(metadata.user["encoded"], "=?UTF-8?B?Y2Fmw6k=?=");

        map.insert("x-amz-meta-latin1", http::HeaderValue::from_bytes(b"caf\xe9").unwrap());
        assert_eq!(ObjectMetadata::from_headers(&map).unwrap_err(), "the value of metadata \"latin1\" is not UTF-8");
        map.remove("x-amz-meta-latin1");
        map.insert("x-amz-missing-meta", http::HeaderValue::from_static("2"));
        assert_eq!(
            ObjectMetadata::from_headers(&map).unwrap_err(),
            "the server withheld 2 metadata entries it cannot send (x-amz-missing-meta)"
        );
    }

    #[test]
    fn metadata_that_http_or_s3_cannot_carry_is_refused() {
        let with = |name: &str, value: &str| ObjectMetadata {
            content_type: None,
            user: [(name.to_owned(), value.to_owned())].into(),
        };
        assert!(with("Upper", "v").headers().is_err());
        assert!(with("", "v").headers().is_err());
        assert!(with("k", "line\nbreak").headers().is_err());
        assert!(with("k", "tab\there").headers().is_err());
        assert!(with("k", "café").headers().is_ok());
        assert!(with("k", &"v".repeat(2048)).headers().is_err());
        assert!(with("k", "v").headers().is_ok());
    }

    #[test]
    fn options_are_checked() {
        let endpoint = Endpoint::new("http://127.0.0.1:1", "us-east-1", Addressing::Path, true).unwrap();
        let credentials = Credentials::new("a", "b", None);
        let small = ClientOptions { part_size: MIN_PART_SIZE - 1, ..ClientOptions::default() };
        assert!(S3Client::new(endpoint.clone(), &credentials, small).is_err());
        let none = ClientOptions { concurrency: 0, ..ClientOptions::default() };
        assert!(S3Client::new(endpoint.clone(), &credentials, none).is_err());
        assert!(S3Client::new(endpoint, &credentials, ClientOptions::default()).is_ok());
    }

    /// A scripted HTTP server on loopback: answers the n-th connection's request with the n-th
    /// answer (`None` closes the connection without one), then closes; returns the requests'
    /// heads (lowercase).
    async fn scripted(answers: Vec<Option<&'static str>>) -> (Endpoint, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut served = Vec::new();
            for answer in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = vec![0u8; 64 << 10];
                let head_end = loop {
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    let n = stream.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                };
                let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while request.len() < head_end + length {
                    let n = stream.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                }
                served.push(head);
                if let Some(answer) = answer {
                    stream.write_all(answer.as_bytes()).await.unwrap();
                }
                let _ = stream.shutdown().await;
            }
            served
        });
        (Endpoint::new(&url, "us-east-1", Addressing::Path, true).unwrap(), server)
    }

    fn quick() -> ClientOptions {
        ClientOptions {
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
            ..ClientOptions::default()
        }
    }

    const SLOW_DOWN: &str = "HTTP/1.1 503 Slow Down\r\nContent-Length: 61\r\nConnection: close\r\n\r\n\
        <Error><Code>SlowDown</Code><Message>Reduce</Message></Error>";
    const STORED: &str = "HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    const DENIED: &str = "HTTP/1.1 403 Forbidden\r\nContent-Length: 65\r\nConnection: close\r\n\r\n\
        <Error><Code>AccessDenied</Code><Message>Denied</Message></Error>";

    #[tokio::test]
    async fn throttling_and_resets_are_retried_until_success() {
        let (endpoint, server) = scripted(vec![Some(SLOW_DOWN), None, Some(STORED)]).await;
        let client = S3Client::new(endpoint, &Credentials::new("a", "b", None), quick()).unwrap();
        let stored = client.put_object("bkt", "k", Bytes::from_static(b"v"), &ObjectMetadata::default()).await.unwrap();
        assert_eq!(stored.etag, "e1");
        assert_eq!(server.await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_definite_refusal_is_not_retried() {
        let (endpoint, server) = scripted(vec![Some(DENIED)]).await;
        let client = S3Client::new(endpoint, &Credentials::new("a", "b", None), quick()).unwrap();
        let error = client.put_object("bkt", "k", Bytes::new(), &ObjectMetadata::default()).await.unwrap_err();
        assert!(matches!(error.kind, ErrorKind::AccessDenied), "{error}");
        assert_eq!(server.await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded() {
        let (endpoint, server) = scripted(vec![Some(SLOW_DOWN); 3]).await;
        let client = S3Client::new(endpoint, &Credentials::new("a", "b", None), quick()).unwrap();
        let error = client.list_page("bkt", "", None, 10).await.unwrap_err();
        assert!(matches!(error.kind, ErrorKind::Unavailable { status: 503, attempts: 3, .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "ListObjectsV2 of s3://bkt: the server kept failing, last with HTTP 503 SlowDown (3 attempts)"
        );
        assert_eq!(server.await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_multipart_upload_whose_completion_fails_late_is_completed_on_retry() {
        const CREATED: &str = "HTTP/1.1 200 OK\r\nContent-Length: 86\r\nConnection: close\r\n\r\n\
            <InitiateMultipartUploadResult><UploadId>u1</UploadId></InitiateMultipartUploadResult>";
        const LATE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 69\r\nConnection: close\r\n\r\n\
            <Error><Code>InternalError</Code><Message>try again</Message></Error>";
        const COMPLETED: &str = "HTTP/1.1 200 OK\r\nContent-Length: 81\r\nConnection: close\r\n\r\n\
            <CompleteMultipartUploadResult><ETag>\"m-2\"</ETag></CompleteMultipartUploadResult>";
        let answers = vec![Some(CREATED), Some(STORED), Some(STORED), Some(LATE), Some(COMPLETED)];
        let (endpoint, server) = scripted(answers).await;
        let options = ClientOptions { part_size: MIN_PART_SIZE, ..quick() };
        let client = S3Client::new(endpoint, &Credentials::new("a", "b", None), options).unwrap();
        let data = vec![7u8; MIN_PART_SIZE + 1];
        let stored = client.upload("bkt", "k", &data[..], &ObjectMetadata::default()).await.unwrap();
        assert_eq!(stored, Uploaded { etag: "m-2".into(), size: data.len() as u64, parts: 2 });
        assert_eq!(server.await.unwrap().len(), 5);
    }

    #[tokio::test]
    async fn a_download_cut_off_mid_body_resumes_where_it_stopped_on_the_same_version() {
        const CUT: &str = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nETag: \"v1\"\r\n\
            x-amz-meta-mode: 0640\r\nConnection: close\r\n\r\n0123";
        const REST: &str = "HTTP/1.1 206 Partial Content\r\nContent-Length: 6\r\nETag: \"v1\"\r\n\
            Connection: close\r\n\r\n456789";
        let (endpoint, server) = scripted(vec![Some(CUT), Some(REST)]).await;
        let client = S3Client::new(endpoint, &Credentials::new("a", "b", None), quick()).unwrap();
        let mut read = Vec::new();
        let info = client.download("bkt", "k", &mut read).await.unwrap();
        assert_eq!(read, b"0123456789");
        assert_eq!((info.size, info.etag.as_str()), (10, "v1"));
        assert_eq!(info.metadata.user["mode"], "0640");
        let heads = server.await.unwrap();
        assert!(!heads[0].contains("range:"), "{}", heads[0]);
        assert!(heads[1].contains("range: bytes=4-") && heads[1].contains("if-match: \"v1\""), "{}", heads[1]);
    }

    #[test]
    fn requests_are_presigned_for_the_addressing_style() {
        let credentials = Credentials::new("AKID", "secret", Some("token"));
        let path = Endpoint::new("https://s3.example.com", "eu-west-1", Addressing::Path, false).unwrap();
        let client = S3Client::new(path.clone(), &credentials, ClientOptions::default()).unwrap();
        let mut call = Call::new(Operation::PutObject, "bkt", Some("a b/c+d"), rusty_s3::Method::Put);
        call.headers.insert("x-amz-meta-k".into(), "v".into());
        call.body = Bytes::from_static(b"data");
        let request = client.request(&call).unwrap();
        let uri = request.uri().to_string();
        assert!(uri.starts_with("https://s3.example.com/bkt/a%20b/c%2Bd?"), "{uri}");
        assert!(uri.contains("X-Amz-SignedHeaders=host%3Bx-amz-meta-k"), "{uri}");
        assert!(uri.contains("X-Amz-Security-Token=token"), "{uri}");
        assert!(!uri.contains("secret"));
        for key in ["../other/k", "a/./b", "a/.."] {
            let bad = Call::new(Operation::GetObject, "bkt", Some(key), rusty_s3::Method::Get);
            assert!(check_key(&bad, key).is_err(), "{key}");
        }
        let bad = Call::new(Operation::ListObjects, "a/b", None, rusty_s3::Method::Get);
        assert!(client.request(&bad).is_err());
        assert_eq!(request.headers()["content-length"], "4");
        assert_eq!(request.headers()["x-amz-meta-k"], "v");
        let virtual_host =
            S3Client::new(path.with_addressing(Addressing::VirtualHost), &credentials, ClientOptions::default())
                .unwrap();
        let uri = virtual_host.request(&call).unwrap().uri().to_string();
        assert!(uri.starts_with("https://bkt.s3.example.com/a%20b/c%2Bd?"), "{uri}");
    }
}
