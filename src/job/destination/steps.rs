//! The job steps' work when the backup is in a bucket (`job::run` chooses it when `--s3-bucket`
//! is given).

use super::S3Args;
use super::{read, write};
use crate::job::JobError;
use crate::job::manifest::Manifest;
use std::path::Path;

/// `job copy-files` into the bucket: the FileStorage tree by content, the step's part, and the
/// commit when this is the backup's last step (`--last-step`).
pub async fn copy_files(args: &crate::job::CopyArgs) -> Result<write::Traffic, JobError> {
    let started_at = crate::job::manifest::now();
    let mut backup = write::BucketBackup::begin(&args.common.s3, crate::job::copy::STEP).await?;
    backup.copy_tree(&args.source, crate::layout::FILE_STORAGE_DIR).await?;
    let mut manifest = Manifest::default();
    manifest.finish_step(crate::job::copy::STEP, started_at, args.last_step);
    Ok(backup.finish(manifest, args.last_step).await?)
}

/// `job verify` of a backup in the bucket: committed, and every object as its manifests say
/// (opened with the key when one is given); the backed-up APIManager.
pub async fn verify(args: &S3Args) -> Result<crate::job::report::StepReport, JobError> {
    let committed = read::Committed::open(args).await?;
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

/// `job restore-files` from the bucket: the files written onto the claim's staging folder
/// object by object, then placed and compared as from a claim.
pub async fn restore_files(args: &crate::job::RestoreFilesArgs) -> Result<crate::job::report::StepReport, JobError> {
    let committed = read::Committed::open(&args.common.s3).await?;
    let contents = committed.contents().await?;
    let staging = crate::job::restore_files::prepare_staging(&args.target)?;
    let written = committed.restore_tree(&contents, crate::layout::FILE_STORAGE_DIR, &staging).await?;
    crate::job::restore_files::place(&args.target, written, Some(contents.manifest), args.group)
}
