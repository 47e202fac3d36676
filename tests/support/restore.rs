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

/// What a restore must bring back of the sample installation of a namespace: its Secrets, its
/// ConfigMaps' data, its APIManager's spec and its System FileStorage files, taken before they go.
pub struct Installation {
    /// The sample's Secrets, as they were.
    pub secrets: Vec<k8s_openapi::api::core::v1::Secret>,
    /// The data of each of [`apimanager_backup_operator::layout::CONFIG_MAPS`].
    pub config_maps: Vec<Option<BTreeMap<String, String>>>,
    /// The APIManager's spec.
    pub apimanager_spec: serde_json::Value,
    /// The System FileStorage claim's files.
    pub files: BTreeMap<PathBuf, Entry>,
}

impl Installation {
    /// The installation of namespace `ns`, as it is now.
    pub async fn of(cluster: &LocalCluster, ns: &str) -> Self {
        use apimanager_backup_operator::api::apimanager::APIManager;
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        use kube::api::{ApiResource, DynamicObject};
        let admin = cluster.admin_client().await.expect("client");
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
        let mut originals = Vec::new();
        for name in super::cluster::sample_secret_names() {
            originals.push(secrets.get(&name).await.expect("secret"));
        }
        let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
        let mut data = Vec::new();
        for name in apimanager_backup_operator::layout::CONFIG_MAPS {
            data.push(config_maps.get(name).await.expect("config map").data);
        }
        let apimanagers: Api<DynamicObject> = Api::namespaced_with(admin, ns, &ApiResource::erase::<APIManager>(&()));
        let apimanager_spec = apimanagers.get("example-apimanager").await.expect("apimanager").data["spec"].clone();
        let files = tree(&cluster.volume(ns, "system-storage"));
        Self { secrets: originals, config_maps: data, apimanager_spec, files }
    }

    /// What must never be stored in clear: every Secret value of 8 bytes or more, and the sample's
    /// uploaded file.
    pub fn clear_values(&self) -> Vec<Vec<u8>> {
        let mut values: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .flat_map(|secret| secret.data.clone().unwrap_or_default().into_values())
            .map(|value| value.0)
            .filter(|value| value.len() >= 8)
            .collect();
        if let Some(Entry::File { bytes, .. }) = self.files.get(Path::new("uploads/attachments.txt")) {
            values.push(bytes.clone());
        }
        assert!(values.len() > 10, "the sample's passwords and a file: {}", values.len());
        values
    }

    /// Fails unless namespace `ns` holds every Secret (type and data), ConfigMap, the APIManager's
    /// spec and every file (shared with the FileStorage group) as this installation had them.
    pub async fn assert_restored_in(&self, cluster: &LocalCluster, ns: &str) {
        use apimanager_backup_operator::api::apimanager::APIManager;
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        use kube::ResourceExt;
        use kube::api::{ApiResource, DynamicObject};
        let admin = cluster.admin_client().await.expect("client");
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), ns);
        for original in &self.secrets {
            let name = original.name_any();
            let restored = secrets.get(&name).await.expect("restored secret");
            assert_eq!((&restored.type_, &restored.data), (&original.type_, &original.data), "Secret {name}");
        }
        let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), ns);
        for (name, original) in apimanager_backup_operator::layout::CONFIG_MAPS.iter().zip(&self.config_maps) {
            assert_eq!(&config_maps.get(name).await.expect("restored").data, original, "ConfigMap {name}");
        }
        let apimanagers: Api<DynamicObject> = Api::namespaced_with(admin, ns, &ApiResource::erase::<APIManager>(&()));
        let restored = apimanagers.get("example-apimanager").await.expect("restored apimanager");
        assert_eq!(restored.data["spec"], self.apimanager_spec);
        let files = tree(&cluster.volume(ns, "system-storage"));
        assert_eq!(files.len(), self.files.len(), "{files:?}");
        for (path, entry) in &self.files {
            assert_eq!(files.get(path), Some(&entry.shared_with_group()), "{}", path.display());
        }
    }
}
