//! What a kubelet does with a Pod's security settings, for the node stand-in: which user, group
//! and supplemental groups the container process runs as, whether `runAsNonRoot` can be honoured,
//! which of its containers get an API token, and the `fsGroup` ownership of writable volumes.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why a container cannot be started, as a kubelet's `CreateContainerConfigError` says it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `runAsNonRoot` without a numeric user: the node stand-in knows no image user, so the
    /// container would run as root (a kubelet refuses an image user it cannot prove non-root).
    #[error("container has runAsNonRoot and image will run as root: set a numeric runAsUser")]
    WouldRunAsRoot,
    /// `runAsNonRoot` together with `runAsUser: 0`.
    #[error("container's runAsUser breaks non-root policy")]
    RootUser,
    /// An id outside what a Linux process can have.
    #[error("{field} {value} is not a valid id")]
    InvalidId {
        /// The security context field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
}

/// The process identity of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplemental groups: `fsGroup` and `supplementalGroups`, as a kubelet adds them.
    pub groups: Vec<u32>,
}

/// Whether this process runs as root and so can run Pods as their users and give files away.
pub fn can_switch_users() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn id(field: &'static str, value: i64) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| ConfigError::InvalidId { field, value })
}

/// The identity `container` of `spec` runs as (container settings override the Pod's). Without
/// `runAsUser` it would run as root, the stand-in's user, which `runAsNonRoot` refuses. Without
/// `runAsGroup` the primary group is 0, as on OpenShift, where the user the platform assigns has no
/// entry in the image's `/etc/passwd` and the runtime gives it group 0.
pub fn identity(spec: &PodSpec, container: &Container) -> Result<Identity, ConfigError> {
    let pod = spec.security_context.clone().unwrap_or_default();
    let own = container.security_context.clone().unwrap_or_default();
    let non_root = own.run_as_non_root.or(pod.run_as_non_root).unwrap_or(false);
    let user = own.run_as_user.or(pod.run_as_user);
    let uid = match user {
        None if non_root => return Err(ConfigError::WouldRunAsRoot),
        Some(0) if non_root => return Err(ConfigError::RootUser),
        None => 0,
        Some(user) => id("runAsUser", user)?,
    };
    let gid = own.run_as_group.or(pod.run_as_group).map(|group| id("runAsGroup", group)).transpose()?.unwrap_or(0);
    let mut groups = Vec::new();
    for group in pod.fs_group.iter().chain(pod.supplemental_groups.iter().flatten()) {
        let group = id("supplementalGroups", *group)?;
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok(Identity { uid, gid, groups })
}

/// Whether `container` of `spec` gets an API token: every container does when the Pod
/// automounts one (the Pod's `automountServiceAccountToken`, else its ServiceAccount's, else
/// yes); otherwise only a container mounting a projected volume with a `serviceAccountToken`.
pub fn gets_token(spec: &PodSpec, container: &Container, account_automounts: Option<bool>) -> bool {
    let automounted = spec.automount_service_account_token.or(account_automounts).unwrap_or(true);
    automounted
        || container.volume_mounts.iter().flatten().any(|mount| {
            let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name);
            let sources = volume.and_then(|v| v.projected.as_ref()).and_then(|p| p.sources.as_ref());
            sources.into_iter().flatten().any(|source| source.service_account_token.is_some())
        })
}

/// Gives `folder` (a writable volume) to group `fs_group` as a kubelet does for `fsGroup`: every
/// file and folder gets that group and group read/write, folders also the setgid bit so new files
/// inherit the group. Like `fsGroupChangePolicy: OnRootMismatch`, a folder whose top already has
/// that group and bits is left alone. Symbolic links are not followed.
pub fn apply_fs_group(folder: &Path, fs_group: u32) -> std::io::Result<()> {
    let top = std::fs::metadata(folder)?;
    if top.gid() == fs_group && top.mode() & 0o2770 == 0o2770 {
        return Ok(());
    }
    give_to_group(folder, fs_group)
}

