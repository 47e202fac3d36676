//! Streaming upload from any `AsyncRead` with bounded memory: what fits in one part goes in a
//! single PUT; anything larger becomes a multipart upload of `part_size` parts, a few in flight,
//! each part retried on its own (its bytes are held until it is stored). Any failure aborts the
//! multipart upload, and so does dropping the upload's future before it finished.

use super::client::{Call, MAX_PARTS, ObjectMetadata, S3Client, Uploaded, check_key};
use super::error::{ErrorKind, Operation, Retry, S3Error, classify};
use super::xml;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

/// A multipart upload that is aborted unless it completed: explicitly on a failure, from a
/// spawned task when dropped (a cancelled upload).
struct PendingUpload {
    client: S3Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl PendingUpload {
    async fn abort(mut self) {
        self.armed = false;
        if let Err(error) = self.client.abort_multipart_upload(&self.bucket, &self.key, &self.upload_id).await {
            tracing::warn!(%error, "could not abort a failed multipart upload");
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(bucket = %self.bucket, key = %self.key, "a cancelled multipart upload could not be aborted: no runtime");
            return;
        };
        let (client, bucket, key, upload_id) =
            (self.client.clone(), self.bucket.clone(), self.key.clone(), std::mem::take(&mut self.upload_id));
        runtime.spawn(async move {
            if let Err(error) = client.abort_multipart_upload(&bucket, &key, &upload_id).await {
                tracing::warn!(%error, "could not abort a cancelled multipart upload");
            }
        });
    }
}

/// Bytes of an object read before a buffer of a whole part is taken: a small object (most
/// FileStorage files) is held in a buffer of this size, not of a part's.
const SMALL_OBJECT_BYTES: usize = 1 << 20;

/// Reads up to `size` bytes (fewer only at the end of `reader`).
async fn read_part<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::with_capacity(size);
    reader.take(size as u64).read_to_end(&mut buffer).await?;
    Ok(buffer)
}

/// Reads the first part of an object, up to `size` bytes: a small object in a buffer of
/// [`SMALL_OBJECT_BYTES`], a larger one in a buffer of `size` (grown once, to exactly that: a
/// buffer left to double as it fills would reach twice `size`).
async fn read_first<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> std::io::Result<Vec<u8>> {
    let mut start = read_part(reader, size.min(SMALL_OBJECT_BYTES)).await?;
    if start.len() == SMALL_OBJECT_BYTES && size > SMALL_OBJECT_BYTES {
        start.reserve_exact(size - start.len());
        reader.take((size - start.len()) as u64).read_to_end(&mut start).await?;
    }
    Ok(start)
}

impl S3Client {
    /// The most bytes an upload of an object of `size` bytes holds at once (see
    /// [`S3Client::upload`]): a small object's buffer, one part's for an object of one part,
    /// `part_size × concurrency` for a multipart upload.
    pub fn upload_holds(&self, size: u64) -> u64 {
        let options = self.options();
        let part = options.part_size as u64;
        match size {
            size if size < SMALL_OBJECT_BYTES as u64 => SMALL_OBJECT_BYTES as u64,
            size if size <= part => part,
            _ => part * options.concurrency as u64,
        }
    }

    /// Stores everything `reader` yields as `key`, with `metadata`, holding at most
    /// `part_size × concurrency` bytes ([`S3Client::upload_holds`]; see [`ClientOptions`](super::ClientOptions)).
    /// On any failure, and when this future is dropped unfinished, the multipart upload is
    /// aborted so no parts are left behind.
    pub async fn upload<R: AsyncRead + Unpin + Send>(
        &self,
        bucket: &str,
        key: &str,
        mut reader: R,
        metadata: &ObjectMetadata,
    ) -> Result<Uploaded, S3Error> {
        let part_size = self.options().part_size;
        let error = |operation, kind| S3Error { operation, bucket: bucket.to_owned(), key: Some(key.to_owned()), kind };
        let first =
            read_first(&mut reader, part_size).await.map_err(|e| error(Operation::PutObject, ErrorKind::Source(e)))?;
        if first.len() < part_size {
            return self.put_object(bucket, key, Bytes::from(first), metadata).await;
        }
        let upload_id = self.create_multipart_upload(bucket, key, metadata).await?;
        let pending = PendingUpload {
            client: self.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            armed: true,
        };
        match self.upload_parts(&pending, first, &mut reader).await {
            Ok((parts, size)) => match self.complete_multipart_upload(&pending, &parts).await {
                Ok(etag) => {
                    let mut pending = pending;
                    pending.armed = false;
                    Ok(Uploaded { etag, size, parts: u32::try_from(parts.len()).unwrap_or(MAX_PARTS) })
                }
                Err(failure) => {
                    pending.abort().await;
                    Err(failure)
                }
            },
            Err(failure) => {
                pending.abort().await;
                Err(failure)
            }
        }
    }

