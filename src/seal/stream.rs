//! Sealing and opening a stream: the header, then XChaCha20-Poly1305 STREAM-BE32 segments
//! (`aead-stream`), the last one flagged as last, each with the header and the [`Context`] as
//! associated data. Memory is two segment buffers whatever the size of the stream.
//!
//! Opening writes each segment's plaintext once that segment is authenticated; if it fails later
//! (a truncated or damaged object), what was written must be discarded.

use super::SealError;
use super::context::Context;
use super::header::{Header, PREFIX_BYTES, STREAM_NONCE_BYTES};
use super::keys::{KeyId, KeyRing, SecretBytes, TAG_BYTES, WrappedKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use xchacha_stream::{Decryptor, Encryptor};
use zeroize::Zeroizing;

/// Plaintext bytes per segment written.
pub const SEGMENT_BYTES: u32 = 64 * 1024;

/// The most bytes a plaintext of `plaintext` bytes takes sealed: the largest header, the
/// plaintext, and a tag per segment (the last one included, even when empty).
pub fn sealed_size(plaintext: u64) -> u64 {
    let segments = plaintext / u64::from(SEGMENT_BYTES) + 1;
    super::header::MAX_HEADER_BYTES as u64 + plaintext + segments * TAG_BYTES as u64
}

/// Size and SHA-256 of a byte stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDigest {
    /// Bytes.
    pub size: u64,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// The digests of one sealed object. `ciphertext` (of the bytes stored) may be recorded where
/// anyone can read it, so integrity is checked without the key; `plaintext` may not (a plain
/// hash confirms guesses of the content), so it belongs in the sealed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    /// What was read.
    pub plaintext: StreamDigest,
    /// What was written.
    pub ciphertext: StreamDigest,
}

/// The digests of one opened object and the key that opened it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The key-encryption key named in the header.
    pub key_id: KeyId,
    /// What was written.
    pub plaintext: StreamDigest,
    /// What was read.
    pub ciphertext: StreamDigest,
}

/// Seals the objects of one backup under one data key.
#[derive(Debug)]
pub struct Sealer {
    data_key: SecretBytes,
    wrapped_key: WrappedKey,
}

impl Sealer {
    /// A fresh random data key, wrapped by the ring's current key.
    pub fn new(ring: &KeyRing) -> Result<Self, SealError> {
        let data_key = SecretBytes::random()?;
        let wrapped_key = ring.wrap(&data_key)?;
        Ok(Self { data_key, wrapped_key })
    }

    /// The sealer of a backup begun elsewhere (another step), from its [`Sealer::wrapped_key`].
    pub fn resume(ring: &KeyRing, wrapped_key: WrappedKey) -> Result<Self, SealError> {
        Ok(Self { data_key: ring.unwrap(&wrapped_key)?, wrapped_key })
    }

    /// The data key, wrapped: in every object's header; not secret.
    pub fn wrapped_key(&self) -> &WrappedKey {
        &self.wrapped_key
    }

    /// Reads `input` to its end and writes it sealed, bound to `context`, to `output` (flushed, not
    /// shut down).
    pub async fn seal<R, W>(&self, context: Context<'_>, input: &mut R, output: &mut W) -> Result<Sealed, SealError>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        let mut stream_nonce = [0u8; STREAM_NONCE_BYTES];
        getrandom::fill(&mut stream_nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let header = Header { segment_bytes: SEGMENT_BYTES, wrapped_key: self.wrapped_key.clone(), stream_nonce };
        let header_bytes = header.encode();
        let aad = [header_bytes.as_slice(), &context.encode()].concat();
        let mut ciphertext = Hashing::default();
        ciphertext.write(output, &header_bytes).await?;
        let mut encryptor = Encryptor::new(self.data_key.expose(), &stream_nonce);
        let segment = SEGMENT_BYTES as usize;
        let mut plaintext = Hashing::default();
        let mut buffer = Zeroizing::new(Vec::with_capacity(segment + TAG_BYTES));
        loop {
            buffer.clear();
            fill(input, &mut buffer, segment).await.map_err(SealError::Read)?;
            plaintext.add(&buffer);
            if buffer.len() == segment {
                encryptor.next(&aad, &mut buffer).map_err(|_| SealError::TooLarge)?;
                ciphertext.write(output, &buffer).await?;
            } else {
                encryptor.last(&aad, &mut buffer).map_err(|_| SealError::TooLarge)?;
                ciphertext.write(output, &buffer).await?;
                break;
            }
        }
        output.flush().await.map_err(SealError::Write)?;
        Ok(Sealed { plaintext: plaintext.finish(), ciphertext: ciphertext.finish() })
    }
}

/// Reads the sealed object `input` to its end and writes its plaintext to `output` (flushed, not
/// shut down), if it was sealed for `context` with a key of `ring`.
pub async fn open<R, W>(
    ring: &KeyRing,
    context: Context<'_>,
    input: &mut R,
    output: &mut W,
) -> Result<Opened, SealError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut header_bytes = Vec::with_capacity(super::header::MAX_HEADER_BYTES);
    fill(input, &mut header_bytes, PREFIX_BYTES).await.map_err(SealError::Read)?;
    let length = Header::length(&header_bytes)?;
    fill(input, &mut header_bytes, length).await.map_err(SealError::Read)?;
    let (header, _) = Header::parse(&header_bytes)?;
    let data_key = ring.unwrap(&header.wrapped_key)?;
    let aad = [header_bytes.as_slice(), &context.encode()].concat();
    let mut ciphertext = Hashing::default();
    ciphertext.add(&header_bytes);
    let mut decryptor = Decryptor::new(data_key.expose(), &header.stream_nonce);
    let full = header.segment_bytes as usize + TAG_BYTES;
    let mut plaintext = Hashing::default();
    let mut buffer = Zeroizing::new(Vec::with_capacity(full));
    for segment in 0u64.. {
        buffer.clear();
        fill(input, &mut buffer, full).await.map_err(SealError::Read)?;
        ciphertext.add(&buffer);
        if buffer.len() == full {
            decryptor.next(&aad, &mut buffer).map_err(|_| SealError::Rejected { segment })?;
            plaintext.write(output, &buffer).await?;
        } else if buffer.is_empty() {
            return Err(SealError::Truncated { segments: segment });
        } else {
            decryptor.last(&aad, &mut buffer).map_err(|_| SealError::Rejected { segment })?;
            plaintext.write(output, &buffer).await?;
            break;
        }
    }
    output.flush().await.map_err(SealError::Write)?;
    let key_id = header.wrapped_key.key_id;
    Ok(Opened { key_id, plaintext: plaintext.finish(), ciphertext: ciphertext.finish() })
}

/// Reads from `input` until `buffer` holds `want` bytes or the input ends.
async fn fill<R>(input: &mut R, buffer: &mut Vec<u8>, want: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut filled = buffer.len();
    buffer.resize(want.max(filled), 0);
    while filled < want {
        match input.read(&mut buffer[filled..want]).await {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    buffer.truncate(filled);
    Ok(())
}

/// The size and SHA-256 of what passes through.
#[derive(Default)]
struct Hashing {
    hasher: Sha256,
    size: u64,
}

impl Hashing {
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    async fn write<W: AsyncWrite + Unpin + ?Sized>(&mut self, output: &mut W, bytes: &[u8]) -> Result<(), SealError> {
        output.write_all(bytes).await.map_err(SealError::Write)?;
        self.add(bytes);
        Ok(())
    }

    fn finish(self) -> StreamDigest {
        StreamDigest { size: self.size, sha256: super::hex(&self.hasher.finalize()) }
    }
}
