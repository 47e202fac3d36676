//! The volume provisioner's part of the node stand-in: a claim's folder
//! (`<volumes>/<namespace>/<claim>`) is removed once the claim is gone, as a dynamically
//! provisioned volume with reclaim policy `Delete` is; so a test sees a deleted backup claim's data
//! go.

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::path::{Path, PathBuf};

/// Removes the folder of each claim deleted, until the watch ends.
pub async fn reclaim_deleted_claims(client: kube::Client, volumes: PathBuf) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client);
    let mut events = std::pin::pin!(watcher::watcher(claims, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        if let Ok(Event::Delete(claim)) = event {
            let Some(folder) = folder(&volumes, &claim) else { continue };
            match std::fs::remove_dir_all(&folder) {
                Ok(()) => {
                    tracing::info!(folder = %folder.display(), "node stand-in: claim deleted; removed its folder")
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(folder = %folder.display(), %error, "node stand-in could not remove a deleted claim's folder")
                }
            }
        }
    }
}

/// The folder standing in for `claim`'s volume (none for a name that could leave `volumes`).
fn folder(volumes: &Path, claim: &PersistentVolumeClaim) -> Option<PathBuf> {
    let (namespace, name) = (claim.namespace()?, claim.name_any());
    let plain = |part: &str| !part.is_empty() && !part.contains('/') && part != "." && part != "..";
    (plain(&namespace) && plain(&name)).then(|| volumes.join(namespace).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claims_folder_is_under_its_namespace() {
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.name = Some("nightly-20261206-0200".into());
        claim.metadata.namespace = Some("3scale".into());
        assert_eq!(folder(Path::new("/v"), &claim), Some(PathBuf::from("/v/3scale/nightly-20261206-0200")));
        claim.metadata.name = Some("..".into());
        assert_eq!(folder(Path::new("/v"), &claim), None);
    }
}
