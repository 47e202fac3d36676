//! Table-driven tests of every admission rule, each message asserted exactly.

use super::*;
use crate::api::apimanager::APIManagerSpec;
use serde_json::{Value, json};

fn spec(value: Value) -> APIManagerBackupSpec {
    serde_json::from_value(value).expect("test spec deserializes")
}

fn claim(claim: Value) -> APIManagerBackupSpec {
    spec(json!({"apiManagerName": "example", "backupDestination": {"persistentVolumeClaim": claim}}))
}

fn apimanager(name: &str, spec: Value) -> APIManager {
    let spec: APIManagerSpec = serde_json::from_value(spec).expect("test APIManager spec deserializes");
    APIManager::new(name, spec)
}

fn external(name: &str) -> APIManager {
    apimanager(
        name,
        json!({"externalComponents": {"system": {"database": true, "redis": true}, "backend": {"redis": true}}}),
    )
}

/// A named case: the `spec.apiManagerName`, the namespace's APIManagers, the expected messages.
type ApiManagerCase = (&'static str, Option<&'static str>, Vec<APIManager>, Vec<&'static str>);

fn messages(verdict: &Verdict) -> Vec<String> {
    verdict.errors.iter().map(ToString::to_string).collect()
}

#[test]
fn spec_rules() {
    let cases: Vec<(&str, APIManagerBackupSpec, Vec<&str>)> = vec![
        ("sized claim", claim(json!({"resources": {"requests": "10Gi"}})), vec![]),
        ("volume with size", claim(json!({"volumeName": "pv-1", "resources": {"requests": "1Gi"}})), vec![]),
        ("fractional size", claim(json!({"resources": {"requests": "0.5Gi"}})), vec![]),
        (
            "no destination",
            spec(json!({"backupDestination": {}})),
            vec![
                "spec.backupDestination: Required value: exactly one backup destination must be set; supported: persistentVolumeClaim, s3",
            ],
        ),
        (
            "an S3 bucket",
            spec(json!({"backupDestination": {"s3": {"bucket": "backups", "region": "us-east-1",
                "credentialsSecretRef": {"name": "backup-s3"}, "encryption": {"keySecretRef": {"name": "backup-key"}}}}})),
            vec![],
        ),
        (
            "a claim and an S3 bucket, the bucket's errors too",
            spec(json!({"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}},
                "s3": {"bucket": "b", "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"},
                    "encryption": {"disabled": true}}}})),
            vec![
                "spec.backupDestination: Required value: exactly one backup destination must be set; supported: persistentVolumeClaim, s3",
                r#"spec.backupDestination.s3.bucket: Invalid value: "b": must be between 3 and 63 characters long"#,
            ],
        ),
        (
            "no resources",
            claim(json!({})),
            vec![
                "spec.backupDestination.persistentVolumeClaim.resources.requests: Required value: the backup claim's size must be set, also when volumeName is set (for example 10Gi)",
            ],
        ),
        (
            "volumeName without requests",
            claim(json!({"volumeName": "pv-1", "resources": {}})),
            vec![
                "spec.backupDestination.persistentVolumeClaim.resources.requests: Required value: the backup claim's size must be set, also when volumeName is set (for example 10Gi)",
            ],
        ),
        (
            "bad quantity",
            claim(json!({"resources": {"requests": "ten gigs"}})),
            vec![
                r#"spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: "ten gigs": must be a Kubernetes quantity such as 10Gi or 500Mi"#,
            ],
        ),
        (
            "zero size",
            claim(json!({"resources": {"requests": "0"}})),
            vec![
                r#"spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: "0": must be greater than zero, for example 10Gi"#,
            ],
        ),
        (
            "negative size",
            claim(json!({"resources": {"requests": "-1Gi"}})),
            vec![
                r#"spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: "-1Gi": must be greater than zero, for example 10Gi"#,
            ],
        ),
        (
            "exponent and binary suffix together",
            claim(json!({"resources": {"requests": "1e20Ei"}})),
            vec![
                r#"spec.backupDestination.persistentVolumeClaim.resources.requests: Invalid value: "1e20Ei": must be a Kubernetes quantity such as 10Gi or 500Mi"#,
            ],
        ),
        ("size above 8Ei, which Kubernetes caps", claim(json!({"resources": {"requests": "16Ei"}})), vec![]),
        ("size beyond int64 in decimal", claim(json!({"resources": {"requests": "1e30"}})), vec![]),
        ("milli size", claim(json!({"resources": {"requests": "1500m"}})), vec![]),
        (
            "invalid storageClass",
            claim(json!({"storageClass": "Fast_SSD", "resources": {"requests": "1Gi"}})),
            vec![
                r#"spec.backupDestination.persistentVolumeClaim.storageClass: Invalid value: "Fast_SSD": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"#,
            ],
        ),
        (
            "invalid volumeName and missing size together",
            claim(json!({"volumeName": "-pv"})),
            vec![
                "spec.backupDestination.persistentVolumeClaim.resources.requests: Required value: the backup claim's size must be set, also when volumeName is set (for example 10Gi)",
                r#"spec.backupDestination.persistentVolumeClaim.volumeName: Invalid value: "-pv": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"#,
            ],
        ),
    ];
    for (name, spec, expected) in cases {
        assert_eq!(messages(&check_spec(&spec)), expected, "case {name}");
    }
}

