//! The restore steps that talk to the API: `job restore-objects` creates the backed-up Secrets
//! (those the APIManager references among them) and ConfigMaps (never the three that point at the
//! databases, never over an existing object), before `job restore-apimanager`, which
//! creates the backed-up APIManager as it was. Each reads every file it
//! needs before it creates anything, so a damaged backup writes nothing.

use super::destination::read::Committed;
use super::destination::sink::Folder;
use super::destination::source::BackupSource;
use super::export::clean;
use super::manifest::Manifest;
use super::report::{BackedUpApiManager, StepReport};
use super::{JobError, RestoreArgs};
use crate::api::apimanager::{APIManager, FileStorage};
use crate::api::referenced_secrets::is_object_name;
use crate::layout::{
    APIMANAGER_FILE, CONFIG_MAPS, CONFIG_MAPS_DIR, NEVER_RESTORED, OPTIONAL_SECRETS, SECRETS, SECRETS_DIR,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::Value;
use std::path::Path;

/// Parses the backed-up object at `path` (named in messages only) and checks it is the `kind` named `name` (a file that
/// names another object is refused, so a tampered backup cannot create, say, `system-database`).
/// Parse errors give the position only: the file may hold Secret values.
pub fn parse_object(bytes: &[u8], path: &Path, kind: &str, name: Option<&str>) -> Result<Value, JobError> {
    let path = path.to_owned();
    let mut object: Value = serde_json::from_slice(bytes).map_err(|e| JobError::Corrupt {
        path: path.clone(),
        reason: format!("not valid JSON ({:?} error at line {} column {})", e.classify(), e.line(), e.column()),
    })?;
    let found_kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let found_name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if found_kind != kind || name.is_some_and(|name| name != found_name) || found_name.is_empty() {
        let expected = name.map_or_else(|| format!("a {kind}"), |name| format!("{kind} {name}"));
        return Err(JobError::Corrupt {
            path,
            reason: format!("holds {found_kind} {found_name:?} instead of {expected}"),
        });
    }
    clean(&mut object);
    Ok(object)
}

/// The APIManager the backup holds, where its System FileStorage lives, and the group owning the
/// backed-up files' folder (the installation's FileStorage group, which the copy keeps there).
pub fn backed_up_apimanager(root: &Path) -> Result<BackedUpApiManager, JobError> {
    let path = root.join(APIMANAGER_FILE);
    let bytes =
        std::fs::read(&path).map_err(|source| JobError::Io { what: "reading".into(), path: path.clone(), source })?;
    let mut backed_up = apimanager_from(&bytes, &path)?;
    let files = std::fs::metadata(root.join(crate::layout::FILE_STORAGE_DIR));
    backed_up.file_storage_group = files.ok().filter(|m| m.is_dir()).map(|m| std::os::unix::fs::MetadataExt::gid(&m));
    Ok(backed_up)
}

/// [`backed_up_apimanager`] from the bytes of the backed-up APIManager at `path`, without the
/// files' group (a backup in a bucket does not record it).
pub fn apimanager_from(bytes: &[u8], path: &Path) -> Result<BackedUpApiManager, JobError> {
    let object = parse_object(bytes, path, &APIManager::kind(&()), None)?;
    let apimanager: APIManager = serde_json::from_value(object)
        .map_err(|e| JobError::Corrupt { path: path.to_owned(), reason: format!("not an APIManager: {e}") })?;
    let (system_storage, file_storage_s3_secret) = match apimanager.file_storage() {
        FileStorage::Claim(_) => (Some(apimanager.system_storage_claim()), None),
        FileStorage::S3 { secret } => (None, Some(secret.unwrap_or_default())),
    };
    Ok(BackedUpApiManager {
        name: apimanager.name_any(),
        system_storage,
        file_storage_group: None,
        file_storage_s3_secret,
    })
}

/// `object` as an API object. The error names the kind of problem only: serde's message quotes
/// the offending value, and the file may hold Secret values.
fn to_object(object: Value, what: &str) -> Result<DynamicObject, JobError> {
    serde_json::from_value(object).map_err(|e| JobError::Corrupt {
        path: what.into(),
        reason: format!(
            "its apiVersion, kind or metadata does not parse ({:?} error; the value is not shown)",
            e.classify()
        ),
    })
}

/// Creates `object` in `api`; `false` when an object of that name exists (it is left alone).
async fn create(api: &Api<DynamicObject>, object: Value, what: String) -> Result<bool, JobError> {
    let object = to_object(object, &what)?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(false),
        Err(source) => Err(JobError::Api { what: format!("creating {what}"), source }),
    }
}

