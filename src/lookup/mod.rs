//! How admission and the reconcilers find the APIManagers of a namespace (and a restore's backup
//! claim, and whether a Secret a bucket names exists): a small interface ([`ApiManagerLookup`]), so
//! the rules are tested with fixed answers and served from the watch-fed cache ([`cache`]), which
//! confirms through [`ClusterLookup`] what it does not know; the one way every reader decides over
//! them, [`cache_first`]: from what the lookup knows, and when that would refuse, again from what
//! the API server holds now; and the one rule of every live read admission makes,
//! [`within_budget`]: tried again while it fails for a passing reason, within the webhook's time.

pub mod cache;

use crate::api::apimanager::APIManager;
use crate::telemetry::Untrusted;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use std::future::Future;
use std::time::Duration;

/// How long a lookup may take: the API server gives each webhook call at most 5 s
/// (`timeoutSeconds`), and a clear answer within that beats its generic timeout error.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the confirming reads of one decision may take in all, tries included: within the 5 s
/// the API server gives a webhook call.
const CONFIRM_BUDGET: Duration = Duration::from_secs(4);
/// The pause before a confirming read that failed for a passing reason is tried again.
const CONFIRM_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Errors while listing or reading APIManagers.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The API server refused or could not be reached.
    #[error("could not list APIManagers in namespace {namespace:?}: {source}")]
    Api {
        /// The namespace that was listed.
        namespace: String,
        /// Why the API server did not answer.
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("the API server did not list the APIManagers of namespace {namespace:?} within {LOOKUP_TIMEOUT:?}")]
    Timeout {
        /// The namespace that was listed.
        namespace: String,
    },
    /// The API server refused or could not be reached while reading one APIManager.
    #[error("could not read APIManager {name:?} in namespace {namespace:?}: {source}")]
    Read {
        /// The namespace of the APIManager.
        namespace: String,
        /// The APIManager that was read.
        name: String,
        /// Why the API server did not answer.
        source: kube::Error,
    },
    /// The API server did not answer in time while reading one APIManager.
    #[error(
        "the API server did not answer for APIManager {name:?} of namespace {namespace:?} within {LOOKUP_TIMEOUT:?}"
    )]
    ReadTimeout {
        /// The namespace of the APIManager.
        namespace: String,
        /// The APIManager that was read.
        name: String,
    },
    /// A claim could not be read, or not in time.
    #[error("could not read PersistentVolumeClaim {name:?} in namespace {namespace:?}: {reason}")]
    Claim {
        /// The claim's namespace.
        namespace: String,
        /// The claim's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A Secret's metadata could not be read, or not in time (a refusal of the read itself is
    /// [`SecretExistence::NotPermitted`], not an error).
    #[error("could not read the metadata of Secret {name:?} in namespace {namespace:?}: {reason}")]
    Secret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The namespace is not one this operator manages (`--namespace`).
    #[error("this operator does not manage namespace {namespace:?} (it manages {managed})")]
    NotManaged {
        /// The namespace of the request.
        namespace: String,
        /// The namespaces it manages.
        managed: String,
    },
}

impl LookupError {
    /// Whether it may pass on its own (the API server shed load, failed or did not answer, or the
    /// connection failed): the same read may succeed a moment later.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { source, .. } | Self::Read { source, .. } => crate::client::is_transient(source),
            Self::Timeout { .. } | Self::ReadTimeout { .. } => true,
            // Already tried again within the budget.
            Self::Claim { .. } | Self::Secret { .. } | Self::NotManaged { .. } => false,
        }
    }
}

/// Whether a Secret exists, as far as the operator may know: admission reads a Secret's metadata
/// only, and only where RBAC lets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretExistence {
    /// The Secret exists.
    Present,
    /// No Secret of that name exists in the namespace.
    Absent,
    /// The operator may not read it (403): nothing is known.
    NotPermitted,
}

