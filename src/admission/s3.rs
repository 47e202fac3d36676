//! The admission rules of an S3 bucket a backup is written to or restored from
//! ([`crate::api::s3::S3Bucket`]): what can be checked without reading a Secret's value, every
//! violation at once.

use super::field_error::{FieldError, check_dns1123_subdomain};
use super::secrets::NamedSecret;
use super::verdict::Verdict;
use crate::api::s3::{ENCRYPTION_CONTRADICTS, ENCRYPTION_REQUIRED, Encryption, S3Bucket, SecretRef};
use crate::s3::ConfigError;
use crate::s3::config::{Addressing, Endpoint, bucket_name_problem};

/// Longest prefix accepted (S3 keys are at most 1024 bytes; the backup's own path follows it).
pub const PREFIX_MAX_LEN: usize = 512;

const PREFIX_RULE: &str = "a prefix is '/'-separated segments of letters, digits and the characters !-_.*'() \
(no empty, '.' or '..' segment, no leading or trailing '/')";
const SECRET_KEY_RULE: &str = "a Secret's key must consist of alphanumeric characters, '-', '_' or '.'";

/// Every rule of `bucket` at field path `at` (`spec.backupDestination.s3`), into `verdict`.
pub fn check_bucket(bucket: &S3Bucket, at: &str, verdict: &mut Verdict) {
    if bucket.bucket.is_empty() {
        verdict.errors.push(FieldError::required(format!("{at}.bucket"), "name the bucket the backups are in"));
    } else if let Some(problem) = bucket_name_problem(&bucket.bucket) {
        verdict.errors.push(FieldError::invalid(format!("{at}.bucket"), &bucket.bucket, problem));
    }
    if let Some(prefix) = &bucket.prefix {
        verdict.errors.extend(check_prefix(&format!("{at}.prefix"), prefix));
    }
    verdict.errors.extend(check_region(&format!("{at}.region"), &bucket.region));
    if let Some(endpoint) = &bucket.endpoint {
        verdict.errors.extend(check_endpoint(&format!("{at}.endpoint"), endpoint, bucket.allow_http == Some(true)));
    }
    check_secret_name(&format!("{at}.credentialsSecretRef.name"), &bucket.credentials_secret_ref, verdict);
    if let Some(ca) = &bucket.ca_bundle_secret_ref {
        check_secret_name(&format!("{at}.caBundleSecretRef.name"), &SecretRef { name: ca.name.clone() }, verdict);
        verdict.errors.extend(check_secret_key(&format!("{at}.caBundleSecretRef.key"), &ca.key));
    }
    check_encryption(bucket, at, verdict);
}

/// The Secrets `bucket` (at field path `at`) names: its credentials, its CA bundle and its key
/// Secret, each with the field naming it.
pub fn named_secrets(bucket: &S3Bucket, at: &str) -> Vec<NamedSecret> {
    let credentials = Some(("credentialsSecretRef", &bucket.credentials_secret_ref.name));
    let ca = bucket.ca_bundle_secret_ref.as_ref().map(|ca| ("caBundleSecretRef", &ca.name));
    let key = bucket.encryption.as_ref().and_then(|e| e.key_secret_ref.as_ref());
    let key = key.map(|key| ("encryption.keySecretRef", &key.name));
    [credentials, ca, key]
        .into_iter()
        .flatten()
        .map(|(field, name)| NamedSecret::new(format!("{at}.{field}.name"), name))
        .collect()
}

/// The Secrets a backup destination or restore source at field path `at` names: those of its
/// bucket (`<at>.s3`), or the key Secret of its sealed claim (`<at>.persistentVolumeClaim`).
pub fn location_secrets(
    at: &str,
    bucket: Option<&S3Bucket>,
    claim_encryption: Option<&Encryption>,
) -> Vec<NamedSecret> {
    let mut named = bucket.map(|bucket| named_secrets(bucket, &format!("{at}.s3"))).unwrap_or_default();
    named.extend(claim_key_secret(claim_encryption, &format!("{at}.persistentVolumeClaim")));
    named
}

/// The key Secret a claim's `encryption` (at field path `at`) names, with the field naming it.
fn claim_key_secret(encryption: Option<&Encryption>, at: &str) -> Option<NamedSecret> {
    let key = encryption?.key_secret_ref.as_ref()?;
    Some(NamedSecret::new(format!("{at}.encryption.keySecretRef.name"), &key.name))
}

