//! `job copy-files`: copies the System FileStorage tree into the backup (see [`copy_tree`] for
//! what is kept) and records each file's size and SHA-256 in the manifest as it is copied.
//!
//! Each attempt copies into a fresh staging folder that replaces the final one only when complete,
//! so a retried attempt never writes through what an earlier attempt left (read-only files, links).

use super::manifest::{Manifest, now};
use super::tree::{copy_tree, remove_tree};
use super::{CopyArgs, JobError};
use crate::layout::FILE_STORAGE_DIR;
use std::fs;
use std::path::Path;

/// Name of this step in the manifest.
pub const STEP: &str = crate::names::COPY_FILES;

/// Copies `source` into `<backup>/system-filestorage-pvc` and records the step.
pub fn run(args: &CopyArgs) -> Result<(), JobError> {
    let started_at = now();
    let root = &args.common.backup_dir;
    let mut manifest = Manifest::load(root)?;
    manifest.begin(root)?;
    let destination = root.join(FILE_STORAGE_DIR);
    let staging = root.join(format!("{FILE_STORAGE_DIR}.partial"));
    remove_tree(&staging)?;
    fs::create_dir_all(&staging).map_err(|error| JobError::io("creating", &staging, error))?;
    keep_group(&args.source, &staging)?;
    let copied = copy_tree(&args.source, &staging, FILE_STORAGE_DIR).map_err(|error| explain(error, &args.source))?;
    remove_tree(&destination)?;
    fs::rename(&staging, &destination).map_err(|error| JobError::io("renaming into place", &destination, error))?;
    sync_filesystem(&destination)?;
    manifest.replace_under(FILE_STORAGE_DIR, copied);
    manifest.finish_step(STEP, started_at, args.last_step);
    manifest.save(root)
}

/// Gives `copy` the group of `source` when this step is a member (it was given the group owning
/// the claim's root): the backup keeps the installation's FileStorage group, which a restore gives
/// the restored files. Not being a member leaves the group as the backup claim gives it.
fn keep_group(source: &Path, copy: &Path) -> Result<(), JobError> {
    use std::os::unix::fs::MetadataExt;
    let group = fs::metadata(source).map_err(|error| JobError::io("inspecting", source, error))?.gid();
    match std::os::unix::fs::chown(copy, None, Some(group)) {
        Err(error) if error.kind() != std::io::ErrorKind::PermissionDenied => {
            Err(JobError::io("giving the FileStorage group to", copy, error))
        }
        _ => Ok(()),
    }
}

/// A permission refused on a file of the System FileStorage below `source` becomes
/// [`JobError::Unreadable`]: whose file it is, who this step is, and the fix. Other errors pass.
fn explain(error: JobError, source: &Path) -> JobError {
    use std::os::unix::fs::MetadataExt;
    let JobError::Io { path, source: cause, .. } = &error else { return error };
    if cause.kind() != std::io::ErrorKind::PermissionDenied || !path.starts_with(source) {
        return error;
    }
    let (Ok(file), Ok(root)) = (fs::symlink_metadata(path), fs::metadata(source)) else { return error };
    let (uid, groups) = identity();
    JobError::Unreadable {
        path: path.clone(),
        owner: file.uid(),
        group: file.gid(),
        mode: file.mode() & 0o7777,
        uid,
        groups: groups.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
        root_group: root.gid(),
    }
}

/// This process's user and its groups, the primary one first.
fn identity() -> (u32, Vec<u32>) {
    // SAFETY: getuid(2) and getgid(2) have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut groups = vec![gid];
    // SAFETY: a count of 0 asks only for the number of supplementary groups.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut supplementary = vec![0; usize::try_from(count).unwrap_or(0)];
    // SAFETY: the buffer holds `count` entries, as the call is told.
    let filled = unsafe { libc::getgroups(count, supplementary.as_mut_ptr()) };
    supplementary.truncate(usize::try_from(filled).unwrap_or(0));
    groups.extend(supplementary.into_iter().filter(|group| *group != gid));
    (uid, groups)
}

