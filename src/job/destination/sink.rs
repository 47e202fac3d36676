//! Where `export-objects` puts each exported object: the backup folder on the claim, or the
//! bucket ([`super::write::BucketBackup`]).

use crate::job::JobError;
use crate::job::manifest::{Manifest, hash_file};
use std::path::Path;

/// Where an exported object goes.
pub trait ObjectSink {
    /// Stores `bytes` as the backup's object `relative` (`secrets/system-app.json`), readable by
    /// the backup's owner only, and lists it in `manifest`.
    fn put(
        &mut self,
        relative: &str,
        bytes: Vec<u8>,
        manifest: &mut Manifest,
    ) -> impl Future<Output = Result<(), JobError>>;
}

/// The backup folder on the backup claim.
pub struct Folder<'a>(pub &'a Path);

impl ObjectSink for Folder<'_> {
    async fn put(&mut self, relative: &str, bytes: Vec<u8>, manifest: &mut Manifest) -> Result<(), JobError> {
        let path = self.0.join(relative);
        // Secrets are in there: readable by the backup's owner only.
        crate::job::write_atomically(&path, &bytes, 0o600)?;
        manifest.add_files([hash_file(&path, relative)?]);
        Ok(())
    }
}
