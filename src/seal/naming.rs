//! Content names for incremental backups: HMAC-SHA256 of a file's plaintext SHA-256 under a naming
//! key derived (HKDF) from the current key-encryption key. Equal files under the same key get the same
//! name, so a later backup references what an earlier one stored; without the key, a name reveals
//! nothing about the content (not even that two buckets, or two keys, hold equal files).

use super::keys::{KEY_BYTES, KeyRing};
use super::{SealError, quoted};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

/// A content name: 64 lowercase hexadecimal digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentName(String);

impl ContentName {
    /// Checks that `name` is 64 lowercase hexadecimal digits.
    pub fn parse(name: &str) -> Result<Self, SealError> {
        let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        if name.len() == 64 && name.bytes().all(hex) {
            Ok(Self(name.to_owned()))
        } else {
            Err(SealError::InvalidContentName { name: quoted(name) })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Domain label of a content name's MAC input (the plaintext's SHA-256 follows).
const NAME_LABEL: &[u8] = b"apimanager-backup-operator content sha256\0";

/// Names content from its plaintext's SHA-256, which the step takes anyway for the manifest: the
/// file is hashed once, and the MAC covers 32 bytes whatever its size.
#[derive(Clone)]
pub struct ContentNamer(Hmac<Sha256>);

impl ContentNamer {
    /// A namer with the current key's naming key.
    pub fn new(ring: &KeyRing) -> Self {
        // HMAC pads a key shorter than the hash's block with zeros (RFC 2104): this is HMAC under
        // the 32-byte naming key, without the fallible any-length constructor.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..KEY_BYTES].copy_from_slice(ring.naming_key().expose());
        Self(<Hmac<Sha256> as KeyInit>::new(&(*block).into()))
    }

    /// The name of the content whose plaintext SHA-256 is `sha256`: HMAC-SHA256, under the
    /// naming key, of [`NAME_LABEL`] and `sha256` (hash-then-MAC: without the key, a name
    /// confirms no guess of the content; SHA-256's collision resistance keeps distinct content
    /// apart). Backups made before this naming named content by the MAC of its bytes under
    /// another naming key (see the key ring's derivation): their names stay valid keys, never
    /// equal to a new name, and content they stored is stored once more under the new name, as
    /// after a key rotation.
    pub fn name(&self, sha256: &[u8; 32]) -> ContentName {
        let mut mac = self.0.clone();
        mac.update(NAME_LABEL);
        mac.update(sha256);
        ContentName(super::hex(&mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for ContentNamer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentNamer(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(pairs: &[(&str, u8)]) -> KeyRing {
        let entries = pairs.iter().map(|(id, byte)| ((*id).to_owned(), Zeroizing::new(vec![*byte; 32])));
        KeyRing::from_entries(entries).expect("ring")
    }

    fn name(ring: &KeyRing, content: &[u8]) -> ContentName {
        ContentNamer::new(ring).name(&<Sha256 as sha2::Digest>::digest(content).into())
    }

    #[test]
    fn equal_content_gets_one_name_per_key_and_no_plain_hash() {
        let one = ring(&[("k1", 1)]);
        let whole = name(&one, b"logo.svg content");
        assert_eq!(whole, name(&one, b"logo.svg content"));
        assert_ne!(whole, name(&one, b"logo.svg content!"));
        assert_ne!(whole, name(&ring(&[("k1", 2)]), b"logo.svg content"));
        let plain = super::super::hex(&<Sha256 as sha2::Digest>::digest(b"logo.svg content"));
        assert_ne!(whole.as_str(), plain);
        assert_eq!(ContentName::parse(whole.as_str()).expect("valid"), whole);
    }

    #[test]
    fn a_name_is_hmac_under_the_naming_key_of_the_label_and_the_plaintext_sha256() {
        let one = ring(&[("k1", 1)]);
        let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(one.naming_key().expose()).expect("any length");
        reference.update(b"apimanager-backup-operator content sha256\0");
        reference.update(&<Sha256 as sha2::Digest>::digest(b"content"));
        assert_eq!(name(&one, b"content").as_str(), super::super::hex(&reference.finalize().into_bytes()));
        // Names made before (the MAC of the bytes, under the v1 naming key) are another key's:
        // a file holding exactly the label and another file's digest does not take its name.
        let kek = [1u8; 32];
        let mut v1_key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &kek)
            .expand(b"apimanager-backup-operator seal v1 content name", &mut v1_key)
            .expect("32 bytes");
        let mut v2_key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, &kek)
            .expand(b"apimanager-backup-operator seal v2 content name of sha256", &mut v2_key)
            .expect("32 bytes");
        assert_eq!(&v2_key, one.naming_key().expose(), "the naming key is pinned: another would rename all content");
        assert_ne!(v1_key, v2_key, "a naming key of its own");
        let crafted =
            [b"apimanager-backup-operator content sha256\0".as_slice(), &<Sha256 as sha2::Digest>::digest(b"content")]
                .concat();
        let mut v1 = <Hmac<Sha256> as KeyInit>::new_from_slice(&v1_key).expect("any length");
        v1.update(&crafted);
        assert_ne!(name(&one, b"content").as_str(), super::super::hex(&v1.finalize().into_bytes()));
    }

    #[test]
    fn the_current_key_names_content() {
        let rotated = ring(&[("2026-01", 1), ("2026-12", 2)]);
        assert_eq!(name(&rotated, b"x"), name(&ring(&[("2026-12", 2)]), b"x"));
    }

    #[test]
    fn only_64_lowercase_hex_digits_are_a_name() {
        for bad in ["", "AB".repeat(32).as_str(), "ab".repeat(31).as_str(), &format!("{}g", "a".repeat(63)), "../etc"] {
            assert!(matches!(ContentName::parse(bad), Err(SealError::InvalidContentName { .. })), "{bad}");
        }
    }
}
