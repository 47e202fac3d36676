//! The rules about the APIManager a backup works on, each decided and worded once for the
//! defaulting webhook, the validating webhook and the reconciler: which APIManager a backup means,
//! and whether it is in the backup scope.

use crate::api::apimanager::{APIManager, FileStorage};
use kube::ResourceExt;
use std::borrow::Borrow;

/// Why a backup means no APIManager of its namespace.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    /// The backup names none and the namespace has none.
    #[error("no APIManager exists in namespace {namespace:?}; create the APIManager to back up first")]
    NoneInNamespace {
        /// The backup's namespace.
        namespace: String,
    },
    /// The backup names none and the namespace has several.
    #[error(
        "namespace {namespace:?} has {} APIManagers ({}); set spec.apiManagerName to the one to back up",
        names.len(),
        names.join(", ")
    )]
    Several {
        /// The backup's namespace.
        namespace: String,
        /// The APIManagers there.
        names: Vec<String>,
    },
    /// The named APIManager does not exist.
    #[error("APIManager {name:?} does not exist in namespace {namespace:?} ({})", present(names))]
    Missing {
        /// The name the backup gives.
        name: String,
        /// The backup's namespace.
        namespace: String,
        /// The APIManagers there.
        names: Vec<String>,
    },
}

fn present(names: &[String]) -> String {
    if names.is_empty() { "there are none".to_owned() } else { format!("there are: {}", names.join(", ")) }
}

/// The APIManager a backup means: the one it names (`named`, empty meaning none), otherwise the
/// only one of its namespace. `apimanagers` are those of `namespace`.
pub fn apimanager_meant<'a, A: Borrow<APIManager>>(
    named: Option<&str>,
    namespace: &str,
    apimanagers: &'a [A],
) -> Result<&'a A, NotFound> {
    let name_of = |am: &A| -> String { am.borrow().name_any() };
    let names = || apimanagers.iter().map(name_of).collect::<Vec<_>>();
    match named.filter(|name| !name.is_empty()) {
        Some(name) => apimanagers.iter().find(|am| name_of(am) == name).ok_or_else(|| NotFound::Missing {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            names: names(),
        }),
        None => unnamed_choice(apimanagers).ok_or_else(|| match apimanagers {
            [] => NotFound::NoneInNamespace { namespace: namespace.to_owned() },
            _ => NotFound::Several { namespace: namespace.to_owned(), names: names() },
        }),
    }
}

/// The APIManager a backup naming none means: the only one of its namespace (`apimanagers`), if
/// there is exactly one.
pub fn unnamed_choice<A>(apimanagers: &[A]) -> Option<&A> {
    match apimanagers {
        [only] => Some(only),
        _ => None,
    }
}

/// An APIManager whose databases are not all external: its backup would miss their data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "APIManager {name:?} is outside the backup scope: {} not external; backups need the system database, \
system Redis and backend Redis external (spec.externalComponents of the APIManager)",
    list_with_verb(internal)
)]
pub struct OutOfScope {
    /// The APIManager.
    pub name: String,
    /// Its databases that run inside it, by their user-facing names.
    pub internal: Vec<&'static str>,
}

/// Whether `apimanager` can be backed up; when it can, where its System FileStorage lives.
pub fn in_scope(apimanager: &APIManager) -> Result<FileStorage, OutOfScope> {
    let internal = apimanager.internal_databases();
    if internal.is_empty() {
        Ok(apimanager.file_storage())
    } else {
        Err(OutOfScope { name: apimanager.name_any(), internal })
    }
}

/// "its a is" / "its a and b are" / "its a, b and c are".
fn list_with_verb(items: &[&str]) -> String {
    match items {
        [one] => format!("its {one} is"),
        [init @ .., last] => format!("its {} and {last} are", init.join(", ")),
        [] => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::APIManagerSpec;
    use serde_json::json;

    fn named(names: &[&str]) -> Vec<APIManager> {
        names.iter().map(|n| APIManager::new(n, APIManagerSpec::default())).collect()
    }

    fn chosen(name: Option<&str>, list: &[APIManager]) -> Result<String, String> {
        apimanager_meant(name, "3scale", list).map(ResourceExt::name_any).map_err(|e| e.to_string())
    }

    #[test]
    fn the_named_apimanager_is_meant_when_it_exists() {
        assert_eq!(chosen(Some("b"), &named(&["a", "b"])), Ok("b".to_owned()));
        assert_eq!(
            chosen(Some("gone"), &named(&["a", "b"])),
            Err(r#"APIManager "gone" does not exist in namespace "3scale" (there are: a, b)"#.to_owned())
        );
        assert_eq!(
            chosen(Some("gone"), &[]),
            Err(r#"APIManager "gone" does not exist in namespace "3scale" (there are none)"#.to_owned())
        );
    }

    #[test]
    fn without_a_name_only_the_only_apimanager_is_meant() {
        assert_eq!(chosen(None, &named(&["a"])), Ok("a".to_owned()));
        assert_eq!(chosen(Some(""), &named(&["a"])), Ok("a".to_owned()));
        assert_eq!(
            chosen(None, &[]),
            Err(r#"no APIManager exists in namespace "3scale"; create the APIManager to back up first"#.to_owned())
        );
        assert_eq!(
            chosen(None, &named(&["a", "b"])),
            Err(r#"namespace "3scale" has 2 APIManagers (a, b); set spec.apiManagerName to the one to back up"#
                .to_owned())
        );
    }

    #[test]
    fn shared_references_are_accepted() {
        let list: Vec<std::sync::Arc<APIManager>> = named(&["a"]).into_iter().map(std::sync::Arc::new).collect();
        let found = apimanager_meant(None, "3scale", &list).expect("the only one");
        assert_eq!(found.name_any(), "a");
    }

    #[test]
    fn scope_names_every_internal_database() {
        let apimanager = |spec| APIManager::new("example", serde_json::from_value(spec).expect("spec"));
        let out = in_scope(&apimanager(json!({"externalComponents": {"system": {"database": true}}})));
        assert_eq!(
            out.expect_err("out of scope").to_string(),
            "APIManager \"example\" is outside the backup scope: its system Redis and backend Redis are not external; \
backups need the system database, system Redis and backend Redis external (spec.externalComponents of the APIManager)"
        );
        let all = in_scope(&apimanager(json!({}))).expect_err("out of scope").to_string();
        assert!(all.contains("its system database, system Redis and backend Redis are not external"), "{all}");
        let external = json!({"externalComponents": {"system": {"database": true, "redis": true},
            "backend": {"redis": true}}, "system": {"fileStorage": {"simpleStorageService": {}}}});
        let storage = in_scope(&apimanager(external)).expect("in scope");
        assert_eq!(storage, FileStorage::S3 { secret: None });
    }
}
