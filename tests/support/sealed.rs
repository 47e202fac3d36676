//! The sealed layout's data path as the tests drive it without a cluster: key Secret folders, the
//! sample FileStorage tree, and the export step's part of a backup.

use apimanager_backup_operator::job::JobError;
use apimanager_backup_operator::job::destination::ObjectSink;
use apimanager_backup_operator::job::destination::write::BucketBackup;
use apimanager_backup_operator::job::manifest::{Manifest, ObjectRef};
use apimanager_backup_operator::layout::APIMANAGER_FILE;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The sample Secret's password, which must never be stored in clear.
pub const PASSWORD: &str = "s3cr3t-Seed-Passw0rd-4242";
/// The sample logo's bytes, which must never be stored in clear.
pub const FILE_TEXT: &[u8] = b"uploaded logo bytes that must not appear in clear";

/// A key Secret's folder `name` under `dir` holding `keys` (id, 32-byte value).
pub fn keys(dir: &Path, name: &str, keys: &[(&str, [u8; 32])]) -> String {
    let folder = dir.join(name);
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).expect("keys");
    for (id, value) in keys {
        fs::write(folder.join(id), value).expect("key");
    }
    folder.to_string_lossy().into_owned()
}

/// The FileStorage tree at `root`: nested folders with modes, a file of `large` bytes, an empty
/// file, a symbolic link, a hard link, set times.
pub fn file_tree(root: &Path, large: u32) {
    fs::create_dir_all(root.join("uploads/logos")).expect("dirs");
    fs::write(root.join("uploads/logos/logo.png"), FILE_TEXT).expect("file");
    fs::write(root.join("robots.txt"), b"").expect("empty");
    let large: Vec<u8> = (0..large).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(root.join("uploads/big.bin"), &large).expect("large");
    std::os::unix::fs::symlink("uploads/logos/logo.png", root.join("current-logo")).expect("link");
    fs::hard_link(root.join("uploads/logos/logo.png"), root.join("uploads/same-logo.png")).expect("hard link");
    fs::set_permissions(root.join("robots.txt"), fs::Permissions::from_mode(0o640)).expect("mode");
    fs::set_permissions(root.join("uploads/logos"), fs::Permissions::from_mode(0o750)).expect("mode");
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 123_000_000);
    filetime::set_file_mtime(root.join("uploads/logos/logo.png"), old).expect("mtime");
}

/// The export step of backup `name` (UID `uid`) of namespace `3scale`: a Secret holding
/// [`PASSWORD`] and the APIManager, then its part.
pub async fn export_sample(mut export: BucketBackup, name: &str, uid: &str) -> Result<(), JobError> {
    let mut manifest = Manifest::default();
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "system-seed"},
        "stringData": {"MASTER_PASSWORD": PASSWORD}});
    export.put("secrets/system-seed.json", serde_json::to_vec(&secret).expect("json"), &mut manifest).await?;
    let apimanager = serde_json::json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager",
        "metadata": {"name": "example"}, "spec": {"wildcardDomain": "example.com"}});
    export.put(APIMANAGER_FILE, serde_json::to_vec(&apimanager).expect("json"), &mut manifest).await?;
    manifest.namespace = "3scale".into();
    manifest.backup = ObjectRef { name: name.into(), uid: uid.into() };
    export.finish(manifest, false).await?;
    Ok(())
}

/// Fails unless `target` holds the links, modes, times and hard link of [`file_tree`] as made.
pub fn assert_file_tree_restored(target: &Path) {
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::read_link(target.join("current-logo")).expect("link"), Path::new("uploads/logos/logo.png"));
    let meta = |path: &Path| fs::symlink_metadata(path).expect("meta");
    assert_eq!(meta(&target.join("robots.txt")).permissions().mode() & 0o777, 0o640);
    assert_eq!(meta(&target.join("uploads/logos")).permissions().mode() & 0o777, 0o750);
    let logo = meta(&target.join("uploads/logos/logo.png"));
    assert_eq!((logo.mtime(), logo.mtime_nsec()), (1_600_000_000, 123_000_000));
    assert_eq!(logo.ino(), meta(&target.join("uploads/same-logo.png")).ino(), "hard link kept");
}
