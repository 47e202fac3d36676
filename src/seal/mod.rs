//! Client-side encryption of backup objects ("sealing"): XChaCha20-Poly1305 in the STREAM
//! construction (RustCrypto `chacha20poly1305` + `aead-stream`), 64 KiB segments, a fresh data
//! key per backup wrapped by a key-encryption key from the user's key Secret, every object bound
//! to its backup and path (or its content name) through associated data. docs/encryption.md
//! describes the construction and the formats; this module is the only place that implements them.
//!
//! - [`keys`]: the key Secret's format, the [`KeyRing`], data keys and their wrapping;
//! - [`header`]: the sealed object's header (magic, version, lengths), parsed without panics;
//! - [`context`]: what an object is bound to ([`Context`]);
//! - [`naming`]: keyed content names for incremental backups ([`ContentName`]);
//! - [`stream`]: sealing and opening any `AsyncRead` into any `AsyncWrite` ([`Sealer`], [`open`]);
//! - [`offline`]: the `decrypt` subcommand's work on a file or a downloaded tree.

pub mod context;
pub mod header;
pub mod keys;
pub mod naming;
pub mod offline;
pub mod stream;

#[cfg(test)]
mod tests;

pub use context::Context;
pub use header::Header;
pub use keys::{KeyId, KeyRing, WrappedKey};
pub use naming::{ContentName, ContentNamer};
pub use stream::{Opened, Sealed, Sealer, StreamDigest, open, sealed_size};

/// Why sealing or opening an object, or loading the keys, failed. No message ever holds key
/// bytes or plaintext; key ids, lengths and segment numbers are not secret.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key Secret (or the key files given) holds no key.
    #[error("no encryption key: the key Secret holds no entry named like a key id")]
    NoKeys,
    /// An entry's name is not a valid key id.
    #[error(
        "{name:?} is not a valid key id: 1 to {} characters of A-Z a-z 0-9 . _ -, not starting with '.', and not \
\"{}\"",
        keys::MAX_KEY_ID_BYTES,
        keys::CURRENT_ENTRY
    )]
    InvalidKeyId {
        /// The offending name, cut to 64 characters.
        name: String,
    },
    /// A key's value is not 32 bytes, raw or in base64.
    #[error("key {key_id} is unusable: {reason}")]
    InvalidKey {
        /// The key's id.
        key_id: KeyId,
        /// What is wrong with it (never its bytes).
        reason: &'static str,
    },
    /// Two keys given have the same id.
    #[error("key {key_id} is given twice")]
    DuplicateKey {
        /// The repeated id.
        key_id: KeyId,
    },
    /// The `current` entry names a key that is not there, or is not a key id.
    #[error("the entry \"{}\" names key {key_id:?}, which the key Secret does not hold", keys::CURRENT_ENTRY)]
    UnknownCurrent {
        /// What `current` holds, cut to 64 characters.
        key_id: String,
    },
    /// The key files could not be read.
    #[error("{source} while reading the key {path}")]
    ReadKey {
        /// The file or folder.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object was sealed with a key the key ring does not hold.
    #[error("the object was sealed with key {key_id}, which is not among the keys given ({})", keys::list(known))]
    UnknownKey {
        /// The key id in the object's header.
        key_id: KeyId,
        /// The ids the key ring holds.
        known: Vec<KeyId>,
    },
    /// The key ring holds a key of that id, but it does not open the object's data key.
    #[error("key {key_id} does not open the object's data key: a different key has that id, or the header is damaged")]
    WrongKey {
        /// The key id in the object's header.
        key_id: KeyId,
    },
    /// The input does not start with the sealed object's magic.
    #[error("not a sealed object (no {:?} magic at its start)", String::from_utf8_lossy(header::MAGIC))]
    NotSealed,
    /// A sealed object of a format version this binary does not read.
    #[error("sealed object format version {version}; this binary reads version {}", header::VERSION)]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A sealed object of an algorithm this binary does not know.
    #[error("sealed object algorithm {algorithm}; this binary knows {}", header::ALGORITHM)]
    UnsupportedAlgorithm {
        /// The algorithm number found.
        algorithm: u8,
    },
    /// The header is inconsistent.
    #[error("the sealed object's header is damaged: {reason}")]
    BadHeader {
        /// Which field is wrong.
        reason: &'static str,
    },
    /// The object ends inside its header.
    #[error("the sealed object ends inside its header")]
    TruncatedHeader,
    /// A segment fails authentication.
    #[error(
        "segment {segment} fails authentication: the object was changed, cut inside a segment, reordered or \
extended, or it belongs to another backup, path or content name"
    )]
    Rejected {
        /// The segment's index, from 0.
        segment: u64,
    },
    /// The object ends at a segment boundary without its final segment.
    #[error("the object ends after {segments} full segments without its final segment: it was truncated")]
    Truncated {
        /// How many full segments it holds.
        segments: u64,
    },
    /// The input is longer than one STREAM can seal (2^32 segments).
    #[error("the input is too large to seal as one object")]
    TooLarge,
    /// Not a content name (64 lowercase hex digits).
    #[error("{name:?} is not a content name (64 lowercase hexadecimal digits)")]
    InvalidContentName {
        /// The offending name, cut to 64 characters.
        name: String,
    },
    /// The system's random number generator failed.
    #[error("no random bytes from the operating system: {0}")]
    Random(String),
    /// Reading the input failed.
    #[error("{0} while reading the input")]
    Read(#[source] std::io::Error),
    /// Writing the output failed.
    #[error("{0} while writing the output")]
    Write(#[source] std::io::Error),
}

/// At most 64 characters of `text`, for quoting user input in a message.
fn quoted(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Lowercase hexadecimal of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
