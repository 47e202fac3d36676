//! Runs the process's one watch of APIManagerBackups on every replica, whatever it does otherwise:
//! the backup gauges of `/metrics` are computed from its cache (shared with the backup controller
//! while this replica leads) at scrape time, so each replica reports them whether or not it leads.
//! In webhooks-only mode it also records the end of each backup that another controller
//! (3scale-operator) runs, from the status that controller writes; it never writes.

use crate::api::backup::APIManagerBackup;
use crate::api::status::{OperationKind, OperationStatus, Progress, Reason};
use crate::informer::Informer;
use crate::metrics::{BackupGauges, Metrics, OTHER_FAILURE, OperationEnd, Outcome};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::watcher::{self, Event};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Whether the observer records the ends of backups in the outcome counter and duration histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndRecording {
    /// This process's controller records them as it ends each backup.
    ByController,
    /// Another controller runs the backups: the observer records each end once.
    Observed,
}

/// `(namespace, APIManager)` of a backup: the APIManager it ran on, else the one it names.
fn apimanager_of(backup: &APIManagerBackup) -> Option<(String, String)> {
    let status = backup.status.as_ref().and_then(|s| s.api_manager_source_name.clone());
    let name = status.or_else(|| backup.spec.api_manager_name.clone()).filter(|n| !n.is_empty())?;
    Some((backup.namespace()?, name))
}

/// How a final backup ended, from its status: succeeded when `completed`, else failed with the
/// reason of its `Failed` condition. `None` while it is not final.
pub fn end(progress: &Progress) -> Option<OperationEnd> {
    let (_, seconds) = progress.ended()?;
    let outcome = match progress.failure_reason() {
        _ if progress.completed == Some(true) => Outcome::Succeeded,
        Some(reason) => {
            let known = Reason::failures(OperationKind::Backup).find(|known| known.label() == reason);
            Outcome::Failed(known.map_or(OTHER_FAILURE, Reason::label))
        }
        None => Outcome::Failed(OTHER_FAILURE),
    };
    Some(OperationEnd { outcome, seconds })
}

/// The backup gauges over the backups that exist.
pub fn gauges<'a>(backups: impl IntoIterator<Item = &'a APIManagerBackup>) -> BackupGauges {
    let mut gauges = BackupGauges::default();
    let mut last_success = BTreeMap::new();
    let mut oldest_running = BTreeMap::new();
    for backup in backups {
        let Some(status) = backup.status.as_ref().map(OperationStatus::progress) else { continue };
        if status.in_progress() {
            gauges.in_progress += 1;
            if let (Some(key), Some(start)) = (apimanager_of(backup), status.start_time.as_ref()) {
                let start = start.0.as_second() as f64;
                let oldest: &mut f64 = oldest_running.entry(key).or_insert(start);
                *oldest = oldest.min(start);
            }
        } else if let (Some((at, _)), Some(key)) = (status.ended(), apimanager_of(backup))
            && status.completed == Some(true)
        {
            let at = at.as_second() as f64;
            let latest: &mut f64 = last_success.entry(key).or_insert(at);
            *latest = latest.max(at);
        }
    }
    gauges.last_success = last_success.into_iter().collect();
    gauges.oldest_running_start = oldest_running.into_iter().collect();
    gauges
}

/// Finds each backup's end exactly once per process from the watch events: backups already
/// final in the first listing ended before this process watched and are not counted; later, a
/// backup counts the first time it is seen final (also when it ended during a re-list).
#[derive(Debug, Default)]
pub struct EndCounter {
    synced: bool,
    counted: HashSet<String>,
    listed: HashSet<String>,
}

impl EndCounter {
    /// The ends that `event` reveals.
    pub fn on_event(&mut self, event: &Event<APIManagerBackup>) -> Vec<OperationEnd> {
        match event {
            Event::Init => {
                self.listed.clear();
                Vec::new()
            }
            Event::InitApply(backup) => {
                if let Some(uid) = backup.uid() {
                    self.listed.insert(uid);
                }
                if self.synced { self.apply(backup) } else { self.mark(backup) }
            }
            Event::InitDone => {
                self.synced = true;
                let listed = std::mem::take(&mut self.listed);
                self.counted.retain(|uid| listed.contains(uid));
                Vec::new()
            }
            Event::Apply(backup) => self.apply(backup),
            Event::Delete(backup) => {
                if let Some(uid) = backup.uid() {
                    self.counted.remove(&uid);
                }
                Vec::new()
            }
        }
    }

    fn mark(&mut self, backup: &APIManagerBackup) -> Vec<OperationEnd> {
        let _ = self.apply(backup);
        Vec::new()
    }

    fn apply(&mut self, backup: &APIManagerBackup) -> Vec<OperationEnd> {
        let ended = backup.status.as_ref().and_then(|s| end(&s.progress()));
        let (Some(uid), Some(ended)) = (backup.uid(), ended) else {
            return Vec::new();
        };
        if self.counted.insert(uid) { vec![ended] } else { Vec::new() }
    }
}

