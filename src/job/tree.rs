//! Walking and copying directory trees of any depth and any names. Every operation is relative
//! to an open directory handle (`openat`, `fstatat`, `mkdirat`, …), so no path longer than
//! `PATH_MAX` is ever handed to the kernel, and only two handles per tree are open at any depth:
//! a walk goes back up through `..`, checking that it arrives where it came from.
//!
//! [`copy_tree`] is the copy in both directions (backup and restore): contents byte for byte with
//! holes kept, modes, modification and access times, symbolic links as links, hard links as
//! links; named pipes, sockets and devices are not copied but listed with the reason.

use super::JobError;
use super::manifest::{AbsentEntry, FileEntry, LinkEntry, TreeEntries, encode_path};
use super::sparse::copy_content;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Folder at the root of a claim's filesystem that holds no 3scale data (ext4 and others make it).
pub const LOST_AND_FOUND: &str = "lost+found";

/// How a directory is opened: never through a symbolic link.
const DIRECTORY: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Device and inode: what makes a file the same file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileId {
    device: u64,
    inode: u64,
}

impl FileId {
    fn of(stat: &Stat) -> Self {
        Self { device: stat.st_dev, inode: stat.st_ino }
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut joined = Vec::with_capacity(parent.len() + 1 + name.len());
    joined.extend_from_slice(parent);
    joined.push(b'/');
    joined.extend_from_slice(name);
    joined
}

fn full_path(root: &Path, relative: &[u8]) -> PathBuf {
    if relative.is_empty() { root.to_owned() } else { root.join(OsStr::from_bytes(relative)) }
}

/// An open directory of a tree that moves down by name and back up through `..`.
struct Cursor {
    fd: OwnedFd,
    root: PathBuf,
    /// The directory's path below the root (`/`-separated bytes; empty at the root).
    relative: Vec<u8>,
    /// Identity of each directory above, with the length of `relative` there.
    above: Vec<(FileId, usize)>,
}

impl Cursor {
    fn open(root: &Path) -> Result<Self, JobError> {
        let fd = rustix::fs::open(root, DIRECTORY, Mode::empty()).map_err(JobError::errno("opening", root))?;
        Ok(Self { fd, root: root.to_owned(), relative: Vec::new(), above: Vec::new() })
    }

    /// This directory's path, for messages.
    fn path(&self) -> PathBuf {
        full_path(&self.root, &self.relative)
    }

    /// The path of entry `name` of this directory, for messages.
    fn path_of(&self, name: &CStr) -> PathBuf {
        full_path(&self.root, &join(&self.relative, name.to_bytes()))
    }

    fn id(&self) -> Result<FileId, JobError> {
        let stat = rustix::fs::fstat(&self.fd).map_err(JobError::errno("inspecting", &self.path()))?;
        Ok(FileId::of(&stat))
    }

    /// Enters subdirectory `name`, which must be the file `expected` (not swapped meanwhile).
    fn descend(&mut self, name: &CStr, expected: FileId) -> Result<(), JobError> {
        let path = self.path_of(name);
        let child =
            rustix::fs::openat(&self.fd, name, DIRECTORY, Mode::empty()).map_err(JobError::errno("opening", &path))?;
        let here = self.id()?;
        self.above.push((here, self.relative.len()));
        self.relative = join(&self.relative, name.to_bytes());
        self.fd = child;
        if self.id()? != expected {
            return Err(JobError::Changed { path });
        }
        Ok(())
    }

    /// Goes back to the parent directory (a no-op at the root).
    fn ascend(&mut self) -> Result<(), JobError> {
        let Some((expected, length)) = self.above.pop() else {
            return Ok(());
        };
        let path = self.path();
        let parent = rustix::fs::openat(&self.fd, c"..", DIRECTORY, Mode::empty())
            .map_err(JobError::errno("opening the parent of", &path))?;
        self.fd = parent;
        self.relative.truncate(length);
        if self.id()? != expected {
            return Err(JobError::Changed { path });
        }
        Ok(())
    }

    /// The names in this directory, sorted bytewise.
    fn list(&self) -> Result<std::vec::IntoIter<CString>, JobError> {
        let path = self.path();
        let listing = rustix::fs::Dir::read_from(&self.fd).map_err(JobError::errno("listing", &path))?;
        let mut names = Vec::new();
        for entry in listing {
            let entry = entry.map_err(JobError::errno("listing", &path))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names.into_iter())
    }
}

/// One entry of a walked tree.
pub struct Entry<'a> {
    /// The directory holding it, open.
    pub dir: BorrowedFd<'a>,
    /// Its name in that directory.
    pub name: &'a CStr,
    /// Its metadata (not following a symbolic link).
    pub stat: &'a Stat,
    /// Its path below the walked root, `/`-separated bytes.
    pub relative: &'a [u8],
    /// Its full path, for messages only (it may be longer than the kernel accepts).
    pub path: &'a Path,
}