fn check_encryption(bucket: &S3Bucket, at: &str, verdict: &mut Verdict) {
    let encryption = bucket.encryption.clone().unwrap_or_default();
    let disabled = encryption.disabled == Some(true);
    match (&encryption.key_secret_ref, disabled) {
        (None, false) => verdict.errors.push(FieldError::required(format!("{at}.encryption"), ENCRYPTION_REQUIRED)),
        (Some(_), true) => {
            verdict.errors.push(FieldError::forbidden(format!("{at}.encryption.disabled"), ENCRYPTION_CONTRADICTS));
        }
        (Some(key), false) => check_secret_name(&format!("{at}.encryption.keySecretRef.name"), key, verdict),
        (None, true) => verdict.warnings.push(format!(
            "{at}.encryption.disabled is true: the backup is stored in clear, and whoever can read the bucket reads \
the installation's Secrets (database passwords, keys); set encryption.keySecretRef instead"
        )),
    }
}

/// The rules of the optional `encryption` of a claim at field path `at`
/// (`spec.backupDestination.persistentVolumeClaim`): unset means in clear, as 3scale-operator
/// writes it; a key Secret is named well and not contradicted by `disabled: true`.
pub fn check_claim_encryption(encryption: Option<&Encryption>, at: &str, verdict: &mut Verdict) {
    let Some(encryption) = encryption else { return };
    if let Some(key) = &encryption.key_secret_ref {
        check_secret_name(&format!("{at}.encryption.keySecretRef.name"), key, verdict);
        if encryption.disabled == Some(true) {
            verdict.errors.push(FieldError::forbidden(format!("{at}.encryption.disabled"), ENCRYPTION_CONTRADICTS));
        }
    }
}

fn check_secret_name(field: &str, secret: &SecretRef, verdict: &mut Verdict) {
    if secret.name.is_empty() {
        verdict.errors.push(FieldError::required(field, "name a Secret of this namespace"));
    } else {
        verdict.errors.extend(check_dns1123_subdomain(field, &secret.name));
    }
}

fn check_secret_key(field: &str, key: &str) -> Option<FieldError> {
    if key.is_empty() {
        return Some(FieldError::required(field, "name the Secret's key holding the PEM CA bundle"));
    }
    let valid = key.len() <= 253 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    (!valid).then(|| FieldError::invalid(field, key, SECRET_KEY_RULE))
}

fn check_prefix(field: &str, prefix: &str) -> Option<FieldError> {
    if prefix.len() > PREFIX_MAX_LEN {
        return Some(FieldError::invalid(field, prefix, format!("must be no more than {PREFIX_MAX_LEN} characters")));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b);
    let segment_ok = |segment: &str| !matches!(segment, "" | "." | "..") && segment.bytes().all(allowed);
    (!prefix.split('/').all(segment_ok)).then(|| FieldError::invalid(field, prefix, PREFIX_RULE))
}

fn check_region(field: &str, region: &str) -> Option<FieldError> {
    if region.is_empty() {
        return Some(FieldError::required(
            field,
            "name the region requests are signed for (for example eu-west-1; S3-compatible stores often accept us-east-1)",
        ));
    }
    let valid = region.len() <= 63 && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!valid).then(|| FieldError::invalid(field, region, "a region is letters, digits, '-' and '_'"))
}