fn give_to_group(path: &Path, fs_group: u32) -> std::io::Result<()> {
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, None, Some(fs_group))?;
    let bits = if metadata.is_dir() { 0o2770 } else { 0o660 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode((metadata.mode() & 0o7777) | bits))?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give_to_group(&entry?.path(), fs_group)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(security: serde_json::Value, container: serde_json::Value) -> (PodSpec, Container) {
        let container: Container =
            serde_json::from_value(json!({"name": "c", "securityContext": container})).expect("container");
        let spec: PodSpec =
            serde_json::from_value(json!({"containers": [container], "securityContext": security})).expect("pod spec");
        (spec, container)
    }

    #[test]
    fn runs_as_the_numeric_user_with_fs_group_and_supplemental_groups() {
        let (spec, container) = pod(
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                "supplementalGroups": [1001, 65532]}),
            json!({}),
        );
        assert_eq!(identity(&spec, &container), Ok(Identity { uid: 65532, gid: 65532, groups: vec![65532, 1001] }));
    }

    #[test]
    fn without_run_as_group_the_primary_group_is_0_as_on_openshift() {
        // What restricted-v2 leaves of a Pod naming no ids: the user on the container, fsGroup on the Pod.
        let (spec, container) =
            pod(json!({"runAsNonRoot": true, "fsGroup": 1_000_660_000}), json!({"runAsUser": 1_000_660_000}));
        let expected = Identity { uid: 1_000_660_000, gid: 0, groups: vec![1_000_660_000] };
        assert_eq!(identity(&spec, &container), Ok(expected));
    }

    #[test]
    fn container_settings_override_the_pods() {
        let (spec, container) =
            pod(json!({"runAsUser": 1000, "runAsGroup": 1000}), json!({"runAsUser": 2000, "runAsGroup": 3000}));
        assert_eq!(identity(&spec, &container), Ok(Identity { uid: 2000, gid: 3000, groups: vec![] }));
    }

    #[test]
    fn run_as_non_root_needs_a_numeric_non_root_user() {
        let (spec, container) = pod(json!({"runAsNonRoot": true}), json!({}));
        assert_eq!(identity(&spec, &container), Err(ConfigError::WouldRunAsRoot));
        let (spec, container) = pod(json!({"runAsUser": 0}), json!({"runAsNonRoot": true}));
        assert_eq!(identity(&spec, &container), Err(ConfigError::RootUser));
        let (spec, container) = pod(json!({"runAsUser": -1}), json!({}));
        assert_eq!(identity(&spec, &container), Err(ConfigError::InvalidId { field: "runAsUser", value: -1 }));
    }

    #[test]
    fn token_follows_the_pod_then_the_service_account() {
        let (mut spec, container) = pod(json!({}), json!({}));
        assert!(gets_token(&spec, &container, None));
        assert!(!gets_token(&spec, &container, Some(false)));
        spec.automount_service_account_token = Some(false);
        assert!(!gets_token(&spec, &container, Some(true)));
        spec.automount_service_account_token = Some(true);
        assert!(gets_token(&spec, &container, Some(false)));
    }

    #[test]
    fn without_automount_only_a_container_mounting_a_projected_token_gets_one() {
        let spec: PodSpec = serde_json::from_value(json!({"automountServiceAccountToken": false,
            "volumes": [{"name": "api", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
            "initContainers": [{"name": "reads-api", "volumeMounts": [{"name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
            "containers": [{"name": "reads-files", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}))
        .expect("pod spec");
        let init = &spec.init_containers.clone().expect("init")[0];
        assert!(gets_token(&spec, init, None));
        assert!(!gets_token(&spec, &spec.containers[0], None));
    }

    #[test]
    fn fs_group_makes_a_tree_group_writable_with_setgid_folders() {
        let root = std::env::temp_dir().join(format!("fs-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub")).expect("dirs");
        std::fs::write(root.join("sub/file"), b"x").expect("file");
        std::fs::set_permissions(root.join("sub/file"), std::fs::Permissions::from_mode(0o600)).expect("mode");
        std::fs::write(root.join("outside"), b"y").expect("file");
        std::fs::set_permissions(root.join("outside"), std::fs::Permissions::from_mode(0o600)).expect("mode");
        std::fs::create_dir(root.join("volume")).expect("volume");
        std::fs::rename(root.join("sub"), root.join("volume/sub")).expect("move");
        std::os::unix::fs::symlink(root.join("outside"), root.join("volume/link")).expect("link");
        // A group this process is in, so the change works without root too.
        let group = std::fs::metadata(&root).expect("metadata").gid();
        apply_fs_group(&root.join("volume"), group).expect("fsGroup applied");
        let mode = |p: &str| std::fs::metadata(root.join(p)).expect("metadata").mode() & 0o7777;
        assert_eq!(mode("volume/sub/file"), 0o660);
        assert_eq!(mode("volume/sub") & 0o2770, 0o2770);
        assert_eq!(mode("outside"), 0o600, "a link out of the volume is not followed");
        std::fs::remove_dir_all(root).expect("cleanup");
    }
}
