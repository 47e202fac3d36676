//! An S3 client for the step Pods: SigV4-signed requests (`rusty-s3`, sans-IO) over the same
//! hyper and rustls stack as the Kubernetes client; streaming uploads (single PUT or multipart,
//! bounded memory, aborted on failure or drop) and downloads; HEAD, ListObjectsV2 with
//! pagination, single and batch DELETE, bucket checks; retries with jittered exponential back-off
//! on throttling, 5xx, resets and timeouts, never on definite 4xx answers, which become typed
//! errors naming bucket and key. [`config`] reads 3scale's S3 Secret keys.

pub mod client;
pub mod config;
mod download;
pub mod error;
pub mod retry;
mod transport;
mod upload;
pub mod xml;

pub use client::{ClientOptions, MIN_PART_SIZE, ObjectInfo, ObjectMetadata, S3Client, Uploaded};
pub use config::{Addressing, ConfigError, Credentials, Endpoint, SecretSettings};
pub use error::{ErrorKind, Operation, S3Error};
pub use retry::RetryPolicy;
pub use xml::{ListPage, ListedObject, PendingUpload};
