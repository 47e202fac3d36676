//! A backup as 3scale-operator's APIManagerBackup writes it, for restores of backups this operator
//! did not make: its layout (`secrets/<name>.json`, `configmaps/<name>.json`,
//! `apimanager/apimanager-backup.json`, `system-filestorage-pvc/…`), its JSON (`oc get -o json`
//! cleaned of `status` and server-set metadata, then `json.dumps(indent=4, sort_keys=True)`), its
//! claim annotations, and no `manifest.json` (3scale-operator writes none).

use apimanager_backup_operator::layout::{
    APIMANAGER_FILE, CONFIG_MAPS, CONFIG_MAPS_DIR, FILE_STORAGE_DIR, MANIFEST_FILE, SECRETS, SECRETS_DIR,
};
use apimanager_backup_operator::local::LocalCluster;
use apimanager_backup_operator::local::session::{SAMPLE_INSTALLATION, seed_file_storage};
use apimanager_backup_operator::names::{
    CLAIM_APIMANAGER_NAME, CLAIM_APIMANAGER_UID, CLAIM_BACKUP_NAME, CLAIM_BACKUP_UID,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The APIManager the sample installation holds, and so the backup.
pub const BACKED_UP_APIMANAGER: &str = "example-apimanager";
/// A link in the backed-up System FileStorage, with its target, as `rsync -a` keeps links.
pub const FILE_STORAGE_LINK: (&str, &str) = ("uploads/current-logo.svg", "logos/portal-logo.svg");

/// The sample installation's objects as the API server returns them and 3scale-operator's clean-up
/// leaves them: Secrets with `data` (base64), no namespace, uid, resourceVersion or timestamps. Its
/// APIManager references no Secrets beyond the 13 (3scale-operator's backup would not hold them,
/// and the restored APIManager would never become available).
fn backed_up_objects() -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(SAMPLE_INSTALLATION).expect("sample installation");
    documents
        .into_iter()
        .map(|object| match object["kind"].as_str() {
            Some("Secret") => {
                let mut secret: Secret = serde_json::from_value(object).expect("sample Secret");
                let string_data = secret.string_data.take().unwrap_or_default();
                let data = secret.data.get_or_insert_default();
                data.extend(string_data.into_iter().map(|(key, value)| (key, ByteString(value.into_bytes()))));
                serde_json::to_value(secret).expect("Secret as JSON")
            }
            Some("APIManager") => {
                let mut apimanager = object;
                if let Some(spec) = apimanager["spec"].as_object_mut() {
                    spec.remove("apicast");
                    spec.remove("imagePullSecrets");
                }
                apimanager
            }
            _ => object,
        })
        .collect()
}

/// Writes `value` as Python's `json.dumps(value, indent=4, sort_keys=True)` prints it (objects are
/// sorted maps here), with `print`'s newline.
fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
    let mut bytes = Vec::new();
    let mut writer =
        serde_json::Serializer::with_formatter(&mut bytes, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    serde::Serialize::serialize(value, &mut writer).expect("JSON");
    bytes.push(b'\n');
    std::fs::write(path, bytes).expect("object file");
}

/// Writes into `root` (the root of a backup claim) a backup of the sample installation in
/// 3scale-operator's layout: its 13 Secrets and 2 ConfigMaps, the APIManager, and the System
/// FileStorage as `rsync -av` copies it (the sample's uploads with their owner, modes and times,
/// plus the link [`FILE_STORAGE_LINK`]). No `manifest.json`.
pub fn write_threescale_operator_backup(root: &Path) {
    let objects = backed_up_objects();
    let named = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the sample installation has no {kind} {name}"))
    };
    for name in SECRETS {
        write_json(&root.join(SECRETS_DIR).join(format!("{name}.json")), named("Secret", name));
    }
    for name in CONFIG_MAPS {
        write_json(&root.join(CONFIG_MAPS_DIR).join(format!("{name}.json")), named("ConfigMap", name));
    }
    write_json(&root.join(APIMANAGER_FILE), named("APIManager", BACKED_UP_APIMANAGER));
    let files = root.join(FILE_STORAGE_DIR);
    seed_file_storage(&files).expect("System FileStorage");
    let (link, target) = FILE_STORAGE_LINK;
    std::os::unix::fs::symlink(target, files.join(link)).expect("link");
    assert!(!root.join(MANIFEST_FILE).exists(), "3scale-operator writes no manifest");
}

/// Creates claim `claim` in `namespace` as 3scale-operator's APIManagerBackup leaves it (its
/// annotations; the restore's admission reads them) and writes the backup
/// ([`write_threescale_operator_backup`]) onto the folder standing in for it; returns that folder.
pub async fn threescale_operator_backup_claim(cluster: &LocalCluster, namespace: &str, claim: &str) -> PathBuf {
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": claim, "annotations": {
            CLAIM_APIMANAGER_NAME: BACKED_UP_APIMANAGER,
            CLAIM_APIMANAGER_UID: "0e3a5c1d-8b2f-4d6e-9a7c-1f2b3c4d5e6f",
            CLAIM_BACKUP_NAME: claim,
            CLAIM_BACKUP_UID: "7c1d9e2a-5b4f-4a3e-8d6c-2b1a0f9e8d7c",
        }},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .expect("claim");
    let admin = cluster.admin_client().await.expect("admin client");
    Api::<PersistentVolumeClaim>::namespaced(admin, namespace)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("backup claim created");
    let root = cluster.volume(namespace, claim);
    write_threescale_operator_backup(&root);
    root
}
