//! `job restore-files`: copies the backup's System FileStorage onto the `system-storage` claim with
//! the copy of `copy-files` (contents with holes, modes, times, symbolic and hard links, names of
//! any bytes, trees of any depth), then compares the claim with the manifest. Files already on the
//! claim are never overwritten.
//!
//! The copy goes to a staging folder on the claim first, then each top-level entry is renamed into
//! place unless the claim holds that name already. A retried attempt thus keeps what an earlier
//! one placed; the comparison afterwards tells an identical leftover from other content.

use super::copy::sync_filesystem;
use super::manifest::{Manifest, TreeEntries};
use super::report::StepReport;
use super::tree::{Next, Visit, copy_tree, remove_tree, walk};
use super::verify::{Reference, Unlisted, compare, one_line};
use super::{JobError, RestoreFilesArgs};
use crate::layout::FILE_STORAGE_DIR;
use std::fs;
use std::path::{Path, PathBuf};

/// Staging folder on the target claim, removed once the copy is in place.
const STAGING: &str = ".apimanager-restore.partial";

/// Copies, moves into place and compares; reports what was restored.
pub fn run(args: &RestoreFilesArgs) -> Result<StepReport, JobError> {
    let source = args.common.backup_dir.join(FILE_STORAGE_DIR);
    let staging = prepare_staging(&args.target)?;
    let copied = copy_tree(&source, &staging, FILE_STORAGE_DIR)?;
    // The backup's manifest when it has one; otherwise what was read is what must have landed.
    place(&args.target, copied, Manifest::read(&args.common.backup_dir)?, args.group)
}

/// The staging folder on the claim at `target`, empty (an earlier attempt's removed).
pub fn prepare_staging(target: &Path) -> Result<PathBuf, JobError> {
    let staging = target.join(STAGING);
    remove_tree(&staging)?;
    fs::create_dir(&staging).map_err(|error| JobError::io("creating", &staging, error))?;
    Ok(staging)
}

/// Moves what was written into the staging folder (`copied`) into place on the claim at
/// `target`, never over a name the claim holds, and compares the claim with `manifest` (or,
/// without one, with what was written). With `group`, what was written is shared with it first
/// (see [`share_with_group`]).
pub fn place(
    target: &Path,
    copied: TreeEntries,
    manifest: Option<Manifest>,
    group: Option<u32>,
) -> Result<StepReport, JobError> {
    let staging = target.join(STAGING);
    if let Some(group) = group {
        share_with_group(&staging, group)?;
    }
    let listing = |error| JobError::io("listing", &staging, error);
    for entry in fs::read_dir(&staging).map_err(listing)? {
        let placed = target.join(entry.map_err(listing)?.file_name());
        if fs::symlink_metadata(&placed).is_err() {
            let staged = staging.join(placed.file_name().unwrap_or_default());
            fs::rename(&staged, &placed).map_err(|error| JobError::io("moving into place", &placed, error))?;
        }
    }
    remove_tree(&staging)?;
    sync_filesystem(target)?;
    let read =
        Manifest { files: copied.files, links: copied.links, hard_links: copied.hard_links, ..Manifest::default() };
    let (expected, reference) = match &manifest {
        Some(manifest) => (manifest, Reference::Manifest),
        None => (&read, Reference::Backup),
    };
    let problems = compare(target, FILE_STORAGE_DIR, expected, Unlisted::Ignored)?;
    if !problems.is_empty() {
        return Err(JobError::Conflict(format!(
            "the system-storage claim does not hold the backed-up files (a restore never overwrites what is there: \
empty the claim or restore into another namespace): {}",
            one_line(&problems, reference)
        )));
    }
    Ok(StepReport::RestoreFiles {
        files: read.files.len(),
        links: read.links.len() + read.hard_links.len(),
        verified: manifest.is_some(),
    })
}

