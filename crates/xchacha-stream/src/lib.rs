//! XChaCha20-Poly1305 in the STREAM-BE32 construction of RustCrypto's `aead-stream`, behind
//! types that are not generic.
//!
//! Generic code is compiled in the crate that names its type parameters. The operator's crate is
//! built for size (`opt-level = "s"`), where the cipher's AVX2 rounds were not inlined and ran
//! at a fifth of their speed; instantiated here, they are compiled with this crate's profile
//! (`opt-level = 3`, set in the operator's `Cargo.toml`). Nothing of the construction is
//! changed: these types only name `aead-stream`'s for one cipher and one buffer type.

use aead_stream::{DecryptorBE32, EncryptorBE32, StreamBE32};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::KeyInit;

/// Bytes of a key.
pub const KEY_BYTES: usize = 32;

/// Bytes of a stream's nonce prefix (the XChaCha20 nonce less STREAM-BE32's counter and flag).
pub const NONCE_PREFIX_BYTES: usize = 19;

/// A segment failed to seal (the stream is too long) or to open (not authentic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the AEAD rejected the segment")
    }
}

impl std::error::Error for Rejected {}

type Nonce = aead_stream::Nonce<XChaCha20Poly1305, StreamBE32<XChaCha20Poly1305>>;

/// Seals a stream's segments in order, each in place (it gains its tag).
pub struct Encryptor(EncryptorBE32<XChaCha20Poly1305>);

impl Encryptor {
    /// The encryptor of the stream under `key` with nonce prefix `nonce`.
    pub fn new(key: &[u8; KEY_BYTES], nonce: &[u8; NONCE_PREFIX_BYTES]) -> Self {
        let cipher = XChaCha20Poly1305::new(key.into());
        Self(EncryptorBE32::from_aead(cipher, &Nonce::from(*nonce)))
    }

    /// Seals `segment`, which is not the last, with associated data `aad`.
    pub fn next(&mut self, aad: &[u8], segment: &mut Vec<u8>) -> Result<(), Rejected> {
        self.0.encrypt_next_in_place(aad, segment).map_err(|_| Rejected)
    }

    /// Seals the last `segment` with associated data `aad`.
    pub fn last(self, aad: &[u8], segment: &mut Vec<u8>) -> Result<(), Rejected> {
        self.0.encrypt_last_in_place(aad, segment).map_err(|_| Rejected)
    }
}

/// Opens a stream's segments in order, each in place (it loses its tag).
pub struct Decryptor(DecryptorBE32<XChaCha20Poly1305>);

impl Decryptor {
    /// The decryptor of the stream under `key` with nonce prefix `nonce`.
    pub fn new(key: &[u8; KEY_BYTES], nonce: &[u8; NONCE_PREFIX_BYTES]) -> Self {
        let cipher = XChaCha20Poly1305::new(key.into());
        Self(DecryptorBE32::from_aead(cipher, &Nonce::from(*nonce)))
    }

    /// Opens `segment`, which is not the last, with associated data `aad`.
    pub fn next(&mut self, aad: &[u8], segment: &mut Vec<u8>) -> Result<(), Rejected> {
        self.0.decrypt_next_in_place(aad, segment).map_err(|_| Rejected)
    }

    /// Opens the last `segment` with associated data `aad`.
    pub fn last(self, aad: &[u8], segment: &mut Vec<u8>) -> Result<(), Rejected> {
        self.0.decrypt_last_in_place(aad, segment).map_err(|_| Rejected)
    }
}
