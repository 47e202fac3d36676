//! The Secrets a spec names exist in its namespace, where the operator may tell: each read by its
//! metadata alone ([`ApiManagerLookup::secret`]), never its data, and a Secret the operator may not
//! read (RBAC) left unchecked. A missing one is a `Not found` error reported with the others.

use super::field_error::{FieldError, check_dns1123_subdomain};
use super::verdict::Verdict;
use crate::lookup::{ApiManagerLookup, LookupError, SecretExistence};

/// A Secret a spec names, and the field naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSecret {
    /// Dotted path of the field holding the name, e.g.
    /// `spec.backupDestination.s3.credentialsSecretRef.name`.
    pub field: String,
    /// The Secret's name.
    pub name: String,
}

impl NamedSecret {
    /// The Secret `name` named at `field`.
    pub fn new(field: impl Into<String>, name: impl Into<String>) -> Self {
        Self { field: field.into(), name: name.into() }
    }
}

/// The Secrets of `new` that `old` did not name at the same field: on UPDATE, only those are
/// looked up, so a Secret deleted since never blocks a change of other fields.
pub fn named_anew(old: Vec<NamedSecret>, mut new: Vec<NamedSecret>) -> Vec<NamedSecret> {
    new.retain(|secret| !old.contains(secret));
    new
}

/// The verdict of `rules` (a kind's rules with their own lookups) with a `Not found` error
/// added for each Secret of `named` missing from `namespace`, both looked up at the same time.
pub async fn with_existing_secrets<L: ApiManagerLookup>(
    lookup: &L,
    namespace: &str,
    named: &[NamedSecret],
    rules: impl Future<Output = Result<Verdict, LookupError>>,
) -> Result<Verdict, LookupError> {
    let (mut verdict, missing) = futures::try_join!(rules, check_exist(lookup, namespace, named))?;
    verdict.errors.extend(missing);
    Ok(verdict)
}

/// The errors of the Secrets of `named` that do not exist in `namespace`: each distinct name read
/// once, all at the same time. A name that is no object name is left to its field's own rule and
/// not read. An `Err` is a read that failed (tried again within the budget): the request is then
/// answered "try again", never refused for it.
pub async fn check_exist<L: ApiManagerLookup>(
    lookup: &L,
    namespace: &str,
    named: &[NamedSecret],
) -> Result<Vec<FieldError>, LookupError> {
    let mut names: Vec<&str> = named
        .iter()
        .map(|secret| secret.name.as_str())
        .filter(|name| !name.is_empty() && check_dns1123_subdomain("", name).is_none())
        .collect();
    names.sort_unstable();
    names.dedup();
    let found = futures::future::try_join_all(names.iter().map(|name| lookup.secret(namespace, name))).await?;
    let absent: Vec<&str> = names
        .into_iter()
        .zip(found)
        .filter_map(|(name, existence)| (existence == SecretExistence::Absent).then_some(name))
        .collect();
    Ok(not_found(named, namespace, &absent))
}