fn client_error(error: crate::client::ClientError) -> JobError {
    JobError::Config(error.to_string())
}

/// The restorable Secrets and ConfigMaps of the backup, as (kind, folder, name): the 13 Secrets
/// but the three pointing at the databases, the Secrets the APIManager references as the manifest
/// lists them (a backup without manifest, 3scale-operator's, holds none), the 2 ConfigMaps.
fn restorable(manifest: Option<&Manifest>) -> Vec<(String, &'static str, String)> {
    let secret = |name: &str| (Secret::kind(&()).into_owned(), SECRETS_DIR, name.to_owned());
    let referenced = manifest.into_iter().flat_map(|m| &m.referenced_secrets).map(|entry| entry.name.as_str());
    let secrets = SECRETS.iter().copied().chain(referenced);
    let mut seen = std::collections::BTreeSet::new();
    secrets
        .filter(|name| !NEVER_RESTORED.contains(name) && seen.insert(*name))
        .map(secret)
        .chain(CONFIG_MAPS.iter().map(|name| (ConfigMap::kind(&()).into_owned(), CONFIG_MAPS_DIR, (*name).to_owned())))
        .collect()
}

/// `job restore-objects`: every restorable Secret and ConfigMap the backup holds (see
/// [`restorable`]), created unless one of that name exists. A missing optional Secret is passed
/// over; any other missing file, or a referenced Secret whose name could not be an object's, fails
/// the step before anything is created.
pub async fn restore_objects(args: &RestoreArgs) -> Result<StepReport, JobError> {
    if crate::job::destination::reads_sealed(&args.common) {
        let committed = Committed::open(&args.common).await?;
        return restore_objects_from(&committed, args).await;
    }
    restore_objects_from(&Folder(&args.common.backup_dir), args).await
}

/// [`restore_objects`] from `source`.
async fn restore_objects_from(source: &impl BackupSource, args: &RestoreArgs) -> Result<StepReport, JobError> {
    let root = &args.common.backup_dir;
    let manifest = source.manifest().await?;
    let mut objects = Vec::new();
    let mut missing = Vec::new();
    for (kind, dir, name) in restorable(manifest.as_ref()) {
        if !is_object_name(&name) {
            return Err(JobError::Corrupt {
                path: root.join(crate::layout::MANIFEST_FILE),
                reason: format!("lists a referenced Secret named {name:?}, which is not a valid name"),
            });
        }
        let relative = format!("{dir}/{name}.json");
        let Some(bytes) = source.read(&relative).await? else {
            if !OPTIONAL_SECRETS.contains(&name.as_str()) {
                missing.push(relative);
            }
            continue;
        };
        let object = parse_object(&bytes, &root.join(&relative), &kind, Some(&name))?;
        objects.push((format!("{kind} {name}"), kind, object));
    }
    if !missing.is_empty() {
        return Err(JobError::Missing(format!("the backup lacks {}; nothing was restored", missing.join(", "))));
    }
    let client = crate::client::connect(crate::names::RESTORE_OBJECTS).await.map_err(client_error)?;
    let secrets = Api::namespaced_with(client.clone(), &args.namespace, &ApiResource::erase::<Secret>(&()));
    let config_maps = Api::namespaced_with(client, &args.namespace, &ApiResource::erase::<ConfigMap>(&()));
    let (mut created, mut kept) = (Vec::new(), Vec::new());
    for (what, kind, object) in objects {
        let api = if kind == Secret::kind(&()) { &secrets } else { &config_maps };
        if create(api, object, what.clone()).await? {
            created.push(what);
        } else {
            kept.push(what);
        }
    }
    Ok(StepReport::RestoreObjects { created, kept })
}