/// Runs `events`, the watch of the backups' [`Informer`], until `shutdown` resolves: its store
/// feeds the scrape-time gauges and, with [`EndRecording::Observed`], its events the outcome
/// counter and duration histogram.
pub async fn run(
    backups: &Informer<APIManagerBackup>,
    events: impl Stream<Item = Result<Event<APIManagerBackup>, watcher::Error>>,
    metrics: Arc<Metrics>,
    recording: EndRecording,
    shutdown: impl Future<Output = ()>,
) {
    let cache = backups.store();
    metrics.compute_backup_gauges_with(Box::new(move || gauges(cache.state().iter().map(Arc::as_ref))));
    let mut counter = EndCounter::default();
    let watch = events.for_each(|event| {
        match event {
            Ok(event) if recording == EndRecording::Observed => {
                for ended in counter.on_event(&event) {
                    metrics.observe_backup(ended);
                }
            }
            // A failed watch is reported by the informer.
            Ok(_) | Err(_) => {}
        }
        std::future::ready(())
    });
    tokio::select! {
        () = watch => {}
        () = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backup::{APIManagerBackupSpec, APIManagerBackupStatus, BackupDestination};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Option<Time> {
        Some(Time(Timestamp::from_second(seconds).expect("timestamp")))
    }

    fn backup(uid: &str, apimanager: &str, status: APIManagerBackupStatus) -> APIManagerBackup {
        let spec = APIManagerBackupSpec {
            api_manager_name: Some(apimanager.into()),
            backup_destination: BackupDestination::default(),
        };
        let mut backup = APIManagerBackup::new(uid, spec);
        backup.metadata.namespace = Some("3scale".into());
        backup.metadata.uid = Some(uid.into());
        backup.status = Some(status);
        backup
    }

    fn running(start: i64) -> APIManagerBackupStatus {
        APIManagerBackupStatus { start_time: at(start), ..APIManagerBackupStatus::default() }
    }

    fn completed(start: i64, done: i64) -> APIManagerBackupStatus {
        APIManagerBackupStatus { completed: Some(true), completion_time: at(done), ..running(start) }
    }

    #[test]
    fn gauges_are_keyed_by_apimanager_not_by_backup() {
        let backups = [
            backup("a", "first", completed(10, 20)),
            backup("b", "first", completed(30, 50)),
            backup("c", "first", running(60)),
            backup("d", "first", running(70)),
            backup("e", "second", completed(5, 8)),
            backup("f", "second", APIManagerBackupStatus::default()),
        ];
        let gauges = gauges(backups.iter());
        assert_eq!(gauges.in_progress, 2);
        let key = |name: &str| ("3scale".to_owned(), name.to_owned());
        assert_eq!(gauges.last_success, vec![(key("first"), 50.0), (key("second"), 8.0)]);
        assert_eq!(gauges.oldest_running_start, vec![(key("first"), 60.0)]);
    }

    #[test]
    fn failures_keep_a_known_reason_and_fold_others() {
        let mut failed = running(100).progress();
        let at = |s| Time(Timestamp::from_second(s).expect("timestamp"));
        crate::api::status::set_condition(&mut failed.conditions, "Failed", true, "JobFailed", "x", None, &at(110));
        assert_eq!(end(&failed), Some(OperationEnd { outcome: Outcome::Failed("JobFailed"), seconds: 10.0 }));
        crate::api::status::set_condition(&mut failed.conditions, "Failed", true, "Exploded", "x", None, &at(110));
        assert_eq!(end(&failed), Some(OperationEnd { outcome: Outcome::Failed(OTHER_FAILURE), seconds: 10.0 }));
        assert_eq!(end(&running(100).progress()), None);
    }

    #[test]
    fn each_end_is_counted_once_and_ends_before_the_first_listing_are_not() {
        let mut counter = EndCounter::default();
        let old = backup("old", "am", completed(1, 2));
        let live = backup("live", "am", running(10));
        assert!(counter.on_event(&Event::Init).is_empty());
        assert!(counter.on_event(&Event::InitApply(old.clone())).is_empty());
        assert!(counter.on_event(&Event::InitApply(live.clone())).is_empty());
        assert!(counter.on_event(&Event::InitDone).is_empty());
        assert!(counter.on_event(&Event::Apply(live.clone())).is_empty(), "still running");
        let done = backup("live", "am", completed(10, 52));
        assert_eq!(
            counter.on_event(&Event::Apply(done.clone())),
            vec![OperationEnd { outcome: Outcome::Succeeded, seconds: 42.0 }]
        );
        assert!(counter.on_event(&Event::Apply(done.clone())).is_empty(), "a later update of an ended backup");
        // A re-list: what ended meanwhile counts, what was counted does not count again.
        let gap = backup("gap", "am", completed(60, 61));
        assert!(counter.on_event(&Event::Init).is_empty());
        assert!(counter.on_event(&Event::InitApply(done)).is_empty());
        assert_eq!(counter.on_event(&Event::InitApply(gap)).len(), 1);
        assert!(counter.on_event(&Event::InitApply(old)).is_empty());
        assert!(counter.on_event(&Event::InitDone).is_empty());
    }
}
