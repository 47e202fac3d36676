//! Sealing and opening streams: sizes around segment boundaries, bounded memory, wrong keys,
//! swapped contexts, truncation, damage, reordering, appended data and key rotation.

use super::header::{Header, MAX_HEADER_BYTES};
use super::keys::TAG_BYTES;
use super::stream::SEGMENT_BYTES;
use super::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use zeroize::Zeroizing;

const SEGMENT: usize = SEGMENT_BYTES as usize;
const FULL: usize = SEGMENT + TAG_BYTES;
const UID: &str = "4b1d5c3e-0000-4000-8000-000000000001";
const PATH: &str = "secrets/system-app.json";

fn here() -> Context<'static> {
    Context::BackupObject { backup_uid: UID, path: PATH }
}

fn ring(pairs: &[(&str, u8)]) -> KeyRing {
    let entries = pairs.iter().map(|(id, byte)| ((*id).to_owned(), Zeroizing::new(vec![*byte; 32])));
    KeyRing::from_entries(entries).expect("ring")
}

/// Deterministic bytes that differ from segment to segment.
fn data(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

async fn seal(sealer: &Sealer, context: Context<'_>, plaintext: &[u8]) -> (Vec<u8>, Sealed) {
    let mut sealed = Vec::new();
    let digests = sealer.seal(context, &mut &plaintext[..], &mut sealed).await.expect("seals");
    (sealed, digests)
}

async fn open_bytes(ring: &KeyRing, context: Context<'_>, sealed: &[u8]) -> Result<(Vec<u8>, Opened), SealError> {
    let mut plaintext = Vec::new();
    let opened = open(ring, context, &mut &sealed[..], &mut plaintext).await?;
    Ok((plaintext, opened))
}

fn header_length(sealed: &[u8]) -> usize {
    Header::parse(sealed).expect("header").1
}

#[tokio::test]
async fn round_trips_at_and_around_segment_boundaries_with_the_documented_sizes() {
    let keys = ring(&[("k1", 1)]);
    let sealer = Sealer::new(&keys).expect("sealer");
    for size in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 17] {
        let plaintext = data(size);
        let (sealed, digests) = seal(&sealer, here(), &plaintext).await;
        let segments = size / SEGMENT + 1;
        assert_eq!(sealed.len(), header_length(&sealed) + size + segments * TAG_BYTES, "size {size}");
        assert!(sealed.len() as u64 <= sealed_size(size as u64), "size {size}: larger than sealed_size says");
        assert_eq!(digests.plaintext, StreamDigest { size: size as u64, sha256: sha256(&plaintext) });
        assert_eq!(digests.ciphertext, StreamDigest { size: sealed.len() as u64, sha256: sha256(&sealed) });
        let (opened, report) = open_bytes(&keys, here(), &sealed).await.expect("opens");
        assert!(opened == plaintext, "size {size}: the plaintext differs");
        assert_eq!((report.plaintext, report.ciphertext), (digests.plaintext, digests.ciphertext));
        assert_eq!(report.key_id.as_str(), "k1");
    }
}

#[tokio::test]
async fn an_exact_multiple_of_the_segment_size_ends_with_a_segment_holding_only_its_tag() {
    let keys = ring(&[("k1", 1)]);
    let (sealed, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), &data(2 * SEGMENT)).await;
    assert_eq!(sealed.len() - header_length(&sealed), 2 * FULL + TAG_BYTES);
    let (empty, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), b"").await;
    assert_eq!(empty.len() - header_length(&empty), TAG_BYTES);
    assert_eq!(open_bytes(&keys, here(), &empty).await.expect("opens").0, b"");
}

#[tokio::test]
async fn the_plaintext_appears_nowhere_in_the_sealed_bytes() {
    let secret = b"MYSQL_PASSWORD=correct-horse-battery-staple".repeat(100);
    let (sealed, _) = seal(&Sealer::new(&ring(&[("k1", 1)])).expect("sealer"), here(), &secret).await;
    assert!(!sealed.windows(16).any(|w| secret.windows(16).any(|s| s == w)));
}

/// Generates `remaining` bytes (a repeated 8 KiB block) and counts them.
struct Source {
    remaining: u64,
    produced: Arc<AtomicU64>,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        static BLOCK: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| data(8192));
        let count = (buf.remaining() as u64).min(self.remaining).min(BLOCK.len() as u64);
        buf.put_slice(&BLOCK[..count as usize]);
        self.produced.fetch_add(count, Ordering::SeqCst);
        self.remaining -= count;
        Poll::Ready(Ok(()))
    }
}