/// Gives every file, folder and link below `root` group `group`, files group read and write,
/// folders also group search and setgid (what the System app creates there keeps the group). This
/// step owns what it copied, so it may, being a member of `group`.
fn share_with_group(root: &std::path::Path, group: u32) -> Result<(), JobError> {
    use rustix::fs::{AtFlags, FileType, Gid, Mode};
    let gid = Gid::from_raw(group);
    walk(root, &mut |visit| {
        let (entry, bits) = match visit {
            Visit::Enter(entry) => (entry, 0o2070),
            Visit::Other(entry) if FileType::from_raw_mode(entry.stat.st_mode) == FileType::RegularFile => {
                (entry, 0o060)
            }
            Visit::Other(entry) => (entry, 0),
            Visit::Leave(_) => return Ok(Next::Continue),
        };
        rustix::fs::chownat(entry.dir, entry.name, None, Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(JobError::errno("giving to the System FileStorage group", entry.path))?;
        if bits != 0 {
            let mode = Mode::from_raw_mode((entry.stat.st_mode & 0o7777) | bits);
            rustix::fs::chmodat(entry.dir, entry.name, mode, AtFlags::empty())
                .map_err(JobError::errno("making group-writable", entry.path))?;
        }
        Ok(Next::Continue)
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::CommonArgs;
    use crate::job::manifest::hash_file;
    use crate::job::scratch;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn backup_with_files(root: &Path) {
        let files = root.join(FILE_STORAGE_DIR);
        fs::create_dir_all(files.join("uploads")).expect("dirs");
        fs::write(files.join("uploads/a.txt"), b"alpha").expect("file");
        fs::set_permissions(files.join("uploads/a.txt"), fs::Permissions::from_mode(0o640)).expect("mode");
        std::os::unix::fs::symlink("uploads/a.txt", files.join("current")).expect("link");
        filetime::set_file_mtime(files.join("uploads/a.txt"), filetime::FileTime::from_unix_time(1_500_000_000, 0))
            .expect("mtime");
    }

    #[test]
    fn restores_modes_times_links_and_a_retry_keeps_what_an_earlier_attempt_placed() {
        let backup = scratch("backup");
        let target = scratch("target");
        backup_with_files(&backup);
        let args = RestoreFilesArgs {
            target: target.clone(),
            group: None,
            common: CommonArgs {
                backup_dir: backup.clone(),
                termination_log: backup.join("term"),
                s3: Default::default(),
            },
        };
        let report = run(&args).expect("restore");
        assert_eq!(report, StepReport::RestoreFiles { files: 1, links: 1, verified: false });
        assert_eq!(fs::read(target.join("uploads/a.txt")).expect("file"), b"alpha");
        let meta = fs::metadata(target.join("uploads/a.txt")).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(filetime::FileTime::from_last_modification_time(&meta).unix_seconds(), 1_500_000_000);
        assert_eq!(fs::read_link(target.join("current")).expect("link"), Path::new("uploads/a.txt"));
        assert!(!target.join(STAGING).exists());

        assert_eq!(run(&args).expect("a retry over its own result"), report);

        fs::write(target.join("uploads/a.txt"), b"changed").expect("file");
        let error = run(&args).expect_err("other content is never overwritten");
        assert!(
            error.to_string().ends_with(
                "restore into another namespace): system-filestorage-pvc/uploads/a.txt: size 7 bytes, the backup has 5"
            ),
            "without a manifest, the backup's files are what is expected: {error}"
        );
        assert_eq!(fs::read(target.join("uploads/a.txt")).expect("file"), b"changed");

        let listed =
            hash_file(&backup.join("system-filestorage-pvc/uploads/a.txt"), "system-filestorage-pvc/uploads/a.txt")
                .expect("hash");
        Manifest { files: vec![listed], ..Manifest::default() }.save(&backup).expect("manifest");
        let error = run(&args).expect_err("other content is never overwritten");
        assert!(
            error.to_string().ends_with("system-filestorage-pvc/uploads/a.txt: size 7 bytes, manifest.json says 5"),
            "{error}"
        );
        let _ = remove_tree(&backup);
        let _ = remove_tree(&target);
    }

    #[test]
    fn with_a_group_every_restored_file_and_folder_is_the_groups_to_change() {
        use std::os::unix::fs::MetadataExt;
        let backup = scratch("group-backup");
        let target = scratch("group-target");
        backup_with_files(&backup);
        fs::set_permissions(backup.join("system-filestorage-pvc/uploads"), fs::Permissions::from_mode(0o750))
            .expect("mode");
        // A group this process is in, so the change works without root too.
        let group = fs::metadata(&target).expect("target").gid();
        let args = RestoreFilesArgs {
            target: target.clone(),
            group: Some(group),
            common: CommonArgs {
                backup_dir: backup.clone(),
                termination_log: backup.join("term"),
                s3: Default::default(),
            },
        };
        run(&args).expect("restore");
        let metadata = |path: &str| fs::symlink_metadata(target.join(path)).expect("metadata");
        assert_eq!(metadata("uploads/a.txt").mode() & 0o7777, 0o660, "0640 as backed up, plus group write");
        assert_eq!(metadata("uploads").mode() & 0o7777, 0o2770, "0750 plus group write and setgid");
        for path in ["uploads", "uploads/a.txt"] {
            assert_eq!(metadata(path).gid(), group, "{path}");
        }
        assert!(metadata("current").file_type().is_symlink());
        assert_eq!(metadata("current").gid(), group, "links too");
        let _ = remove_tree(&backup);
        let _ = remove_tree(&target);
    }
}
