//! Reading a Job's state, which of its Pod's containers runs, and what each container left in its
//! termination message: the failed step and its reason, or a restore step's report.

use crate::names::JOB_NAME_LABEL;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams};

/// The reason Kubernetes gives a Job stopped by its `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not finished.
    Running,
    /// Finished successfully (`Complete`: its Pods released).
    Succeeded,
    /// Stopped by its deadline ([`DEADLINE_EXCEEDED`]), which is what was left of the operation's
    /// timeout.
    DeadlineExceeded,
    /// Failed for good (retries used up).
    Failed {
        /// The Job's reason, e.g. `BackoffLimitExceeded`.
        reason: String,
        /// The Job's message.
        message: String,
    },
}

/// The state of `job` from its conditions.
pub fn job_state(job: &Job) -> JobState {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref()).map(Vec::as_slice).unwrap_or_default();
    let holds = |types: &[&str]| conditions.iter().find(|c| types.contains(&c.type_.as_str()) && c.status == "True");
    if let Some(failed) = holds(&["Failed", "FailureTarget"]) {
        if failed.reason.as_deref() == Some(DEADLINE_EXCEEDED) {
            return JobState::DeadlineExceeded;
        }
        return JobState::Failed {
            reason: failed.reason.clone().unwrap_or_default(),
            message: failed.message.clone().unwrap_or_default(),
        };
    }
    // `SuccessCriteriaMet` comes first; `Complete` once the Job controller has released its Pods
    // (removed their tracking finalizers). Deleting the Job in between makes the Job controller
    // release them again and write a status that conflicts: more requests under its rate limit.
    if holds(&["Complete"]).is_some() { JobState::Succeeded } else { JobState::Running }
}

/// Whether the Job's Pod is ready: it runs its last container (a Pod is ready only after every init
/// container succeeded).
pub fn pod_ready(job: &Job) -> bool {
    job.status.as_ref().and_then(|s| s.ready).is_some_and(|ready| ready > 0)
}

/// The container that failed in a Job's Pod, and its termination message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedContainer {
    /// The container's name (its step's name).
    pub name: String,
    /// Its termination message, when it left one.
    pub message: Option<String>,
}

/// The failed container of the Job's most recent failed Pod, if any.
pub async fn failed_container(pods: &Api<Pod>, job_name: &str) -> Result<Option<FailedContainer>, kube::Error> {
    Ok(last_pod(pods, job_name, "Failed").await?.as_ref().and_then(pod_failed_container))
}

/// The termination message container `step` left in the Job's succeeded Pod (where a restore step
/// leaves its report), if any.
pub async fn success_message(pods: &Api<Pod>, job_name: &str, step: &str) -> Result<Option<String>, kube::Error> {
    let pod = last_pod(pods, job_name, "Succeeded").await?;
    Ok(pod.as_ref().and_then(|pod| container_message(pod, step)))
}

/// The Job's most recent Pod in `phase`.
async fn last_pod(pods: &Api<Pod>, job_name: &str, phase: &str) -> Result<Option<Pod>, kube::Error> {
    let list = pods.list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job_name}"))).await?;
    let mut ended: Vec<Pod> =
        list.items.into_iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase)).collect();
    ended.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    Ok(ended.pop())
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
fn pod_failed_container(pod: &Pod) -> Option<FailedContainer> {
    let failed =
        |s: &&ContainerStatus| s.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code != 0);
    let status = container_statuses(pod)
        .find(failed)
        .or_else(|| container_statuses(pod).find(|s| container_message(pod, &s.name).is_some()))?;
    Some(FailedContainer { name: status.name.clone(), message: container_message(pod, &status.name) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": conditions}})).expect("job")
    }

    #[test]
    fn states_from_conditions() {
        assert_eq!(job_state(&job(json!([]))), JobState::Running);
        let met = json!([{"type": "SuccessCriteriaMet", "status": "True"}]);
        assert_eq!(job_state(&job(met)), JobState::Running, "its Pods are not released yet");
        assert_eq!(job_state(&job(json!([{"type": "Complete", "status": "True"}]))), JobState::Succeeded);
        assert_eq!(
            job_state(&job(
                json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}])
            )),
            JobState::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into()
            }
        );
        assert_eq!(job_state(&job(json!([{"type": "Failed", "status": "False"}]))), JobState::Running);
        assert_eq!(
            job_state(&job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]))),
            JobState::DeadlineExceeded
        );
    }

    fn container(name: &str, state: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": state})
    }

    #[test]
    fn the_failed_container_is_the_first_that_ended_in_error_init_containers_first() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Failed",
            "initContainerStatuses": [
                container("export-objects", json!({"terminated": {"exitCode": 0, "message": ""}})),
                container("check", json!({"terminated": {"exitCode": 1, "message": "required objects missing"}}))],
            "containerStatuses": [container("copy-files", json!({"waiting": {"reason": "PodInitializing"}}))]}}))
        .expect("pod");
        let failed = FailedContainer { name: "check".into(), message: Some("required objects missing".into()) };
        assert_eq!(pod_failed_container(&pod), Some(failed));
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Failed",
            "containerStatuses": [container("copy-files", json!({"terminated": {"exitCode": 2, "message": " "}}))]}}))
        .expect("pod");
        assert_eq!(pod_failed_container(&pod), Some(FailedContainer { name: "copy-files".into(), message: None }));
    }

    #[test]
    fn each_step_report_comes_from_its_own_container() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Succeeded",
            "initContainerStatuses": [container("verify", json!({"terminated": {"exitCode": 0, "message": "{\"a\":1}"}}))],
            "containerStatuses": [container("restore-files", json!({"terminated": {"exitCode": 0, "message": ""}}))]}}))
        .expect("pod");
        assert_eq!(container_message(&pod, "verify").as_deref(), Some("{\"a\":1}"));
        assert_eq!(container_message(&pod, "restore-files"), None, "blank");
        assert_eq!(container_message(&pod, "other"), None);
    }

    #[test]
    fn the_pod_is_ready_once_the_job_counts_it_ready() {
        let ready = |count: serde_json::Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"ready": count}})).expect("job")
        };
        assert!(pod_ready(&ready(json!(1))));
        assert!(!pod_ready(&ready(json!(0))));
        assert!(!pod_ready(&job(json!([]))));
    }
}
