//! A Kubernetes client that records every request it sends (`METHOD path?query`), to prove how
//! many API requests a piece of code costs.

use std::path::Path;
use std::sync::{Arc, Mutex};

/// The requests a [`counting_client`] sent, in order.
#[derive(Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<String>>>);

impl Requests {
    /// Every request so far except watches (a watch is one long request per cache, not per use).
    pub fn not_watches(&self) -> Vec<String> {
        self.0.lock().expect("requests").iter().filter(|r| !r.contains("watch=true")).cloned().collect()
    }
}

/// A client for the cluster and user of `kubeconfig` that records its requests in the result.
pub async fn counting_client(kubeconfig: &Path) -> (kube::Client, Requests) {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    let requests = Requests::default();
    let log = requests.clone();
    let layer = tower::layer::layer_fn(move |inner| {
        let log = log.clone();
        tower::util::MapRequest::new(inner, move |request: http::Request<kube::client::Body>| {
            log.0.lock().expect("requests").push(format!("{} {}", request.method(), request.uri()));
            request
        })
    });
    let client = kube::client::ClientBuilder::try_from(config).expect("client builder").with_layer(&layer).build();
    (client, requests)
}