/// One `Not found` error per field of `named` naming a Secret of `absent`, in `named`'s order.
pub fn not_found(named: &[NamedSecret], namespace: &str, absent: &[&str]) -> Vec<FieldError> {
    let detail = format!("no Secret of this name in namespace {namespace:?}; create it first");
    named
        .iter()
        .filter(|secret| absent.contains(&secret.name.as_str()))
        .map(|secret| FieldError::not_found(&secret.field, &secret.name, &detail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::APIManager;
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use std::sync::{Arc, Mutex};

    /// Knows the Secrets `present`; may not read those of `forbidden`; fails with 503 for `down`;
    /// records what it was asked.
    #[derive(Clone, Default)]
    struct Secrets {
        present: Vec<&'static str>,
        forbidden: Vec<&'static str>,
        down: bool,
        asked: Arc<Mutex<Vec<String>>>,
    }

    impl ApiManagerLookup for Secrets {
        async fn list(&self, _: &str) -> Result<Vec<APIManager>, LookupError> {
            Ok(Vec::new())
        }

        async fn claim(&self, _: &str, _: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
            Ok(None)
        }

        async fn secret(&self, namespace: &str, name: &str) -> Result<SecretExistence, LookupError> {
            self.asked.lock().expect("lock").push(name.to_owned());
            if self.down {
                let reason = "503 Service Unavailable".to_owned();
                return Err(LookupError::Secret { namespace: namespace.to_owned(), name: name.to_owned(), reason });
            }
            Ok(if self.forbidden.contains(&name) {
                SecretExistence::NotPermitted
            } else if self.present.contains(&name) {
                SecretExistence::Present
            } else {
                SecretExistence::Absent
            })
        }
    }

    fn s3(field: &str, name: &str) -> NamedSecret {
        NamedSecret::new(format!("spec.backupDestination.s3.{field}.name"), name)
    }

    fn rendered(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn each_missing_secret_is_reported_at_its_field_and_each_name_read_once() {
        let lookup = Secrets { present: vec!["s3-ca"], ..Default::default() };
        let named = [
            s3("credentialsSecretRef", "s3-creds"),
            s3("caBundleSecretRef", "s3-ca"),
            s3("encryption.keySecretRef", "s3-creds"),
        ];
        let errors = check_exist(&lookup, "3scale", &named).await.expect("read");
        assert_eq!(
            rendered(&errors),
            [
                r#"spec.backupDestination.s3.credentialsSecretRef.name: Not found: "s3-creds": no Secret of this name in namespace "3scale"; create it first"#,
                r#"spec.backupDestination.s3.encryption.keySecretRef.name: Not found: "s3-creds": no Secret of this name in namespace "3scale"; create it first"#,
            ]
        );
        assert_eq!(errors[0].kind.cause_type(), "FieldValueNotFound");
        assert_eq!(*lookup.asked.lock().expect("lock"), ["s3-ca", "s3-creds"]);
    }

    #[tokio::test]
    async fn a_secret_the_operator_may_not_read_is_not_checked() {
        let lookup = Secrets { forbidden: vec!["s3-creds"], ..Default::default() };
        let errors = check_exist(&lookup, "3scale", &[s3("credentialsSecretRef", "s3-creds")]).await.expect("read");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[tokio::test]
    async fn names_that_are_no_object_names_are_not_read() {
        let lookup = Secrets::default();
        let named = [s3("credentialsSecretRef", ""), s3("caBundleSecretRef", "Bad Name/../x")];
        assert!(check_exist(&lookup, "3scale", &named).await.expect("read").is_empty());
        assert!(lookup.asked.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_is_an_error_not_a_verdict() {
        let lookup = Secrets { down: true, ..Default::default() };
        let error = check_exist(&lookup, "3scale", &[s3("credentialsSecretRef", "s3-creds")]).await.expect_err("down");
        assert_eq!(
            error.to_string(),
            r#"could not read the metadata of Secret "s3-creds" in namespace "3scale": 503 Service Unavailable"#
        );
    }

    #[tokio::test]
    async fn missing_secrets_join_the_verdict_of_the_rules_and_a_failed_read_replaces_it() {
        let other = FieldError::required("spec.backupDestination.s3.region", "name the region");
        let rules = || std::future::ready(Ok(Verdict { errors: vec![other.clone()], warnings: vec!["w".into()] }));
        let named = [s3("credentialsSecretRef", "s3-creds")];
        let verdict = with_existing_secrets(&Secrets::default(), "3scale", &named, rules()).await.expect("read");
        assert_eq!(
            rendered(&verdict.errors),
            [
                "spec.backupDestination.s3.region: Required value: name the region",
                r#"spec.backupDestination.s3.credentialsSecretRef.name: Not found: "s3-creds": no Secret of this name in namespace "3scale"; create it first"#,
            ]
        );
        assert_eq!(verdict.warnings, ["w"]);
        let down = Secrets { down: true, ..Default::default() };
        assert!(with_existing_secrets(&down, "3scale", &named, rules()).await.is_err());
    }

    #[test]
    fn on_update_only_secrets_named_anew_are_looked_up() {
        let old = vec![s3("credentialsSecretRef", "a"), s3("encryption.keySecretRef", "k")];
        let new =
            vec![s3("credentialsSecretRef", "b"), s3("encryption.keySecretRef", "k"), s3("caBundleSecretRef", "a")];
        assert_eq!(named_anew(old.clone(), old.clone()), []);
        assert_eq!(named_anew(old, new), [s3("credentialsSecretRef", "b"), s3("caBundleSecretRef", "a")]);
    }

    #[tokio::test]
    async fn nothing_named_nothing_read() {
        let lookup = Secrets::default();
        assert!(check_exist(&lookup, "3scale", &[]).await.expect("read").is_empty());
        assert!(lookup.asked.lock().expect("lock").is_empty());
    }
}