/// Finds the APIManagers of a namespace, claims, and whether Secrets exist.
pub trait ApiManagerLookup: Clone + Send + Sync + 'static {
    /// Every APIManager in `namespace`, as this lookup knows them (a cache answers from memory).
    fn list(&self, namespace: &str) -> impl Future<Output = Result<Vec<APIManager>, LookupError>> + Send;

    /// The APIManagers of `namespace` as the API server holds them now, asked before an answer
    /// from [`list`](Self::list) refuses something: with `name`, that APIManager is read live and
    /// the rest kept as known; without, the namespace is listed live. A lookup whose `list` is
    /// already live lists again.
    fn confirm(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> impl Future<Output = Result<Vec<APIManager>, LookupError>> + Send {
        let _ = name;
        self.list(namespace)
    }

    /// The claim `name` of `namespace` as the API server holds it now, `None` when there is none.
    fn claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<PersistentVolumeClaim>, LookupError>> + Send;

    /// Whether Secret `name` of `namespace` exists now, from its metadata alone (never its data).
    /// A lookup that cannot read Secrets answers [`SecretExistence::NotPermitted`].
    fn secret(&self, namespace: &str, name: &str) -> impl Future<Output = Result<SecretExistence, LookupError>> + Send {
        let _ = (namespace, name);
        std::future::ready(Ok(SecretExistence::NotPermitted))
    }
}

/// Reads APIManagers from the API server, each call a request.
#[derive(Clone)]
pub struct ClusterLookup {
    client: kube::Client,
}

impl ClusterLookup {
    /// A lookup through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// APIManager `name` of `namespace`, `None` when it does not exist (one GET).
    pub async fn get(&self, namespace: &str, name: &str) -> Result<Option<APIManager>, LookupError> {
        let api: Api<APIManager> = Api::namespaced(self.client.clone(), namespace);
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        match tokio::time::timeout(LOOKUP_TIMEOUT, api.get_opt(&name)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(source)) => Err(LookupError::Read { namespace, name, source }),
            Err(_) => Err(LookupError::ReadTimeout { namespace, name }),
        }
    }
}

impl ApiManagerLookup for ClusterLookup {
    async fn list(&self, namespace: &str) -> Result<Vec<APIManager>, LookupError> {
        let api: Api<APIManager> = Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(LOOKUP_TIMEOUT, api.list(&ListParams::default())).await {
            Ok(Ok(list)) => Ok(list.items),
            Ok(Err(source)) => Err(LookupError::Api { namespace: namespace.to_owned(), source }),
            Err(_) => Err(LookupError::Timeout { namespace: namespace.to_owned() }),
        }
    }

    async fn claim(&self, namespace: &str, name: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let failed =
            |reason: String| LookupError::Claim { namespace: namespace.to_owned(), name: name.to_owned(), reason };
        match within_budget(|| api.get_opt(name), crate::client::is_transient).await {
            Some(Ok(claim)) => Ok(claim),
            Some(Err(error)) => Err(failed(error.to_string())),
            None => Err(failed(format!("no answer within {CONFIRM_BUDGET:?}"))),
        }
    }

    /// One metadata GET (`PartialObjectMetadata`: the API server sends no data), tried again
    /// within the budget; a 403 is [`SecretExistence::NotPermitted`], logged at debug.
    async fn secret(&self, namespace: &str, name: &str) -> Result<SecretExistence, LookupError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let failed =
            |reason: String| LookupError::Secret { namespace: namespace.to_owned(), name: name.to_owned(), reason };
        match within_budget(|| api.get_metadata_opt(name), crate::client::is_transient).await {
            Some(Ok(Some(_))) => Ok(SecretExistence::Present),
            Some(Ok(None)) => Ok(SecretExistence::Absent),
            Some(Err(kube::Error::Api(status))) if status.code == 403 => {
                tracing::debug!(
                    namespace = ?Untrusted(namespace),
                    "the operator may not read Secrets here (RBAC); their existence is not checked"
                );
                Ok(SecretExistence::NotPermitted)
            }
            Some(Err(error)) => Err(failed(error.to_string())),
            None => Err(failed(format!("no answer within {CONFIRM_BUDGET:?}"))),
        }
    }
}

