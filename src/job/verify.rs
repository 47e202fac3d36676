//! Checking a backup folder against its `manifest.json`: every listed file is there with its size
//! and SHA-256, every listed link with its target, and nothing else is (an unlisted file would be
//! restored unchecked). Used offline (`apimanager-backup-operator verify DIR`), by the restore's
//! verify step Pod (`job verify`), and on the System FileStorage claim after a restore copied it back.

use super::JobError;
use super::manifest::{BackupState, FileEntry, Manifest, encode_path, hash_stream};
use super::tree::{Entry, LOST_AND_FOUND, Next, Visit, walk};
use crate::layout::{APIMANAGER_FILE, MANIFEST_FILE};
use crate::plural::counted;
use rustix::fs::{FileType, Mode, OFlags};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::Path;

/// One way a folder differs from its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A listed file or link is not there.
    Missing {
        /// Path as listed in the manifest.
        path: String,
    },
    /// A listed file (or hard link) is a folder, link or device instead.
    NotAFile {
        /// Path as listed in the manifest.
        path: String,
    },
    /// A listed file has another size.
    Size {
        /// Path as listed in the manifest.
        path: String,
        /// Size in the manifest.
        expected: u64,
        /// Size found.
        found: u64,
    },
    /// A listed file has the listed size but other content.
    Checksum {
        /// Path as listed in the manifest.
        path: String,
        /// SHA-256 in the manifest.
        expected: String,
        /// SHA-256 found.
        found: String,
    },
    /// A listed link is not a link.
    NotALink {
        /// Path as listed in the manifest.
        path: String,
    },
    /// A listed link points elsewhere.
    LinkTarget {
        /// Path as listed in the manifest.
        path: String,
        /// Target in the manifest.
        expected: String,
        /// Target found.
        found: String,
    },
    /// A file or link the manifest does not list.
    Unlisted {
        /// Path relative to the folder.
        path: String,
    },
    /// A listed file could not be read.
    Unreadable {
        /// Path as listed in the manifest.
        path: String,
        /// Why.
        reason: String,
    },
    /// The manifest does not list the APIManager: the backup never finished.
    Incomplete,
}

impl Problem {
    fn path(&self) -> &str {
        match self {
            Self::Missing { path }
            | Self::NotAFile { path }
            | Self::Size { path, .. }
            | Self::Checksum { path, .. }
            | Self::NotALink { path }
            | Self::LinkTarget { path, .. }
            | Self::Unlisted { path }
            | Self::Unreadable { path, .. } => path,
            Self::Incomplete => MANIFEST_FILE,
        }
    }
}

/// What a folder is compared with, as a problem names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The backup's `manifest.json`.
    Manifest,
    /// The backup's own files, as read (a backup without manifest, in 3scale-operator's layout).
    Backup,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Manifest => write!(f, "{MANIFEST_FILE} says"),
            Self::Backup => write!(f, "the backup has"),
        }
    }
}

impl Problem {
    /// The problem on one line, naming what was expected as `reference` has it.
    pub fn describe(&self, reference: Reference) -> String {
        let path = self.path();
        match self {
            Self::Missing { .. } => format!("{path}: missing"),
            Self::NotAFile { .. } => format!("{path}: not a regular file"),
            Self::Size { expected, found, .. } => {
                format!("{path}: size {}, {reference} {expected}", counted(*found, "byte", "bytes"))
            }
            Self::Checksum { expected, found, .. } => format!("{path}: sha256 {found}, {reference} {expected}"),
            Self::NotALink { .. } => format!("{path}: not a symbolic link"),
            Self::LinkTarget { expected, found, .. } => format!("{path}: link to {found:?}, {reference} {expected:?}"),
            Self::Unlisted { .. } => match reference {
                Reference::Manifest => format!("{path}: not listed in {MANIFEST_FILE}"),
                Reference::Backup => format!("{path}: not in the backup"),
            },
            Self::Unreadable { reason, .. } => format!("{path}: unreadable: {reason}"),
            Self::Incomplete => format!("{path}: does not list {APIMANAGER_FILE}; the backup did not finish"),
        }
    }
}

/// The result of checking a backup folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Everything matches the manifest.
    Verified {
        /// Files checked.
        files: usize,
        /// Links checked.
        links: usize,
    },
    /// No manifest: a backup in 3scale-operator's layout (it writes none), which cannot be checked.
    NoManifest,
    /// The manifest says the backup is in progress: it failed, was interrupted or still runs, and
    /// is never restored. Its files are not compared.
    Unfinished,
    /// The folder differs from its manifest, or holds no backup; sorted by path.
    Failed(Vec<Problem>),
}

