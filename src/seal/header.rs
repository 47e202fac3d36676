//! The header every sealed object starts with (integers big-endian):
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `AMBKSEAL` |
//! | 8 | 1 | format version, 1 |
//! | 9 | 2 | header length H in bytes, magic included (108 + n) |
//! | 11 | 1 | algorithm, 1: XChaCha20-Poly1305 STREAM-BE32, data key wrapped by XChaCha20-Poly1305 |
//! | 12 | 4 | segment size S: plaintext bytes per segment, 1 KiB to 1 MiB |
//! | 16 | 1 | key id length n, 1 to 63 |
//! | 17 | n | key id (ASCII) |
//! | 17+n | 24 | nonce of the wrapped data key |
//! | 41+n | 32 | wrapped data key |
//! | 73+n | 16 | its Poly1305 tag |
//! | 89+n | 19 | STREAM nonce prefix |
//!
//! The segments follow: each full segment is S + 16 bytes; the last one is shorter (0 to S − 1
//! plaintext bytes + 16), so an input of a multiple of S ends with a segment of just a tag.
//! [`Header::parse`] reads any bytes without panicking.

use super::SealError;
use super::keys::{KEY_BYTES, KeyId, MAX_KEY_ID_BYTES, TAG_BYTES, WRAP_NONCE_BYTES, WrappedKey};

/// The first bytes of every sealed object.
pub const MAGIC: &[u8; 8] = b"AMBKSEAL";
/// The format version written and read.
pub const VERSION: u8 = 1;
/// The only algorithm of version 1.
pub const ALGORITHM: u8 = 1;
/// Bytes of the STREAM nonce prefix (XChaCha20's 24-byte nonce less STREAM-BE32's 5).
pub const STREAM_NONCE_BYTES: usize = 19;
/// Bytes before the header length is known: magic, version, length.
pub const PREFIX_BYTES: usize = 11;
/// Bytes of a header besides its key id.
const FIXED_BYTES: usize = 17 + WRAP_NONCE_BYTES + KEY_BYTES + TAG_BYTES + STREAM_NONCE_BYTES;
/// Longest header.
pub const MAX_HEADER_BYTES: usize = FIXED_BYTES + MAX_KEY_ID_BYTES;
/// Smallest segment size accepted.
pub const MIN_SEGMENT_BYTES: u32 = 1024;
/// Largest segment size accepted: it bounds what opening an object buffers.
pub const MAX_SEGMENT_BYTES: u32 = 1024 * 1024;

/// What a sealed object's header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Plaintext bytes per full segment.
    pub segment_bytes: u32,
    /// The data key, wrapped.
    pub wrapped_key: WrappedKey,
    /// The STREAM nonce prefix.
    pub stream_nonce: [u8; STREAM_NONCE_BYTES],
}

impl Header {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let key_id = self.wrapped_key.key_id.as_str().as_bytes();
        let length = FIXED_BYTES + key_id.len();
        let mut bytes = Vec::with_capacity(length);
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&(length as u16).to_be_bytes());
        bytes.push(ALGORITHM);
        bytes.extend_from_slice(&self.segment_bytes.to_be_bytes());
        bytes.push(key_id.len() as u8);
        bytes.extend_from_slice(key_id);
        bytes.extend_from_slice(&self.wrapped_key.nonce);
        bytes.extend_from_slice(&self.wrapped_key.ciphertext);
        bytes.extend_from_slice(&self.wrapped_key.tag);
        bytes.extend_from_slice(&self.stream_nonce);
        bytes
    }

    /// The header's length from its first [`PREFIX_BYTES`] (or fewer, at the end of the input),
    /// after checking the magic and the version.
    pub fn length(prefix: &[u8]) -> Result<usize, SealError> {
        let mut reader = Reader(prefix);
        let magic = reader
            .take(MAGIC.len())
            .map_err(|_| if MAGIC.starts_with(prefix) { SealError::TruncatedHeader } else { SealError::NotSealed })?;
        if magic != MAGIC {
            return Err(SealError::NotSealed);
        }
        let version = reader.byte()?;
        if version != VERSION {
            return Err(SealError::UnsupportedVersion { version });
        }
        let length = usize::from(u16::from_be_bytes(reader.array()?));
        if !(FIXED_BYTES < length && length <= MAX_HEADER_BYTES) {
            return Err(SealError::BadHeader { reason: "header length out of range" });
        }
        Ok(length)
    }

    /// The header at the start of `bytes` and its length; what follows it is ignored.
    pub fn parse(bytes: &[u8]) -> Result<(Self, usize), SealError> {
        let length = Self::length(bytes)?;
        let mut reader = Reader(bytes.get(PREFIX_BYTES..length).ok_or(SealError::TruncatedHeader)?);
        let algorithm = reader.byte()?;
        if algorithm != ALGORITHM {
            return Err(SealError::UnsupportedAlgorithm { algorithm });
        }
        let segment_bytes = u32::from_be_bytes(reader.array()?);
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
            return Err(SealError::BadHeader { reason: "segment size out of range" });
        }
        let key_id_length = usize::from(reader.byte()?);
        if FIXED_BYTES + key_id_length != length {
            return Err(SealError::BadHeader { reason: "key id length does not match the header length" });
        }
        let key_id = std::str::from_utf8(reader.take(key_id_length)?)
            .ok()
            .and_then(|id| KeyId::new(id).ok())
            .ok_or(SealError::BadHeader { reason: "invalid key id" })?;
        let wrapped_key =
            WrappedKey { key_id, nonce: reader.array()?, ciphertext: reader.array()?, tag: reader.array()? };
        let header = Self { segment_bytes, wrapped_key, stream_nonce: reader.array()? };
        Ok((header, length))
    }
}

