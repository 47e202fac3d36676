//! The Secrets an APIManager's spec references by name, beyond the 13 of the 3scale reference:
//! APIcast custom policies and environments, HTTPS certificates and tracing configurations, the S3
//! System FileStorage configuration and the image pull Secrets. 3scale-operator reports the
//! APIManager available only when each exists, so a backup exports them and a restore creates them
//! before the APIManager. [`SECRET_FIELDS`] is the one list of those fields; its test walks
//! 3scale-operator's real APIManager CRD and fails when the CRD has a Secret reference the list lacks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a referenced Secret is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SecretRole {
    /// The metadata and Lua code of an APIcast custom policy.
    ApicastCustomPolicy,
    /// An APIcast custom environment.
    ApicastCustomEnvironment,
    /// The X.509 certificate and key APIcast serves HTTPS with.
    ApicastHttpsCertificate,
    /// APIcast's OpenTracing configuration.
    ApicastOpenTracingConfig,
    /// APIcast's OpenTelemetry configuration.
    ApicastOpenTelemetryConfig,
    /// Credentials and location of System's FileStorage in S3.
    SystemFileStorageS3,
    /// Credentials to pull the installation's images.
    ImagePull,
}

/// A field of the APIManager that names a Secret, written as a path from the object's root:
/// `segment[]` stands for each item of the array `segment`, and the field (or each item) is an
/// object whose `name` is the Secret's name in the APIManager's namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecretField {
    /// The path, e.g. `spec.apicast.stagingSpec.customPolicies[].secretRef`.
    pub path: &'static str,
    /// What the Secret is for.
    pub role: SecretRole,
}

const fn field(path: &'static str, role: SecretRole) -> SecretField {
    SecretField { path, role }
}

/// Every field of 3scale-operator's APIManager (`apps.3scale.net/v1alpha1`) that references a Secret.
pub const SECRET_FIELDS: [SecretField; 13] = [
    field("spec.apicast.stagingSpec.customPolicies[].secretRef", SecretRole::ApicastCustomPolicy),
    field("spec.apicast.productionSpec.customPolicies[].secretRef", SecretRole::ApicastCustomPolicy),
    field("spec.apicast.stagingSpec.customEnvironments[].secretRef", SecretRole::ApicastCustomEnvironment),
    field("spec.apicast.productionSpec.customEnvironments[].secretRef", SecretRole::ApicastCustomEnvironment),
    field("spec.apicast.stagingSpec.httpsCertificateSecretRef", SecretRole::ApicastHttpsCertificate),
    field("spec.apicast.productionSpec.httpsCertificateSecretRef", SecretRole::ApicastHttpsCertificate),
    field("spec.apicast.stagingSpec.openTracing.tracingConfigSecretRef", SecretRole::ApicastOpenTracingConfig),
    field("spec.apicast.productionSpec.openTracing.tracingConfigSecretRef", SecretRole::ApicastOpenTracingConfig),
    field("spec.apicast.stagingSpec.openTelemetry.tracingConfigSecretRef", SecretRole::ApicastOpenTelemetryConfig),
    field("spec.apicast.productionSpec.openTelemetry.tracingConfigSecretRef", SecretRole::ApicastOpenTelemetryConfig),
    field("spec.system.fileStorage.simpleStorageService.configurationSecretRef", SecretRole::SystemFileStorageS3),
    // The deprecated spelling of S3 FileStorage names its Secret so.
    field("spec.system.fileStorage.amazonSimpleStorageService.awsCredentialsSecret", SecretRole::SystemFileStorageS3),
    field("spec.imagePullSecrets[]", SecretRole::ImagePull),
];

/// One reference found in an APIManager.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretReference {
    /// The field holding it, with array indices, e.g.
    /// `spec.apicast.productionSpec.customPolicies[0].secretRef`.
    pub field: String,
    /// What the Secret is for.
    pub role: SecretRole,
}

/// Every Secret an APIManager references, by name, each with the fields that reference it (a
/// Secret can be referenced more than once).
pub type ReferencedSecrets = BTreeMap<String, Vec<SecretReference>>;

/// The Secrets `apimanager` (the whole object as JSON) references through [`SECRET_FIELDS`], by
/// name. A reference without a name, or whose name is not a non-empty string, names nothing.
pub fn referenced_secrets(apimanager: &Value) -> ReferencedSecrets {
    let mut found = ReferencedSecrets::new();
    for field in SECRET_FIELDS {
        let segments: Vec<&str> = field.path.split('.').collect();
        collect(apimanager, &segments, String::new(), &mut |path, name| {
            found.entry(name.to_owned()).or_default().push(SecretReference { field: path, role: field.role });
        });
    }
    for references in found.values_mut() {
        references.sort();
        references.dedup();
    }
    found
}

