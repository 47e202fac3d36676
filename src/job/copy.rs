//! `job copy-files`: copies the System FileStorage tree into the backup, keeping modes, times and
//! symbolic links, and records each file's size and SHA-256 in the manifest as it is copied.
//!
//! Each attempt copies into a fresh staging folder that replaces the final one only when complete,
//! so a retried Job never writes through what an earlier attempt left (read-only files, links).

use super::manifest::{FileEntry, LinkEntry, Manifest, StepTimes, hash_stream, now};
use super::{CopyArgs, JobError};
use crate::layout::FILE_STORAGE_DIR;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Name of this step in the manifest.
pub const STEP: &str = "copy-files";

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JobError {
    let path = path.to_owned();
    move |source| JobError::Io { what: what.to_owned(), path, source }
}

/// Folder of the claim's filesystem that holds no 3scale data (ext4 and others create it).
const LOST_AND_FOUND: &str = "lost+found";

/// Copies `source` into `<backup>/system-filestorage-pvc` and records the step.
pub fn run(args: &CopyArgs) -> Result<(), JobError> {
    let started_at = now();
    let root = &args.common.backup_dir;
    let mut manifest = Manifest::load(root)?;
    let destination = root.join(FILE_STORAGE_DIR);
    let staging = root.join(format!("{FILE_STORAGE_DIR}.partial"));
    remove_tree(&staging)?;
    fs::create_dir_all(&staging).map_err(io("creating", &staging))?;
    let mut copied = Copied::default();
    copy_tree(&args.source, &staging, FILE_STORAGE_DIR, &mut copied)?;
    let source_mode = fs::metadata(&args.source).map_err(io("inspecting", &args.source))?.permissions();
    fs::set_permissions(&staging, source_mode).map_err(io("setting the mode of", &staging))?;
    remove_tree(&destination)?;
    fs::rename(&staging, &destination).map_err(io("renaming into place", &destination))?;
    sync_filesystem(&destination)?;
    manifest.replace_under(FILE_STORAGE_DIR, copied.files, copied.links, copied.skipped);
    manifest.steps.insert(STEP.to_owned(), StepTimes { started_at, finished_at: now() });
    manifest.save(root)
}

/// Removes a tree an earlier attempt left, read-only folders included (they are ours).
fn remove_tree(path: &Path) -> Result<(), JobError> {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if metadata.is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io("making removable", path))?;
        for entry in fs::read_dir(path).map_err(io("listing", path))? {
            remove_tree(&entry.map_err(io("listing", path))?.path())?;
        }
        fs::remove_dir(path).map_err(io("removing", path))
    } else {
        fs::remove_file(path).map_err(io("removing", path))
    }
}

/// What a copy wrote, and what it passed over with the reason.
#[derive(Default)]
struct Copied {
    files: Vec<FileEntry>,
    links: Vec<LinkEntry>,
    skipped: Vec<(String, String)>,
}

/// Copies the contents of directory `from` into existing directory `to`; `relative` is `to`'s
/// path inside the backup.
fn copy_tree(from: &Path, to: &Path, relative: &str, copied: &mut Copied) -> Result<(), JobError> {
    let mut entries =
        fs::read_dir(from).map_err(io("listing", from))?.collect::<Result<Vec<_>, _>>().map_err(io("listing", from))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let source = entry.path();
        let target = to.join(entry.file_name());
        let name = entry.file_name().to_string_lossy().into_owned();
        let inner = format!("{relative}/{name}");
        if relative == FILE_STORAGE_DIR && name == LOST_AND_FOUND {
            copied.skipped.push((inner, "filesystem housekeeping folder, not 3scale data".to_owned()));
            continue;
        }
        let metadata = fs::symlink_metadata(&source).map_err(io("inspecting", &source))?;
        let kind = metadata.file_type();
        if kind.is_symlink() {
            let link = fs::read_link(&source).map_err(io("reading link", &source))?;
            std::os::unix::fs::symlink(&link, &target).map_err(io("creating link", &target))?;
            copied.links.push(LinkEntry { path: inner, target: link.to_string_lossy().into_owned() });
        } else if kind.is_dir() {
            fs::create_dir(&target).map_err(io("creating", &target))?;
            copy_tree(&source, &target, &inner, copied)?;
            fs::set_permissions(&target, metadata.permissions()).map_err(io("setting the mode of", &target))?;
        } else if kind.is_file() {
            copied.files.push(copy_file(&source, &target, &inner)?);
            fs::set_permissions(&target, metadata.permissions()).map_err(io("setting the mode of", &target))?;
        } else {
            copied.skipped.push((inner, "not a regular file, folder or link (device, socket or pipe)".to_owned()));
            continue;
        }
        let modified = filetime::FileTime::from_last_modification_time(&metadata);
        let accessed = filetime::FileTime::from_last_access_time(&metadata);
        filetime::set_symlink_file_times(&target, accessed, modified).map_err(io("setting the times of", &target))?;
    }
    Ok(())
}

/// Flushes the whole filesystem holding `path` once (cheaper than one fsync per file), so the copy
/// is durable before the manifest records it.
fn sync_filesystem(path: &Path) -> Result<(), JobError> {
    use std::os::fd::AsRawFd;
    let folder = fs::File::open(path).map_err(io("opening", path))?;
    // SAFETY: syncfs(2) on a file descriptor that `folder` keeps open for the call.
    if unsafe { libc::syncfs(folder.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(JobError::Io { what: "syncing".into(), path: path.to_owned(), source: std::io::Error::last_os_error() })
    }
}

/// Copies one file while hashing it, so each byte is read once.
fn copy_file(source: &Path, target: &Path, relative: &str) -> Result<FileEntry, JobError> {
    let mut input = fs::File::open(source).map_err(io("reading", source))?;
    let mut output = fs::File::create_new(target).map_err(io("writing", target))?;
    let (size, sha256) =
        hash_stream(&mut input, source, |chunk| output.write_all(chunk).map_err(io("writing", target)))?;
    Ok(FileEntry { path: relative.to_owned(), size, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::CommonArgs;
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
        fs::create_dir_all(source.join("uploads/logos")).expect("dirs");
        fs::write(source.join("uploads/logos/logo.png"), b"png-bytes").expect("file");
        fs::write(source.join("robots.txt"), b"").expect("empty file");
        fs::set_permissions(source.join("robots.txt"), fs::Permissions::from_mode(0o600)).expect("mode");
        std::os::unix::fs::symlink("uploads/logos/logo.png", source.join("current-logo")).expect("link");
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(source.join("uploads/logos/logo.png"), old).expect("mtime");

        let args = CopyArgs {
            source: source.clone(),
            common: CommonArgs { backup_dir: backup.clone(), termination_log: backup.join("term") },
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
            source: source.clone(),
            common: CommonArgs { backup_dir: backup.clone(), termination_log: backup.join("term") },
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
            let _ = remove_tree(dir);
        }
    }
}
