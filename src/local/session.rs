//! `apimanager-backup-operator local`: the embedded default, run until Ctrl-C.

use super::faults::FaultSpec;
use super::install::{apply_yaml, ensure_namespace};
use super::s3_sample;
use super::s3_server::S3Server;
use super::{LocalCluster, LocalError};
use crate::api::backup::APIManagerBackup;
use crate::api::status::OperationStatus;
use kube::api::Api;
use std::path::Path;
use std::time::{Duration, Instant};

/// Namespace the sample goes to.
pub const SAMPLE_NAMESPACE: &str = "3scale";
/// The sample 3scale installation: Secrets, ConfigMaps, the FileStorage claim, an APIManager.
pub const SAMPLE_INSTALLATION: &str = include_str!("../../manifests/dev/sample-3scale.yaml");
/// The sample APIManagerBackup.
pub const SAMPLE_BACKUP: &str = include_str!("../../manifests/dev/sample-backup.yaml");
/// Bucket `local` creates on its S3 server.
pub const SAMPLE_BUCKET: &str = "backups";
/// The sample APIManagerBackupSchedule.
pub const SAMPLE_SCHEDULE: &str = include_str!("../../manifests/dev/sample-schedule.yaml");
/// Name of the sample APIManagerBackupSchedule.
const SAMPLE_SCHEDULE_NAME: &str = "example-hourly";
/// Name of the sample APIManagerBackup.
const SAMPLE_BACKUP_NAME: &str = "example-apimanagerbackup";

/// User the sample's System app writes its uploads as.
pub const SYSTEM_APP_USER: u32 = 1001;
/// Group of the sample's uploads (the System app Pods' `fsGroup`); the operator of the local
/// cluster finds it from the claim's root (no `--file-storage-group`).
pub const FILE_STORAGE_GROUP: u32 = 1001;

/// Puts a few uploaded files into the folder standing in for the `system-storage` claim, as the
/// System app leaves them: owned by its user and group, readable by the group only (folders
/// 0750, files 0640). Ownership is set only when this process may (as root).
pub fn seed_file_storage(folder: &Path) -> Result<(), LocalError> {
    seed_file_storage_as(folder, SYSTEM_APP_USER, FILE_STORAGE_GROUP)
}

