//! The shipped manifests on OpenShift (the harness's OpenShift mode: its discovery, namespace
//! allocations and `restricted-v2` admission of every Pod, the operator's own included), for
//! real: `manifests/` alone pins user 65532, which no namespace's range holds, so the
//! ReplicaSet's Pods are refused with OpenShift's message; with `components/openshift` they are
//! admitted, run as the namespace's first user, serve the webhooks, and the operator (finding
//! OpenShift by itself) runs a backup whose step Pods `restricted-v2` admits too. Own control
//! plane.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use apimanager_backup_operator::local::scc::{self, Allocation};
use apimanager_backup_operator::local::session;
use apimanager_backup_operator::platform::Platform;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use std::time::Duration;
use support::cluster::eventually;
use support::deployed::{assert_admission, kubectl_ok, start_on, wait_for_rollout};
use support::kustomize::render_with_components;

/// The message of the operator's ReplicaSet's `ReplicaFailure` condition, once it has one.
async fn replica_failure(replica_sets: &Api<ReplicaSet>) -> Option<String> {
    let list = replica_sets.list(&ListParams::default().labels("app.kubernetes.io/component=operator")).await.ok()?;
    list.items.iter().flat_map(|set| set.status.iter().flat_map(|s| s.conditions.iter().flatten())).find_map(
        |condition| {
            (condition.type_ == "ReplicaFailure" && condition.status == "True").then(|| condition.message.clone())
        },
    )?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_openshift_the_openshift_component_runs_where_the_base_install_is_refused() {
    let cluster = start_on("install-openshift", false, Platform::OpenShift).await;
    let admin = cluster.plane.admin_client().await.expect("admin client");

    kubectl_ok(&cluster, &["apply", "-f", "-"], &render_with_components("ocp-base", &[]));
    let replica_sets: Api<ReplicaSet> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    eventually(Duration::from_secs(60), "the base install's Pods are refused", || async {
        replica_failure(&replica_sets).await.is_some()
    })
    .await;
    let failure = replica_failure(&replica_sets).await.expect("the ReplicaSet's failure");
    let refusal = scc::refusal(&[]);
    let (prefix, _) = refusal.split_once("Forbidden: ").expect("refusal wording");
    assert!(failure.contains(prefix), "refused by restricted-v2: {failure}");
    assert!(failure.contains("65532"), "the pinned user is named: {failure}");

    kubectl_ok(&cluster, &["apply", "-f", "-"], &render_with_components("ocp", &["openshift"]));
    wait_for_rollout(&cluster);
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let allocation = Allocation::from_annotations(
        namespaces.get(OPERATOR_NAMESPACE).await.expect("the operator's namespace").annotations(),
    )
    .expect("the operator's namespace carries OpenShift's allocation");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let running = pods.list(&ListParams::default().labels("app.kubernetes.io/component=operator")).await.expect("Pods");
    assert_eq!(running.items.len(), 2, "two replicas");
    for pod in &running.items {
        assert_eq!(pod.annotations().get(scc::SCC_ANNOTATION).map(String::as_str), Some(scc::SCC_NAME));
        let spec = pod.spec.as_ref().expect("spec");
        // As OpenShift admits a Pod: the user on each container, the fsGroup on the Pod.
        let user = spec.containers[0].security_context.as_ref().and_then(|c| c.run_as_user);
        assert_eq!(user, Some(allocation.uids[0].first), "{}: the namespace's first user", pod.name_any());
        let fs_group = spec.security_context.as_ref().and_then(|c| c.fs_group);
        assert_eq!(fs_group, Some(allocation.groups[0].first), "{}: its first group", pod.name_any());
    }

    let installation = assert_admission(&cluster, "ocp").await;
    let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &installation);
    let done = session::wait_for_backup(&backups, "nightly", Duration::from_secs(180)).await.expect("backup ends");
    let status = done.status.expect("status");
    // Its step Pods passed restricted-v2 too: a refused one fails the backup as `Refused`.
    assert_eq!(status.completed, Some(true), "the backup completed: {:?}", status.conditions);
}
