//! Which requests a fault proxy's errors apply to: a request's verb and resource, read from its
//! method, path and query as the API server reads them, and the `on=` patterns of a spec
//! (`create:pods`, `patch:apimanagerbackups/status`, `*:leases`) that pick some of them.

use std::fmt;
use std::str::FromStr;

/// A Kubernetes API verb, as RBAC and the audit log name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `GET` of one object.
    Get,
    /// `GET` of a collection.
    List,
    /// `GET` of a collection with `watch=true`.
    Watch,
    /// `POST`.
    Create,
    /// `PUT`.
    Update,
    /// `PATCH`.
    Patch,
    /// `DELETE` of one object.
    Delete,
    /// `DELETE` of a collection.
    DeleteCollection,
}

impl Verb {
    /// Every verb, in the order of [`Verb::name`].
    pub const ALL: [Self; 8] = [
        Self::Get,
        Self::List,
        Self::Watch,
        Self::Create,
        Self::Update,
        Self::Patch,
        Self::Delete,
        Self::DeleteCollection,
    ];

    /// Its name in a pattern.
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

/// What a request does to what: its verb and its resource (`pods`, or with a subresource
/// `apimanagerbackups/status`); `None` for a request outside the resource API (`/version`,
/// `/openapi/v2`) or with a method the API does not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    /// The verb.
    pub verb: Verb,
    /// The resource, `/subresource` appended when there is one.
    pub resource: String,
}

/// Namespace subresources: `/api/v1/namespaces/<name>/status` is the namespace's, not a resource
/// `status` inside it.
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

impl ApiRequest {
    /// The verb and resource of a request of `method` on `path` with query `query`.
    pub fn of(method: &http::Method, path: &str, query: Option<&str>) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let rest = match parts.first() {
            Some(&"api") => parts.get(2..)?,
            Some(&"apis") => parts.get(3..)?,
            _ => return None,
        };
        let rest = match rest {
            ["namespaces", _, next, ..] if !NAMESPACE_SUBRESOURCES.contains(next) => &rest[2..],
            _ => rest,
        };
        let (resource, named, subresource) = match rest {
            [resource] => (*resource, false, None),
            [resource, _] => (*resource, true, None),
            [resource, _, subresource] => (*resource, true, Some(*subresource)),
            _ => return None,
        };
        if resource.is_empty() {
            return None;
        }
        let watch = query.unwrap_or_default().split('&').any(|pair| pair == "watch=true" || pair == "watch=1");
        let verb = match *method {
            http::Method::GET if watch => Verb::Watch,
            http::Method::GET if named => Verb::Get,
            http::Method::GET => Verb::List,
            http::Method::POST => Verb::Create,
            http::Method::PUT => Verb::Update,
            http::Method::PATCH => Verb::Patch,
            http::Method::DELETE if named => Verb::Delete,
            http::Method::DELETE => Verb::DeleteCollection,
            _ => return None,
        };
        let resource = match subresource {
            Some(subresource) => format!("{resource}/{subresource}"),
            None => resource.to_owned(),
        };
        Some(Self { verb, resource })
    }
}

/// A pattern of requests: `<verb>:<resource>`, each part `*` for any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The verb, `None` for any.
    pub verb: Option<Verb>,
    /// The resource (`/subresource` included), `None` for any.
    pub resource: Option<String>,
}

impl Target {
    /// Whether `request` is one of this pattern's; a request outside the resource API is none.
    pub fn matches(&self, request: Option<&ApiRequest>) -> bool {
        request.is_some_and(|request| {
            self.verb.is_none_or(|verb| verb == request.verb)
                && self.resource.as_deref().is_none_or(|resource| resource == request.resource)
        })
    }
}

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "`{0}` is not <verb>:<resource> (a verb of get, list, watch, create, update, patch, delete, deletecollection or *; a resource such as pods, apimanagerbackups/status or *)"
)]
pub struct TargetError(pub String);

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(pattern: &str) -> Result<Self, TargetError> {
        let refused = || TargetError(pattern.to_owned());
        let (verb, resource) = pattern.split_once(':').ok_or_else(refused)?;
        let verb = match verb.trim() {
            "*" => None,
            name => Some(Verb::ALL.into_iter().find(|verb| verb.name() == name).ok_or_else(refused)?),
        };
        let resource = match resource.trim() {
            "*" => None,
            resource => {
                let valid = |part: &str| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                };
                let parts: Vec<&str> = resource.split('/').collect();
                if parts.len() > 2 || !parts.iter().all(|part| valid(part)) {
                    return Err(refused());
                }
                Some(resource.to_owned())
            }
        };
        Ok(Self { verb, resource })
    }
}