    async fn create_multipart_upload(
        &self,
        bucket: &str,
        key: &str,
        metadata: &ObjectMetadata,
    ) -> Result<String, S3Error> {
        let mut call = Call::new(Operation::CreateMultipartUpload, bucket, Some(key), rusty_s3::Method::Post);
        check_key(&call, key)?;
        call.query.insert("uploads", String::new());
        call.headers = metadata.headers().map_err(|reason| call.error(ErrorKind::Invalid(reason)))?;
        let body = self.execute_read(&call).await?;
        xml::parse_initiate(&body).map_err(|e| call.error(e.into()))
    }

    /// Uploads `first` and the rest of `reader` as parts, `concurrency` at a time; returns the
    /// parts (number, entity tag) in order and the bytes uploaded.
    async fn upload_parts<R: AsyncRead + Unpin + Send>(
        &self,
        pending: &PendingUpload,
        first: Vec<u8>,
        reader: &mut R,
    ) -> Result<(Vec<(u32, String)>, u64), S3Error> {
        let options = *self.options();
        let error = |kind| S3Error {
            operation: Operation::UploadPart,
            bucket: pending.bucket.clone(),
            key: Some(pending.key.clone()),
            kind,
        };
        let mut in_flight: JoinSet<Result<(u32, String), S3Error>> = JoinSet::new();
        let mut parts = Vec::new();
        let mut size = 0u64;
        let mut number = 0u32;
        let mut next = first;
        let joined = |joined: Result<Result<(u32, String), S3Error>, tokio::task::JoinError>| match joined {
            Ok(part) => part,
            Err(join) => Err(error(ErrorKind::Invalid(format!("a part upload task failed: {join}")))),
        };
        loop {
            number += 1;
            if number > MAX_PARTS {
                return Err(error(ErrorKind::Invalid(format!(
                    "the data exceeds {MAX_PARTS} parts of {} bytes",
                    options.part_size
                ))));
            }
            size += next.len() as u64;
            let (client, bucket, key, upload_id) =
                (self.clone(), pending.bucket.clone(), pending.key.clone(), pending.upload_id.clone());
            let data = Bytes::from(next);
            in_flight.spawn(async move { client.upload_part(&bucket, &key, &upload_id, number, data).await });
            // The next part is read once a slot is free, while the others are sent.
            while in_flight.len() >= options.concurrency {
                let Some(part) = in_flight.join_next().await else { break };
                parts.push(joined(part)?);
            }
            next = read_part(reader, options.part_size).await.map_err(|e| error(ErrorKind::Source(e)))?;
            if next.is_empty() {
                break;
            }
        }
        while let Some(part) = in_flight.join_next().await {
            parts.push(joined(part)?);
        }
        parts.sort_by_key(|(number, _)| *number);
        Ok((parts, size))
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        data: Bytes,
    ) -> Result<(u32, String), S3Error> {
        let mut call = Call::new(Operation::UploadPart, bucket, Some(key), rusty_s3::Method::Put);
        call.query.insert("partNumber", number.to_string());
        call.query.insert("uploadId", upload_id.to_owned());
        call.body = data;
        let response = self.execute(&call).await?;
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                call.error(ErrorKind::Response(xml::XmlError { what: "UploadPart", reason: "no ETag header".into() }))
            })?;
        Ok((number, etag))
    }

    async fn complete_multipart_upload(
        &self,
        pending: &PendingUpload,
        parts: &[(u32, String)],
    ) -> Result<String, S3Error> {
        let mut call =
            Call::new(Operation::CompleteMultipartUpload, &pending.bucket, Some(&pending.key), rusty_s3::Method::Post);
        call.query.insert("uploadId", pending.upload_id.clone());
        call.headers.insert("content-type".into(), "application/xml".into());
        call.body = Bytes::from(xml::complete_body(parts));
        // S3 may answer 200 and report a failure in the body (the completion failed late); a
        // transient one is retried like any other.
        let retry = self.options().retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let body = self.execute_read(&call).await?;
            let late = match xml::parse_complete(&body).map_err(|e| call.error(e.into()))? {
                Ok(etag) => return Ok(etag),
                Err(late) => late,
            };
            if classify(200, &late.code) == Retry::No {
                return Err(call.error(ErrorKind::Rejected { status: 200, code: late.code, message: late.message }));
            }
            if !retry.again(attempt) {
                return Err(call.error(ErrorKind::Unavailable { status: 200, code: late.code, attempts: attempt }));
            }
            retry.wait(attempt).await;
        }
    }
}
