//! A step job's attempts, each one Pod the operator creates (`<job name>-<attempt>`), and where the
//! step job stands, read from the watch-fed Pod store: running, succeeded, waiting out the back-off
//! before its next attempt, stopped by its deadline or failed for good; which container of a Pod
//! runs, and what each container left in its termination message (the failed step and its reason,
//! or a restore step's report).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;

/// The reason a kubelet gives a Pod it stopped at its `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// The wait before the second attempt; it doubles with each further failure (as Kubernetes' Job
/// controller backs off).
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// The name of attempt `attempt` (0, 1, …) of step job `job`: deterministic, so a create is
/// idempotent across passes and restarts.
pub fn attempt_name(job: &str, attempt: u32) -> String {
    format!("{job}-{attempt}")
}

/// The wait after `failures` failed attempts before the next one: 10 s × 2^(failures − 1), at most
/// 6 min.
pub fn backoff(failures: u32) -> Duration {
    doubling(FIRST_BACKOFF, MAX_BACKOFF, failures)
}

/// `first` × 2^(failures − 1), at most `max`: the back-off after `failures` failures in a row.
pub fn doubling(first: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(max)
}

/// Where a step job stands.
#[derive(Clone, Debug, PartialEq)]
pub enum StepState {
    /// Attempt `attempt` is to be created now (none yet, or the back-off after the last failure
    /// has passed).
    Create {
        /// Its number.
        attempt: u32,
    },
    /// Attempt `pod` runs.
    Running {
        /// The Pod's name.
        pod: String,
        /// Whether its last container runs (a Pod is ready only after every init container
        /// succeeded).
        ready: bool,
    },
    /// Attempt `failed` failed; the next one is created once `wait` has passed.
    BackingOff {
        /// The failed Pod's name.
        failed: String,
        /// The whole back-off after that failure.
        backoff: Duration,
        /// What is left of it.
        wait: Duration,
    },
    /// The last attempt succeeded.
    Succeeded(Arc<Pod>),
    /// The last attempt was stopped by its deadline ([`DEADLINE_EXCEEDED`]), which was what was
    /// left of the operation's timeout.
    DeadlineExceeded,
    /// Failed for good: more failures than the back-off limit allows.
    Failed {
        /// The last failed Pod.
        pod: Arc<Pod>,
        /// How many attempts were made.
        attempts: u32,
    },
}

/// Where a step job stands after `attempts` (its Pods, attempt 0 first), allowing `backoff_limit`
/// retries, at `now`.
pub fn step_state(attempts: &[Arc<Pod>], backoff_limit: i32, now: Timestamp) -> StepState {
    let count = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
    let Some(last) = attempts.last() else { return StepState::Create { attempt: 0 } };
    let name = last.metadata.name.clone().unwrap_or_default();
    let status = last.status.as_ref();
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => StepState::Succeeded(last.clone()),
        Some("Failed") if status.and_then(|s| s.reason.as_deref()) == Some(DEADLINE_EXCEEDED) => {
            StepState::DeadlineExceeded
        }
        Some("Failed") => {
            let failures = u32::try_from(attempts.iter().filter(|p| phase(p) == Some("Failed")).count()).unwrap_or(0);
            if i64::from(failures) > i64::from(backoff_limit) {
                return StepState::Failed { pod: last.clone(), attempts: count };
            }
            let backoff = backoff(failures);
            let elapsed = ended_at(last).map_or(Duration::ZERO, |ended| {
                Duration::from_secs(u64::try_from((now - ended).get_seconds()).unwrap_or(0))
            });
            match backoff.checked_sub(elapsed).filter(|wait| !wait.is_zero()) {
                Some(wait) => StepState::BackingOff { failed: name, backoff, wait },
                None => StepState::Create { attempt: count },
            }
        }
        _ => StepState::Running { pod: name, ready: pod_ready(last) },
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// When `pod` ended: its last container's end, else its conditions' last change, else its
/// creation.
fn ended_at(pod: &Pod) -> Option<Timestamp> {
    let finished = container_statuses(pod)
        .filter_map(|s| s.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let changed = conditions.into_iter().flatten().filter_map(|c| c.last_transition_time.as_ref()).map(|t| t.0).max();
    finished.or(changed).or_else(|| pod.metadata.creation_timestamp.as_ref().map(|Time(t)| *t))
}

/// Whether `pod` is ready: it runs its last container (a Pod is ready only after every init
/// container succeeded).
pub fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Why a Pod failed: the step whose container failed and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFailure {
    /// The failed container's name (its step's name), when one ended in failure.
    pub container: Option<String>,
    /// Its termination message, else the Pod's status message, else its exit code.
    pub detail: String,
}

/// Why `pod` failed.
pub fn pod_failure(pod: &Pod) -> PodFailure {
    let failed = failed_container(pod);
    let status = pod.status.as_ref();
    let pod_message = status.and_then(|s| s.message.clone()).filter(|m| !m.trim().is_empty());
    let pod_message = pod_message.map(|m| match status.and_then(|s| s.reason.as_deref()) {
        Some(reason) => format!("{reason}: {m}"),
        None => m,
    });
    let detail = failed
        .as_ref()
        .and_then(|s| container_message(pod, &s.name))
        .or(pod_message)
        .or_else(|| failed.as_ref().and_then(exit_code).map(|code| format!("exit code {code}")))
        .unwrap_or_else(|| "the Pod failed without a message".to_owned());
    PodFailure { container: failed.map(|s| s.name.clone()), detail }
}

fn exit_code(status: &&ContainerStatus) -> Option<i32> {
    Some(status.state.as_ref()?.terminated.as_ref()?.exit_code)
}

/// The termination message container `step` left in `pod` (where a restore step leaves its
/// report), if any.
pub fn success_message(pod: &Pod, step: &str) -> Option<String> {
    container_message(pod, step)
}

/// Every container status of `pod`, init containers first.
fn container_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref());
    let main = status.and_then(|s| s.container_statuses.as_ref());
    init.into_iter().flatten().chain(main.into_iter().flatten())
}

