//! AdmissionReviews as the API server sends them, for tests that call the webhooks directly.

/// An AdmissionReview of a CREATE of backup `b` in `namespace` with `spec`, as the API server sends it.
pub fn create_review(namespace: &str, spec: serde_json::Value) -> Vec<u8> {
    serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "apps.3scale.net", "version": "v1alpha1", "kind": "APIManagerBackup"},
        "resource": {"group": "apps.3scale.net", "version": "v1alpha1", "resource": "apimanagerbackups"},
        "name": "b", "namespace": namespace, "operation": "CREATE", "userInfo": {"username": "admin"},
        "object": {"apiVersion": "apps.3scale.net/v1alpha1", "kind": "APIManagerBackup",
            "metadata": {"name": "b", "namespace": namespace}, "spec": spec}}})
    .to_string()
    .into_bytes()
}

/// A backup spec asking for 1Gi, naming `apimanager` when given.
pub fn sized_spec(apimanager: Option<&str>) -> serde_json::Value {
    let mut spec =
        serde_json::json!({"backupDestination": {"persistentVolumeClaim": {"resources": {"requests": "1Gi"}}}});
    if let Some(name) = apimanager {
        spec["apiManagerName"] = name.into();
    }
    spec
}
