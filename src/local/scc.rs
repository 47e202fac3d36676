//! What OpenShift's SecurityContextConstraints admission does to a Pod under the default
//! `restricted-v2` SCC, for the harness's OpenShift mode (see [`super::openshift`]): a pure rule
//! over a namespace's allocation and a Pod spec, no API calls.
//!
//! Enforced, as `restricted-v2` has it:
//! - `runAsUser: MustRunAsRange`: a container without `runAsUser` (its own or the Pod's) gets the
//!   first user of the namespace's `openshift.io/sa.scc.uid-range`; any user outside it is refused.
//! - `fsGroup: MustRunAs`: a Pod without `fsGroup` gets the first group of the namespace's
//!   `openshift.io/sa.scc.supplemental-groups`; an `fsGroup` outside those ranges is refused.
//! - `supplementalGroups: RunAsAny`: any supplemental group is admitted (as on OpenShift, where a
//!   Pod may join the group owning a volume's files).
//! - `seLinuxContext: MustRunAs`: the Pod gets the namespace's `openshift.io/sa.scc.mcs` level; any
//!   other level is refused.
//! - `allowPrivilegeEscalation: false` (defaulted when unset, refused when true), no privileged
//!   container, `requiredDropCapabilities: [ALL]` (added to `drop`), `allowedCapabilities:
//!   [NET_BIND_SERVICE]` (any other `add` is refused).
//! - `seccompProfiles: [runtime/default]`: defaulted on the Pod when unset; any other profile, on the
//!   Pod or a container, is refused.
//! - No host network, PID or IPC namespace, no host port, and only the volume types
//!   `configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret`
//!   (so no `hostPath`).
//!
//! Not enforced, as `restricted-v2` does not constrain it either: `runAsGroup` (SCCs have no such
//! strategy), `runAsNonRoot`, a read-only root filesystem.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PodSecurityContext, PodSpec, SELinuxOptions, SeccompProfile, SecurityContext,
};
use std::collections::BTreeMap;

/// Name of the one SCC the harness plays.
pub const SCC_NAME: &str = "restricted-v2";
/// Namespace annotation: the users its Pods may run as (`<first>/<count>`).
pub const UID_RANGE: &str = "openshift.io/sa.scc.uid-range";
/// Namespace annotation: the groups its Pods' `fsGroup` may be (`<first>/<count>`, comma-separated).
pub const SUPPLEMENTAL_GROUPS: &str = "openshift.io/sa.scc.supplemental-groups";
/// Namespace annotation: the SELinux level of its Pods.
pub const MCS: &str = "openshift.io/sa.scc.mcs";
/// Pod annotation naming the SCC that admitted it.
pub const SCC_ANNOTATION: &str = "openshift.io/scc";

/// First user of the first block OpenShift gives a namespace; blocks are [`BLOCK_SIZE`] apart.
pub const FIRST_BLOCK_START: i64 = 1_000_000_000;
/// Users (and groups) in one namespace's block.
pub const BLOCK_SIZE: i64 = 10_000;

/// The only capability `restricted-v2` lets a container add.
const ALLOWED_CAPABILITY: &str = "NET_BIND_SERVICE";
/// The seccomp profile `restricted-v2` requires (`runtime/default`).
const RUNTIME_DEFAULT: &str = "RuntimeDefault";
/// The volume types `restricted-v2` allows, by their field name in a Pod's volume.
const ALLOWED_VOLUMES: [&str; 8] =
    ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// Why a namespace's annotations cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The namespace carries no such annotation (yet).
    #[error("unable to find annotation {0}")]
    Missing(&'static str),
    /// The annotation is not `<first>/<count>` or `<first>-<last>` (comma-separated).
    #[error("annotation {annotation} has an invalid range {value:?}")]
    Invalid {
        /// Which annotation.
        annotation: &'static str,
        /// Its value.
        value: String,
    },
}

/// Inclusive range of user or group ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// Lowest id.
    pub first: i64,
    /// Highest id.
    pub last: i64,
}

impl IdRange {
    fn contains(self, id: i64) -> bool {
        (self.first..=self.last).contains(&id)
    }
}

