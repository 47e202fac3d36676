//! What the operator's watch caches keep of an object: everything except the bookkeeping that no
//! rule or reconcile step reads (`managedFields`, kubectl's last-applied configuration), which is
//! most of a small object's size in memory.

use kube::Resource;

/// The annotation `kubectl apply` stores the whole applied object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops `managedFields` and the last-applied annotation of `object`.
pub fn metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn drops_bookkeeping_and_keeps_the_rest() {
        let mut object: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c", "labels": {"app": "x"},
                "annotations": {LAST_APPLIED: "{}", "keep": "me"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "data": {"k": "v"}}))
        .expect("config map");
        metadata(&mut object);
        assert_eq!(
            serde_json::to_value(&object).expect("serializes"),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "x"}, "annotations": {"keep": "me"}},
                "data": {"k": "v"}})
        );
    }
}