/// Hashes what it receives and records how far the source was ahead of it at most.
struct Sink {
    hasher: Sha256,
    received: u64,
    produced: Arc<AtomicU64>,
    most_ahead: u64,
}

impl AsyncWrite for Sink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.hasher.update(buf);
        self.received += buf.len() as u64;
        let ahead = self.produced.load(Ordering::SeqCst) - self.received;
        self.most_ahead = self.most_ahead.max(ahead);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_large_stream_passes_through_seal_and_open_holding_a_few_segments_at_most() {
    const SIZE: u64 = 8 * 1024 * 1024 + 12_345;
    let keys = ring(&[("k1", 1)]);
    let sealer = Sealer::new(&keys).expect("sealer");
    let produced = Arc::new(AtomicU64::new(0));
    let mut source = Source { remaining: SIZE, produced: produced.clone() };
    let mut sink = Sink { hasher: Sha256::new(), received: 0, produced, most_ahead: 0 };
    let (mut sealed_in, mut sealed_out) = tokio::io::duplex(FULL);
    let sealing = async {
        let digests = sealer.seal(here(), &mut source, &mut sealed_in).await;
        drop(sealed_in);
        digests
    };
    let (sealed, opened) = tokio::join!(sealing, open(&keys, here(), &mut sealed_out, &mut sink));
    let (sealed, opened) = (sealed.expect("seals"), opened.expect("opens"));
    assert_eq!(sealed.plaintext.size, SIZE);
    assert_eq!(opened.plaintext, sealed.plaintext);
    assert_eq!(hex(&sink.hasher.finalize()), sealed.plaintext.sha256);
    // The sealer's segment, the pipe and the opener's segment: nothing grows with the size.
    assert!(sink.most_ahead <= 3 * FULL as u64 + MAX_HEADER_BYTES as u64, "{} bytes ahead", sink.most_ahead);
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_named_by_its_id() {
    let (sealed, _) = seal(&Sealer::new(&ring(&[("2026-01", 1)])).expect("sealer"), here(), b"secret").await;
    let missing = open_bytes(&ring(&[("2026-12", 2)]), here(), &sealed).await.expect_err("no such key");
    assert_eq!(
        missing.to_string(),
        "the object was sealed with key 2026-01, which is not among the keys given (2026-12)"
    );
    let wrong = open_bytes(&ring(&[("2026-01", 2)]), here(), &sealed).await.expect_err("another key");
    assert_eq!(
        wrong.to_string(),
        "key 2026-01 does not open the object's data key: a different key has that id, or the header is damaged"
    );
}

#[tokio::test]
async fn an_object_opened_as_another_backup_path_or_content_fails_on_its_first_segment() {
    let keys = ring(&[("k1", 1)]);
    let (sealed, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), &data(3 * SEGMENT)).await;
    let name = ContentName::parse(&"0".repeat(64)).expect("name");
    let others = [
        Context::BackupObject { backup_uid: "4b1d5c3e-0000-4000-8000-000000000002", path: PATH },
        Context::BackupObject { backup_uid: UID, path: "secrets/zync.json" },
        Context::Content(&name),
    ];
    for other in others {
        let error = open_bytes(&keys, other, &sealed).await.expect_err("another context");
        assert!(matches!(error, SealError::Rejected { segment: 0 }), "{other:?}: {error}");
    }
    let (content, _) = seal(&Sealer::new(&keys).expect("sealer"), Context::Content(&name), b"file").await;
    assert_eq!(open_bytes(&keys, Context::Content(&name), &content).await.expect("opens").0, b"file");
    let other_name = ContentName::parse(&"1".repeat(64)).expect("name");
    assert!(matches!(
        open_bytes(&keys, Context::Content(&other_name), &content).await,
        Err(SealError::Rejected { segment: 0 })
    ));
}

