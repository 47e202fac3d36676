//! A small in-memory API server behind a `tower-test` mock service, for the step machine's unit
//! tests (in the style of kube-rs controller-rs's `ApiServerVerifier`, but answering by what a real
//! API server does instead of a fixed script): it stores objects by path, answers GET, LIST (with an
//! equality `labelSelector`), POST
//! (409 when the name exists), merge PATCH of an object or its `status` (409 when
//! `metadata.resourceVersion` is stale)
//! and DELETE, records every request, and answers a request with an injected error once.

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// An error to answer once, to a request of `method` whose path ends with `path_suffix`, after
/// `skip` such requests were answered normally.
#[derive(Clone, Debug)]
pub struct Fault {
    /// HTTP method, e.g. `POST`.
    pub method: &'static str,
    /// The end of the request's path, e.g. `/jobs` or `/status`.
    pub path_suffix: String,
    /// Matching requests to let through first.
    pub skip: usize,
    /// HTTP status code.
    pub code: u16,
    /// The Status reason, e.g. `Forbidden`.
    pub reason: &'static str,
    /// The Status message.
    pub message: String,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<String>,
    faults: Vec<Fault>,
    version: u64,
}

/// The fake API server's state, shared with the test.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A client talking to a new fake API server, and the server's state.
    pub fn start() -> (kube::Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = Self::default();
        let served = fake.clone();
        tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("request body");
                let selector = parts.uri.query().and_then(label_selector);
                respond.send_response(served.answer(
                    parts.method.as_str(),
                    parts.uri.path(),
                    selector.as_deref(),
                    &bytes,
                ));
            }
        });
        (kube::Client::new(service, "default"), fake)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `object` at its path (`<collection>/<name>`), as if created earlier.
    pub fn put(&self, collection: &str, mut object: Value) {
        let mut state = self.lock();
        state.version += 1;
        object["metadata"]["resourceVersion"] = json!(state.version.to_string());
        let name = object["metadata"]["name"].as_str().expect("a name").to_owned();
        state.objects.insert(format!("{collection}/{name}"), object);
    }

    /// Removes the object at `path`, as if deleted by someone else.
    pub fn remove(&self, path: &str) {
        self.lock().objects.remove(path);
    }

    /// The object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// The names of the objects in `collection`.
    pub fn names(&self, collection: &str) -> Vec<String> {
        self.objects(collection).iter().filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned)).collect()
    }

    /// The objects in `collection`, by name.
    pub fn objects(&self, collection: &str) -> Vec<Value> {
        let prefix = format!("{collection}/");
        let state = self.lock();
        state
            .objects
            .iter()
            .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Answers the next matching request with `fault`, once.
    pub fn fail_once(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Every request so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn answer(&self, method: &str, path: &str, selector: Option<&str>, body: &[u8]) -> Response<Body> {
        let mut state = self.lock();
        state.requests.push(format!("{method} {path}"));
        if let Some(index) =
            state.faults.iter().position(|f| f.method == method && path.ends_with(f.path_suffix.as_str()))
        {
            if state.faults[index].skip == 0 {
                let fault = state.faults.remove(index);
                return status(fault.code, fault.reason, &fault.message);
            }
            state.faults[index].skip -= 1;
        }
        let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(body).expect("JSON body") };
        match method {
            "GET" => match state.objects.get(path) {
                Some(object) => reply(StatusCode::OK, object),
                None if is_collection(path) => {
                    let prefix = format!("{path}/");
                    let items: Vec<&Value> = state
                        .objects
                        .iter()
                        .filter(|(k, _)| k.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')))
                        .map(|(_, v)| v)
                        .filter(|v| selector.is_none_or(|selector| selects(selector, v)))
                        .collect();
                    reply(StatusCode::OK, &json!({"metadata": {"resourceVersion": "1"}, "items": items}))
                }
                None => status(404, "NotFound", &format!("{path} not found")),
            },
            "POST" => {
                let mut object = body;
                let name = match object["metadata"]["name"].as_str() {
                    Some(name) => name.to_owned(),
                    None => format!("{}{}", object["metadata"]["generateName"].as_str().unwrap_or("x-"), state.version),
                };
                let key = format!("{path}/{name}");
                if state.objects.contains_key(&key) {
                    return status(409, "AlreadyExists", &format!("{name} already exists"));
                }
                state.version += 1;
                object["metadata"]["name"] = json!(name);
                object["metadata"]["uid"] = json!(format!("uid-{}", state.version));
                object["metadata"]["resourceVersion"] = json!(state.version.to_string());
                state.objects.insert(key, object.clone());
                reply(StatusCode::CREATED, &object)
            }
            "PATCH" => {
                let target = path.strip_suffix("/status").unwrap_or(path).to_owned();
                let version = state.version + 1;
                let Some(object) = state.objects.get_mut(&target) else {
                    return status(404, "NotFound", &format!("{target} not found"));
                };
                let expected = body["metadata"]["resourceVersion"].as_str();
                if expected.is_some_and(|v| Some(v) != object["metadata"]["resourceVersion"].as_str()) {
                    return status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version",
                    );
                }
                // A patch of the status subresource changes only the status; of the object, what it names.
                let change = match path.ends_with("/status") {
                    true => json!({"status": body["status"]}),
                    false => body.clone(),
                };
                json_patch::merge(object, &change);
                object["metadata"]["resourceVersion"] = json!(version.to_string());
                let written = object.clone();
                state.version = version;
                reply(StatusCode::OK, &written)
            }
            "DELETE" => match state.objects.remove(path) {
                Some(_) => reply(StatusCode::OK, &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                None => status(404, "NotFound", &format!("{path} not found")),
            },
            other => status(405, "MethodNotAllowed", other),
        }
    }
}

/// The decoded `labelSelector` of a query string.
fn label_selector(query: &str) -> Option<String> {
    let encoded = query.split('&').find_map(|pair| pair.strip_prefix("labelSelector="))?;
    Some(encoded.replace("%2F", "/").replace("%3D", "=").replace("%2C", ","))
}

/// Whether `object` has every `key=value` label of `selector` (the only form the operator sends).
fn selects(selector: &str, object: &Value) -> bool {
    selector.split(',').all(|term| {
        let (key, value) = term.split_once('=').unwrap_or((term, ""));
        object["metadata"]["labels"][key].as_str() == Some(value)
    })
}

/// Collections end with a plural resource name after `namespaces/<ns>/`.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    segments.len() >= 3 && segments[segments.len() - 3] == "namespaces"
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).expect("JSON");
    Response::builder().status(code).body(Body::from(bytes)).expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    reply(StatusCode::from_u16(code).expect("status code"), &body)
}
