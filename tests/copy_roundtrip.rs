//! A hostile file tree through `job copy-files` (the binary, as the Pod runs it) and back with
//! the same copy a restore uses: bytes, modes, times and links come back as they were.

mod support;

use apimanager_backup_operator::job::manifest::{LinkEntry, Manifest, decode_path, encode_path, hash_stream};
use apimanager_backup_operator::job::tree::{Visit, copy_tree, walk};
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use support::certs::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_apimanager-backup-operator");
/// Logical size of the sparse file.
const SPARSE_LENGTH: u64 = 256 << 20;
/// Name of each folder of the deep path; 20 of them exceed PATH_MAX (4096 bytes).
const DEEP_NAME: [u8; 250] = [b'd'; 250];
const DEPTH: usize = 20;

/// What a tree holds at one path, as compared across copies.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    mode: u32,
    modified: (i64, u64),
    size: u64,
    sha256: String,
    link: Vec<u8>,
    /// The first path (sorted) of the file's hard links, if it has several.
    same_as: Option<Vec<u8>>,
}

/// Every path below `root` (but the root) with what it holds.
fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut record = |entry: &apimanager_backup_operator::job::tree::Entry<'_>| {
        let stat = entry.stat;
        let kind = match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => "file",
            FileType::Directory => "dir",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            _ => "other",
        };
        let (mut size, mut sha256, mut link, mut same_as) = (0, String::new(), Vec::new(), None);
        if kind == "file" {
            let fd = rustix::fs::openat(entry.dir, entry.name, OFlags::RDONLY, Mode::empty()).expect("open");
            (size, sha256) = hash_stream(&mut std::fs::File::from(fd), entry.path, |_| Ok(())).expect("hash");
            if stat.st_nlink > 1 {
                same_as = Some(inodes.entry(stat.st_ino).or_insert_with(|| entry.relative.to_vec()).clone());
            }
        }
        if kind == "symlink" {
            link = rustix::fs::readlinkat(entry.dir, entry.name, Vec::new()).expect("readlink").into_bytes();
        }
        let mode = if kind == "symlink" { 0 } else { stat.st_mode & 0o7777 };
        let modified = (stat.st_mtime, stat.st_mtime_nsec);
        nodes.insert(entry.relative.to_vec(), Node { kind, mode, modified, size, sha256, link, same_as });
    };
    walk(root, &mut |visit| {
        if let Visit::Other(entry) | Visit::Leave(entry) = visit {
            record(entry);
        }
        Ok(apimanager_backup_operator::job::tree::Next::Continue)
    })
    .expect("walk");
    nodes
}

fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).expect("no NUL")
}

fn write_at(dir: &OwnedFd, name: &[u8], content: &[u8], mode: u32) {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
    let fd = rustix::fs::openat(dir, cstring(name).as_c_str(), flags, Mode::from_raw_mode(0o600)).expect("create");
    std::io::Write::write_all(&mut std::fs::File::from(fd), content).expect("write");
    rustix::fs::chmodat(dir, cstring(name).as_c_str(), Mode::from_raw_mode(mode), AtFlags::empty()).expect("mode");
}

fn set_mtime(dir: &OwnedFd, name: &[u8], seconds: i64) {
    let time = rustix::fs::Timespec { tv_sec: seconds, tv_nsec: 123_456_789 };
    let times = rustix::fs::Timestamps { last_access: time, last_modification: time };
    rustix::fs::utimensat(dir, cstring(name).as_c_str(), &times, AtFlags::SYMLINK_NOFOLLOW).expect("times");
}