/// What [`walk`] shows its visitor, in order: a directory is entered, its entries follow, then it
/// is left.
pub enum Visit<'a> {
    /// A directory about to be entered.
    Enter(&'a Entry<'a>),
    /// Anything that is not a directory.
    Other(&'a Entry<'a>),
    /// A directory whose entries were all visited.
    Leave(&'a Entry<'a>),
}

/// What the walk does after a visit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Go on (into the directory, for [`Visit::Enter`]).
    Continue,
    /// Do not enter this directory (only meaningful for [`Visit::Enter`]).
    SkipDirectory,
}

/// Visits every entry below `root`, sorted by name in each directory; returns the root's own
/// metadata. Symbolic links are never followed.
pub fn walk(root: &Path, visit: &mut impl FnMut(Visit<'_>) -> Result<Next, JobError>) -> Result<Stat, JobError> {
    struct Level {
        names: std::vec::IntoIter<CString>,
        name: CString,
        stat: Stat,
    }
    let mut cursor = Cursor::open(root)?;
    let root_stat = rustix::fs::fstat(&cursor.fd).map_err(JobError::errno("inspecting", root))?;
    let mut stack = vec![Level { names: cursor.list()?, name: CString::default(), stat: root_stat }];
    while let Some(level) = stack.last_mut() {
        match level.names.next() {
            Some(name) => {
                let path = cursor.path_of(&name);
                let stat = rustix::fs::statat(&cursor.fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(JobError::errno("inspecting", &path))?;
                let relative = join(&cursor.relative, name.to_bytes());
                let entry =
                    Entry { dir: cursor.fd.as_fd(), name: &name, stat: &stat, relative: &relative, path: &path };
                if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                    visit(Visit::Other(&entry))?;
                } else if visit(Visit::Enter(&entry))? == Next::Continue {
                    cursor.descend(&name, FileId::of(&stat))?;
                    stack.push(Level { names: cursor.list()?, name, stat });
                }
            }
            None => {
                let Some(done) = stack.pop() else { break };
                if stack.is_empty() {
                    return Ok(done.stat);
                }
                cursor.ascend()?;
                let relative = join(&cursor.relative, done.name.to_bytes());
                let path = cursor.path_of(&done.name);
                let entry = Entry {
                    dir: cursor.fd.as_fd(),
                    name: &done.name,
                    stat: &done.stat,
                    relative: &relative,
                    path: &path,
                };
                visit(Visit::Leave(&entry))?;
            }
        }
    }
    Ok(root_stat)
}

/// The access and modification times of `stat`.
fn times(stat: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: stat.st_atime, tv_nsec: stat.st_atime_nsec as _ },
        last_modification: Timespec { tv_sec: stat.st_mtime, tv_nsec: stat.st_mtime_nsec as _ },
    }
}

/// The permission bits of `stat` (with setuid, setgid and sticky).
fn permissions(stat: &Stat) -> Mode {
    Mode::from_raw_mode(stat.st_mode & 0o7777)
}

/// Copies the contents of directory `from` into the existing directory `into` (which must not
/// hold the same names), then gives `into` the mode and times of `from`. Returns what was copied,
/// with paths as `<prefix>/<path below from>` in the form of
/// [`encode_path`](super::manifest::encode_path). `lost+found` at the top of `from` is skipped.
pub fn copy_tree(from: &Path, into: &Path, prefix: &str) -> Result<TreeEntries, JobError> {
    let mut target = Cursor::open(into)?;
    let target_root = Cursor::open(into)?;
    let mut copied = TreeEntries::default();
    let mut first_names: HashMap<FileId, Vec<u8>> = HashMap::new();
    let named = |relative: &[u8]| encode_path(&join(prefix.as_bytes(), relative));
    let root_stat = walk(from, &mut |visit| {
        match visit {
            Visit::Enter(entry) if entry.relative == LOST_AND_FOUND.as_bytes() => {
                let reason = "filesystem housekeeping folder, not 3scale data".to_owned();
                copied.absent.push(AbsentEntry { path: named(entry.relative), reason });
                return Ok(Next::SkipDirectory);
            }
            Visit::Enter(entry) => {
                rustix::fs::mkdirat(&target.fd, entry.name, Mode::from_raw_mode(0o700))
                    .map_err(JobError::errno("creating", &target.path_of(entry.name)))?;
                let created = rustix::fs::statat(&target.fd, entry.name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(JobError::errno("inspecting", &target.path_of(entry.name)))?;
                target.descend(entry.name, FileId::of(&created))?;
            }
            Visit::Leave(entry) => {
                set_metadata(&target.fd, entry.stat, &target.path())?;
                target.ascend()?;
            }
            Visit::Other(entry) => match FileType::from_raw_mode(entry.stat.st_mode) {
                FileType::RegularFile => {
                    let id = FileId::of(entry.stat);
                    let first = first_names.get(&id).filter(|_| entry.stat.st_nlink > 1);
                    let linked = first.is_some_and(|first| {
                        let first = CString::new(first.clone());
                        first.is_ok_and(|first| {
                            rustix::fs::linkat(&target_root.fd, &first, &target.fd, entry.name, AtFlags::empty())
                                .is_ok()
                        })
                    });
                    match first {
                        Some(first) if linked => {
                            copied.hard_links.push(LinkEntry { path: named(entry.relative), target: named(first) })
                        }
                        _ => {
                            copied.files.push(copy_file(entry, &target, named(entry.relative))?);
                            if entry.stat.st_nlink > 1 {
                                first_names.entry(id).or_insert_with(|| entry.relative.to_vec());
                            }
                        }
                    }
                }
                FileType::Symlink => copied.links.push(copy_symlink(entry, &target, named(entry.relative))?),
                other => {
                    let reason = format!("{} is not copied: only files, folders and links are", describe(other));
                    copied.absent.push(AbsentEntry { path: named(entry.relative), reason });
                }
            },
        }
        Ok(Next::Continue)
    })?;
    set_metadata(&target.fd, &root_stat, into)?;
    Ok(copied)
}

/// What a file of type `kind` is, in words.
fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::Fifo => "a named pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "an unknown file type",
    }
}

