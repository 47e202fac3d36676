//! The shipped manifests run for real: `kubectl apply -k manifests/` (not a dry run) on the real
//! control plane, whose Node runs the Deployment's two Pods from the image the manifests name
//! with the Pods' own arguments, environment, ServiceAccount token and security context, each
//! Pod in a network namespace of its own at a Pod IP; the API server calls the webhooks through
//! the Service (its ready endpoints, `--enable-aggregator-routing`) with the certificate the
//! replicas provision themselves. Then `kubectl create` of a bad backup is refused with the
//! webhook's message, a good one is defaulted and completes (its step Pods run from the same
//! image under the shipped fence), and a rolling restart of the Deployment loses no admission
//! request. Own control plane.

mod support;

use apimanager_backup_operator::api::backup::APIManagerBackup;
use apimanager_backup_operator::local::install::OPERATOR_NAMESPACE;
use apimanager_backup_operator::local::session;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::cluster::eventually;
use support::deployed::{
    DEPLOYMENT, assert_admission, empty_namespace, kubectl_ok, no_apimanager_message, start, wait_for_rollout,
};

/// The names of the operator's Pods.
async fn operator_pods(pods: &Api<Pod>) -> BTreeSet<String> {
    let list = pods.list(&ListParams::default().labels("app.kubernetes.io/component=operator")).await.expect("Pods");
    list.items.into_iter().filter_map(|pod| pod.metadata.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomize_install_runs_admits_backs_up_and_rolls_without_losing_an_admission() {
    let cluster = start("install", false).await;
    let manifests = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");
    kubectl_ok(&cluster, &["apply", "-k", manifests], "");
    wait_for_rollout(&cluster);

    let installation = assert_admission(&cluster, "install").await;
    let admin = cluster.plane.admin_client().await.expect("admin client");
    let backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), &installation);
    let done = session::wait_for_backup(&backups, "nightly", Duration::from_secs(180)).await.expect("backup ends");
    let status = done.status.expect("status");
    assert_eq!(status.completed, Some(true), "the backup completed: {:?}", status.conditions);
    assert!(cluster.volume(&installation, "nightly").join("manifest.json").is_file(), "the backup's manifest");

    // A rolling restart while requests keep coming: every one is answered by a replica.
    let empty = empty_namespace(&cluster, "install-rolling").await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), OPERATOR_NAMESPACE);
    let before = operator_pods(&pods).await;
    assert_eq!(before.len(), 2, "two replicas: {before:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let requests = {
        let (stop, api) = (stop.clone(), Api::<APIManagerBackup>::namespaced(admin.clone(), &empty));
        let backup: APIManagerBackup =
            serde_saphyr::from_str(&support::deployed::backup_yaml("rolling")).expect("backup");
        // The message after kubectl's `The APIManagerBackup "rolling" is invalid: `.
        let expected = no_apimanager_message("rolling", &empty);
        let expected = expected.split_once(" is invalid: ").map(|(_, why)| why.to_owned()).expect("message");
        tokio::spawn(async move {
            let (mut answered, mut lost) = (0usize, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match api.create(&PostParams { dry_run: true, ..PostParams::default() }, &backup).await {
                    Err(kube::Error::Api(status)) if status.message.ends_with(&expected) => answered += 1,
                    Err(error) => lost.push(error.to_string()),
                    Ok(_) => lost.push("admitted".into()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (answered, lost)
        })
    };
    kubectl_ok(&cluster, &["-n", OPERATOR_NAMESPACE, "rollout", "restart", &format!("deployment/{DEPLOYMENT}")], "");
    wait_for_rollout(&cluster);
    eventually(Duration::from_secs(120), "the old replicas are gone", || {
        let (pods, before) = (pods.clone(), before.clone());
        async move {
            let now = operator_pods(&pods).await;
            now.len() == 2 && now.is_disjoint(&before)
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (answered, lost) = requests.await.expect("request loop");
    assert!(
        lost.is_empty(),
        "{} of {} admission requests lost during the rollout: {lost:?}",
        lost.len(),
        answered + lost.len()
    );
    assert!(answered > 50, "requests kept coming during the rollout: {answered}");
}
