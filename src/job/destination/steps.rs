//! The job steps' work when the backup is in the sealed layout, in a bucket or on the claim
//! (`job::run` chooses it: [`super::writes_sealed`], [`super::reads_sealed`]).

use super::{read, write};
use crate::job::CommonArgs;
use crate::job::JobError;
use crate::job::manifest::Manifest;
use std::path::Path;

/// Where a restore from a claim names the keys opening its backup.
pub const CLAIM_KEY_FIELD: &str = "spec.restoreSource.persistentVolumeClaim.encryption.keySecretRef";

/// Where a restore from a bucket names the keys opening its backup.
pub const BUCKET_KEY_FIELD: &str = "spec.restoreSource.s3.encryption.keySecretRef";

/// `job copy-files` into the sealed layout: the FileStorage tree by content, the step's part, and the
/// commit when this is the backup's last step (`--last-step`).
pub async fn copy_files(args: &crate::job::CopyArgs) -> Result<write::Traffic, JobError> {
    let started_at = crate::job::manifest::now();
    let mut backup = write::BucketBackup::begin(&args.common, crate::job::copy::STEP).await?;
    backup.copy_tree(&args.source, crate::layout::FILE_STORAGE_DIR).await?;
    let mut manifest = Manifest::default();
    manifest.finish_step(crate::job::copy::STEP, started_at, args.last_step);
    Ok(backup.finish(manifest, args.last_step).await?)
}

/// `job verify` of a sealed backup: committed, opened by the keys given when it is encrypted
/// (without them it fails naming the field to set), and every object as its manifests say; the
/// backed-up APIManager.
pub async fn verify(common: &CommonArgs) -> Result<crate::job::report::StepReport, JobError> {
    let committed = read::Committed::open(common).await?;
    committed.require_key(if committed.place.is_claim() { CLAIM_KEY_FIELD } else { BUCKET_KEY_FIELD })?;
    let checked = match committed.verify().await? {
        read::Coverage::Opened { files, links } => crate::job::report::Checked::Verified { files, links },
        read::Coverage::Stored { objects } => crate::job::report::Checked::Verified { files: objects, links: 0 },
    };
    let apimanager = committed.object(crate::layout::APIMANAGER_FILE).await?;
    let mut api_manager = crate::job::restore::apimanager_from(&apimanager, Path::new(crate::layout::APIMANAGER_FILE))?;
    let contents = committed.contents().await?;
    // Objects to write back only when the backup copied the bucket.
    if contents.manifest.system_file_storage_s3.is_none() {
        api_manager.file_storage_s3_secret = None;
    }
    api_manager.file_storage_group = contents.file_storage_group;
    Ok(crate::job::report::StepReport::Verify { checked, api_manager })
}

/// `job restore-files` from the sealed layout: the files written onto the claim's staging folder
/// object by object, then placed and compared as from a claim.
pub async fn restore_files(args: &crate::job::RestoreFilesArgs) -> Result<crate::job::report::StepReport, JobError> {
    let committed = read::Committed::open(&args.common).await?;
    let contents = committed.contents().await?;
    let staging = crate::job::restore_files::prepare_staging(&args.target)?;
    let written = committed.restore_tree(&contents, crate::layout::FILE_STORAGE_DIR, &staging).await?;
    crate::job::restore_files::place(&args.target, written, Some(contents.manifest), args.group)
}