/// Parses `<first>/<count>` or `<first>-<last>`, comma-separated, as OpenShift writes them.
fn parse_ranges(annotation: &'static str, value: &str) -> Result<Vec<IdRange>, AllocationError> {
    let invalid = || AllocationError::Invalid { annotation, value: value.to_owned() };
    value
        .split(',')
        .map(|range| {
            let range = range.trim();
            let parse = |n: &str| n.trim().parse::<i64>().map_err(|_| invalid());
            let (first, last) = match (range.split_once('/'), range.split_once('-')) {
                (Some((first, count)), _) => {
                    let first = parse(first)?;
                    let count = parse(count)?;
                    (first, first.checked_add(count - 1).ok_or_else(invalid)?)
                }
                (None, Some((first, last))) => (parse(first)?, parse(last)?),
                (None, None) => return Err(invalid()),
            };
            if first < 0 || last < first { Err(invalid()) } else { Ok(IdRange { first, last }) }
        })
        .collect()
}

/// What OpenShift allocates to a namespace: its users, its groups and its SELinux level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// `openshift.io/sa.scc.uid-range`.
    pub uids: Vec<IdRange>,
    /// `openshift.io/sa.scc.supplemental-groups`.
    pub groups: Vec<IdRange>,
    /// `openshift.io/sa.scc.mcs`.
    pub mcs: String,
}

impl Allocation {
    /// Block `index` of the ones OpenShift hands out: users and groups
    /// `1000000000 + index × 10000` on, and a level of its own.
    pub fn block(index: u32) -> Self {
        let first = FIRST_BLOCK_START + i64::from(index) * BLOCK_SIZE;
        let range = IdRange { first, last: first + BLOCK_SIZE - 1 };
        // Two distinct categories per namespace, as OpenShift's allocator gives: the pairs
        // (high, low), low < high, counted in order.
        let mut high: u32 = 1;
        while high * (high + 1) / 2 <= index {
            high += 1;
        }
        let low = index - high * (high - 1) / 2;
        let mcs = format!("s0:c{high},c{low}");
        Self { uids: vec![range], groups: vec![range], mcs }
    }

    /// The namespace annotations stating this allocation.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let ranges = |ranges: &[IdRange]| {
            ranges.iter().map(|r| format!("{}/{}", r.first, r.last - r.first + 1)).collect::<Vec<_>>().join(",")
        };
        BTreeMap::from([
            (UID_RANGE.to_owned(), ranges(&self.uids)),
            (SUPPLEMENTAL_GROUPS.to_owned(), ranges(&self.groups)),
            (MCS.to_owned(), self.mcs.clone()),
        ])
    }

    /// The allocation a namespace's annotations state.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, AllocationError> {
        let get = |key: &'static str| annotations.get(key).ok_or(AllocationError::Missing(key));
        Ok(Self {
            uids: parse_ranges(UID_RANGE, get(UID_RANGE)?)?,
            groups: parse_ranges(SUPPLEMENTAL_GROUPS, get(SUPPLEMENTAL_GROUPS)?)?,
            mcs: get(MCS)?.clone(),
        })
    }

    fn first_uid(&self) -> i64 {
        self.uids.first().map_or(FIRST_BLOCK_START, |r| r.first)
    }

    fn first_group(&self) -> i64 {
        self.groups.first().map_or(FIRST_BLOCK_START, |r| r.first)
    }

    fn ranges_text(ranges: &[IdRange]) -> String {
        ranges.iter().map(|r| format!("[{}, {}]", r.first, r.last)).collect::<Vec<_>>().join(", ")
    }
}