/// `job restore-apimanager`: the backed-up APIManager, created as it was (cleaned of server-set
/// fields) unless one of that name exists.
pub async fn restore_apimanager(args: &RestoreArgs) -> Result<StepReport, JobError> {
    let root = &args.common.backup_dir;
    let bytes = if crate::job::destination::reads_sealed(&args.common) {
        Committed::open(&args.common).await?.read(APIMANAGER_FILE).await?
    } else {
        Folder(root).read(APIMANAGER_FILE).await?
    };
    let path = root.join(APIMANAGER_FILE);
    let bytes =
        bytes.ok_or_else(|| JobError::Missing(format!("the backup lacks {APIMANAGER_FILE}; nothing was restored")))?;
    let object = parse_object(&bytes, &path, &APIManager::kind(&()), None)?;
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let client = crate::client::connect(crate::names::RESTORE_APIMANAGER).await.map_err(client_error)?;
    let api = Api::namespaced_with(client, &args.namespace, &ApiResource::erase::<APIManager>(&()));
    let created = create(&api, object, format!("APIManager {name}")).await?;
    Ok(StepReport::RestoreApiManager { name, created })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::scratch;

    #[test]
    fn an_object_that_does_not_parse_is_refused_without_quoting_its_values() {
        let object = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "zync", "finalizers": "s3cr3t"}, "data": {"k": "czNjcjN0"}});
        let error = to_object(object, "Secret zync").expect_err("refused");
        assert_eq!(
            error.to_string(),
            "Secret zync is unusable: its apiVersion, kind or metadata does not parse (Data error; the value is not shown)"
        );
    }

    #[test]
    fn a_file_naming_another_object_is_refused() {
        let root = scratch("renamed");
        std::fs::create_dir_all(root.join("secrets")).expect("secrets");
        std::fs::write(
            root.join("secrets/zync.json"),
            br#"{"kind": "Secret", "metadata": {"name": "system-database"}, "data": {}}"#,
        )
        .expect("file");
        let path = root.join("secrets/zync.json");
        let bytes = std::fs::read(&path).expect("read");
        let error = parse_object(&bytes, &path, "Secret", Some("zync")).expect_err("refused");
        assert!(error.to_string().ends_with(r#"holds Secret "system-database" instead of Secret zync"#), "{error}");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn parse_errors_never_quote_the_file() {
        let root = scratch("garbled");
        std::fs::create_dir_all(root.join("secrets")).expect("secrets");
        std::fs::write(root.join("secrets/zync.json"), br#"{"kind": "Secret", "data": {"KEY": s3cr3t}}"#)
            .expect("file");
        let path = root.join("secrets/zync.json");
        let bytes = std::fs::read(&path).expect("read");
        let error = parse_object(&bytes, &path, "Secret", Some("zync")).expect_err("refused");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert!(error.to_string().contains("line 1 column"), "{error}");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn referenced_secrets_are_restored_once_and_never_those_of_the_databases() {
        let entry = |name: &str| crate::job::manifest::ReferencedSecretEntry {
            name: name.to_owned(),
            path: format!("secrets/{name}.json"),
            references: Vec::new(),
        };
        let manifest = Manifest {
            referenced_secrets: vec![entry("apicast-policy"), entry("system-smtp"), entry("system-database")],
            ..Manifest::default()
        };
        let names = |manifest: Option<&Manifest>| -> Vec<String> {
            restorable(manifest).into_iter().map(|(kind, dir, name)| format!("{kind} {dir}/{name}")).collect()
        };
        let mut expected: Vec<String> = SECRETS
            .iter()
            .filter(|name| !NEVER_RESTORED.contains(name))
            .map(|name| format!("Secret secrets/{name}"))
            .collect();
        let configmaps = ["ConfigMap configmaps/system-environment", "ConfigMap configmaps/apicast-environment"];
        let without_manifest: Vec<String> = expected.iter().cloned().chain(configmaps.map(String::from)).collect();
        assert_eq!(names(None), without_manifest, "3scale-operator's backups: the reference's objects only");
        expected.push("Secret secrets/apicast-policy".into());
        expected.extend(configmaps.map(String::from));
        assert_eq!(names(Some(&manifest)), expected);
    }

    #[test]
    fn the_backed_up_apimanager_names_its_storage() {
        let root = scratch("apimanager");
        std::fs::create_dir_all(root.join("apimanager")).expect("dir");
        std::fs::write(
            root.join(APIMANAGER_FILE),
            br#"{"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager", "metadata": {"name": "example"},
                "spec": {"system": {"fileStorage": {"persistentVolumeClaim": {"storageClassName": "nfs"}}}}}"#,
        )
        .expect("file");
        let backed_up = backed_up_apimanager(&root).expect("readable");
        assert_eq!(backed_up.name, "example");
        assert_eq!(backed_up.system_storage.and_then(|c| c.storage_class_name).as_deref(), Some("nfs"));
        let _ = std::fs::remove_dir_all(root);
    }
}
