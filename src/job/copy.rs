//! `job copy-files`: copies the System FileStorage tree into the backup, keeping modes, times and
//! symbolic links, and records each file's size and SHA-256 in the manifest as it is copied.

use super::manifest::{FileEntry, Manifest, StepTimes, hash_stream, now};
use super::{CopyArgs, JobError};
use crate::layout::FILE_STORAGE_DIR;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Name of this step in the manifest.
pub const STEP: &str = "copy-files";

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JobError {
    let path = path.to_owned();
    move |source| JobError::Io { what: what.to_owned(), path, source }
}

/// Copies `source` into `<backup>/system-filestorage-pvc` and records the step.
pub fn run(args: &CopyArgs) -> Result<(), JobError> {
    let started_at = now();
    let root = &args.common.backup_dir;
    let mut manifest = Manifest::load(root)?;
    let destination = root.join(FILE_STORAGE_DIR);
    fs::create_dir_all(&destination).map_err(io("creating", &destination))?;
    let mut copied = Copied::default();
    copy_tree(&args.source, &destination, FILE_STORAGE_DIR, &mut copied)?;
    sync_filesystem(&destination)?;
    manifest.add_files(copied.files);
    for (path, reason) in copied.skipped {
        manifest.add_absent(path, reason);
    }
    manifest.steps.insert(STEP.to_owned(), StepTimes { started_at, finished_at: now() });
    manifest.save(root)
}

/// What a copy wrote, and what it passed over with the reason.
#[derive(Default)]
struct Copied {
    files: Vec<FileEntry>,
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
        let metadata = fs::symlink_metadata(&source).map_err(io("inspecting", &source))?;
        let kind = metadata.file_type();
        if kind.is_symlink() {
            let link = fs::read_link(&source).map_err(io("reading link", &source))?;
            let _ = fs::remove_file(&target);
            std::os::unix::fs::symlink(&link, &target).map_err(io("creating link", &target))?;
        } else if kind.is_dir() {
            fs::create_dir_all(&target).map_err(io("creating", &target))?;
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
    let mut output = fs::File::create(target).map_err(io("writing", target))?;
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
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["system-filestorage-pvc/robots.txt", "system-filestorage-pvc/uploads/logos/logo.png"]);
        let logo = &manifest.files[1];
        assert_eq!(logo.size, 9);
        assert_eq!(logo.sha256, "ea80334363eed145dfeee51ebae7dc3f1cd7d0c7879f8bfd2070c061d3c33f56");
        assert!(manifest.steps.contains_key(STEP));
        let _ = fs::remove_dir_all(source);
        let _ = fs::remove_dir_all(backup);
    }
}
