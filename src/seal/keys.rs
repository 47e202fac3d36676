//! The key Secret's format and the keys derived from it.
//!
//! The Secret (`encryption.keySecretRef`) holds one entry per key-encryption key: the entry's name
//! is the key id, its value the key's 32 random bytes, raw or in base64 (`openssl rand -base64 32`).
//! An optional entry `current` names the key that seals new backups; without it, the greatest key
//! id (byte order, so date-named ids like `2026-12` pick the newest) does. Older keys stay to open
//! older backups. Mounted as a volume, the Secret is a folder with one file per entry, which is
//! also what the offline `decrypt --key` reads.
//!
//! From each key, HKDF-SHA256 derives two independent keys: one wraps data keys, one names content
//! ([`super::naming`]). The raw key is forgotten once they are derived; every key is zeroized on drop.

use super::{SealError, quoted};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Bytes of every key: key-encryption keys, data keys and derived keys.
pub const KEY_BYTES: usize = 32;
/// The Secret entry that names the current key.
pub const CURRENT_ENTRY: &str = "current";
/// Longest key id, in bytes.
pub const MAX_KEY_ID_BYTES: usize = 63;
/// Bytes of the nonce that wraps a data key (XChaCha20-Poly1305's).
pub const WRAP_NONCE_BYTES: usize = 24;
/// Bytes of a Poly1305 tag.
pub const TAG_BYTES: usize = 16;