/// Fills in what `restricted-v2` defaults (see the module documentation), leaving what is set.
pub fn apply_defaults(spec: &mut PodSpec, allocation: &Allocation) {
    let pod = spec.security_context.get_or_insert_with(PodSecurityContext::default);
    pod.fs_group.get_or_insert(allocation.first_group());
    let level = pod.se_linux_options.get_or_insert_with(SELinuxOptions::default);
    level.level.get_or_insert_with(|| allocation.mcs.clone());
    let pod_user = pod.run_as_user;
    let container_profiles =
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| seccomp_of(c).is_some());
    let pod = spec.security_context.get_or_insert_with(PodSecurityContext::default);
    if pod.seccomp_profile.is_none() && !container_profiles {
        pod.seccomp_profile = Some(SeccompProfile { type_: RUNTIME_DEFAULT.to_owned(), ..SeccompProfile::default() });
    }
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        let security = container.security_context.get_or_insert_with(SecurityContext::default);
        if security.run_as_user.is_none() && pod_user.is_none() {
            security.run_as_user = Some(allocation.first_uid());
        }
        security.allow_privilege_escalation.get_or_insert(false);
        let capabilities = security.capabilities.get_or_insert_with(Capabilities::default);
        let drop = capabilities.drop.get_or_insert_with(Vec::new);
        if !drop.iter().any(|c| c == "ALL") {
            drop.push("ALL".to_owned());
        }
    }
}

fn seccomp_of(container: &Container) -> Option<&SeccompProfile> {
    container.security_context.as_ref().and_then(|s| s.seccomp_profile.as_ref())
}

/// Everything about `spec` that `restricted-v2` refuses, each as OpenShift words it (field path,
/// value, reason); empty when the Pod is admitted.
pub fn violations(spec: &PodSpec, allocation: &Allocation) -> Vec<String> {
    let mut found = Vec::new();
    let pod = spec.security_context.clone().unwrap_or_default();
    let users = Allocation::ranges_text(&allocation.uids);
    if let Some(group) = pod.fs_group.filter(|g| !allocation.groups.iter().any(|r| r.contains(*g))) {
        found.push(format!(
            "spec.securityContext.fsGroup: Invalid value: []int64{{{group}}}: {group} is not an allowed group"
        ));
    }
    let level = |options: &Option<SELinuxOptions>| options.as_ref().and_then(|o| o.level.clone());
    if let Some(level) = level(&pod.se_linux_options).filter(|l| *l != allocation.mcs) {
        found.push(format!(
            "spec.securityContext.seLinuxOptions.level: Invalid value: {level:?}: must be {:?}",
            allocation.mcs
        ));
    }
    for (flag, what, on) in [
        (spec.host_network, "hostNetwork", "Host network"),
        (spec.host_pid, "hostPID", "Host PID"),
        (spec.host_ipc, "hostIPC", "Host IPC"),
    ] {
        if flag == Some(true) {
            found.push(format!("spec.securityContext.{what}: Invalid value: true: {on} is not allowed to be used"));
        }
    }
    if let Some(profile) = pod.seccomp_profile.as_ref().filter(|p| p.type_ != RUNTIME_DEFAULT) {
        found.push(seccomp_violation("spec.securityContext", profile));
    }
    for (index, volume) in spec.volumes.iter().flatten().enumerate() {
        let as_json = serde_json::to_value(volume).unwrap_or_default();
        let kinds = as_json.as_object().into_iter().flat_map(|o| o.keys()).filter(|key| *key != "name");
        for kind in kinds.filter(|kind| !ALLOWED_VOLUMES.contains(&kind.as_str())) {
            found.push(format!(
                "spec.volumes[{index}]: Invalid value: {kind:?}: {kind} volumes are not allowed to be used"
            ));
        }
    }
    let containers = spec.containers.iter().enumerate().map(|(i, c)| (format!("spec.containers[{i}]"), c));
    let init = spec.init_containers.iter().flatten().enumerate().map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    for (path, container) in containers.chain(init) {
        let own = container.security_context.clone().unwrap_or_default();
        match (own.run_as_user, pod.run_as_user) {
            (Some(user), _) if !allocation.uids.iter().any(|r| r.contains(user)) => found.push(format!(
                "{path}.securityContext.runAsUser: Invalid value: {user}: must be in the ranges: {users}"
            )),
            (None, Some(user)) if !allocation.uids.iter().any(|r| r.contains(user)) => found.push(format!(
                "{path}.securityContext.runAsUser: Invalid value: {user}: must be in the ranges: {users}"
            )),
            _ => {}
        }
        if own.privileged == Some(true) {
            found.push(format!(
                "{path}.securityContext.privileged: Invalid value: true: Privileged containers are not allowed"
            ));
        }
        if own.allow_privilege_escalation == Some(true) {
            found.push(format!(
                "{path}.securityContext.allowPrivilegeEscalation: Invalid value: true: Allowing privilege escalation for containers is not allowed"
            ));
        }
        let added = own.capabilities.as_ref().and_then(|c| c.add.clone()).unwrap_or_default();
        for capability in added.iter().filter(|c| *c != ALLOWED_CAPABILITY) {
            found.push(format!(
                "{path}.securityContext.capabilities.add: Invalid value: {capability:?}: capability may not be added"
            ));
        }
        if let Some(level) = level(&own.se_linux_options).filter(|l| *l != allocation.mcs) {
            found.push(format!(
                "{path}.securityContext.seLinuxOptions.level: Invalid value: {level:?}: must be {:?}",
                allocation.mcs
            ));
        }
        if let Some(profile) = own.seccomp_profile.as_ref().filter(|p| p.type_ != RUNTIME_DEFAULT) {
            found.push(seccomp_violation(&format!("{path}.securityContext"), profile));
        }
        for (index, port) in container.ports.iter().flatten().enumerate() {
            if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
                found.push(format!(
                    "{path}.ports[{index}].hostPort: Invalid value: {host_port}: Host ports are not allowed to be used"
                ));
            }
        }
    }
    found
}