#[test]
fn dns_names() {
    let long = "a".repeat(254);
    for (value, ok) in [
        ("fast", true),
        ("gp3.csi.aws.com", true),
        ("a-b", true),
        ("A", false),
        ("a..b", false),
        ("a.", false),
        ("", false),
        (long.as_str(), false),
    ] {
        assert_eq!(check_dns1123_subdomain("f", value).is_none(), ok, "{value:?}");
    }
    let too_long = check_dns1123_subdomain("f", &long).expect("too long is an error");
    assert_eq!(too_long.detail, "must be no more than 253 characters");
}

#[test]
fn storage_class_with_volume_name_warns() {
    let verdict =
        check_spec(&claim(json!({"volumeName": "pv-1", "storageClass": "fast", "resources": {"requests": "1Gi"}})));
    assert!(verdict.errors.is_empty());
    assert_eq!(
        verdict.warnings,
        vec![
            r#"spec.backupDestination.persistentVolumeClaim.storageClass is ignored because volumeName is set: the claim binds to PersistentVolume "pv-1""#
        ]
    );
}

#[test]
fn apimanager_rules() {
    let internal = apimanager("internal", json!({"externalComponents": {"system": {"database": true}}}));
    let cases: Vec<ApiManagerCase> = vec![
        ("named and external", Some("example"), vec![external("example")], vec![]),
        (
            "none in namespace",
            None,
            vec![],
            vec![
                r#"spec.apiManagerName: Required value: no APIManager exists in namespace "ns"; create the APIManager to back up first"#,
            ],
        ),
        (
            "several in namespace",
            None,
            vec![external("a"), external("b")],
            vec![
                r#"spec.apiManagerName: Required value: namespace "ns" has 2 APIManagers (a, b); set spec.apiManagerName to the one to back up"#,
            ],
        ),
        (
            "one but not defaulted",
            Some(""),
            vec![external("a")],
            vec![r#"spec.apiManagerName: Required value: set it to "a", the APIManager of namespace "ns""#],
        ),
        (
            "named one missing",
            Some("gone"),
            vec![external("a")],
            vec![
                r#"spec.apiManagerName: Invalid value: "gone": APIManager "gone" does not exist in namespace "ns" (there are: a)"#,
            ],
        ),
        (
            "named one missing, none at all",
            Some("gone"),
            vec![],
            vec![
                r#"spec.apiManagerName: Invalid value: "gone": APIManager "gone" does not exist in namespace "ns" (there are none)"#,
            ],
        ),
        (
            "internal databases",
            Some("internal"),
            vec![internal],
            vec![
                r#"spec.apiManagerName: Invalid value: "internal": APIManager "internal" is outside the backup scope: its system Redis and backend Redis are not external; backups need the system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)"#,
            ],
        ),
        (
            "all internal",
            Some("plain"),
            vec![apimanager("plain", json!({}))],
            vec![
                r#"spec.apiManagerName: Invalid value: "plain": APIManager "plain" is outside the backup scope: its system database, system Redis and backend Redis are not external; backups need the system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)"#,
            ],
        ),
        (
            "only system database internal",
            Some("one"),
            vec![apimanager(
                "one",
                json!({"externalComponents": {"system": {"redis": true}, "backend": {"redis": true}}}),
            )],
            vec![
                r#"spec.apiManagerName: Invalid value: "one": APIManager "one" is outside the backup scope: its system database is not external; backups need the system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)"#,
            ],
        ),
        (
            "high availability",
            Some("ha"),
            vec![apimanager("ha", json!({"highAvailability": {"enabled": true}}))],
            vec![],
        ),
    ];
    for (name, api_manager_name, apimanagers, expected) in cases {
        assert_eq!(messages(&check_apimanager(api_manager_name, "ns", &apimanagers)), expected, "case {name}");
    }
}

#[test]
fn s3_file_storage_is_admitted_without_a_warning() {
    let mut s3 = external("example");
    let spec = json!({"fileStorage": {"simpleStorageService": {"configurationSecretRef": {"name": "fs-s3"}}}});
    s3.spec.system = serde_json::from_value(spec).expect("system spec");
    let verdict = check_apimanager(Some("example"), "ns", &[s3]);
    assert!(verdict.errors.is_empty());
    assert!(verdict.warnings.is_empty(), "the backup copies the bucket: {:?}", verdict.warnings);
}

#[test]
fn update_keeps_spec() {
    let old = claim(json!({"resources": {"requests": "1Gi"}}));
    assert!(check_update(&old, &old.clone()).errors.is_empty());
    let new = claim(json!({"resources": {"requests": "2Gi"}}));
    assert_eq!(
        messages(&check_update(&old, &new)),
        vec![
            "spec: Forbidden: spec is immutable once the backup is created; create a new APIManagerBackup to take another backup"
        ]
    );
}

#[test]
fn create_reports_every_rule_at_once() {
    let bad = spec(
        json!({"apiManagerName": "gone", "backupDestination": {"persistentVolumeClaim": {"storageClass": "x_y"}}}),
    );
    let verdict = check_create(&bad, "ns", &[]);
    assert_eq!(verdict.errors.len(), 3, "{:?}", messages(&verdict));
    assert_eq!(verdict.errors[0].field, "spec.backupDestination.persistentVolumeClaim.resources.requests");
    assert_eq!(verdict.errors[1].field, "spec.backupDestination.persistentVolumeClaim.storageClass");
    assert_eq!(verdict.errors[2].field, "spec.apiManagerName");
}

#[test]
fn a_bucket_destination_admits_an_apimanager_with_its_files_in_s3() {
    let s3_files = apimanager(
        "example",
        json!({"externalComponents": {"system": {"database": true, "redis": true}, "backend": {"redis": true}},
            "system": {"fileStorage": {"simpleStorageService": {"configurationSecretRef": {"name": "fs-s3"}}}}}),
    );
    let to_bucket = spec(json!({"apiManagerName": "example", "backupDestination": {"s3": {"bucket": "backups",
        "region": "us-east-1", "credentialsSecretRef": {"name": "backup-s3"},
        "encryption": {"keySecretRef": {"name": "backup-key"}}}}}));
    assert_eq!(check_create(&to_bucket, "3scale", &[s3_files]), Verdict::default());
}
