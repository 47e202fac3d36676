//! `apimanager-backup-operator local`: the embedded default, run until Ctrl-C.

use super::install::apply_yaml;
use super::{LocalCluster, LocalError};
use crate::api::backup::APIManagerBackup;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use std::path::Path;

/// Namespace the sample goes to.
pub const SAMPLE_NAMESPACE: &str = "3scale";
/// The sample APIManager and APIManagerBackup.
pub const SAMPLE: &str = include_str!("../../manifests/dev/sample.yaml");

/// Starts the local cluster under `dir`, applies the sample, prints how to look at it and waits
/// for Ctrl-C or SIGTERM.
pub async fn run(operator_binary: &Path, dir: &Path) -> Result<(), LocalError> {
    eprintln!("starting etcd, kube-apiserver, kube-controller-manager and the operator under {} …", dir.display());
    let cluster = LocalCluster::start(operator_binary, dir).await?;
    let admin = cluster.admin_client().await?;
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(SAMPLE_NAMESPACE.to_owned());
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(source) => {
            return Err(LocalError::Api { what: format!("creating namespace {SAMPLE_NAMESPACE}"), source });
        }
    }
    apply_yaml(&admin, SAMPLE, SAMPLE_NAMESPACE).await?;
    let backups: Api<APIManagerBackup> = Api::namespaced(admin, SAMPLE_NAMESPACE);
    let backup = backups
        .get("example-apimanagerbackup")
        .await
        .map_err(|source| LocalError::Api { what: "reading the sample backup".into(), source })?;
    let kubeconfig = cluster.plane.admin_kubeconfig.display();
    println!("control plane ready at {}", cluster.plane.server);
    println!("operator serving webhooks at {} (log: {})", cluster.operator.url, cluster.operator.log().display());
    println!(
        "sample APIManagerBackup {SAMPLE_NAMESPACE}/example-apimanagerbackup accepted; apiManagerName defaulted to {:?}",
        backup.spec.api_manager_name.unwrap_or_default()
    );
    println!("kubeconfig: {kubeconfig}");
    println!("try:  kubectl --kubeconfig {kubeconfig} -n {SAMPLE_NAMESPACE} get apimanagerbackups -o yaml");
    println!("Ctrl-C stops everything and removes {}", dir.display());
    wait_for_stop().await;
    eprintln!("stopping …");
    drop(cluster);
    Ok(())
}

async fn wait_for_stop() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {},
    }
}