/// Whether `name` can name a Secret: an RFC 1123 subdomain (lowercase letters, digits, `-` and `.`,
/// each dot-separated label starting and ending with a letter or digit, 253 characters at most).
/// A reference naming anything else names no Secret that can exist, and never a file path.
pub fn is_object_name(name: &str) -> bool {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let label = |label: &str| {
        label.starts_with(alphanumeric)
            && label.ends_with(alphanumeric)
            && label.chars().all(|c| alphanumeric(c) || c == '-')
    };
    name.len() <= 253 && name.split('.').all(label)
}

/// Follows `segments` from `value`, calling `found` with the field path and Secret name of each
/// reference at their end.
fn collect(value: &Value, segments: &[&str], path: String, found: &mut impl FnMut(String, &str)) {
    let Some((segment, rest)) = segments.split_first() else {
        if let Some(name) = value.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()) {
            found(path, name);
        }
        return;
    };
    let joined = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match segment.strip_suffix("[]") {
        Some(key) => {
            let items = value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            for (index, item) in items.iter().enumerate() {
                collect(item, rest, format!("{}[{index}]", joined(key)), found);
            }
        }
        None => {
            if let Some(next) = value.get(*segment) {
                collect(next, rest, joined(segment), found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    /// 3scale-operator's APIManager CRD, unchanged (see `tests/fixtures/3scale-operator/README.md`).
    const REAL_CRD: &str = "tests/fixtures/3scale-operator/apps.3scale.net_apimanagers.yaml";

    /// Whether `schema` describes a reference to a named object: an object with a string `name`.
    fn names_an_object(schema: &Value) -> bool {
        schema["type"] == "object" && schema["properties"]["name"]["type"] == "string"
    }

    /// Every property under `schema` whose name says Secret (`secretRef`, `…SecretRef`,
    /// `…Secret`, `…Secrets`) and whose value is not a plain string (such as `tracingConfigSecretKey`,
    /// a key inside a referenced Secret), as a [`SecretField`] path; the value must be an object
    /// with a `name`, or an array of them, or the walk fails (an unknown shape of reference).
    fn secret_properties(schema: &Value, path: &str, found: &mut BTreeSet<String>) {
        let properties = schema["properties"].as_object().into_iter().flatten();
        for (key, property) in properties {
            let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            if key.to_lowercase().contains("secret") && property["type"] != "string" {
                match property["type"].as_str() {
                    Some("object") if names_an_object(property) => {
                        found.insert(here.clone());
                    }
                    Some("array") if names_an_object(&property["items"]) => {
                        found.insert(format!("{here}[]"));
                    }
                    _ => panic!("{here} names a Secret in a shape the list does not know: {property}"),
                }
            }
            secret_properties(property, &here, found);
            if property["type"] == "array" {
                secret_properties(&property["items"], &format!("{here}[]"), found);
            }
        }
    }

    #[test]
    fn the_list_holds_every_secret_reference_of_the_real_apimanager_crd_and_nothing_else() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(REAL_CRD);
        let yaml = std::fs::read_to_string(&path).expect("the real APIManager CRD");
        let crd: Value = serde_saphyr::from_str(&yaml).expect("the CRD parses");
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        assert!(!versions.is_empty());
        let listed: BTreeSet<String> = SECRET_FIELDS.iter().map(|f| f.path.to_owned()).collect();
        assert_eq!(listed.len(), SECRET_FIELDS.len(), "each field listed once");
        for version in versions {
            let mut found = BTreeSet::new();
            secret_properties(&version["schema"]["openAPIV3Schema"], "", &mut found);
            let unlisted: Vec<&String> = found.difference(&listed).collect();
            assert!(
                unlisted.is_empty(),
                "{}: Secret references missing from SECRET_FIELDS: {unlisted:?}",
                version["name"]
            );
            let unknown: Vec<&String> = listed.difference(&found).collect();
            assert!(unknown.is_empty(), "{}: SECRET_FIELDS names fields the CRD lacks: {unknown:?}", version["name"]);
        }
    }

    #[test]
    fn every_reference_is_found_with_its_field_and_role_and_grouped_by_name() {
        let apimanager = json!({"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManager",
        "metadata": {"name": "example"},
        "spec": {
            "imagePullSecrets": [{"name": "registry"}, {"name": ""}, {}],
            "apicast": {
                "stagingSpec": {
                    "customPolicies": [{"name": "p", "version": "0.1", "secretRef": {"name": "policy"}}],
                    "httpsCertificateSecretRef": {"name": "tls"},
                    "openTracing": {"enabled": true, "tracingConfigSecretRef": {"name": "tracing"}}
                },
                "productionSpec": {
                    "customPolicies": [{"name": "q", "secretRef": {"name": "other"}},
                        {"name": "p", "secretRef": {"name": "policy"}}],
                    "customEnvironments": [{"secretRef": {"name": "env"}}],
                    "httpsCertificateSecretRef": {"name": "tls"},
                    "openTelemetry": {"tracingConfigSecretRef": {"name": "otel"}, "tracingConfigSecretKey": "k"}
                }
            },
            "system": {"fileStorage": {"simpleStorageService": {"configurationSecretRef": {"name": "s3"}}}}
        }});
        let reference = |field: &str, role| SecretReference { field: field.to_owned(), role };
        let expected: ReferencedSecrets = [
            (
                "env",
                vec![reference(
                    "spec.apicast.productionSpec.customEnvironments[0].secretRef",
                    SecretRole::ApicastCustomEnvironment,
                )],
            ),
            (
                "other",
                vec![reference(
                    "spec.apicast.productionSpec.customPolicies[0].secretRef",
                    SecretRole::ApicastCustomPolicy,
                )],
            ),
            (
                "otel",
                vec![reference(
                    "spec.apicast.productionSpec.openTelemetry.tracingConfigSecretRef",
                    SecretRole::ApicastOpenTelemetryConfig,
                )],
            ),
            (
                "policy",
                vec![
                    reference(
                        "spec.apicast.productionSpec.customPolicies[1].secretRef",
                        SecretRole::ApicastCustomPolicy,
                    ),
                    reference("spec.apicast.stagingSpec.customPolicies[0].secretRef", SecretRole::ApicastCustomPolicy),
                ],
            ),
            ("registry", vec![reference("spec.imagePullSecrets[0]", SecretRole::ImagePull)]),
            (
                "s3",
                vec![reference(
                    "spec.system.fileStorage.simpleStorageService.configurationSecretRef",
                    SecretRole::SystemFileStorageS3,
                )],
            ),
            (
                "tls",
                vec![
                    reference(
                        "spec.apicast.productionSpec.httpsCertificateSecretRef",
                        SecretRole::ApicastHttpsCertificate,
                    ),
                    reference(
                        "spec.apicast.stagingSpec.httpsCertificateSecretRef",
                        SecretRole::ApicastHttpsCertificate,
                    ),
                ],
            ),
            (
                "tracing",
                vec![reference(
                    "spec.apicast.stagingSpec.openTracing.tracingConfigSecretRef",
                    SecretRole::ApicastOpenTracingConfig,
                )],
            ),
        ]
        .into_iter()
        .map(|(name, references)| (name.to_owned(), references))
        .collect();
        assert_eq!(referenced_secrets(&apimanager), expected);
    }

    #[test]
    fn the_deprecated_s3_spelling_and_odd_shapes() {
        let deprecated = json!({"spec": {"system": {"fileStorage": {"amazonSimpleStorageService": {
            "awsBucket": "b", "awsRegion": "r", "awsCredentialsSecret": {"name": "aws"}}}}}});
        let found = referenced_secrets(&deprecated);
        assert_eq!(
            found.get("aws").map(Vec::as_slice),
            Some(
                &[SecretReference {
                    field: "spec.system.fileStorage.amazonSimpleStorageService.awsCredentialsSecret".into(),
                    role: SecretRole::SystemFileStorageS3
                }][..]
            )
        );
        for odd in [
            json!({}),
            json!({"spec": null}),
            json!({"spec": {"imagePullSecrets": {"name": "not-an-array"}}}),
            json!({"spec": {"imagePullSecrets": [{"name": 7}, "registry"]}}),
            json!({"spec": {"apicast": {"stagingSpec": {"customPolicies": [{"secretRef": "policy"}]}}}}),
            json!({"spec": {"apicast": [1, 2]}}),
        ] {
            assert_eq!(referenced_secrets(&odd), ReferencedSecrets::new(), "{odd}");
        }
    }

    #[test]
    fn object_names() {
        for good in ["policy", "a", "tls.example-1", "0"] {
            assert!(is_object_name(good), "{good}");
        }
        for bad in ["", "../etc", "a/b", "Policy", "-a", "a-", "a..b", ".a", &"a".repeat(254)] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }

    #[test]
    fn roles_are_written_in_camel_case() {
        assert_eq!(
            serde_json::to_value(SecretRole::ApicastHttpsCertificate).expect("json"),
            json!("apicastHttpsCertificate")
        );
        assert_eq!(serde_json::to_value(SecretRole::SystemFileStorageS3).expect("json"), json!("systemFileStorageS3"));
    }
}
