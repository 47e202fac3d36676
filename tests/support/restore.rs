//! Restores as the end-to-end tests drive them: created with kubectl and waited for through a
//! watch (the harness's 3scale-operator stand-in reports each restored APIManager available).

use super::cluster::kubectl_ok;
use super::https;
use apimanager_backup_operator::api::restore::{APIManagerRestore, APIManagerRestoreStatus};
use apimanager_backup_operator::api::status::OperationStatus;
use apimanager_backup_operator::local::LocalCluster;
use kube::api::Api;
use kube::runtime::wait::await_condition;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// YAML of an APIManagerRestore `name` reading backup claim `claim`.
pub fn restore_yaml(name: &str, claim: &str) -> String {
    format!(
        "apiVersion: apps.3scale.net/v1alpha1\nkind: APIManagerRestore\nmetadata:\n  name: {name}\nspec:\n  restoreSource:\n    persistentVolumeClaim:\n      claimSource:\n        claimName: {claim}\n"
    )
}

/// Creates restore `name` of claim `claim` in `namespace` with kubectl.
pub fn create_restore(cluster: &LocalCluster, namespace: &str, name: &str, claim: &str) {
    kubectl_ok(cluster, &["-n", namespace, "create", "-f", "-"], &restore_yaml(name, claim));
}

/// Waits (watching it) until restore `name` completed or failed, and returns it.
pub async fn finished_restore(cluster: &LocalCluster, namespace: &str, name: &str) -> APIManagerRestore {
    restore_when(cluster, namespace, name, |status| status.progress().is_final()).await
}

/// Waits (watching it) until restore `name` has a status for which `holds` is true, and returns it.
pub async fn restore_when(
    cluster: &LocalCluster,
    namespace: &str,
    name: &str,
    holds: impl Fn(&APIManagerRestoreStatus) -> bool,
) -> APIManagerRestore {
    let api: Api<APIManagerRestore> = Api::namespaced(cluster.admin_client().await.expect("client"), namespace);
    let reached =
        move |restore: Option<&APIManagerRestore>| restore.and_then(|r| r.status.as_ref()).is_some_and(&holds);
    let waited = tokio::time::timeout(Duration::from_secs(120), await_condition(api, name, reached)).await;
    waited.expect("the restore gets there within 2 minutes").expect("watch").expect("the restore exists")
}

/// Whether the restore's `Ready` condition has reason `reason`.
pub fn ready_reason(status: &APIManagerRestoreStatus, reason: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == reason)
}

/// The reasons of the events about `object` in `namespace`, in no particular order.
pub fn event_reasons(cluster: &LocalCluster, namespace: &str, object: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={object}");
    let reasons = kubectl_ok(
        cluster,
        &["-n", namespace, "get", "events", "--field-selector", &selector, "-o", "jsonpath={.items[*].reason}"],
        "",
    );
    reasons.split_whitespace().map(str::to_owned).collect()
}

/// The value of `series` (name and labels) in the operator's `/metrics`; fails when it is absent.
pub async fn sample(cluster: &LocalCluster, series: &str) -> f64 {
    let ca = cluster.plane.certs.join("ca.crt");
    let scrape = https::request(cluster.operator.address(), https::client_config(&[&ca]), "GET", "/metrics", b"").await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    let value = scrape.body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok());
    value.unwrap_or_else(|| panic!("{series} is not in /metrics:\n{}", scrape.body))
}

/// What a tree holds at a path: a file's bytes, a link's target or a folder, with mode and
/// modification time.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File { bytes: Vec<u8>, mode: u32, mtime: i64 },
    /// A symbolic link.
    Link { target: PathBuf, mtime: i64 },
    /// A folder.
    Folder { mode: u32, mtime: i64 },
}

impl Entry {
    /// What `restore-files` makes of this backed-up entry: a file gets group read and write, a folder
    /// group read, write and search and setgid, a link stays as it is.
    pub fn shared_with_group(&self) -> Self {
        match self {
            Self::File { bytes, mode, mtime } => Self::File { bytes: bytes.clone(), mode: mode | 0o060, mtime: *mtime },
            Self::Folder { mode, mtime } => Self::Folder { mode: mode | 0o2070, mtime: *mtime },
            Self::Link { target, mtime } => Self::Link { target: target.clone(), mtime: *mtime },
        }
    }
}

/// Every entry under `root` (not `root` itself), by path relative to it.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|e| panic!("{}: {e}", folder.display())) {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let mtime = filetime::FileTime::from_last_modification_time(&meta).unix_seconds();
            let mode = meta.permissions().mode() & 0o7777;
            let found = if meta.file_type().is_symlink() {
                Entry::Link { target: std::fs::read_link(&path).expect("link"), mtime }
            } else if meta.is_dir() {
                pending.push(path.clone());
                Entry::Folder { mode, mtime }
            } else {
                Entry::File { bytes: std::fs::read(&path).expect("file"), mode, mtime }
            };
            entries.insert(path.strip_prefix(root).expect("under root").to_owned(), found);
        }
    }
    entries
}