/// [`seed_file_storage`] with the files owned by user `uid` and group `gid` (OpenShift's images:
/// 1001 and group 0).
pub fn seed_file_storage_as(folder: &Path, uid: u32, gid: u32) -> Result<(), LocalError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| LocalError::Io { what: format!("seeding {}", folder.display()), source };
    let files = [
        ("uploads/logos/portal-logo.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n"),
        ("uploads/attachments.txt", "developer portal attachment\n"),
    ];
    std::fs::create_dir_all(folder.join("uploads/logos")).map_err(io)?;
    for (path, contents) in files {
        std::fs::write(folder.join(path), contents).map_err(io)?;
    }
    let as_root = super::pod_security::can_switch_users();
    let entries = [("", 0o750), ("uploads", 0o750), ("uploads/logos", 0o750)]
        .into_iter()
        .chain(files.iter().map(|(path, _)| (*path, 0o640)));
    for (path, mode) in entries {
        let path = folder.join(path);
        if as_root {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io)?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

/// Waits until the backup named `name` is completed or failed, returning it.
pub async fn wait_for_backup(
    api: &Api<APIManagerBackup>,
    name: &str,
    timeout: Duration,
) -> Result<APIManagerBackup, LocalError> {
    let deadline = Instant::now() + timeout;
    loop {
        let backup =
            api.get(name).await.map_err(|source| LocalError::Api { what: format!("reading backup {name}"), source })?;
        let status = backup.status.clone().unwrap_or_default();
        if status.progress().is_final() {
            return Ok(backup);
        }
        if Instant::now() > deadline {
            return Err(LocalError::NotReady(format!("backup {name} did not finish: {:?}", status.conditions)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Prints where the local S3 server is and how to reach it (it holds test data only).
fn print_s3(s3: &S3Server) {
    println!(
        "S3 server (SeaweedFS): endpoint {}, region {}, path-style, bucket {SAMPLE_BUCKET} (log: {})",
        s3.endpoint,
        super::s3_server::REGION,
        s3.log().display()
    );
    println!("  access key id {}, secret access key {}", s3.access_key_id, s3.secret_access_key);
    println!("  as 3scale's S3 Secret keys: {}", s3.env_file.display());
    println!(
        "try:  AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} aws --endpoint-url {} --region {} s3 ls s3://{SAMPLE_BUCKET}",
        s3.access_key_id,
        s3.secret_access_key,
        s3.endpoint,
        super::s3_server::REGION
    );
}

/// Starts the local cluster under `dir`, applies the sample, waits for its backup, prints where
/// the files are and how to look around, then waits for Ctrl-C or SIGTERM.
/// With `faults`, the operator talks to the API server through a [`FaultProxy`](super::faults::FaultProxy) injecting them.
pub async fn run(operator_binary: &Path, dir: &Path, faults: Option<FaultSpec>) -> Result<(), LocalError> {
    eprintln!("starting etcd, kube-apiserver, kube-controller-manager and the operator under {} …", dir.display());
    let mut cluster = LocalCluster::start(operator_binary, dir, &[]).await?;
    let proxy = match faults {
        Some(spec) => {
            eprintln!("restarting the operator behind a fault proxy ({spec}) …");
            let proxy = cluster.fault_proxy(None, spec).await?;
            let kubeconfig = cluster.kubeconfig_via(&proxy.url, "operator-faults")?;
            cluster.restart_operator_via(&kubeconfig, &[]).await?;
            Some(proxy)
        }
        None => None,
    };
    eprintln!("starting the S3 server (SeaweedFS) …");
    let s3 = S3Server::start(&super::repo_dir(), &dir.join("s3")).await?;
    s3.create_bucket(SAMPLE_BUCKET).await?;
    let admin = cluster.admin_client().await?;
    ensure_namespace(&admin, SAMPLE_NAMESPACE).await?;
    seed_file_storage(&cluster.volume(SAMPLE_NAMESPACE, "system-storage"))?;
    apply_yaml(&admin, SAMPLE_INSTALLATION, SAMPLE_NAMESPACE).await?;
    apply_yaml(&admin, SAMPLE_BACKUP, SAMPLE_NAMESPACE).await?;
    apply_yaml(&admin, SAMPLE_SCHEDULE, SAMPLE_NAMESPACE).await?;
    s3_sample::install(&admin, &s3, SAMPLE_INSTALLATION, s3_sample::NAMESPACE, s3_sample::BUCKET).await?;
    let s3_backups: Api<APIManagerBackup> = Api::namespaced(admin.clone(), s3_sample::NAMESPACE);
    let backups: Api<APIManagerBackup> = Api::namespaced(admin, SAMPLE_NAMESPACE);
    let backup = wait_for_backup(&backups, SAMPLE_BACKUP_NAME, Duration::from_secs(120)).await?;
    let s3_backup = wait_for_backup(&s3_backups, s3_sample::BACKUP_NAME, Duration::from_secs(120)).await?;
    let status = backup.status.clone().unwrap_or_default();
    let kubeconfig = cluster.plane.admin_kubeconfig.display();
    println!("control plane ready at {}", cluster.plane.server);
    println!("operator serving webhooks at {} (log: {})", cluster.operator.url, cluster.operator.log().display());
    println!(
        "sample APIManagerBackup {SAMPLE_NAMESPACE}/{SAMPLE_BACKUP_NAME}: apiManagerName defaulted to {:?}, completed: {}",
        backup.spec.api_manager_name.unwrap_or_default(),
        status.completed == Some(true)
    );
    for condition in &status.conditions {
        println!("  {} {} ({}): {}", condition.type_, condition.status, condition.reason, condition.message);
    }
    let claim = status.backup_persistent_volume_claim_name.unwrap_or_default();
    println!("backup files (claim {claim}): {}", cluster.volume(SAMPLE_NAMESPACE, &claim).display());
    println!("kubeconfig: {kubeconfig}");
    println!(
        "sample APIManagerBackupSchedule {SAMPLE_NAMESPACE}/{SAMPLE_SCHEDULE_NAME}: a backup every hour, on the hour"
    );
    let s3_status = s3_backup.status.unwrap_or_default();
    println!(
        "sample with System FileStorage in S3 bucket {} (Secret {}): APIManagerBackup {}/{}, completed: {}",
        s3_sample::BUCKET,
        s3_sample::SECRET,
        s3_sample::NAMESPACE,
        s3_sample::BACKUP_NAME,
        s3_status.completed == Some(true)
    );
    let s3_claim = s3_status.backup_persistent_volume_claim_name.unwrap_or_default();
    println!("backup files (claim {s3_claim}): {}", cluster.volume(s3_sample::NAMESPACE, &s3_claim).display());
    print_s3(&s3);
    println!("try:  kubectl --kubeconfig {kubeconfig} -n {SAMPLE_NAMESPACE} get apimanagerbackups");
    println!("      kubectl --kubeconfig {kubeconfig} -n {SAMPLE_NAMESPACE} get apimanagerbackupschedules");
    println!("Ctrl-C stops everything and removes {}", dir.display());
    if let Some(proxy) = &proxy {
        println!("fault proxy {} between the operator and the API server: {}", proxy.url, proxy.spec());
    }
    crate::signals::stop_requested().await;
    if let Some(proxy) = &proxy {
        let counts = proxy.counts();
        let json = serde_json::to_string(&counts).unwrap_or_default();
        println!("fault proxy: {} faults injected: {json}", counts.injected());
    }
    eprintln!("stopping …");
    drop(s3);
    drop(cluster);
    Ok(())
}