impl fmt::Display for Target {
    /// The pattern as [`FromStr`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = self.verb.map_or("*", Verb::name);
        write!(f, "{verb}:{}", self.resource.as_deref().unwrap_or("*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn request(method: Method, path: &str, query: Option<&str>) -> Option<(Verb, String)> {
        ApiRequest::of(&method, path, query).map(|r| (r.verb, r.resource))
    }

    #[test]
    fn requests_are_read_as_the_api_server_reads_them() {
        let of = |verb: Verb, resource: &str| Some((verb, resource.to_owned()));
        assert_eq!(request(Method::POST, "/api/v1/namespaces/ns/pods", None), of(Verb::Create, "pods"));
        assert_eq!(request(Method::GET, "/api/v1/namespaces/ns/pods/p-0", None), of(Verb::Get, "pods"));
        assert_eq!(request(Method::GET, "/api/v1/pods", Some("labelSelector=a")), of(Verb::List, "pods"));
        assert_eq!(request(Method::GET, "/api/v1/pods", Some("resourceVersion=5&watch=true")), of(Verb::Watch, "pods"));
        assert_eq!(
            request(Method::PATCH, "/apis/apps.3scale.net/v1alpha1/namespaces/ns/apimanagerbackups/b/status", None),
            of(Verb::Patch, "apimanagerbackups/status")
        );
        assert_eq!(
            request(Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/ops/leases/l", None),
            of(Verb::Update, "leases")
        );
        assert_eq!(request(Method::DELETE, "/api/v1/namespaces/ns/pods/p-0", None), of(Verb::Delete, "pods"));
        assert_eq!(request(Method::DELETE, "/api/v1/namespaces/ns/pods", None), of(Verb::DeleteCollection, "pods"));
        assert_eq!(request(Method::GET, "/api/v1/namespaces/ns", None), of(Verb::Get, "namespaces"));
        assert_eq!(
            request(Method::PUT, "/api/v1/namespaces/ns/finalize", None),
            of(Verb::Update, "namespaces/finalize")
        );
        assert_eq!(request(Method::GET, "/api/v1/namespaces", None), of(Verb::List, "namespaces"));
        assert_eq!(request(Method::GET, "/version", None), None);
        assert_eq!(request(Method::GET, "/apis/apps/v1", None), None);
        assert_eq!(request(Method::HEAD, "/api/v1/pods", None), None);
    }

    #[test]
    fn patterns_pick_by_verb_and_resource() {
        let create_pods: Target = "create:pods".parse().expect("pattern");
        let any_status: Target = "*:apimanagerbackups/status".parse().expect("pattern");
        let all: Target = "*:*".parse().expect("pattern");
        let pod = ApiRequest::of(&Method::POST, "/api/v1/namespaces/ns/pods", None);
        let eviction = ApiRequest::of(&Method::POST, "/api/v1/namespaces/ns/pods/p/eviction", None);
        let status = ApiRequest::of(&Method::PATCH, "/apis/g/v1/namespaces/ns/apimanagerbackups/b/status", None);
        assert!(create_pods.matches(pod.as_ref()));
        assert!(!create_pods.matches(eviction.as_ref()), "a subresource is named on its own");
        assert!(!create_pods.matches(status.as_ref()));
        assert!(any_status.matches(status.as_ref()) && !any_status.matches(pod.as_ref()));
        assert!(all.matches(pod.as_ref()) && all.matches(status.as_ref()));
        assert!(!all.matches(None), "a request outside the resource API is no resource's");
        assert_eq!(create_pods.to_string(), "create:pods");
        assert_eq!(all.to_string(), "*:*");
    }

    #[test]
    fn a_wrong_pattern_is_refused() {
        for pattern in ["pods", "post:pods", "create:", "create:Pods", "create:a/b/c", "create:pods/"] {
            assert_eq!(pattern.parse::<Target>(), Err(TargetError(pattern.to_owned())), "{pattern}");
        }
    }
}