impl fmt::Display for Verification {
    /// One line, or one line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Verified { files, links } => write!(
                f,
                "verified: {} and {} match {MANIFEST_FILE}",
                counted(*files as u64, "file", "files"),
                counted(*links as u64, "link", "links")
            ),
            Self::NoManifest => write!(
                f,
                "not verified: no {MANIFEST_FILE} (a backup in 3scale-operator's layout); sizes and checksums cannot be checked"
            ),
            Self::Unfinished => write!(
                f,
                "not verified: {MANIFEST_FILE} says the backup is in progress: it did not finish (its \
APIManagerBackup failed, was interrupted or is still running), so it cannot be restored"
            ),
            Self::Failed(problems) => {
                let lines: Vec<String> = problems.iter().map(|problem| problem.describe(Reference::Manifest)).collect();
                write!(f, "{}", lines.join("\n"))
            }
        }
    }
}

/// The problems on one line, for a condition message, naming what was expected as `reference`
/// has it.
pub fn one_line(problems: &[Problem], reference: Reference) -> String {
    problems.iter().map(|problem| problem.describe(reference)).collect::<Vec<_>>().join("; ")
}

/// Checks the backup folder `root` against its manifest.
pub fn verify_backup(root: &Path) -> Result<Verification, JobError> {
    let Some(manifest) = Manifest::read(root)? else {
        if fs::symlink_metadata(root.join(APIMANAGER_FILE)).is_ok_and(|m| m.is_file()) {
            return Ok(Verification::NoManifest);
        }
        let missing = [MANIFEST_FILE, APIMANAGER_FILE].map(|path| Problem::Missing { path: path.to_owned() });
        return Ok(Verification::Failed(missing.into()));
    };
    if manifest.state == BackupState::InProgress {
        return Ok(Verification::Unfinished);
    }
    let mut problems = compare(root, "", &manifest, Unlisted::Reported)?;
    problems.extend(s3_section_problems(&manifest));
    if !manifest.files.iter().any(|f| f.path == APIMANAGER_FILE) {
        problems.push(Problem::Incomplete);
    }
    if problems.is_empty() {
        let links = manifest.links.len() + manifest.hard_links.len();
        return Ok(Verification::Verified { files: manifest.files.len(), links });
    }
    problems.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(Verification::Failed(problems))
}

/// How the manifest's S3 FileStorage section disagrees with its `files` list: each object's file
/// must be listed there with the same size and SHA-256 (which [`compare`] checks against the bytes).
fn s3_section_problems(manifest: &Manifest) -> Vec<Problem> {
    let Some(section) = &manifest.system_file_storage_s3 else { return Vec::new() };
    let files: BTreeMap<&str, &FileEntry> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    section
        .objects
        .iter()
        .filter_map(|object| match files.get(object.path.as_str()) {
            None => Some(Problem::Missing { path: object.path.clone() }),
            Some(file) if file.size != object.size => {
                Some(Problem::Size { path: object.path.clone(), expected: object.size, found: file.size })
            }
            Some(file) if file.sha256 != object.sha256 => Some(Problem::Checksum {
                path: object.path.clone(),
                expected: object.sha256.clone(),
                found: file.sha256.clone(),
            }),
            Some(_) => None,
        })
        .collect()
}

/// Whether [`compare`] reports what the manifest does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlisted {
    /// A backup folder holds nothing else.
    Reported,
    /// A restored claim may hold other things.
    Ignored,
}