/// Takes fields off the front of a byte string; running out is a truncated header.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], SealError> {
        let (field, rest) = self.0.split_at_checked(count).ok_or(SealError::TruncatedHeader)?;
        self.0 = rest;
        Ok(field)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SealError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn byte(&mut self) -> Result<u8, SealError> {
        Ok(self.array::<1>()?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(key_id: &str) -> Header {
        Header {
            segment_bytes: 64 * 1024,
            wrapped_key: WrappedKey {
                key_id: KeyId::new(key_id).expect("id"),
                nonce: [1; WRAP_NONCE_BYTES],
                ciphertext: [2; KEY_BYTES],
                tag: [3; TAG_BYTES],
            },
            stream_nonce: [4; STREAM_NONCE_BYTES],
        }
    }

    #[test]
    fn the_layout_is_as_documented() {
        let bytes = header("2026-12").encode();
        assert_eq!(bytes.len(), 108 + 7);
        assert_eq!(&bytes[..17], b"AMBKSEAL\x01\x00\x73\x01\x00\x01\x00\x00\x07");
        assert_eq!(&bytes[17..24], b"2026-12");
        assert_eq!(&bytes[24..48], &[1; 24]);
        assert_eq!(&bytes[48..80], &[2; 32]);
        assert_eq!(&bytes[80..96], &[3; 16]);
        assert_eq!(&bytes[96..], &[4; 19]);
    }

    #[test]
    fn each_inconsistency_has_its_error() {
        let good = header("k1").encode();
        let with = |offset: usize, value: u8| {
            let mut bytes = good.clone();
            bytes[offset] = value;
            Header::parse(&bytes).map(|_| ()).expect_err("refused").to_string()
        };
        assert_eq!(with(0, b'X'), "not a sealed object (no \"AMBKSEAL\" magic at its start)");
        assert_eq!(with(8, 2), "sealed object format version 2; this binary reads version 1");
        assert_eq!(with(10, 0), "the sealed object's header is damaged: header length out of range");
        assert_eq!(with(11, 9), "sealed object algorithm 9; this binary knows 1");
        assert_eq!(with(12, 0x10), "the sealed object's header is damaged: segment size out of range");
        assert_eq!(
            with(16, 3),
            "the sealed object's header is damaged: key id length does not match the header length"
        );
        assert_eq!(with(17, b'.'), "the sealed object's header is damaged: invalid key id");
        assert_eq!(
            Header::parse(b"AMBK").map(|_| ()).expect_err("short").to_string(),
            "the sealed object ends inside its header"
        );
        assert!(matches!(Header::parse(b"{\"kind\":").map(|_| ()), Err(SealError::NotSealed)));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Header::parse(&bytes);
        }

        #[test]
        fn mutated_headers_parse_or_fail_without_panicking(
            position in 0usize..130, value in any::<u8>(), cut in 0usize..130, key_id in "[a-z0-9][a-z0-9._-]{0,20}",
        ) {
            let mut bytes = header(&key_id).encode();
            if let Some(byte) = bytes.get_mut(position) {
                *byte = value;
            }
            bytes.truncate(cut);
            let _ = Header::parse(&bytes);
        }

        #[test]
        fn encoded_headers_parse_back_whatever_follows(key_id in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}", tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assume!(key_id != "current");
            let original = header(&key_id);
            let mut bytes = original.encode();
            let length = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(Header::parse(&bytes).expect("parses"), (original, length));
            for cut in 0..length {
                prop_assert!(Header::parse(&bytes[..cut]).is_err());
            }
        }
    }
}
