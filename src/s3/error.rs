//! What can go wrong talking to S3, as types: each error names the operation, the bucket and
//! the key (never credentials, signatures or signed URLs), and says whether trying again may help.

use super::xml::{DeleteFailure, ErrorBody, XmlError};
use std::fmt;

/// An S3 operation, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// HeadBucket.
    HeadBucket,
    /// CreateBucket.
    CreateBucket,
    /// PutObject.
    PutObject,
    /// GetObject.
    GetObject,
    /// HeadObject.
    HeadObject,
    /// DeleteObject.
    DeleteObject,
    /// DeleteObjects.
    DeleteObjects,
    /// ListObjectsV2.
    ListObjects,
    /// CreateMultipartUpload.
    CreateMultipartUpload,
    /// UploadPart.
    UploadPart,
    /// CompleteMultipartUpload.
    CompleteMultipartUpload,
    /// AbortMultipartUpload.
    AbortMultipartUpload,
    /// ListMultipartUploads.
    ListMultipartUploads,
}

impl Operation {
    /// The operation's name in the S3 API.
    pub fn name(self) -> &'static str {
        match self {
            Self::HeadBucket => "HeadBucket",
            Self::CreateBucket => "CreateBucket",
            Self::PutObject => "PutObject",
            Self::GetObject => "GetObject",
            Self::HeadObject => "HeadObject",
            Self::DeleteObject => "DeleteObject",
            Self::DeleteObjects => "DeleteObjects",
            Self::ListObjects => "ListObjectsV2",
            Self::CreateMultipartUpload => "CreateMultipartUpload",
            Self::UploadPart => "UploadPart",
            Self::CompleteMultipartUpload => "CompleteMultipartUpload",
            Self::AbortMultipartUpload => "AbortMultipartUpload",
            Self::ListMultipartUploads => "ListMultipartUploads",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The bucket does not exist.
    #[error("the bucket does not exist (NoSuchBucket)")]
    NoSuchBucket,
    /// The object does not exist.
    #[error("the object does not exist (NoSuchKey)")]
    NoSuchKey,
    /// The multipart upload does not exist (completed or aborted meanwhile).
    #[error("the multipart upload does not exist (NoSuchUpload)")]
    NoSuchUpload,
    /// The credentials may not do this.
    #[error("access denied (AccessDenied): the credentials may not do this")]
    AccessDenied,
    /// The request's signature does not match: the secret access key is wrong (or the
    /// region or clock).
    #[error("the request signature does not match (SignatureDoesNotMatch): check the secret access key")]
    SignatureDoesNotMatch,
    /// The access key id is unknown to the server.
    #[error("the access key id is unknown (InvalidAccessKeyId)")]
    InvalidAccessKeyId,
    /// The object changed while it was read (a resumed download found another version).
    #[error("the object changed while it was read")]
    Changed,
    /// The server refused the request for another reason.
    #[error("refused with HTTP {status}{}: {message}", spaced(code))]
    Rejected {
        /// HTTP status.
        status: u16,
        /// S3 error code (empty when the answer had no body).
        code: String,
        /// The server's message, cut to 200 characters.
        message: String,
    },
    /// The server kept failing (5xx, throttling) until the attempts ran out.
    #[error("the server kept failing, last with HTTP {status}{} ({attempts} attempts)", spaced(code))]
    Unavailable {
        /// Last HTTP status.
        status: u16,
        /// Last S3 error code.
        code: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The connection kept failing (refused, reset, closed, timed out) until the attempts ran
    /// out.
    #[error("connection failed: {reason} ({attempts} attempts)")]
    Connection {
        /// The last failure.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Some keys of a batch delete were not deleted.
    #[error("{} keys were not deleted{}", .0.len(), first_failure(.0))]
    NotDeleted(Vec<DeleteFailure>),
    /// The server's answer could not be used.
    #[error(transparent)]
    Response(#[from] XmlError),
    /// Reading the data to upload failed.
    #[error("reading the data to upload failed: {0}")]
    Source(std::io::Error),
    /// Writing the downloaded data failed.
    #[error("writing the downloaded data failed: {0}")]
    Sink(std::io::Error),
    /// The object's metadata cannot be kept whole (see `ObjectMetadata::from_headers`).
    #[error("its metadata cannot be kept: {0}")]
    Metadata(String),
    /// The request cannot be made (a bad key, too many parts, …).
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// An S3 operation that failed, on which bucket and key, and why.
#[derive(Debug, thiserror::Error)]
#[error("{operation} of {}: {kind}", target(bucket, key.as_deref()))]
pub struct S3Error {
    /// The operation.
    pub operation: Operation,
    /// The bucket.
    pub bucket: String,
    /// The key, for operations on one object.
    pub key: Option<String>,
    /// Why.
    pub kind: ErrorKind,
}

/// ` <code>`, or nothing for an answer without one.
fn spaced(code: &str) -> String {
    if code.is_empty() { String::new() } else { format!(" {code}") }
}

fn first_failure(failures: &[DeleteFailure]) -> String {
    failures.first().map(|f| format!(", the first {:?} ({})", f.key, f.code)).unwrap_or_default()
}

fn target(bucket: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("s3://{bucket}/{key}"),
        None => format!("s3://{bucket}"),
    }
}

/// Whether an answer is worth another attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// A transient failure: throttling, a 5xx, a request timeout.
    Yes,
    /// A definite answer (4xx): the same request gets the same answer.
    No,
}

/// Classifies an error answer by status and S3 code: throttling (429, 503 `SlowDown`), other
/// 5xx and `RequestTimeout` are retried; other 4xx (`AccessDenied`, `NoSuchBucket`,
/// `SignatureDoesNotMatch`, …) are not.
pub fn classify(status: u16, code: &str) -> Retry {
    match (status, code) {
        (429 | 500..=599, _) => Retry::Yes,
        (_, "SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout" | "InternalError") => Retry::Yes,
        _ => Retry::No,
    }
}

/// The kind of a definite (non-retried) error answer. `body` is `None` for HEAD, whose answers
/// have none: a 404 then means a missing key, or a missing bucket for `HeadBucket`.
pub fn kind_of(operation: Operation, status: u16, body: Option<&ErrorBody>) -> ErrorKind {
    let code = body.map(|b| b.code.as_str()).unwrap_or_default();
    match (code, status) {
        ("NoSuchBucket", _) => ErrorKind::NoSuchBucket,
        ("NoSuchKey", _) => ErrorKind::NoSuchKey,
        ("NoSuchUpload", _) => ErrorKind::NoSuchUpload,
        ("AccessDenied", _) | ("", 403) => ErrorKind::AccessDenied,
        ("SignatureDoesNotMatch", _) => ErrorKind::SignatureDoesNotMatch,
        ("InvalidAccessKeyId", _) => ErrorKind::InvalidAccessKeyId,
        ("PreconditionFailed", _) | ("", 412) => ErrorKind::Changed,
        ("", 404) if operation == Operation::HeadBucket => ErrorKind::NoSuchBucket,
        ("", 404) => ErrorKind::NoSuchKey,
        _ => ErrorKind::Rejected {
            status,
            code: code.to_owned(),
            message: body.map(|b| b.message.chars().take(200).collect()).unwrap_or_default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str) -> ErrorBody {
        ErrorBody { code: code.into(), message: "m".into() }
    }

    #[test]
    fn throttling_5xx_and_timeouts_are_retried_4xx_are_not() {
        for (status, code) in [
            (503, "SlowDown"),
            (429, ""),
            (500, "InternalError"),
            (502, ""),
            (504, ""),
            (400, "RequestTimeout"),
            (200, "InternalError"),
        ] {
            assert_eq!(classify(status, code), Retry::Yes, "{status} {code}");
        }
        for (status, code) in [
            (403, "AccessDenied"),
            (404, "NoSuchBucket"),
            (403, "SignatureDoesNotMatch"),
            (403, "InvalidAccessKeyId"),
            (400, "InvalidArgument"),
            (400, "EntityTooSmall"),
            (409, "BucketAlreadyExists"),
            (412, ""),
        ] {
            assert_eq!(classify(status, code), Retry::No, "{status} {code}");
        }
    }

    #[test]
    fn definite_answers_map_to_kinds() {
        let op = Operation::PutObject;
        assert!(matches!(kind_of(op, 404, Some(&body("NoSuchBucket"))), ErrorKind::NoSuchBucket));
        assert!(matches!(kind_of(op, 404, Some(&body("NoSuchKey"))), ErrorKind::NoSuchKey));
        assert!(matches!(kind_of(op, 403, Some(&body("SignatureDoesNotMatch"))), ErrorKind::SignatureDoesNotMatch));
        assert!(matches!(kind_of(op, 403, Some(&body("InvalidAccessKeyId"))), ErrorKind::InvalidAccessKeyId));
        assert!(matches!(kind_of(op, 403, None), ErrorKind::AccessDenied));
        assert!(matches!(kind_of(Operation::HeadBucket, 404, None), ErrorKind::NoSuchBucket));
        assert!(matches!(kind_of(Operation::HeadObject, 404, None), ErrorKind::NoSuchKey));
        assert!(matches!(kind_of(Operation::GetObject, 412, None), ErrorKind::Changed));
        let long = ErrorBody { code: "InvalidArgument".into(), message: "x".repeat(500) };
        match kind_of(op, 400, Some(&long)) {
            ErrorKind::Rejected { status: 400, code, message } => {
                assert_eq!(code, "InvalidArgument");
                assert_eq!(message.len(), 200);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_name_operation_bucket_and_key() {
        let error = S3Error {
            operation: Operation::PutObject,
            bucket: "backups".into(),
            key: Some("ns/b-1/manifest.json".into()),
            kind: ErrorKind::SignatureDoesNotMatch,
        };
        assert_eq!(
            error.to_string(),
            "PutObject of s3://backups/ns/b-1/manifest.json: the request signature does not match \
             (SignatureDoesNotMatch): check the secret access key"
        );
        let error = S3Error {
            operation: Operation::ListObjects,
            bucket: "backups".into(),
            key: None,
            kind: ErrorKind::NoSuchBucket,
        };
        assert_eq!(error.to_string(), "ListObjectsV2 of s3://backups: the bucket does not exist (NoSuchBucket)");
    }
}
