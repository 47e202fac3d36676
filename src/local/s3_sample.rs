//! The second sample of `local`: an installation whose System FileStorage is a bucket of the
//! local S3 server, and its backup (`manifests/dev/sample-3scale-s3.yaml`).

use super::LocalError;
use super::install::{FIELD_MANAGER, apply_object, apply_yaml, ensure_namespace, parse_documents};
use super::s3_server::S3Server;
use crate::s3::config::keys;
use crate::s3::{ClientOptions, ObjectMetadata};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;

/// The sample's APIManager (FileStorage in S3) and APIManagerBackup.
pub const SAMPLE: &str = include_str!("../../manifests/dev/sample-3scale-s3.yaml");
/// Namespace `local` puts it in.
pub const NAMESPACE: &str = "3scale-s3";
/// Name of its APIManagerBackup.
pub const BACKUP_NAME: &str = "example-s3-filestorage";
/// The Secret System reads its bucket from (`configurationSecretRef`).
pub const SECRET: &str = "system-s3-storage";
/// The bucket `local` makes for it.
pub const BUCKET: &str = "3scale-system-storage";
/// The uploads `local` puts in the bucket: key, content type, original file name (System's
/// metadata, not all ASCII), contents.
pub const OBJECTS: [(&str, &str, &str, &str); 2] = [
    (
        "provider-1/logos/portal-logo.svg",
        "image/svg+xml",
        "portal-logo.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
    ),
    (
        "provider-1/attachments/welcome.txt",
        "text/plain; charset=utf-8",
        "Bienvenue — café.txt",
        "developer portal attachment\n",
    ),
];

/// Kinds of `sample-3scale.yaml` this sample replaces: its APIManager, and the claim a FileStorage
/// in S3 does not use.
const REPLACED_KINDS: [&str; 2] = ["APIManager", "PersistentVolumeClaim"];

/// Installs the sample into `namespace` with its FileStorage in `bucket` of `s3`: the Secrets and
/// ConfigMaps of `installation` (the first sample's YAML), the S3 Secret, the bucket with
/// [`OBJECTS`], then [`SAMPLE`]'s APIManager and backup.
pub async fn install(
    admin: &kube::Client,
    s3: &S3Server,
    installation: &str,
    namespace: &str,
    bucket: &str,
) -> Result<(), LocalError> {
    ensure_namespace(admin, namespace).await?;
    for object in parse_documents(installation)? {
        let kind = object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default();
        if !REPLACED_KINDS.contains(&kind) {
            apply_object(admin, object, namespace).await?;
        }
    }
    let mut data: BTreeMap<&str, String> = s3.secret_keys().into_iter().collect();
    data.insert(keys::BUCKET, bucket.to_owned());
    let secret =
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": data});
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    secrets
        .patch(SECRET, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
        .await
        .map_err(|source| LocalError::Api { what: format!("applying Secret {SECRET}"), source })?;
    s3.create_bucket(bucket).await?;
    let client = s3.client(ClientOptions::default())?;
    for (key, content_type, original_name, contents) in OBJECTS {
        let metadata = ObjectMetadata {
            content_type: Some(content_type.to_owned()),
            user: [("original-name".to_owned(), original_name.to_owned())].into(),
        };
        client.put_object(bucket, key, contents.into(), &metadata).await?;
    }
    apply_yaml(admin, SAMPLE, namespace).await
}