/// Gives the open file or directory `fd` (at `path`) the mode and times of `stat`.
fn set_metadata(fd: impl AsFd, stat: &Stat, path: &Path) -> Result<(), JobError> {
    rustix::fs::fchmod(&fd, permissions(stat)).map_err(JobError::errno("setting the mode of", path))?;
    rustix::fs::futimens(&fd, &times(stat)).map_err(JobError::errno("setting the times of", path))
}

fn copy_file(entry: &Entry<'_>, target: &Cursor, recorded_as: String) -> Result<FileEntry, JobError> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let input = rustix::fs::openat(entry.dir, entry.name, flags, Mode::empty())
        .map_err(JobError::errno("reading", entry.path))?;
    let stat = rustix::fs::fstat(&input).map_err(JobError::errno("reading", entry.path))?;
    if FileId::of(&stat) != FileId::of(entry.stat) {
        return Err(JobError::Changed { path: entry.path.to_owned() });
    }
    let target_path = target.path_of(entry.name);
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let output = rustix::fs::openat(&target.fd, entry.name, flags, Mode::from_raw_mode(0o600))
        .map_err(JobError::errno("writing", &target_path))?;
    let (mut input, mut output) = (File::from(input), File::from(output));
    let length = u64::try_from(stat.st_size).unwrap_or(0);
    let (size, sha256) = copy_content(&mut input, &mut output, length, entry.path, &target_path)?;
    set_metadata(&output, &stat, &target_path)?;
    Ok(FileEntry { path: recorded_as, size, sha256 })
}

fn copy_symlink(entry: &Entry<'_>, target: &Cursor, recorded_as: String) -> Result<LinkEntry, JobError> {
    let link = rustix::fs::readlinkat(entry.dir, entry.name, Vec::new())
        .map_err(JobError::errno("reading the link", entry.path))?;
    let target_path = target.path_of(entry.name);
    rustix::fs::symlinkat(link.as_c_str(), &target.fd, entry.name)
        .map_err(JobError::errno("creating the link", &target_path))?;
    rustix::fs::utimensat(&target.fd, entry.name, &times(entry.stat), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(JobError::errno("setting the times of", &target_path))?;
    Ok(LinkEntry { path: recorded_as, target: encode_path(link.as_bytes()) })
}

/// Removes the tree at `path` (an earlier attempt's, read-only folders included: they are ours);
/// nothing there is fine.
pub fn remove_tree(path: &Path) -> Result<(), JobError> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(JobError::io("inspecting", path, error)),
        Ok(metadata) if !metadata.is_dir() => {
            return std::fs::remove_file(path).map_err(|error| JobError::io("removing", path, error));
        }
        Ok(_) => {}
    }
    let writable = Mode::from_raw_mode(0o700);
    rustix::fs::chmod(path, writable).map_err(JobError::errno("making removable", path))?;
    walk(path, &mut |visit| {
        match visit {
            Visit::Enter(entry) => rustix::fs::chmodat(entry.dir, entry.name, writable, AtFlags::empty())
                .map_err(JobError::errno("making removable", entry.path))?,
            Visit::Other(entry) => rustix::fs::unlinkat(entry.dir, entry.name, AtFlags::empty())
                .map_err(JobError::errno("removing", entry.path))?,
            Visit::Leave(entry) => rustix::fs::unlinkat(entry.dir, entry.name, AtFlags::REMOVEDIR)
                .map_err(JobError::errno("removing", entry.path))?,
        }
        Ok(Next::Continue)
    })?;
    std::fs::remove_dir(path).map_err(|error| JobError::io("removing", path, error))
}
