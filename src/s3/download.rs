//! Streaming download into any `AsyncWrite`, chunk by chunk as the answer arrives (nothing held
//! but the chunk in hand). A connection lost mid-body resumes where it stopped, with a range
//! request pinned to the same version of the object (`If-Match` on its entity tag).

use super::client::{Call, ObjectInfo, S3Client, check_key};
use super::error::{ErrorKind, Operation, S3Error};
use super::transport::next_chunk;
use tokio::io::{AsyncWrite, AsyncWriteExt};

impl S3Client {
    /// Writes the bytes of `key` into `sink` and returns what the object is (size, entity tag,
    /// metadata). Fails with [`ErrorKind::NoSuchKey`] when it does not exist and with
    /// [`ErrorKind::Changed`] when it was replaced during a resumed read.
    pub async fn download<W: AsyncWrite + Unpin>(
        &self,
        bucket: &str,
        key: &str,
        mut sink: W,
    ) -> Result<ObjectInfo, S3Error> {
        let options = *self.options();
        let mut call = Call::new(Operation::GetObject, bucket, Some(key), rusty_s3::Method::Get);
        check_key(&call, key)?;
        let mut info: Option<ObjectInfo> = None;
        // The size the first answer announced (`Content-Length`), when it did.
        let mut expected: Option<u64> = None;
        let mut written = 0u64;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(info) = &info {
                call.headers.insert("range".into(), format!("bytes={written}-"));
                call.headers.insert("if-match".into(), format!("\"{}\"", info.etag));
            }
            let response = self.execute(&call).await?;
            if info.is_none() {
                expected =
                    response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
                info = Some(
                    ObjectInfo::from_headers(response.headers())
                        .map_err(|reason| call.error(ErrorKind::Metadata(reason)))?,
                );
            } else if response.status() != http::StatusCode::PARTIAL_CONTENT {
                return Err(call.error(ErrorKind::Invalid("the server ignored the range of a resumed read".into())));
            }
            let mut body = response.into_body();
            let failure = loop {
                match next_chunk(&mut body, options.idle_timeout).await {
                    Ok(Some(chunk)) => {
                        sink.write_all(&chunk).await.map_err(|e| call.error(ErrorKind::Sink(e)))?;
                        written += chunk.len() as u64;
                    }
                    Ok(None) => break None,
                    Err(error) => break Some(error),
                }
            };
            let Some(info) = &mut info else { continue };
            match failure {
                None if expected.is_none_or(|size| size == written) => {
                    sink.flush().await.map_err(|e| call.error(ErrorKind::Sink(e)))?;
                    info.size = written;
                    return Ok(info.clone());
                }
                None => {
                    return Err(call.error(ErrorKind::Invalid(format!(
                        "the answer ended after {written} of {} bytes",
                        info.size
                    ))));
                }
                Some(error) if error.transient && !info.etag.is_empty() && options.retry.again(attempt) => {
                    tracing::debug!(bucket, written, attempt, reason = %error.reason, "S3 download interrupted; resuming");
                    options.retry.wait(attempt).await;
                }
                Some(error) => {
                    return Err(call.error(ErrorKind::Connection { reason: error.reason, attempts: attempt }));
                }
            }
        }
    }
}