/// The non-blank termination message of container `name` of `pod`.
fn container_message(pod: &Pod, name: &str) -> Option<String> {
    let status = container_statuses(pod).find(|s| s.name == name)?;
    status.state.as_ref()?.terminated.as_ref()?.message.clone().filter(|m| !m.trim().is_empty())
}

/// The first container of `pod` (init containers first) that ended with a non-zero exit code,
/// else the first that ended with a termination message.
fn failed_container(pod: &Pod) -> Option<&ContainerStatus> {
    let failed = |s: &&ContainerStatus| exit_code(s).is_some_and(|code| code != 0);
    container_statuses(pod)
        .find(failed)
        .or_else(|| container_statuses(pod).find(|s| container_message(pod, &s.name).is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, status: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "status": status})).expect("pod"))
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("timestamp")
    }

    fn failed_at(name: &str, seconds: i64) -> Arc<Pod> {
        let finished = at(seconds).to_string();
        pod(
            name,
            json!({"phase": "Failed", "containerStatuses": [container("c", json!({"terminated":
                {"exitCode": 1, "message": "boom", "finishedAt": finished}}))]}),
        )
    }

    #[test]
    fn the_backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let waits: Vec<u64> = (1..=8).map(|failures| backoff(failures).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 360, 360]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn states_from_the_attempts() {
        assert_eq!(step_state(&[], 2, at(0)), StepState::Create { attempt: 0 });
        let running = pod("j-0", json!({"phase": "Running"}));
        assert_eq!(step_state(&[running], 2, at(0)), StepState::Running { pod: "j-0".into(), ready: false });
        let ready = pod("j-0", json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}));
        assert_eq!(step_state(&[ready], 2, at(0)), StepState::Running { pod: "j-0".into(), ready: true });
        assert_eq!(
            step_state(&[pod("j-0", json!({}))], 2, at(0)),
            StepState::Running { pod: "j-0".into(), ready: false }
        );
        let done = pod("j-1", json!({"phase": "Succeeded"}));
        assert_eq!(step_state(&[failed_at("j-0", 100), done.clone()], 2, at(0)), StepState::Succeeded(done));
        let deadline = pod("j-0", json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
        assert_eq!(step_state(&[deadline], 2, at(0)), StepState::DeadlineExceeded);
    }

    #[test]
    fn a_failed_attempt_is_retried_after_its_backoff_from_its_end_until_the_limit() {
        let first = [failed_at("j-0", 100)];
        assert_eq!(
            step_state(&first, 2, at(104)),
            StepState::BackingOff {
                failed: "j-0".into(),
                backoff: Duration::from_secs(10),
                wait: Duration::from_secs(6)
            }
        );
        assert_eq!(step_state(&first, 2, at(110)), StepState::Create { attempt: 1 });
        let second = [failed_at("j-0", 100), failed_at("j-1", 200)];
        assert_eq!(
            step_state(&second, 2, at(200)),
            StepState::BackingOff {
                failed: "j-1".into(),
                backoff: Duration::from_secs(20),
                wait: Duration::from_secs(20)
            }
        );
        assert_eq!(step_state(&second, 2, at(220)), StepState::Create { attempt: 2 });
        let third = [failed_at("j-0", 100), failed_at("j-1", 200), failed_at("j-2", 300)];
        assert_eq!(step_state(&third, 2, at(300)), StepState::Failed { pod: third[2].clone(), attempts: 3 });
        assert_eq!(
            step_state(&first, 0, at(100)),
            StepState::Failed { pod: first[0].clone(), attempts: 1 },
            "no retry with a limit of 0"
        );
    }

    #[test]
    fn a_pod_without_container_ends_counts_from_its_conditions_or_creation() {
        let changed = pod(
            "j-0",
            json!({"phase": "Failed", "conditions": [{"type": "Ready", "status": "False",
            "lastTransitionTime": at(50).to_string()}]}),
        );
        assert_eq!(ended_at(&changed), Some(at(50)));
        let created: Pod = serde_json::from_value(
            json!({"metadata": {"name": "j-0", "creationTimestamp": at(40).to_string()}, "status": {"phase": "Failed"}}),
        )
        .expect("pod");
        assert_eq!(ended_at(&created), Some(at(40)));
    }

    fn container(name: &str, state: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": state})
    }

    #[test]
    fn the_failed_container_is_the_first_that_ended_in_error_init_containers_first() {
        let pod = pod(
            "p",
            json!({"phase": "Failed",
            "initContainerStatuses": [
                container("export-objects", json!({"terminated": {"exitCode": 0, "message": ""}})),
                container("check", json!({"terminated": {"exitCode": 1, "message": "required objects missing"}}))],
            "containerStatuses": [container("copy-files", json!({"waiting": {"reason": "PodInitializing"}}))]}),
        );
        let failure = PodFailure { container: Some("check".into()), detail: "required objects missing".into() };
        assert_eq!(pod_failure(&pod), failure);
        let blank = self::pod(
            "p",
            json!({"phase": "Failed",
            "containerStatuses": [container("copy-files", json!({"terminated": {"exitCode": 2, "message": " "}}))]}),
        );
        assert_eq!(
            pod_failure(&blank),
            PodFailure { container: Some("copy-files".into()), detail: "exit code 2".into() }
        );
    }

    #[test]
    fn a_pod_that_never_ran_a_container_fails_with_its_own_reason() {
        let pod = pod(
            "p",
            json!({"phase": "Failed", "reason": "CreateContainerConfigError", "message": "no such user",
            "containerStatuses": [container("copy-files", json!({"waiting": {"reason": "CreateContainerConfigError"}}))]}),
        );
        let failure = PodFailure { container: None, detail: "CreateContainerConfigError: no such user".into() };
        assert_eq!(pod_failure(&pod), failure);
        let silent = self::pod("p", json!({"phase": "Failed"}));
        assert_eq!(pod_failure(&silent).detail, "the Pod failed without a message");
    }

    #[test]
    fn each_step_report_comes_from_its_own_container() {
        let pod = pod(
            "p",
            json!({"phase": "Succeeded",
            "initContainerStatuses": [container("verify", json!({"terminated": {"exitCode": 0, "message": "{\"a\":1}"}}))],
            "containerStatuses": [container("restore-files", json!({"terminated": {"exitCode": 0, "message": ""}}))]}),
        );
        assert_eq!(success_message(&pod, "verify").as_deref(), Some("{\"a\":1}"));
        assert_eq!(success_message(&pod, "restore-files"), None, "blank");
        assert_eq!(success_message(&pod, "other"), None);
    }

    #[test]
    fn attempts_are_named_after_their_job() {
        assert_eq!(attempt_name("backup-u", 0), "backup-u-0");
        assert_eq!(attempt_name("backup-u", 12), "backup-u-12");
    }
}