/// Flushes the whole filesystem holding `path` once (cheaper than one fsync per file), so the copy
/// is durable before the manifest records it.
pub(super) fn sync_filesystem(path: &Path) -> Result<(), JobError> {
    let folder = fs::File::open(path).map_err(|error| JobError::io("opening", path, error))?;
    rustix::fs::syncfs(&folder).map_err(JobError::errno("syncing", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::CommonArgs;
    use crate::job::manifest::LinkEntry;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(label: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("abo-copy-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch");
        dir
    }

    #[test]
    fn copies_tree_with_modes_times_links_and_checksums() {
        let source = scratch("src");
        let backup = scratch("dst");
        // As root, a group the backup claim does not have (else the process's own).
        let _ = std::os::unix::fs::chown(&source, None, Some(4242));
        fs::create_dir_all(source.join("uploads/logos")).expect("dirs");
        fs::write(source.join("uploads/logos/logo.png"), b"png-bytes").expect("file");
        fs::write(source.join("robots.txt"), b"").expect("empty file");
        fs::set_permissions(source.join("robots.txt"), fs::Permissions::from_mode(0o600)).expect("mode");
        std::os::unix::fs::symlink("uploads/logos/logo.png", source.join("current-logo")).expect("link");
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(source.join("uploads/logos/logo.png"), old).expect("mtime");

        let args = CopyArgs {
            last_step: true,
            source: source.clone(),
            common: CommonArgs {
                backup_dir: backup.clone(),
                termination_log: backup.join("term"),
                s3: Default::default(),
            },
        };
        run(&args).expect("copy succeeds");

        let copied = backup.join("system-filestorage-pvc");
        assert_eq!(fs::read(copied.join("uploads/logos/logo.png")).expect("copied"), b"png-bytes");
        let mode = fs::metadata(copied.join("robots.txt")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mtime = filetime::FileTime::from_last_modification_time(
            &fs::metadata(copied.join("uploads/logos/logo.png")).expect("meta"),
        );
        assert_eq!(mtime, old);
        assert_eq!(fs::read_link(copied.join("current-logo")).expect("link"), Path::new("uploads/logos/logo.png"));

        let source_group = std::os::unix::fs::MetadataExt::gid(&fs::metadata(&source).expect("source"));
        let copied_group = std::os::unix::fs::MetadataExt::gid(&fs::metadata(&copied).expect("copy"));
        assert_eq!(copied_group, source_group, "the backup keeps the FileStorage group");
        let manifest = Manifest::load(&backup).expect("manifest");
        assert_eq!(
            manifest.links,
            [LinkEntry { path: "system-filestorage-pvc/current-logo".into(), target: "uploads/logos/logo.png".into() }]
        );
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["system-filestorage-pvc/robots.txt", "system-filestorage-pvc/uploads/logos/logo.png"]);
        let logo = &manifest.files[1];
        assert_eq!(logo.size, 9);
        assert_eq!(logo.sha256, "ea80334363eed145dfeee51ebae7dc3f1cd7d0c7879f8bfd2070c061d3c33f56");
        assert!(manifest.steps.contains_key(STEP));
        let _ = fs::remove_dir_all(source);
        let _ = fs::remove_dir_all(backup);
    }

    #[test]
    fn a_refused_read_names_the_file_its_owner_and_group_and_the_fix() {
        use std::os::unix::fs::MetadataExt;
        let source = scratch("denied-src");
        fs::write(source.join("secret.txt"), b"x").expect("file");
        fs::set_permissions(source.join("secret.txt"), fs::Permissions::from_mode(0o600)).expect("mode");
        let file = fs::metadata(source.join("secret.txt")).expect("metadata");
        let denied = JobError::io("reading", &source.join("secret.txt"), std::io::Error::from_raw_os_error(13));
        let (uid, groups) = identity();
        let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
        let root_group = fs::metadata(&source).expect("root").gid();
        assert_eq!(
            explain(denied, &source).to_string(),
            format!(
                "cannot read {}: owned by uid {} and gid {} with mode 0600, while this step runs as uid {uid} with groups {}; \
fix: make it readable by the group owning the System FileStorage claim's root (gid {root_group}): chgrp {root_group} and \
chmod g+r (g+rx for a folder), as System writes its files, or run the operator with --file-storage-group={}",
                source.join("secret.txt").display(),
                file.uid(),
                file.gid(),
                groups.join(","),
                file.gid()
            )
        );
        let elsewhere = JobError::io("writing", Path::new("/backup/x"), std::io::Error::from_raw_os_error(13));
        assert!(matches!(explain(elsewhere, &source), JobError::Io { .. }), "the backup claim's errors pass");
        let _ = fs::remove_dir_all(source);
    }

    #[test]
    fn a_retry_replaces_the_earlier_copy_without_writing_through_its_links() {
        let source = scratch("retry-src");
        let backup = scratch("retry-dst");
        fs::create_dir_all(source.join("lost+found")).expect("lost+found");
        fs::create_dir_all(source.join("readonly")).expect("dir");
        fs::write(source.join("readonly/frozen.txt"), b"frozen").expect("file");
        fs::set_permissions(source.join("readonly/frozen.txt"), fs::Permissions::from_mode(0o444)).expect("mode");
        fs::set_permissions(source.join("readonly"), fs::Permissions::from_mode(0o555)).expect("mode");
        std::os::unix::fs::symlink("../manifest.json", source.join("escape")).expect("link");
        let args = CopyArgs {
            last_step: true,
            source: source.clone(),
            common: CommonArgs {
                backup_dir: backup.clone(),
                termination_log: backup.join("term"),
                s3: Default::default(),
            },
        };
        run(&args).expect("first attempt");
        let manifest_before = fs::read(backup.join("manifest.json")).expect("manifest");

        fs::remove_file(source.join("escape")).expect("unlink");
        fs::write(source.join("escape"), b"now a plain file").expect("file");
        run(&args).expect("the retry succeeds over read-only leftovers");

        let copied = backup.join("system-filestorage-pvc");
        assert_eq!(fs::read(copied.join("escape")).expect("plain file"), b"now a plain file");
        assert!(!fs::symlink_metadata(copied.join("escape")).expect("meta").file_type().is_symlink());
        let manifest = Manifest::load(&backup).expect("manifest");
        assert!(manifest.links.is_empty(), "the old link is not listed any more");
        assert_ne!(fs::read(backup.join("manifest.json")).expect("manifest"), manifest_before);
        assert!(!copied.join("lost+found").exists());
        assert_eq!(manifest.absent.len(), 1);
        assert_eq!(manifest.absent[0].path, "system-filestorage-pvc/lost+found");
        assert!(!backup.join("system-filestorage-pvc.partial").exists());
        for dir in [&source, &backup] {
            remove_tree(dir).expect("cleanup");
        }
    }
}