#[tokio::test]
async fn truncation_at_every_segment_boundary_and_inside_segments_is_detected() {
    let keys = ring(&[("k1", 1)]);
    let (sealed, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), &data(4 * SEGMENT + 100)).await;
    let header = header_length(&sealed);
    for segments in 0..=4 {
        let cut = &sealed[..header + segments * FULL];
        let error = open_bytes(&keys, here(), cut).await.expect_err("truncated");
        assert!(matches!(error, SealError::Truncated { segments: s } if s == segments as u64), "{segments}: {error}");
    }
    assert_eq!(
        open_bytes(&keys, here(), &sealed[..header + 4 * FULL]).await.expect_err("cut").to_string(),
        "the object ends after 4 full segments without its final segment: it was truncated"
    );
    for (cut, segment) in
        [(header + 1, 0), (header + FULL + 5000, 1), (sealed.len() - 1, 4), (header + 4 * FULL + 15, 4)]
    {
        let error = open_bytes(&keys, here(), &sealed[..cut]).await.expect_err("cut inside a segment");
        assert!(matches!(error, SealError::Rejected { segment: s } if s == segment), "{cut}: {error}");
    }
    for cut in [0, 5, 8, 11, header - 1] {
        let error = open_bytes(&keys, here(), &sealed[..cut]).await.expect_err("cut inside the header");
        assert!(matches!(error, SealError::TruncatedHeader), "{cut}: {error}");
    }
}

#[tokio::test]
async fn a_flipped_bit_anywhere_fails_with_what_it_hit() {
    let keys = ring(&[("k1", 1)]);
    let (sealed, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), &data(2 * SEGMENT + 10)).await;
    let header = header_length(&sealed);
    let flipped = |offset: usize| {
        let mut bytes = sealed.clone();
        bytes[offset] ^= 0x01;
        bytes
    };
    // Key id "k1" at 17..19, wrap nonce 19..43, wrapped key 43..75, its tag 75..91, STREAM nonce.
    type Expected = fn(&SealError) -> bool;
    let cases: [(usize, Expected); 11] = [
        (0, |e| matches!(e, SealError::NotSealed)),
        (11, |e| matches!(e, SealError::UnsupportedAlgorithm { algorithm: 0 })),
        (14, |e| matches!(e, SealError::Rejected { segment: 0 })),
        (17, |e| matches!(e, SealError::UnknownKey { key_id, .. } if key_id.as_str() == "j1")),
        (20, |e| matches!(e, SealError::WrongKey { .. })),
        (50, |e| matches!(e, SealError::WrongKey { .. })),
        (80, |e| matches!(e, SealError::WrongKey { .. })),
        (header - 1, |e| matches!(e, SealError::Rejected { segment: 0 })),
        (header + 7, |e| matches!(e, SealError::Rejected { segment: 0 })),
        (header + FULL + SEGMENT, |e| matches!(e, SealError::Rejected { segment: 1 })),
        (sealed.len() - 1, |e| matches!(e, SealError::Rejected { segment: 2 })),
    ];
    for (offset, expected) in cases {
        let error = open_bytes(&keys, here(), &flipped(offset)).await.expect_err("flipped");
        assert!(expected(&error), "offset {offset}: {error}");
    }
}

#[tokio::test]
async fn reordered_segments_and_appended_data_fail() {
    let keys = ring(&[("k1", 1)]);
    let (sealed, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), &data(3 * SEGMENT + 10)).await;
    let header = header_length(&sealed);
    let mut reordered = sealed.clone();
    reordered[header + FULL..header + 3 * FULL].rotate_left(FULL);
    assert!(matches!(open_bytes(&keys, here(), &reordered).await, Err(SealError::Rejected { segment: 1 })));
    for appended in [&b"x"[..], &vec![0; SEGMENT], &sealed[sealed.len() - 26..]] {
        let extended = [&sealed[..], appended].concat();
        let error = open_bytes(&keys, here(), &extended).await.expect_err("extended");
        assert!(matches!(error, SealError::Rejected { segment: 3 }), "{} more bytes: {error}", appended.len());
    }
    let (other, _) = seal(&Sealer::new(&keys).expect("sealer"), here(), &data(3 * SEGMENT + 10)).await;
    let mut spliced = sealed.clone();
    spliced[header + FULL..header + 2 * FULL].copy_from_slice(&other[header + FULL..header + 2 * FULL]);
    assert!(matches!(open_bytes(&keys, here(), &spliced).await, Err(SealError::Rejected { segment: 1 })));
}