fn seccomp_violation(path: &str, profile: &SeccompProfile) -> String {
    format!(
        "{path}.seccompProfile.type: Invalid value: {:?}: {} is not an allowed seccomp profile. Valid values are runtime/default",
        profile.type_, profile.type_
    )
}

/// The message of a refusal, as OpenShift's SCC admission words it.
pub fn refusal(violations: &[String]) -> String {
    format!(
        "unable to validate against any security context constraint: [provider {SCC_NAME:?}: Forbidden: {}]",
        violations.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).expect("pod spec")
    }

    fn namespace() -> Allocation {
        Allocation::block(66)
    }

    #[test]
    fn annotations_round_trip_and_name_what_is_missing() {
        let allocation = namespace();
        let annotations = allocation.annotations();
        assert_eq!(annotations[UID_RANGE], "1000660000/10000");
        assert_eq!(annotations[SUPPLEMENTAL_GROUPS], "1000660000/10000");
        assert_eq!(Allocation::from_annotations(&annotations), Ok(allocation));
        let openshift = BTreeMap::from([
            (UID_RANGE.to_owned(), "1000700000/10000".to_owned()),
            (SUPPLEMENTAL_GROUPS.to_owned(), "1000700000/10000,5000-5009".to_owned()),
            (MCS.to_owned(), "s0:c26,c15".to_owned()),
        ]);
        let parsed = Allocation::from_annotations(&openshift).expect("OpenShift's annotations");
        assert_eq!(parsed.groups[1], IdRange { first: 5000, last: 5009 });
        assert_eq!(Allocation::from_annotations(&BTreeMap::new()), Err(AllocationError::Missing(UID_RANGE)));
        let mut broken = openshift;
        broken.insert(UID_RANGE.to_owned(), "1000700000".to_owned());
        assert!(matches!(Allocation::from_annotations(&broken), Err(AllocationError::Invalid { .. })));
        let levels: std::collections::BTreeSet<String> = (0..2000).map(|i| Allocation::block(i).mcs).collect();
        assert_eq!(levels.len(), 2000, "every namespace gets a level of its own");
    }

    #[test]
    fn a_pod_naming_no_ids_gets_the_namespaces_first_user_and_group_and_is_admitted() {
        let mut pod = spec(json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c"}], "initContainers": [{"name": "i", "securityContext": {"runAsUser": 1000660005}}]}));
        apply_defaults(&mut pod, &namespace());
        let security = pod.security_context.clone().expect("pod security");
        assert_eq!(security.fs_group, Some(1_000_660_000));
        assert_eq!(security.run_as_group, None, "restricted-v2 sets no group: the container's group is 0");
        assert_eq!(security.seccomp_profile.map(|p| p.type_).as_deref(), Some("RuntimeDefault"));
        assert_eq!(security.se_linux_options.and_then(|o| o.level), Some(namespace().mcs));
        let container = pod.containers[0].security_context.clone().expect("container security");
        assert_eq!(container.run_as_user, Some(1_000_660_000));
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_owned()]));
        let init = pod.init_containers.as_ref().expect("init")[0].security_context.clone().expect("init security");
        assert_eq!(init.run_as_user, Some(1_000_660_005), "a user in the range stays");
        assert_eq!(violations(&pod, &namespace()), Vec::<String>::new());
    }

    #[test]
    fn fixed_ids_outside_the_ranges_are_refused_but_any_supplemental_group_is_admitted() {
        let mut pod = spec(json!({"securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
            "supplementalGroups": [0, 1001]}, "containers": [{"name": "c"}]}));
        apply_defaults(&mut pod, &namespace());
        assert_eq!(
            violations(&pod, &namespace()),
            [
                "spec.securityContext.fsGroup: Invalid value: []int64{65532}: 65532 is not an allowed group",
                "spec.containers[0].securityContext.runAsUser: Invalid value: 65532: must be in the ranges: [1000660000, 1000669999]",
            ]
        );
        assert_eq!(
            refusal(&violations(&pod, &namespace())),
            "unable to validate against any security context constraint: [provider \"restricted-v2\": Forbidden: \
spec.securityContext.fsGroup: Invalid value: []int64{65532}: 65532 is not an allowed group, \
spec.containers[0].securityContext.runAsUser: Invalid value: 65532: must be in the ranges: [1000660000, 1000669999]]"
        );
    }

    #[test]
    fn host_access_escalation_capabilities_and_other_seccomp_profiles_are_refused() {
        let mut pod = spec(json!({"hostNetwork": true, "hostPID": true, "hostIPC": true,
            "securityContext": {"seccompProfile": {"type": "Unconfined"}},
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}, {"name": "claim", "persistentVolumeClaim": {"claimName": "c"}}],
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}], "securityContext": {
                "privileged": true, "allowPrivilegeEscalation": true,
                "capabilities": {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]},
                "seLinuxOptions": {"level": "s0:c1,c2"}}}]}));
        apply_defaults(&mut pod, &namespace());
        assert_eq!(
            violations(&pod, &namespace()),
            [
                "spec.securityContext.hostNetwork: Invalid value: true: Host network is not allowed to be used",
                "spec.securityContext.hostPID: Invalid value: true: Host PID is not allowed to be used",
                "spec.securityContext.hostIPC: Invalid value: true: Host IPC is not allowed to be used",
                "spec.securityContext.seccompProfile.type: Invalid value: \"Unconfined\": Unconfined is not an allowed seccomp profile. Valid values are runtime/default",
                "spec.volumes[0]: Invalid value: \"hostPath\": hostPath volumes are not allowed to be used",
                "spec.containers[0].securityContext.privileged: Invalid value: true: Privileged containers are not allowed",
                "spec.containers[0].securityContext.allowPrivilegeEscalation: Invalid value: true: Allowing privilege escalation for containers is not allowed",
                "spec.containers[0].securityContext.capabilities.add: Invalid value: \"SYS_ADMIN\": capability may not be added",
                "spec.containers[0].securityContext.seLinuxOptions.level: Invalid value: \"s0:c1,c2\": must be \"s0:c12,c0\"",
                "spec.containers[0].ports[0].hostPort: Invalid value: 80: Host ports are not allowed to be used",
            ]
        );
    }

    #[test]
    fn a_pod_level_user_outside_the_range_is_refused_for_each_container() {
        let mut pod = spec(json!({"securityContext": {"runAsUser": 0}, "containers": [{"name": "c"}]}));
        apply_defaults(&mut pod, &namespace());
        assert_eq!(pod.containers[0].security_context.as_ref().and_then(|s| s.run_as_user), None);
        assert_eq!(
            violations(&pod, &namespace()),
            [
                "spec.containers[0].securityContext.runAsUser: Invalid value: 0: must be in the ranges: [1000660000, 1000669999]"
            ]
        );
    }
}
