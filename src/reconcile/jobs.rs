//! Reading a Job's state, and what its Pod left in the termination message: the failure reason, or
//! a restore step's report.

use crate::names::JOB_NAME_LABEL;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The reason Kubernetes gives a Job stopped by its `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not finished.
    Running,
    /// Finished successfully.
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
    if holds(&["Complete", "SuccessCriteriaMet"]).is_some() { JobState::Succeeded } else { JobState::Running }
}

/// The termination message of the Job's most recent failed Pod, if any.
pub async fn termination_message(pods: &Api<Pod>, job_name: &str) -> Result<Option<String>, kube::Error> {
    last_message(pods, job_name, "Failed").await
}

/// The termination message of the Job's succeeded Pod (where a restore step leaves its report),
/// if any.
pub async fn success_message(pods: &Api<Pod>, job_name: &str) -> Result<Option<String>, kube::Error> {
    last_message(pods, job_name, "Succeeded").await
}

/// The termination message of the Job's most recent Pod in `phase`.
async fn last_message(pods: &Api<Pod>, job_name: &str, phase: &str) -> Result<Option<String>, kube::Error> {
    let list = pods.list(&ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job_name}"))).await?;
    let mut ended: Vec<Pod> =
        list.items.into_iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase)).collect();
    ended.sort_by_key(|p| p.metadata.creation_timestamp.clone());
    Ok(ended.last().and_then(pod_termination_message))
}

fn pod_termination_message(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .find_map(|s| s.state.as_ref()?.terminated.as_ref()?.message.clone())
        .filter(|m| !m.trim().is_empty())
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
        assert_eq!(job_state(&job(json!([{"type": "SuccessCriteriaMet", "status": "True"}]))), JobState::Succeeded);
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

    #[test]
    fn termination_message_comes_from_the_terminated_container() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Failed",
            "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "message": "required objects missing"}}}]}}))
        .expect("pod");
        assert_eq!(pod_termination_message(&pod).as_deref(), Some("required objects missing"));
    }
}