/// The hostile tree: a sparse file, a path longer than PATH_MAX, names that are not UTF-8, every
/// file type, hard links, odd modes and times.
fn hostile_tree(root: &Path) -> Vec<u8> {
    let top = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("open root");
    {
        let sparse = std::fs::File::create(root.join("sparse.img")).expect("sparse");
        std::os::unix::fs::FileExt::write_all_at(&sparse, b"header", 0).expect("write");
        std::os::unix::fs::FileExt::write_all_at(&sparse, b"middle", SPARSE_LENGTH / 2).expect("write");
        sparse.set_len(SPARSE_LENGTH).expect("length");
    }
    write_at(&top, b"bad\xff", b"first invalid name", 0o640);
    write_at(&top, b"bad\xfe", b"second invalid name", 0o600);
    write_at(&top, b"back\\slash", b"", 0o444);
    write_at(&top, b"run.sh", b"#!/bin/sh\n", 0o4755);
    rustix::fs::mkdirat(&top, c"uploads", Mode::from_raw_mode(0o755)).expect("mkdir");
    write_at(&top, b"uploads/original.png", b"png bytes", 0o644);
    rustix::fs::linkat(&top, c"uploads/original.png", &top, c"hard-link.png", AtFlags::empty()).expect("hard link");
    rustix::fs::symlinkat(c"uploads/original.png", &top, c"relative-link").expect("symlink");
    rustix::fs::symlinkat(c"/nowhere/\xff", &top, c"dangling-link").expect("dangling symlink");
    rustix::fs::mkdirat(&top, c"empty", Mode::from_raw_mode(0o700)).expect("mkdir");
    rustix::fs::mkfifoat(&top, c"pipe", Mode::from_raw_mode(0o644)).expect("fifo");
    let socket = std::os::unix::net::UnixListener::bind(root.join("socket")).expect("socket");
    drop(socket);
    rustix::fs::mkdirat(&top, c"frozen", Mode::from_raw_mode(0o755)).expect("mkdir");
    write_at(&top, b"frozen/inside.txt", b"inside a read-only folder", 0o444);
    rustix::fs::chmodat(&top, c"frozen", Mode::from_raw_mode(0o555), AtFlags::empty()).expect("mode");

    let mut deep = Vec::new();
    let mut dir = rustix::fs::openat(&top, c".", OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).expect("dup");
    for _ in 0..DEPTH {
        rustix::fs::mkdirat(&dir, cstring(&DEEP_NAME).as_c_str(), Mode::from_raw_mode(0o750)).expect("deep mkdir");
        let next =
            rustix::fs::openat(&dir, cstring(&DEEP_NAME).as_c_str(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                .expect("deep open");
        dir = next;
        deep.extend_from_slice(&DEEP_NAME);
        deep.push(b'/');
    }
    write_at(&dir, b"bottom \xe9.txt", b"deep below PATH_MAX", 0o600);
    set_mtime(&dir, b"bottom \xe9.txt", 1_400_000_000);
    deep.extend_from_slice(b"bottom \xe9.txt");
    for (name, seconds) in [
        (&b"bad\xff"[..], 1_000_000_000),
        (b"relative-link", 1_100_000_000),
        (b"uploads/original.png", 1_200_000_000),
        (b"uploads", 1_300_000_000),
        (b"frozen", 1_350_000_000),
    ] {
        set_mtime(&top, name, seconds);
    }
    deep
}

#[test]
fn a_hostile_tree_survives_copy_files_and_the_copy_back() {
    let scratch = TempDir::new("roundtrip");
    let (source, backup, restored) = (scratch.0.join("source"), scratch.0.join("backup"), scratch.0.join("restored"));
    for dir in [&source, &backup, &restored] {
        std::fs::create_dir_all(dir).expect("dir");
    }
    let deep = hostile_tree(&source);
    assert!(deep.len() > 4096, "the deep path exceeds PATH_MAX");

    let output = support::jobs::copy_files(Command::new(BIN), &source, &backup, &scratch.0.join("termination-log"));
    assert!(output.status.success(), "copy-files failed: {}", String::from_utf8_lossy(&output.stderr));
    let copied = backup.join("system-filestorage-pvc");
    let back = copy_tree(&copied, &restored, "restored").expect("copy back");

    let (original, restored_nodes) = (snapshot(&source), snapshot(&restored));
    let mut expected = original;
    for special in [&b"pipe"[..], b"socket"] {
        assert!(expected.remove(special).is_some(), "the source has {}", String::from_utf8_lossy(special));
    }
    assert_eq!(restored_nodes.len(), expected.len());
    for (path, node) in &expected {
        assert_eq!(restored_nodes.get(path), Some(node), "{}", encode_path(path));
    }
    let root_mode = |dir: &Path| std::fs::metadata(dir).expect("meta").mode() & 0o7777;
    assert_eq!(root_mode(&restored), root_mode(&source));

    for tree in [&copied, &restored] {
        let blocks = std::fs::metadata(tree.join("sparse.img")).expect("sparse copy").blocks();
        assert!(blocks * 512 < 1024 * 1024, "the sparse file stays sparse: {} bytes on disk", blocks * 512);
    }

    let manifest = Manifest::load(&backup).expect("manifest");
    let entry = |path: &str| manifest.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{path} listed"));
    let (first, second) = (entry("system-filestorage-pvc/bad\\xff"), entry("system-filestorage-pvc/bad\\xfe"));
    assert_ne!(first.sha256, second.sha256, "two invalid names are two entries");
    assert_eq!(first.size, 18);
    assert_eq!(entry("system-filestorage-pvc/back\\\\slash").size, 0);
    assert_eq!(entry("system-filestorage-pvc/sparse.img").size, SPARSE_LENGTH);
    let deep_entry = entry(&format!("system-filestorage-pvc/{}", encode_path(&deep)));
    assert_eq!(deep_entry.size, 19);
    for file in &manifest.files {
        let bytes = decode_path(&file.path).expect("decodes");
        let relative = bytes.strip_prefix(b"system-filestorage-pvc/").expect("under the folder");
        let node = &expected[relative];
        assert_eq!((node.size, &node.sha256), (file.size, &file.sha256), "{}", file.path);
    }
    assert_eq!(
        manifest.hard_links,
        [LinkEntry {
            path: "system-filestorage-pvc/uploads/original.png".into(),
            target: "system-filestorage-pvc/hard-link.png".into()
        }]
    );
    assert!(
        manifest.links.contains(&LinkEntry {
            path: "system-filestorage-pvc/dangling-link".into(),
            target: "/nowhere/\\xff".into()
        })
    );
    let absent: Vec<(&str, &str)> = manifest.absent.iter().map(|a| (a.path.as_str(), a.reason.as_str())).collect();
    assert_eq!(
        absent,
        [
            ("system-filestorage-pvc/pipe", "a named pipe is not copied: only files, folders and links are"),
            ("system-filestorage-pvc/socket", "a socket is not copied: only files, folders and links are"),
        ]
    );
    let back_paths: Vec<&str> = back.files.iter().map(|f| f.path.strip_prefix("restored/").expect("prefix")).collect();
    let backup_paths: Vec<&str> =
        manifest.files.iter().map(|f| f.path.strip_prefix("system-filestorage-pvc/").expect("prefix")).collect();
    assert_eq!(back_paths, backup_paths, "the copy back lists the same files");
}