/// HKDF `info` of the key that wraps data keys.
const WRAP_INFO: &[u8] = b"apimanager-backup-operator seal v1 wrap";
/// HKDF `info` of the key that names content.
/// The naming key of content named by the MAC of its plaintext's SHA-256 ([`super::naming`]);
/// content named before by the MAC of its bytes used `… seal v1 content name`: separate keys
/// keep the two kinds of names apart, whatever bytes a file holds.
const NAMING_INFO: &[u8] = b"apimanager-backup-operator seal v2 content name of sha256";
/// Associated data of a wrapped data key, followed by the key id.
const WRAP_AD: &[u8] = b"apimanager-backup-operator seal v1 data key\0";
/// Largest key file read: a key in base64 with surrounding white space fits many times over.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// A key's name: 1 to 63 characters of `A-Z a-z 0-9 . _ -`, not starting with `.` (the
/// Kubernetes volume's own entries do) and not `current`. Not secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Checks `name` against the rules above.
    pub fn new(name: &str) -> Result<Self, SealError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let valid = (1..=MAX_KEY_ID_BYTES).contains(&name.len())
            && name.chars().all(allowed)
            && !name.starts_with('.')
            && name != CURRENT_ENTRY;
        if valid { Ok(Self(name.to_owned())) } else { Err(SealError::InvalidKeyId { name: quoted(name) }) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Key ids separated by commas, for messages.
pub(super) fn list(ids: &[KeyId]) -> String {
    ids.iter().map(KeyId::as_str).collect::<Vec<_>>().join(", ")
}

/// 32 secret bytes, zeroized on drop, never printed.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<[u8; KEY_BYTES]>);

impl SecretBytes {
    /// 32 bytes from the operating system's random number generator.
    pub fn random() -> Result<Self, SealError> {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(bytes.as_mut()).map_err(|e| SealError::Random(e.to_string()))?;
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}

/// HKDF-SHA256 of `key` with `info` (no salt: the key is uniformly random).
fn derive(key: &[u8; KEY_BYTES], info: &[u8]) -> SecretBytes {
    let mut out = Zeroizing::new([0u8; KEY_BYTES]);
    Hkdf::<Sha256>::new(None, key)
        .expand(info, out.as_mut())
        .expect("32 bytes is far below HKDF-SHA256's largest output (8160 bytes)");
    SecretBytes(out)
}

/// What one key-encryption key is used as.
#[derive(Clone, Debug)]
struct DerivedKeys {
    /// Wraps and unwraps data keys.
    wrap: SecretBytes,
    /// Names content.
    naming: SecretBytes,
}

/// The keys of a key Secret: which seals new backups, and all that may open old ones.
#[derive(Debug)]
pub struct KeyRing {
    keys: BTreeMap<KeyId, DerivedKeys>,
    current: KeyId,
    current_keys: DerivedKeys,
}

impl KeyRing {
    /// A key ring from the Secret's entries (name, value), as defined in the module's doc. Names
    /// starting with `.` are skipped (a mounted Secret's own bookkeeping).
    pub fn from_entries(entries: impl IntoIterator<Item = (String, Zeroizing<Vec<u8>>)>) -> Result<Self, SealError> {
        let mut keys = BTreeMap::new();
        let mut current = None;
        for (name, value) in entries {
            if name.starts_with('.') {
                continue;
            }
            if name == CURRENT_ENTRY {
                current = Some(String::from_utf8_lossy(&value).trim().to_owned());
                continue;
            }
            let key_id = KeyId::new(&name)?;
            let key = parse_key(&key_id, &value)?;
            let derived =
                DerivedKeys { wrap: derive(key.expose(), WRAP_INFO), naming: derive(key.expose(), NAMING_INFO) };
            if keys.insert(key_id.clone(), derived).is_some() {
                return Err(SealError::DuplicateKey { key_id });
            }
        }
        let (current, current_keys) = match current {
            Some(named) => KeyId::new(&named)
                .ok()
                .and_then(|id| keys.get(&id).map(|derived| (id, derived.clone())))
                .ok_or(SealError::UnknownCurrent { key_id: quoted(&named) })?,
            None => {
                keys.iter().next_back().map(|(id, derived)| (id.clone(), derived.clone())).ok_or(SealError::NoKeys)?
            }
        };
        Ok(Self { keys, current, current_keys })
    }

    /// A key ring from files: each path is a key file (its name is the key id) or a folder of
    /// them, such as the key Secret mounted as a volume.
    pub fn load(paths: &[PathBuf]) -> Result<Self, SealError> {
        let mut entries = Vec::new();
        for path in paths {
            let read_error = |source| SealError::ReadKey { path: path.clone(), source };
            if std::fs::metadata(path).map_err(read_error)?.is_dir() {
                for entry in std::fs::read_dir(path).map_err(read_error)? {
                    let entry = entry.map_err(read_error)?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let file = entry.path();
                    if name.starts_with('.') || file.is_dir() {
                        continue;
                    }
                    entries.push((name, read_key_file(&file)?));
                }
            } else {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                entries.push((name, read_key_file(path)?));
            }
        }
        Self::from_entries(entries)
    }

    /// The id of the key that seals new objects.
    pub fn current(&self) -> &KeyId {
        &self.current
    }

    /// Every key id, in order.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.keys().cloned().collect()
    }

    /// The current key's content-naming key.
    pub(super) fn naming_key(&self) -> &SecretBytes {
        &self.current_keys.naming
    }

    /// Wraps `data_key` with the current key under a fresh random nonce.
    pub fn wrap(&self, data_key: &SecretBytes) -> Result<WrappedKey, SealError> {
        let mut nonce = [0u8; WRAP_NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let cipher = XChaCha20Poly1305::new(self.current_keys.wrap.expose().into());
        let mut ciphertext = *data_key.expose();
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(nonce), &wrap_aad(&self.current), ciphertext.as_mut_slice().into())
            .map_err(|_| SealError::TooLarge)?;
        Ok(WrappedKey { key_id: self.current.clone(), nonce, ciphertext, tag: tag.into() })
    }

    /// The data key inside `wrapped`, opened with the key it names.
    pub fn unwrap(&self, wrapped: &WrappedKey) -> Result<SecretBytes, SealError> {
        let Some(keys) = self.keys.get(&wrapped.key_id) else {
            return Err(SealError::UnknownKey { key_id: wrapped.key_id.clone(), known: self.ids() });
        };
        let cipher = XChaCha20Poly1305::new(keys.wrap.expose().into());
        let mut data_key = Zeroizing::new(wrapped.ciphertext);
        cipher
            .decrypt_inout_detached(
                &XNonce::from(wrapped.nonce),
                &wrap_aad(&wrapped.key_id),
                data_key.as_mut_slice().into(),
                &Tag::from(wrapped.tag),
            )
            .map_err(|_| SealError::WrongKey { key_id: wrapped.key_id.clone() })?;
        Ok(SecretBytes(data_key))
    }
}

/// The associated data of a data key wrapped by `key_id`.
fn wrap_aad(key_id: &KeyId) -> Vec<u8> {
    [WRAP_AD, key_id.as_str().as_bytes()].concat()
}

/// A key's value: exactly 32 bytes, or their base64 (standard alphabet, padded) with optional
/// surrounding white space.
fn parse_key(key_id: &KeyId, value: &[u8]) -> Result<SecretBytes, SealError> {
    use base64::Engine;
    let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
    if value.len() == KEY_BYTES {
        bytes.copy_from_slice(value);
        return Ok(SecretBytes(bytes));
    }
    let invalid = SealError::InvalidKey {
        key_id: key_id.clone(),
        reason: "expected 32 random bytes, raw or in base64 (44 characters, as `openssl rand -base64 32` prints)",
    };
    let mut decoded = Zeroizing::new([0u8; 48]);
    let length = base64::engine::general_purpose::STANDARD
        .decode_slice(value.trim_ascii(), decoded.as_mut())
        .map_err(|_| invalid)?;
    if length != KEY_BYTES {
        return Err(SealError::InvalidKey { key_id: key_id.clone(), reason: "base64 of other than 32 bytes" });
    }
    bytes.copy_from_slice(&decoded[..KEY_BYTES]);
    Ok(SecretBytes(bytes))
}

/// The content of a key file, at most [`MAX_KEY_FILE_BYTES`] of it (a longer file is refused by
/// [`parse_key`], since it is no key).
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let read_error = |source| SealError::ReadKey { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut content = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    file.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut content).map_err(read_error)?;
    Ok(content)
}

