//! Objects for the reconciler's unit tests.

use super::events::EventPublisher;
use super::fake_api::FakeApi;
use super::seen::CreatedPods;
use super::step::JobSettings;
use super::{Context, ReconcileSettings};
use crate::api::apimanager::APIManager;
use crate::api::backup::APIManagerBackup;
use crate::lookup::ClusterLookup;
use crate::lookup::cache::CachedLookup;
use crate::metrics::Metrics;
use crate::names::CONTROLLER;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The APIManagers of the fixtures' namespace.
pub const APIMANAGERS: &str = "/apis/apps.3scale.net/v1alpha1/namespaces/3scale/apimanagers";
/// Its claims.
pub const CLAIMS: &str = "/api/v1/namespaces/3scale/persistentvolumeclaims";
/// Its Pods.
pub const PODS: &str = "/api/v1/namespaces/3scale/pods";
/// Its Roles.
pub const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/3scale/roles";
/// Its RoleBindings.
pub const ROLE_BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/3scale/rolebindings";
/// Its events.
pub const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/3scale/events";

/// Namespace of every fixture.
pub const NAMESPACE: &str = "3scale";
/// UID of the fixture backup.
pub const BACKUP_UID: &str = "0b1c2d3e-0000-4000-8000-000000000001";
/// UID of the fixture restore.
pub const RESTORE_UID: &str = "0b1c2d3e-0000-4000-8000-000000000002";

/// The `--file-storage-group` of the reconciliations the unit tests run (so a backup is one Pod;
/// the tests of the inspection clear it).
pub const FILE_STORAGE_GROUP: i64 = 1001;

/// What a reconciliation shares, talking through `client` (a backup timeout of 1 h, a restore
/// timeout of 30 min, a back-off limit of 2, [`FILE_STORAGE_GROUP`]), and the writers of its APIManager and Pod stores
/// (empty at first), to feed them as their watches do.
pub fn watched_context(client: kube::Client) -> (Arc<Context>, Watches) {
    let recorder = EventPublisher::new(client.clone(), CONTROLLER, CONTROLLER);
    let settings = ReconcileSettings {
        jobs: JobSettings {
            image: "abo:test".into(),
            command: "abo".into(),
            backoff_limit: 2,
            file_storage_group: Some(FILE_STORAGE_GROUP),
            platform: crate::platform::Platform::Kubernetes,
        },
        backup_timeout: Duration::from_secs(3600),
        restore_timeout: Duration::from_secs(1800),
    };
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let (store, apimanagers) = reflector::store();
    let lookup = CachedLookup::from_store(store, ClusterLookup::new(client.clone()));
    let (pod_store, pods) = reflector::store();
    let created_pods = Arc::new(CreatedPods::default());
    let context = Context::new(client, metrics, recorder, settings, lookup, pod_store, created_pods.clone());
    (Arc::new(context), Watches { apimanagers, pods, created_pods })
}

/// Feeds a context's stores, as the reconciler's watches do.
pub struct Watches {
    apimanagers: Writer<APIManager>,
    pods: Writer<Pod>,
    created_pods: Arc<CreatedPods>,
}

impl Watches {
    /// The watch delivers Pod `name` of the fixtures' namespace as `fake` holds it (trimmed as the
    /// reconciler's watch trims it).
    pub fn sees_pod(&mut self, fake: &FakeApi, name: &str) {
        let mut stored: Pod = serde_json::from_value(fake.get(&format!("{PODS}/{name}")).expect("pod")).expect("json");
        crate::trim::pod(&mut stored);
        self.pods.apply_watcher_event(&watcher::Event::Apply(stored.clone()));
        self.created_pods.observed(&stored);
    }

    /// The watch delivers the deletion of Pod `name`.
    pub fn sees_pod_deleted(&mut self, name: &str) {
        let gone = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(NAMESPACE.to_owned()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        self.pods.apply_watcher_event(&watcher::Event::Delete(gone.clone()));
        self.created_pods.observed(&gone);
    }

    /// The watch delivers APIManager `name` of the fixtures' namespace as `fake` holds it.
    pub fn sees(&mut self, fake: &FakeApi, name: &str) {
        let stored: APIManager =
            serde_json::from_value(fake.get(&format!("{APIMANAGERS}/{name}")).expect("apimanager")).expect("json");
        self.apimanagers.apply_watcher_event(&watcher::Event::Apply(stored));
    }

    /// The watch delivers the deletion of APIManager `name`.
    pub fn sees_deleted(&mut self, name: &str) {
        let mut gone = apimanager(json!({}));
        gone.metadata.name = Some(name.to_owned());
        self.apimanagers.apply_watcher_event(&watcher::Event::Delete(gone));
    }
}

/// An APIManagerRestore `r` of claim `nightly` as the API server stores it, with `status`.
pub fn restore(status: Value) -> crate::api::restore::APIManagerRestore {
    serde_json::from_value(json!({
        "apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManagerRestore",
        "metadata": {"name": "r", "namespace": NAMESPACE, "uid": RESTORE_UID, "generation": 1, "resourceVersion": "1"},
        "spec": {"restoreSource": {"persistentVolumeClaim": {"claimSource": {"claimName": "nightly", "readOnly": true}}}},
        "status": status,
    }))
    .expect("a valid APIManagerRestore")
}

/// An APIManagerBackup `b` as the API server stores it, with `destination` as its
/// `spec.backupDestination.persistentVolumeClaim` and `status`.
pub fn backup(destination: Value, status: Value) -> APIManagerBackup {
    serde_json::from_value(json!({
        "apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManagerBackup",
        "metadata": {"name": "b", "namespace": NAMESPACE, "uid": BACKUP_UID, "generation": 1, "resourceVersion": "1"},
        "spec": {"apiManagerName": "example", "backupDestination": {"persistentVolumeClaim": destination}},
        "status": status,
    }))
    .expect("a valid APIManagerBackup")
}

/// APIManager `example` with all databases external and `system` as its `spec.system`.
pub fn apimanager(system: Value) -> APIManager {
    serde_json::from_value(json!({
        "apiVersion": "apps.3scale.net/v1alpha1",
        "kind": "APIManager",
        "metadata": {"name": "example", "namespace": NAMESPACE, "uid": "am-uid"},
        "spec": {"externalComponents": {"system": {"database": true, "redis": true}, "backend": {"redis": true}},
            "system": system},
    }))
    .expect("a valid APIManager")
}

/// Gives Pod `name` the status `status`, as its node would.
pub fn pod_status(fake: &FakeApi, name: &str, status: Value) {
    let mut pod = fake.get(&format!("{PODS}/{name}")).unwrap_or_else(|| panic!("Pod {name}"));
    pod["status"] = status;
    fake.put(PODS, pod);
}

/// `(type, reason, action, note)` of every event published.
pub fn events(fake: &FakeApi) -> Vec<(String, String, String, String)> {
    let text = |event: &Value, field: &str| event[field].as_str().unwrap_or_default().to_owned();
    fake.objects(EVENTS)
        .iter()
        .map(|e| (text(e, "type"), text(e, "reason"), text(e, "action"), text(e, "note")))
        .collect()
}

/// Whether the metrics hold exactly the line `sample`.
pub fn metric(ctx: &Context, sample: &str) -> bool {
    ctx.metrics.render().expect("render").lines().any(|line| line == sample)
}
