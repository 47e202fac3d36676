//! The test API server's own metrics.

use apimanager_backup_operator::local::LocalCluster;
use std::collections::BTreeMap;

/// The watches the API server of `cluster` serves at this moment (its gauge
/// `apiserver_longrunning_requests`, verb `WATCH`) by resource and scope: `cluster` (a watch of
/// every namespace) or `namespace` (of one).
pub async fn open_watches(cluster: &LocalCluster) -> BTreeMap<(String, String), f64> {
    let admin = cluster.admin_client().await.expect("admin client");
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = admin.request_text(request).await.expect("the API server's metrics");
    let mut watches = BTreeMap::new();
    for line in text.lines() {
        let Some(series) = line.strip_prefix("apiserver_longrunning_requests{") else { continue };
        let (labels, value) = series.rsplit_once("} ").expect("a sample");
        let label = |name: &str| {
            let key = format!("{name}=\"");
            labels.split(',').find_map(|pair| pair.strip_prefix(&key)?.strip_suffix('"')).unwrap_or("").to_owned()
        };
        if label("verb") == "WATCH" {
            let count: f64 = value.trim().parse().expect("a number");
            *watches.entry((label("resource"), label("scope"))).or_default() += count;
        }
    }
    watches
}