#[tokio::test]
async fn after_a_rotation_old_objects_open_and_new_ones_use_the_new_key() {
    let before = ring(&[("2026-01", 1)]);
    let (old, _) = seal(&Sealer::new(&before).expect("sealer"), here(), b"made before the rotation").await;
    let after = ring(&[("2026-01", 1), ("2026-12", 2)]);
    let (plaintext, opened) = open_bytes(&after, here(), &old).await.expect("the old key still opens it");
    assert_eq!((plaintext.as_slice(), opened.key_id.as_str()), (&b"made before the rotation"[..], "2026-01"));
    let sealer = Sealer::new(&after).expect("sealer");
    assert_eq!(sealer.wrapped_key().key_id.as_str(), "2026-12");
    let (new, _) = seal(&sealer, here(), b"made after").await;
    assert_eq!(open_bytes(&after, here(), &new).await.expect("opens").1.key_id.as_str(), "2026-12");
    assert_eq!(
        open_bytes(&before, here(), &new).await.expect_err("old ring").to_string(),
        "the object was sealed with key 2026-12, which is not among the keys given (2026-01)"
    );
}

#[tokio::test]
async fn a_resumed_sealer_keeps_the_backups_data_key() {
    let keys = ring(&[("k1", 1)]);
    let first = Sealer::new(&keys).expect("sealer");
    let resumed = Sealer::resume(&keys, first.wrapped_key().clone()).expect("resumes");
    let (sealed, _) = seal(&resumed, here(), b"from another step").await;
    assert_eq!(Header::parse(&sealed).expect("header").0.wrapped_key, *first.wrapped_key());
    assert_eq!(open_bytes(&keys, here(), &sealed).await.expect("opens").0, b"from another step");
    assert!(matches!(
        Sealer::resume(&ring(&[("k1", 2)]), first.wrapped_key().clone()),
        Err(SealError::WrongKey { .. })
    ));
}

#[test]
fn the_stream_cipher_seals_and_opens_as_aead_streams_own_instantiation() {
    use aead_stream::{EncryptorBE32, StreamBE32};
    use chacha20poly1305::XChaCha20Poly1305;
    use chacha20poly1305::aead::{KeyInit, Payload};
    type Nonce = aead_stream::Nonce<XChaCha20Poly1305, StreamBE32<XChaCha20Poly1305>>;
    let (key, nonce, aad) = ([7u8; 32], [9u8; 19], b"header and context".as_slice());
    let segments = [data(SEGMENT), data(SEGMENT), data(1000)];
    let mut reference = EncryptorBE32::from_aead(XChaCha20Poly1305::new(&key.into()), &Nonce::from(nonce));
    let mut ours = xchacha_stream::Encryptor::new(&key, &nonce);
    let mut sealed = Vec::new();
    for segment in &segments[..2] {
        let expected = reference.encrypt_next(Payload { msg: segment, aad }).expect("reference seal");
        let mut buffer = segment.clone();
        ours.next(aad, &mut buffer).expect("seal");
        assert_eq!(buffer, expected);
        sealed.push(buffer);
    }
    let expected = reference.encrypt_last(Payload { msg: &segments[2], aad }).expect("reference seal");
    let mut buffer = segments[2].clone();
    ours.last(aad, &mut buffer).expect("seal");
    assert_eq!(buffer, expected);
    sealed.push(buffer);

    let mut opener = xchacha_stream::Decryptor::new(&key, &nonce);
    let mut opened = sealed.clone();
    let (last, rest) = opened.split_last_mut().expect("segments");
    for (segment, plain) in rest.iter_mut().zip(&segments) {
        opener.next(aad, segment).expect("open");
        assert_eq!(segment, plain);
    }
    opener.last(aad, last).expect("open");
    assert_eq!(last, &segments[2]);
    let mut wrong = xchacha_stream::Decryptor::new(&key, &nonce);
    let mut first = sealed[0].clone();
    assert_eq!(wrong.next(b"another context", &mut first), Err(xchacha_stream::Rejected));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime")
}

proptest! {
    #[test]
    fn any_changed_byte_of_a_sealed_object_fails_to_open(offset in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let runtime = runtime();
        let keys = ring(&[("k1", 1)]);
        let sealer = Sealer::new(&keys).expect("sealer");
        let (mut sealed, _) = runtime.block_on(seal(&sealer, here(), &data(3000)));
        let offset = offset.index(sealed.len());
        sealed[offset] ^= xor;
        prop_assert!(runtime.block_on(open_bytes(&keys, here(), &sealed)).is_err());
    }

    #[test]
    fn arbitrary_bytes_fail_to_open_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..400), magic in any::<bool>()) {
        let input = if magic { [&header::MAGIC[..], &[1], &bytes].concat() } else { bytes };
        prop_assert!(runtime().block_on(open_bytes(&ring(&[("k1", 1)]), here(), &input)).is_err());
    }
}
