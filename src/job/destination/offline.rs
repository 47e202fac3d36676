//! `verify` of a sealed backup in a local folder, with the binary alone: a sealed claim's root
//! (copied out of it, or the claim's volume itself), or a backup's folder downloaded from a bucket
//! with its prefix. Without keys every object's stored digest is checked; with them every object is
//! opened and compared, and `--extract` then writes the plaintext in the claim layout.

use super::DestinationError;
use super::place::Place;
use super::read::{Committed, Coverage};
use crate::job::JobError;
use crate::plural::counted;
use crate::seal::KeyRing;
use std::path::{Path, PathBuf};

/// What `verify` of a sealed folder found.
#[derive(Debug, PartialEq, Eq)]
pub enum SealedVerification {
    /// Everything checked matches: one line saying what was checked (and extracted).
    Verified(String),
    /// What differs, one line each.
    Failed(Vec<String>),
}

/// Verifies the sealed backup in `folder` opened by the keys at `keys` (none: its stored digests
/// only), then, when verified, extracts its plaintext into the new folder `extract`.
pub async fn verify_sealed(
    folder: &Path,
    keys: &[PathBuf],
    extract: Option<&Path>,
) -> Result<SealedVerification, JobError> {
    let ring = if keys.is_empty() { None } else { Some(KeyRing::load(keys).map_err(DestinationError::Keys)?) };
    let committed = Committed::at(Place::local(folder, ring)).await?;
    if extract.is_some() {
        committed.require_key("--key")?;
    }
    let mut line = match committed.verify().await {
        Ok(Coverage::Opened { files, links }) => format!(
            "verified: {} and {} match the sealed manifest (every object opened{})",
            counted(files as u64, "file", "files"),
            counted(links as u64, "link", "links"),
            if committed.index.key_id.is_some() { " with the key" } else { "; not encrypted" }
        ),
        Ok(Coverage::Stored { objects }) => format!(
            "verified without the key: {} match the digests manifest.json lists (give --key to open them)",
            counted(objects as u64, "stored object", "stored objects")
        ),
        Err(DestinationError::NotVerified { problems, .. }) => return Ok(SealedVerification::Failed(problems)),
        Err(error) => return Err(error.into()),
    };
    if let Some(into) = extract {
        std::fs::create_dir(into).map_err(|error| JobError::io("creating", into, error))?;
        let files = committed.extract(into).await?;
        line = format!("{line}\nextracted: {} into {}", counted(files as u64, "file", "files"), into.display());
    }
    Ok(SealedVerification::Verified(line))
}
