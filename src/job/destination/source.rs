//! Where the restore steps read a backup's exported objects: the backup folder on the claim, or
//! a committed backup in the sealed layout (each object opened and authenticated as it is read).

use super::read::Committed;
use super::sink::Folder;
use crate::job::JobError;
use crate::job::manifest::Manifest;

/// A backup whose objects can be read by their path (`secrets/system-app.json`).
pub trait BackupSource {
    /// The object at `relative`, or `None` when the backup does not hold it.
    fn read(&self, relative: &str) -> impl Future<Output = Result<Option<Vec<u8>>, JobError>>;

    /// The backup's manifest; `None` for a backup without one (3scale-operator's).
    fn manifest(&self) -> impl Future<Output = Result<Option<Manifest>, JobError>>;
}

impl BackupSource for Folder<'_> {
    async fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, JobError> {
        let path = self.0.join(relative);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JobError::Io { what: "reading".into(), path, source }),
        }
    }

    async fn manifest(&self) -> Result<Option<Manifest>, JobError> {
        Manifest::read(self.0)
    }
}

impl BackupSource for Committed {
    async fn read(&self, relative: &str) -> Result<Option<Vec<u8>>, JobError> {
        match self.object(relative).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.is_missing() => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    async fn manifest(&self) -> Result<Option<Manifest>, JobError> {
        Ok(Some(self.contents().await?.manifest))
    }
}