/// A data key wrapped (XChaCha20-Poly1305) by a key-encryption key, with that key's id. Not secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// The key that wrapped it.
    pub key_id: KeyId,
    /// The wrapping nonce.
    pub nonce: [u8; WRAP_NONCE_BYTES],
    /// The encrypted data key.
    pub ciphertext: [u8; KEY_BYTES],
    /// Its Poly1305 tag.
    pub tag: [u8; TAG_BYTES],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &[u8])]) -> Vec<(String, Zeroizing<Vec<u8>>)> {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), Zeroizing::new(value.to_vec()))).collect()
    }

    const RAW: [u8; 32] = [7; 32];
    const BASE64: &[u8] = b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";

    #[test]
    fn raw_and_base64_values_are_the_same_key() {
        let raw = KeyRing::from_entries(entries(&[("k1", &RAW)])).expect("raw");
        let text = KeyRing::from_entries(entries(&[("k1", BASE64)])).expect("base64");
        let wrapped = raw.wrap(&SecretBytes(Zeroizing::new([1; 32]))).expect("wrap");
        assert_eq!(text.unwrap(&wrapped).expect("same key").expose(), &[1; 32]);
    }

    #[test]
    fn the_current_key_is_named_or_else_the_greatest_id() {
        let both = [("2026-01", &RAW[..]), ("2026-12", BASE64), (".data", b"ignored")];
        let ring = KeyRing::from_entries(entries(&both)).expect("ring");
        assert_eq!(ring.current().as_str(), "2026-12");
        assert_eq!(ring.ids(), vec![KeyId::new("2026-01").expect("id"), KeyId::new("2026-12").expect("id")]);
        let named = KeyRing::from_entries(entries(&[both[0], both[1], ("current", b"2026-01\n")])).expect("ring");
        assert_eq!(named.current().as_str(), "2026-01");
    }

    #[test]
    fn unusable_secrets_are_refused_naming_the_entry_never_the_value() {
        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Entries, &str); 6] = [
            (&[], "no encryption key: the key Secret holds no entry named like a key id"),
            (&[("current", b"k1")], "the entry \"current\" names key \"k1\", which the key Secret does not hold"),
            (&[("k1", b"c2hvcnQ=")], "key k1 is unusable: base64 of other than 32 bytes"),
            (
                &[("k1", b"not base64, and not 32 bytes long either")],
                "key k1 is unusable: expected 32 random bytes, raw or in base64 (44 characters, as `openssl rand \
-base64 32` prints)",
            ),
            (
                &[("k 1", &RAW)],
                "\"k 1\" is not a valid key id: 1 to 63 characters of A-Z a-z 0-9 . _ -, not starting with '.', and \
not \"current\"",
            ),
            (
                &[("k1", &RAW), ("current", b"k2")],
                "the entry \"current\" names key \"k2\", which the key Secret does not hold",
            ),
        ];
        for (pairs, expected) in cases {
            let error = KeyRing::from_entries(entries(pairs)).expect_err("refused");
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn a_data_key_wrapped_by_one_key_names_it_when_another_key_is_given() {
        let old = KeyRing::from_entries(entries(&[("2026-01", &RAW)])).expect("old");
        let other = KeyRing::from_entries(entries(&[("2026-12", &[9; 32])])).expect("other");
        let impostor = KeyRing::from_entries(entries(&[("2026-01", &[9; 32])])).expect("impostor");
        let wrapped = old.wrap(&SecretBytes::random().expect("random")).expect("wrap");
        assert_eq!(
            other.unwrap(&wrapped).expect_err("unknown").to_string(),
            "the object was sealed with key 2026-01, which is not among the keys given (2026-12)"
        );
        assert!(
            matches!(impostor.unwrap(&wrapped), Err(SealError::WrongKey { key_id }) if key_id.as_str() == "2026-01")
        );
    }

    #[test]
    fn a_secret_mounted_as_a_volume_loads_through_its_links_and_a_key_file_is_named_by_its_file() {
        let folder = std::env::temp_dir().join(format!("seal-keys-{}", std::process::id()));
        let snapshot = folder.join("..2026_12_06_05_00_00.000000001");
        std::fs::create_dir_all(&snapshot).expect("folder");
        std::fs::write(snapshot.join("2026-01"), BASE64).expect("key");
        std::fs::write(snapshot.join("2026-12"), [9; 32]).expect("key");
        std::fs::write(snapshot.join("current"), "2026-01").expect("current");
        std::os::unix::fs::symlink("..2026_12_06_05_00_00.000000001", folder.join("..data")).expect("link");
        for name in ["2026-01", "2026-12", "current"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), folder.join(name)).expect("link");
        }
        let ring = KeyRing::load(std::slice::from_ref(&folder)).expect("mounted Secret");
        let one_file = KeyRing::load(&[snapshot.join("2026-12")]).expect("key file");
        let missing = folder.join("absent");
        let error = KeyRing::load(std::slice::from_ref(&missing)).expect_err("missing");
        std::fs::remove_dir_all(&folder).expect("clean up");
        assert_eq!(ring.current().as_str(), "2026-01");
        assert_eq!(ring.ids().iter().map(KeyId::as_str).collect::<Vec<_>>(), ["2026-01", "2026-12"]);
        assert_eq!(one_file.ids().iter().map(KeyId::as_str).collect::<Vec<_>>(), ["2026-12"]);
        let wrapped = one_file.wrap(&SecretBytes::random().expect("random")).expect("wrap");
        assert!(ring.unwrap(&wrapped).is_ok());
        assert_eq!(
            error.to_string(),
            format!("No such file or directory (os error 2) while reading the key {}", missing.display())
        );
    }

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let ring = KeyRing::from_entries(entries(&[("k1", &RAW)])).expect("ring");
        let printed = format!("{ring:?}");
        assert!(printed.contains("SecretBytes(..)") && !printed.contains("7, 7"), "{printed}");
    }
}