fn check_endpoint(field: &str, endpoint: &str, allow_http: bool) -> Option<FieldError> {
    let problem = match Endpoint::new(endpoint, "us-east-1", Addressing::Path, allow_http) {
        Ok(_) => return None,
        Err(ConfigError::InsecureEndpoint) => "plain http sends the backup's traffic unprotected; use https, or set \
allowHttp: true (a test server only)"
            .to_owned(),
        Err(ConfigError::Invalid { reason, .. }) => {
            format!("must be a URL https://host[:port] (no path, query, user or fragment): {reason}")
        }
        Err(other) => other.to_string(),
    };
    Some(FieldError::invalid(field, endpoint, problem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bucket(value: serde_json::Value) -> S3Bucket {
        serde_json::from_value(value).expect("an S3 bucket")
    }

    fn rendered(verdict: &Verdict) -> Vec<String> {
        verdict.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_good_bucket_passes_without_a_warning() {
        let mut verdict = Verdict::default();
        let good = bucket(json!({"bucket": "backups", "prefix": "prod/3scale", "region": "eu-west-1",
            "endpoint": "https://s3.example.com:9000", "forcePathStyle": true,
            "credentialsSecretRef": {"name": "backup-s3"}, "caBundleSecretRef": {"name": "s3-ca", "key": "ca.crt"},
            "encryption": {"keySecretRef": {"name": "backup-key"}}}));
        check_bucket(&good, "spec.backupDestination.s3", &mut verdict);
        assert_eq!(verdict, Verdict::default());
    }

    #[test]
    fn every_violation_is_reported_at_once_in_api_server_words() {
        let mut verdict = Verdict::default();
        let bad = bucket(json!({"bucket": "Bad_Bucket", "prefix": "/prod//x", "region": "eu west",
            "endpoint": "http://s3.example.com", "credentialsSecretRef": {"name": "Backup S3"},
            "caBundleSecretRef": {"name": "ca", "key": "ca/crt"}}));
        check_bucket(&bad, "spec.backupDestination.s3", &mut verdict);
        assert_eq!(
            rendered(&verdict),
            [
                r#"spec.backupDestination.s3.bucket: Invalid value: "Bad_Bucket": must consist of lowercase letters, digits, '.' and '-'"#,
                r#"spec.backupDestination.s3.prefix: Invalid value: "/prod//x": a prefix is '/'-separated segments of letters, digits and the characters !-_.*'() (no empty, '.' or '..' segment, no leading or trailing '/')"#,
                r#"spec.backupDestination.s3.region: Invalid value: "eu west": a region is letters, digits, '-' and '_'"#,
                r#"spec.backupDestination.s3.endpoint: Invalid value: "http://s3.example.com": plain http sends the backup's traffic unprotected; use https, or set allowHttp: true (a test server only)"#,
                r#"spec.backupDestination.s3.credentialsSecretRef.name: Invalid value: "Backup S3": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"#,
                r#"spec.backupDestination.s3.caBundleSecretRef.key: Invalid value: "ca/crt": a Secret's key must consist of alphanumeric characters, '-', '_' or '.'"#,
                "spec.backupDestination.s3.encryption: Required value: set encryption.keySecretRef to a Secret of keys (docs/encryption.md) or, to store the backup in clear, encryption.disabled: true",
            ]
        );
    }

    #[test]
    fn endpoints_need_a_host_and_nothing_else_and_http_only_when_allowed() {
        let cases = [
            ("https://s3.example.com", false, None),
            ("http://127.0.0.1:8333", true, None),
            (
                "s3.example.com",
                false,
                Some("must be a URL https://host[:port] (no path, query, user or fragment): not a URL"),
            ),
            (
                "https://s3.example.com/bucket",
                false,
                Some(
                    "must be a URL https://host[:port] (no path, query, user or fragment): it must not have a path, query or fragment",
                ),
            ),
            (
                "https://user:pw@s3.example.com",
                false,
                Some(
                    "must be a URL https://host[:port] (no path, query, user or fragment): it must not hold credentials",
                ),
            ),
            (
                "ftp://s3.example.com",
                false,
                Some(
                    "must be a URL https://host[:port] (no path, query, user or fragment): the scheme must be https (or http)",
                ),
            ),
        ];
        for (endpoint, allow_http, problem) in cases {
            let error = check_endpoint("e", endpoint, allow_http);
            assert_eq!(error.map(|e| e.detail), problem.map(str::to_owned), "{endpoint}");
        }
    }

    #[test]
    fn a_claims_encryption_is_optional_and_checked_when_given() {
        let checked = |encryption: serde_json::Value| {
            let encryption: Option<Encryption> = serde_json::from_value(encryption).expect("encryption");
            let mut verdict = Verdict::default();
            check_claim_encryption(encryption.as_ref(), "spec.backupDestination.persistentVolumeClaim", &mut verdict);
            assert!(verdict.warnings.is_empty(), "{:?}", verdict.warnings);
            rendered(&verdict)
        };
        assert!(checked(json!(null)).is_empty(), "in clear, as 3scale-operator writes it");
        let at = "spec.restoreSource.persistentVolumeClaim";
        let keys: Encryption = serde_json::from_value(json!({"keySecretRef": {"name": "k"}})).expect("encryption");
        assert_eq!(
            claim_key_secret(Some(&keys), at),
            Some(NamedSecret::new("spec.restoreSource.persistentVolumeClaim.encryption.keySecretRef.name", "k"))
        );
        assert_eq!(claim_key_secret(None, at), None);
        assert!(checked(json!({"disabled": true})).is_empty());
        assert!(checked(json!({"keySecretRef": {"name": "backup-key"}})).is_empty());
        assert_eq!(
            checked(json!({"keySecretRef": {"name": ""}, "disabled": true})),
            [
                "spec.backupDestination.persistentVolumeClaim.encryption.keySecretRef.name: Required value: name a Secret of this namespace",
                "spec.backupDestination.persistentVolumeClaim.encryption.disabled: Forbidden: disabled: true contradicts keySecretRef; remove one of them",
            ]
        );
    }

    #[test]
    fn encryption_is_chosen_explicitly_and_opting_out_draws_a_warning() {
        let at = "spec.restoreSource.s3";
        let with = |encryption: serde_json::Value| {
            let mut verdict = Verdict::default();
            let value = json!({"bucket": "backups", "region": "us-east-1", "credentialsSecretRef": {"name": "s3"},
                "encryption": encryption});
            check_bucket(&bucket(value), at, &mut verdict);
            verdict
        };
        let clear = with(json!({"disabled": true}));
        assert!(clear.errors.is_empty());
        assert_eq!(
            clear.warnings,
            [
                "spec.restoreSource.s3.encryption.disabled is true: the backup is stored in clear, and whoever can read the bucket reads the installation's Secrets (database passwords, keys); set encryption.keySecretRef instead"
            ]
        );
        assert_eq!(
            rendered(&with(json!({"disabled": true, "keySecretRef": {"name": "k"}}))),
            [
                "spec.restoreSource.s3.encryption.disabled: Forbidden: disabled: true contradicts keySecretRef; remove one of them"
            ]
        );
        assert_eq!(
            rendered(&with(json!({"disabled": false}))),
            [
                "spec.restoreSource.s3.encryption: Required value: set encryption.keySecretRef to a Secret of keys (docs/encryption.md) or, to store the backup in clear, encryption.disabled: true"
            ]
        );
        assert_eq!(
            rendered(&with(json!({"keySecretRef": {"name": ""}}))),
            ["spec.restoreSource.s3.encryption.keySecretRef.name: Required value: name a Secret of this namespace"]
        );
    }

    #[test]
    fn a_bucket_names_its_credentials_ca_bundle_and_key_secrets() {
        let full = bucket(json!({"bucket": "b", "region": "r", "credentialsSecretRef": {"name": "s3"},
            "caBundleSecretRef": {"name": "ca", "key": "ca.crt"}, "encryption": {"keySecretRef": {"name": "key"}}}));
        let at = "spec.restoreSource.s3";
        assert_eq!(
            named_secrets(&full, at),
            [
                NamedSecret::new("spec.restoreSource.s3.credentialsSecretRef.name", "s3"),
                NamedSecret::new("spec.restoreSource.s3.caBundleSecretRef.name", "ca"),
                NamedSecret::new("spec.restoreSource.s3.encryption.keySecretRef.name", "key"),
            ]
        );
        let clear = bucket(json!({"bucket": "b", "region": "r", "credentialsSecretRef": {"name": "s3"},
            "encryption": {"disabled": true}}));
        assert_eq!(
            named_secrets(&clear, at),
            [NamedSecret::new("spec.restoreSource.s3.credentialsSecretRef.name", "s3")]
        );
    }

    #[test]
    fn prefixes_are_plain_segments() {
        for (prefix, ok) in [
            ("prod", true),
            ("prod/3scale.eu", true),
            ("a(1)!*'", true),
            ("", false),
            ("a/", false),
            ("a/../b", false),
            ("a b", false),
            ("é", false),
        ] {
            assert_eq!(check_prefix("p", prefix).is_none(), ok, "{prefix:?}");
        }
        assert!(check_prefix("p", &"a".repeat(PREFIX_MAX_LEN + 1)).is_some());
    }
}
