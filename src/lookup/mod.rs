//! How admission and the reconcilers find the APIManagers of a namespace (and a restore's backup
//! claim): a small interface ([`ApiManagerLookup`]), so the rules are tested with fixed answers and
//! served from the watch-fed cache ([`cache`]), which confirms through [`ClusterLookup`] what it
//! does not know; and the one way every reader decides over them, [`cache_first`]: from what the
//! lookup knows, and when that would refuse, again from what the API server holds now.

pub mod cache;

use crate::api::apimanager::APIManager;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
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
            Self::Claim { .. } | Self::NotManaged { .. } => false,
        }
    }
}

/// Finds the APIManagers of a namespace, and claims.
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
        // Tried again while it fails for a passing reason, within the webhook's time.
        let deadline = tokio::time::Instant::now() + CONFIRM_BUDGET;
        loop {
            let timeout = deadline.min(tokio::time::Instant::now() + LOOKUP_TIMEOUT);
            match tokio::time::timeout_at(timeout, api.get_opt(name)).await {
                Ok(Ok(claim)) => return Ok(claim),
                Ok(Err(error))
                    if crate::client::is_transient(&error)
                        && tokio::time::Instant::now() + CONFIRM_RETRY_PAUSE < deadline =>
                {
                    tracing::debug!(%error, "reading a claim failed for a passing reason; trying again");
                    tokio::time::sleep(CONFIRM_RETRY_PAUSE).await;
                }
                Ok(Err(error)) => return Err(failed(error.to_string())),
                Err(_) => return Err(failed(format!("no answer within {LOOKUP_TIMEOUT:?}"))),
            }
        }
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

/// [`ApiManagerLookup::confirm`], tried again while it fails for a passing reason and
/// [`CONFIRM_BUDGET`] lasts, so one dropped connection or 503 never turns into a refusal.
async fn confirm_within_budget<L: ApiManagerLookup>(
    lookup: &L,
    namespace: &str,
    name: Option<&str>,
) -> Result<Vec<APIManager>, LookupError> {
    let deadline = tokio::time::Instant::now() + CONFIRM_BUDGET;
    let timed_out = || match name {
        Some(name) => LookupError::ReadTimeout { namespace: namespace.to_owned(), name: name.to_owned() },
        None => LookupError::Timeout { namespace: namespace.to_owned() },
    };
    loop {
        let error = match tokio::time::timeout_at(deadline, lookup.confirm(namespace, name)).await {
            Ok(Ok(live)) => return Ok(live),
            Ok(Err(error)) => error,
            Err(_) => return Err(timed_out()),
        };
        if !error.is_transient() || tokio::time::Instant::now() + CONFIRM_RETRY_PAUSE >= deadline {
            return Err(error);
        }
        tracing::debug!(%error, "a confirming read failed for a passing reason; trying again");
        tokio::time::sleep(CONFIRM_RETRY_PAUSE).await;
    }
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