/// Runs `read` until it answers, fails for a reason that does not pass (`transient` false), or
/// [`CONFIRM_BUDGET`] is spent (`None`: no answer in time), pausing [`CONFIRM_RETRY_PAUSE`] between
/// tries: the one rule of every live read admission makes, so one dropped connection, 429 or 503
/// never turns into a refusal, and the webhook still answers within the API server's 5 s.
pub async fn within_budget<T, E, F, Fut>(mut read: F, transient: impl Fn(&E) -> bool) -> Option<Result<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let deadline = tokio::time::Instant::now() + CONFIRM_BUDGET;
    loop {
        let error = match tokio::time::timeout_at(deadline, read()).await {
            Ok(Ok(answer)) => return Some(Ok(answer)),
            Ok(Err(error)) => error,
            Err(_) => return None,
        };
        if !transient(&error) || tokio::time::Instant::now() + CONFIRM_RETRY_PAUSE >= deadline {
            return Some(Err(error));
        }
        tracing::debug!(error = %Untrusted(&error.to_string()), "a live read failed for a passing reason; trying again");
        tokio::time::sleep(CONFIRM_RETRY_PAUSE).await;
    }
}

/// Decides `rule` over the APIManagers of `namespace`, cache first: over what `lookup` knows, and
/// when that answer refuses (`Err`), once more over what the API server holds now
/// ([`ApiManagerLookup::confirm`] of `name`, or of the whole namespace without one), whose answer
/// stands. A cache may not have seen an APIManager created, changed or deleted a moment ago; nothing
/// is refused for what it alone says.
pub async fn cache_first<L: ApiManagerLookup, T, R>(
    lookup: &L,
    namespace: &str,
    name: Option<&str>,
    rule: impl Fn(&[APIManager]) -> Result<T, R>,
) -> Result<Result<T, R>, LookupError> {
    if let Ok(decided) = rule(&lookup.list(namespace).await?) {
        return Ok(Ok(decided));
    }
    Ok(rule(&confirm_within_budget(lookup, namespace, name).await?))
}

/// [`ApiManagerLookup::confirm`] [`within_budget`].
async fn confirm_within_budget<L: ApiManagerLookup>(
    lookup: &L,
    namespace: &str,
    name: Option<&str>,
) -> Result<Vec<APIManager>, LookupError> {
    within_budget(|| lookup.confirm(namespace, name), LookupError::is_transient).await.unwrap_or_else(|| {
        Err(match name {
            Some(name) => LookupError::ReadTimeout { namespace: namespace.to_owned(), name: name.to_owned() },
            None => LookupError::Timeout { namespace: namespace.to_owned() },
        })
    })
}