/// What the manifest lists at one path.
enum Listed<'a> {
    File(&'a FileEntry),
    /// A further name of a hard-linked file: its content is the named file's.
    HardLink(Option<&'a FileEntry>),
    Link(&'a str),
}

/// Compares the tree at `root`, which holds what the backup holds under folder `prefix` (all of
/// it when `prefix` is empty), with what the manifest lists there. The tree is walked through
/// open folder handles and never through a link, so a listed path can only name something inside
/// `root` (one that would leave it is reported missing, never read). `lost+found` at the top of
/// `root` and the top-level `manifest.json` are not compared.
pub fn compare(root: &Path, prefix: &str, manifest: &Manifest, unlisted: Unlisted) -> Result<Vec<Problem>, JobError> {
    let under = |path: &str| prefix.is_empty() || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'));
    let by_path: BTreeMap<&str, &FileEntry> = manifest.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let mut listed: BTreeMap<&str, Listed<'_>> = BTreeMap::new();
    listed.extend(manifest.files.iter().filter(|f| under(&f.path)).map(|f| (f.path.as_str(), Listed::File(f))));
    listed.extend(manifest.links.iter().filter(|l| under(&l.path)).map(|l| (l.path.as_str(), Listed::Link(&l.target))));
    listed.extend(
        manifest
            .hard_links
            .iter()
            .filter(|l| under(&l.path))
            .map(|l| (l.path.as_str(), Listed::HardLink(by_path.get(l.target.as_str()).copied()))),
    );
    let mut problems = Vec::new();
    walk(root, &mut |visit| {
        let entry = match visit {
            Visit::Enter(entry) if entry.relative == LOST_AND_FOUND.as_bytes() => return Ok(Next::SkipDirectory),
            Visit::Other(entry) => entry,
            Visit::Enter(_) | Visit::Leave(_) => return Ok(Next::Continue),
        };
        let path = if prefix.is_empty() {
            encode_path(entry.relative)
        } else {
            encode_path(&[prefix.as_bytes(), b"/", entry.relative].concat())
        };
        match listed.remove(path.as_str()) {
            Some(expected) => problems.extend(check(entry, path, expected)),
            None if unlisted == Unlisted::Reported && path != MANIFEST_FILE => {
                problems.push(Problem::Unlisted { path })
            }
            None => {}
        }
        Ok(Next::Continue)
    })?;
    problems.extend(listed.into_keys().map(|path| Problem::Missing { path: path.to_owned() }));
    Ok(problems)
}

/// Compares one walked entry with what the manifest lists at its path.
fn check(entry: &Entry<'_>, path: String, expected: Listed<'_>) -> Option<Problem> {
    let kind = FileType::from_raw_mode(entry.stat.st_mode);
    let file = match expected {
        Listed::Link(target) if kind == FileType::Symlink => {
            return match rustix::fs::readlinkat(entry.dir, entry.name, Vec::new()) {
                Ok(found) if encode_path(found.as_bytes()) == target => None,
                Ok(found) => Some(Problem::LinkTarget {
                    path,
                    expected: target.to_owned(),
                    found: encode_path(found.as_bytes()),
                }),
                Err(error) => Some(Problem::Unreadable { path, reason: std::io::Error::from(error).to_string() }),
            };
        }
        Listed::Link(_) => return Some(Problem::NotALink { path }),
        _ if kind != FileType::RegularFile => return Some(Problem::NotAFile { path }),
        Listed::File(file) | Listed::HardLink(Some(file)) => file,
        Listed::HardLink(None) => return Some(Problem::Missing { path }),
    };
    let found = u64::try_from(entry.stat.st_size).unwrap_or(0);
    if found != file.size {
        return Some(Problem::Size { path, expected: file.size, found });
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let hashed =
        rustix::fs::openat(entry.dir, entry.name, flags, Mode::empty()).map_err(std::io::Error::from).and_then(|fd| {
            hash_stream(&mut fs::File::from(fd), entry.path, |_| Ok(()))
                .map_err(|error| std::io::Error::other(error.to_string()))
        });
    match hashed {
        Ok((_, sha256)) if sha256 != file.sha256 => {
            Some(Problem::Checksum { path, expected: file.sha256.clone(), found: sha256 })
        }
        Ok(_) => None,
        Err(error) => Some(Problem::Unreadable { path, reason: error.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::manifest::LinkEntry;
    use crate::job::scratch;

    #[test]
    fn problems_name_what_they_are_compared_with_and_counts_agree_with_their_nouns() {
        let size = Problem::Size { path: "a".into(), expected: 5, found: 1 };
        assert_eq!(size.describe(Reference::Manifest), "a: size 1 byte, manifest.json says 5");
        assert_eq!(size.describe(Reference::Backup), "a: size 1 byte, the backup has 5");
        let link = Problem::LinkTarget { path: "l".into(), expected: "x".into(), found: "y".into() };
        assert_eq!(link.describe(Reference::Backup), r#"l: link to "y", the backup has "x""#);
        let unlisted = Problem::Unlisted { path: "u".into() };
        assert_eq!(unlisted.describe(Reference::Manifest), "u: not listed in manifest.json");
        assert_eq!(unlisted.describe(Reference::Backup), "u: not in the backup");
        assert_eq!(
            one_line(&[size, Problem::Missing { path: "m".into() }], Reference::Manifest),
            "a: size 1 byte, manifest.json says 5; m: missing"
        );
        let verified = |files, links| Verification::Verified { files, links }.to_string();
        assert_eq!(verified(1, 1), "verified: 1 file and 1 link match manifest.json");
        assert_eq!(verified(3, 0), "verified: 3 files and 0 links match manifest.json");
    }

    #[test]
    fn a_backup_in_progress_is_unfinished_before_its_files_are_compared() {
        let root = scratch("unfinished");
        let mut manifest = Manifest {
            files: vec![FileEntry { path: "gone".into(), size: 1, sha256: String::new() }],
            ..Manifest::default()
        };
        manifest.begin(&root).expect("manifest");
        assert_eq!(verify_backup(&root).expect("verify"), Verification::Unfinished);
        assert_eq!(
            Verification::Unfinished.to_string(),
            "not verified: manifest.json says the backup is in progress: it did not finish (its APIManagerBackup failed, \
was interrupted or is still running), so it cannot be restored"
        );
        manifest.finish_step("copy-files", crate::job::manifest::now(), true);
        manifest.save(&root).expect("manifest");
        assert!(matches!(verify_backup(&root).expect("verify"), Verification::Failed(_)), "compared once complete");
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn listed_paths_that_leave_the_folder_are_missing_and_never_read() {
        let root = scratch("unsafe");
        let manifest = Manifest {
            files: vec![FileEntry { path: "../outside".into(), size: 0, sha256: String::new() }],
            links: vec![LinkEntry { path: "/etc/passwd".into(), target: "x".into() }],
            ..Manifest::default()
        };
        let problems = compare(&root, "", &manifest, Unlisted::Reported).expect("walk");
        assert_eq!(
            problems,
            [Problem::Missing { path: "../outside".into() }, Problem::Missing { path: "/etc/passwd".into() }]
        );
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn a_prefix_checks_only_what_is_listed_under_it_at_the_new_root() {
        let root = scratch("prefix");
        fs::write(root.join("a.txt"), b"abc").expect("file");
        fs::write(root.join("other.txt"), b"not from the backup").expect("file");
        let manifest = Manifest {
            files: vec![
                FileEntry {
                    path: "system-filestorage-pvc/a.txt".into(),
                    size: 3,
                    sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".into(),
                },
                FileEntry { path: "secrets/zync.json".into(), size: 1, sha256: String::new() },
            ],
            ..Manifest::default()
        };
        assert_eq!(compare(&root, "system-filestorage-pvc", &manifest, Unlisted::Ignored).expect("walk"), []);
        fs::write(root.join("a.txt"), b"abd").expect("file");
        let problems = compare(&root, "system-filestorage-pvc", &manifest, Unlisted::Ignored).expect("walk");
        assert!(matches!(&problems[..], [Problem::Checksum { path, .. }] if path == "system-filestorage-pvc/a.txt"));
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn each_s3_object_of_the_manifest_must_be_listed_under_files_alike() {
        use crate::job::s3_section::{S3Object, S3Section};
        let object = |key: &str, size: u64, sha: &str| S3Object {
            key: key.into(),
            path: format!("system-filestorage-s3/objects/{key}"),
            size,
            sha256: sha.into(),
            content_type: None,
            metadata: BTreeMap::new(),
        };
        let file = |key: &str, size: u64, sha: &str| FileEntry {
            path: format!("system-filestorage-s3/objects/{key}"),
            size,
            sha256: sha.into(),
        };
        let mut manifest =
            Manifest { files: vec![file("a", 1, "aa"), file("b", 2, "bb"), file("d", 1, "dd")], ..Manifest::default() };
        assert!(s3_section_problems(&manifest).is_empty(), "no section, nothing to check");
        manifest.system_file_storage_s3 = Some(S3Section {
            bucket: "files".into(),
            secret: "s".into(),
            objects: vec![object("a", 1, "aa"), object("b", 3, "bb"), object("c", 1, "cc"), object("d", 1, "ee")],
        });
        let path = |key: &str| format!("system-filestorage-s3/objects/{key}");
        assert_eq!(
            s3_section_problems(&manifest),
            [
                Problem::Size { path: path("b"), expected: 3, found: 2 },
                Problem::Missing { path: path("c") },
                Problem::Checksum { path: path("d"), expected: "ee".into(), found: "dd".into() },
            ]
        );
    }
}