/// `known` with APIManager `name` replaced by what a live read `found` (or removed when gone).
pub fn with_confirmed(mut known: Vec<APIManager>, name: &str, found: Option<APIManager>) -> Vec<APIManager> {
    known.retain(|apimanager| apimanager.name_any() != name);
    known.extend(found);
    known.sort_by_key(ResourceExt::name_any);
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::apimanager::APIManagerSpec;

    fn silent_server_lookup() -> (ClusterLookup, tokio::task::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let silent = tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().expect("url"));
        (ClusterLookup::new(kube::Client::try_from(config).expect("client")), silent)
    }

    #[tokio::test]
    async fn a_silent_api_server_gives_a_timeout_error_naming_the_namespace() {
        let (lookup, _silent) = silent_server_lookup();
        let error = lookup.list("3scale").await.expect_err("no answer");
        assert_eq!(error.to_string(), r#"the API server did not list the APIManagers of namespace "3scale" within 3s"#);
        let error = lookup.get("3scale", "example").await.expect_err("no answer");
        assert_eq!(
            error.to_string(),
            r#"the API server did not answer for APIManager "example" of namespace "3scale" within 3s"#
        );
    }

    /// A lookup of an HTTP server answering each request with the next status of `codes` (a
    /// Secret's metadata for 200, a Status otherwise), and the heads of the requests it got.
    fn canned_server_lookup(codes: &[u16]) -> (ClusterLookup, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (seen, codes) = (heads.clone(), std::sync::Arc::new(std::sync::Mutex::new(codes.to_vec())));
        tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((mut socket, _)) = listener.accept().await {
                let (seen, codes) = (seen.clone(), codes.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while socket.read(&mut byte).await.unwrap_or(0) == 1 {
                        head.push(byte[0]);
                        if !head.ends_with(b"\r\n\r\n") {
                            continue;
                        }
                        seen.lock().expect("lock").push(String::from_utf8_lossy(&head).into_owned());
                        head.clear();
                        let code = codes.lock().expect("lock").remove(0);
                        let body = match code {
                            200 => r#"{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":{"name":"s3"}}"#.to_owned(),
                            code => {
                                let reason = match code {
                                    403 => "Forbidden",
                                    404 => "NotFound",
                                    429 => "TooManyRequests",
                                    503 => "ServiceUnavailable",
                                    _ => "BadRequest",
                                };
                                format!(
                                    r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"{reason}","code":{code}}}"#
                                )
                            }
                        };
                        let answer = format!(
                            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let config = kube::Config::new(url.parse().expect("url"));
        (ClusterLookup::new(kube::Client::try_from(config).expect("client")), heads)
    }

    #[tokio::test]
    async fn a_secret_is_read_by_its_metadata_alone_and_a_refused_read_means_not_permitted() {
        let (lookup, heads) = canned_server_lookup(&[503, 429, 404, 200, 403]);
        assert_eq!(lookup.secret("3scale", "s3").await.expect("answered"), SecretExistence::Absent, "after 2 tries");
        assert_eq!(lookup.secret("3scale", "s3").await.expect("answered"), SecretExistence::Present);
        assert_eq!(lookup.secret("3scale", "s3").await.expect("answered"), SecretExistence::NotPermitted);
        let heads = heads.lock().expect("lock");
        assert_eq!(heads.len(), 5);
        for head in heads.iter() {
            assert!(head.starts_with("GET /api/v1/namespaces/3scale/secrets/s3 HTTP/1.1\r\n"), "{head}");
            assert!(head.to_lowercase().contains("as=partialobjectmetadata"), "metadata only: {head}");
        }
    }

    #[tokio::test]
    async fn a_secret_read_refused_for_good_is_an_error_never_an_answer() {
        let (lookup, _) = canned_server_lookup(&[400]);
        let error = lookup.secret("3scale", "s3").await.expect_err("refused");
        assert!(!error.is_transient(), "{error}");
        assert!(
            error.to_string().starts_with(r#"could not read the metadata of Secret "s3" in namespace "3scale": "#),
            "{error}"
        );
    }

    /// A lookup that knows nothing and whose confirming reads fail with `errors` (a 503 when
    /// `transient`, else a 403), then answer `live`; it counts the tries.
    #[derive(Clone)]
    struct Flaky {
        live: Vec<APIManager>,
        errors: usize,
        transient: bool,
        tries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl ApiManagerLookup for Flaky {
        async fn list(&self, _: &str) -> Result<Vec<APIManager>, LookupError> {
            Ok(Vec::new())
        }

        async fn confirm(&self, namespace: &str, _: Option<&str>) -> Result<Vec<APIManager>, LookupError> {
            let tried = self.tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if tried < self.errors {
                let code = if self.transient { 503 } else { 403 };
                let status = kube::core::Status::failure("no", "Reason").with_code(code).boxed();
                return Err(LookupError::Api { namespace: namespace.to_owned(), source: kube::Error::Api(status) });
            }
            Ok(self.live.clone())
        }

        async fn claim(&self, _: &str, _: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
            Ok(None)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirming_read_failing_for_a_passing_reason_is_tried_again_within_the_budget() {
        let one = |live: &[APIManager]| if live.len() == 1 { Ok(()) } else { Err(()) };
        let flaky = |errors, transient| Flaky {
            live: vec![APIManager::new("a", APIManagerSpec::default())],
            errors,
            transient,
            tries: Default::default(),
        };
        let twice_unavailable = flaky(2, true);
        assert_eq!(cache_first(&twice_unavailable, "ns", None, one).await.expect("confirmed"), Ok(()));
        assert_eq!(twice_unavailable.tries.load(std::sync::atomic::Ordering::SeqCst), 3);

        let forbidden = flaky(1, false);
        let error = cache_first(&forbidden, "ns", None, one).await.expect_err("a refusal is not retried");
        assert!(!error.is_transient(), "{error}");
        assert_eq!(forbidden.tries.load(std::sync::atomic::Ordering::SeqCst), 1);

        let down = flaky(usize::MAX, true);
        let started = tokio::time::Instant::now();
        let error = cache_first(&down, "ns", None, one).await.expect_err("down for good");
        assert!(error.is_transient(), "{error}");
        assert!(started.elapsed() <= CONFIRM_BUDGET, "within the webhook's time: {:?}", started.elapsed());
        assert_eq!(down.tries.load(std::sync::atomic::Ordering::SeqCst), 40, "every 100 ms for 4 s");
    }

    /// A lookup that knows `known`, while the API server holds `live`; it counts the confirmations.
    #[derive(Clone)]
    struct Lagging {
        known: Vec<APIManager>,
        live: Vec<APIManager>,
        confirmed: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    }

    impl ApiManagerLookup for Lagging {
        async fn list(&self, _: &str) -> Result<Vec<APIManager>, LookupError> {
            Ok(self.known.clone())
        }

        async fn confirm(&self, _: &str, name: Option<&str>) -> Result<Vec<APIManager>, LookupError> {
            self.confirmed.lock().expect("lock").push(name.map(str::to_owned));
            Ok(self.live.clone())
        }

        async fn claim(&self, _: &str, _: &str) -> Result<Option<PersistentVolumeClaim>, LookupError> {
            Ok(None)
        }
    }

    #[tokio::test]
    async fn what_the_cache_alone_refuses_is_confirmed_live_once() {
        let am = |name: &str| APIManager::new(name, APIManagerSpec::default());
        let lookup = Lagging { known: vec![am("a")], live: vec![am("a"), am("b")], confirmed: Default::default() };
        let named = |wanted: &'static str| {
            move |known: &[APIManager]| {
                known.iter().find(|a| a.name_any() == wanted).map(ResourceExt::name_any).ok_or(())
            }
        };
        let found = cache_first(&lookup, "ns", Some("a"), named("a")).await.expect("answered");
        assert_eq!(found, Ok("a".to_owned()));
        assert!(lookup.confirmed.lock().expect("lock").is_empty(), "what the cache allows is not confirmed");
        let found = cache_first(&lookup, "ns", Some("b"), named("b")).await.expect("answered");
        assert_eq!(found, Ok("b".to_owned()), "created a moment ago: the live answer stands");
        let found = cache_first(&lookup, "ns", None, named("c")).await.expect("answered");
        assert_eq!(found, Err(()), "refused live too");
        assert_eq!(*lookup.confirmed.lock().expect("lock"), [Some("b".to_owned()), None]);
    }

    #[test]
    fn a_confirmed_read_replaces_adds_or_removes_one_apimanager() {
        let named = |names: &[&str]| -> Vec<APIManager> {
            names.iter().map(|n| APIManager::new(n, APIManagerSpec::default())).collect()
        };
        let names = |list: Vec<APIManager>| list.iter().map(ResourceExt::name_any).collect::<Vec<_>>();
        let fresh = APIManager::new("b", APIManagerSpec::default());
        assert_eq!(names(with_confirmed(named(&["c", "a"]), "b", Some(fresh.clone()))), ["a", "b", "c"]);
        assert_eq!(names(with_confirmed(named(&["a", "b"]), "b", Some(fresh))), ["a", "b"]);
        assert_eq!(names(with_confirmed(named(&["a", "b"]), "b", None)), ["a"]);
    }
}
