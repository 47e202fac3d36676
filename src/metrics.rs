//! Prometheus metrics of the operator, served at `/metrics` (the README's metrics table names
//! them all).

use crate::api::status::{OperationKind, Reason};
use std::sync::{Mutex, OnceLock, PoisonError};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Prefix of the metrics about the operator itself (admission, reconciliation, leadership);
/// metrics about backups start with `apimanager_backup`.
pub const OPERATOR_PREFIX: &str = "apimanager_backup_operator_";

/// Errors while registering or encoding metrics.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// How a backup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step finished.
    Succeeded,
    /// It failed for good, with this reason (the label of one of the [`Reason`]s it can fail with, or [`OTHER_FAILURE`]
    /// for a reason another controller reported).
    Failed(&'static str),
}

/// The failure reason counted for a failed backup whose reason is none of the backup failure [`Reason`]s
/// (reported by another controller in webhooks-only mode).
pub const OTHER_FAILURE: &str = "Other";

impl Outcome {
    /// The `outcome` label values, all present from the start.
    const LABELS: [&'static str; 2] = ["succeeded", "failed"];

    fn label(self) -> &'static str {
        let [succeeded, failed] = Self::LABELS;
        match self {
            Self::Succeeded => succeeded,
            Self::Failed(_) => failed,
        }
    }
}

/// Where a backup is written, as the `destination` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// An S3 bucket.
    S3,
}

impl Destination {
    /// Every destination, all label values present from the start.
    const ALL: [Self; 2] = [Self::PersistentVolumeClaim, Self::S3];

    fn label(self) -> &'static str {
        match self {
            Self::PersistentVolumeClaim => "persistentVolumeClaim",
            Self::S3 => "s3",
        }
    }
}

/// The end of one backup or restore, as its status tells it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OperationEnd {
    /// Succeeded or failed.
    pub outcome: Outcome,
    /// Seconds from its start to its end.
    pub seconds: f64,
}

/// The backups that exist, summed up by APIManager when `/metrics` is scraped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackupGauges {
    /// Backups started and not ended.
    pub in_progress: usize,
    /// Per `(namespace, APIManager)`: Unix time of its latest successful backup.
    pub last_success: Vec<((String, String), f64)>,
    /// Per `(namespace, APIManager)`: Unix start time of its oldest backup still running.
    pub oldest_running_start: Vec<((String, String), f64)>,
}

/// Computes [`BackupGauges`] when `/metrics` is scraped.
pub type BackupGaugesSource = Box<dyn Fn() -> BackupGauges + Send + Sync>;

/// How a schedule's due run went: the `outcome` label of `apimanager_backup_schedule_runs_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// A backup was created.
    Started,
    /// Skipped: the previous backup still ran (`Forbid`).
    Skipped,
    /// Not started: the operator did not run at the time, or only after `startingDeadlineSeconds`.
    Missed,
}

impl RunOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Skipped => "skipped",
            Self::Missed => "missed",
        }
    }
}

/// One schedule's gauges, read when `/metrics` is scraped.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleGauge {
    /// `(namespace, schedule)`.
    pub schedule: (String, String),
    /// Unix time of its latest successful backup (its creation while it has none).
    pub last_success: f64,
    /// Seconds of the longest gap between its next firings.
    pub interval: f64,
}

/// Computes the [`ScheduleGauge`]s (of the schedules not suspended) when `/metrics` is scraped.
pub type ScheduleGaugesSource = Box<dyn Fn() -> Vec<ScheduleGauge> + Send + Sync>;

/// Every metric the operator exports, in its own registry.
pub struct Metrics {
    schedule_runs: IntCounterVec,
    schedule_last_success: GaugeVec,
    schedule_interval: GaugeVec,
    schedule_source: Mutex<Option<ScheduleGaugesSource>>,
    registry: Registry,
    admission_requests: IntCounterVec,
    admission_duration: HistogramVec,
    backup_duration: HistogramVec,
    backups: IntCounterVec,
    backup_failures: IntCounterVec,
    backups_by_destination: IntCounterVec,
    bytes_written: IntCounterVec,
    restore_duration: HistogramVec,
    restores: IntCounterVec,
    backups_in_progress: IntGauge,
    last_success: GaugeVec,
    oldest_running_start: GaugeVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: HistogramVec,
    watch_errors: IntCounterVec,
    gauges_source: OnceLock<BackupGaugesSource>,
}

/// Buckets of the backup and restore duration histograms: 1 s to 6 h.
const OPERATION_BUCKETS: [f64; 13] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0];

/// The kinds the operator watches, the `kind` label of `watch_errors_total` (each series is
/// exported from the start, at zero).
pub const WATCHED_KINDS: [&str; 5] =
    ["APIManager", "APIManagerBackup", "APIManagerRestore", "APIManagerBackupSchedule", "Pod"];

/// Labels of the per-schedule gauges.
const SCHEDULE_LABELS: [&str; 2] = ["namespace", "schedule"];

/// Labels of the per-APIManager gauges.
const APIMANAGER_LABELS: [&str; 2] = ["namespace", "apimanager"];

/// The histogram `apimanager_<noun>_duration_seconds` of an operation's duration, by outcome.
fn operation_duration(noun: &str) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(
        format!("apimanager_{noun}_duration_seconds"),
        format!("Time from a {noun}'s start to its end, by outcome."),
    );
    HistogramVec::new(opts.buckets(OPERATION_BUCKETS.to_vec()), &["outcome"])
}

impl Metrics {
    /// A registry with the operator's metrics and the process collector.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new(
                format!("{OPERATOR_PREFIX}admission_requests_total"),
                "Admission reviews answered, by webhook, operation and verdict.",
            ),
            &["webhook", "operation", "allowed"],
        )?;
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{OPERATOR_PREFIX}admission_request_duration_seconds"),
                "Time to answer an admission review.",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["webhook"],
        )?;
        let backup_duration = operation_duration("backup")?;
        let backups =
            IntCounterVec::new(Opts::new("apimanager_backups_total", "Backups ended, by outcome."), &["outcome"])?;
        for label in Outcome::LABELS {
            backups.with_label_values(&[label]);
        }
        let backup_failures = IntCounterVec::new(
            Opts::new("apimanager_backup_failures_total", "Backups failed, by the reason of their Failed condition."),
            &["reason"],
        )?;
        for reason in Reason::failures(OperationKind::Backup) {
            backup_failures.with_label_values(&[reason.label()]);
        }
        let backups_by_destination = IntCounterVec::new(
            Opts::new("apimanager_backups_by_destination_total", "Backups ended, by destination kind and outcome."),
            &["destination", "outcome"],
        )?;
        let bytes_written = IntCounterVec::new(
            Opts::new(
                "apimanager_backup_bytes_written_total",
                "Bytes completed backups wrote to their destination, as stored (in a bucket: sealed, without content an \
earlier backup had stored), by destination kind.",
            ),
            &["destination"],
        )?;
        for destination in Destination::ALL {
            bytes_written.with_label_values(&[destination.label()]);
            for outcome in Outcome::LABELS {
                backups_by_destination.with_label_values(&[destination.label(), outcome]);
            }
        }
        let restore_duration = operation_duration("restore")?;
        let restores = IntCounterVec::new(
            Opts::new(
                "apimanager_restores_total",
                "Restores ended, by outcome and the reason of their Ready condition.",
            ),
            &["outcome", "reason"],
        )?;
        let [succeeded, failed] = Outcome::LABELS;
        restores.with_label_values(&[succeeded, Reason::RestoreCompleted.label()]);
        for reason in Reason::failures(OperationKind::Restore) {
            restores.with_label_values(&[failed, reason.label()]);
        }
        let backups_in_progress = IntGauge::new("apimanager_backups_in_progress", "Backups started and not ended.")?;
        let last_success = GaugeVec::new(
            Opts::new(
                "apimanager_backup_last_success_timestamp_seconds",
                "Unix time of the latest successful backup, by APIManager.",
            ),
            &APIMANAGER_LABELS,
        )?;
        let oldest_running_start = GaugeVec::new(
            Opts::new(
                "apimanager_backup_oldest_running_start_timestamp_seconds",
                "Unix start time of the oldest backup still running, by APIManager (absent when none runs).",
            ),
            &APIMANAGER_LABELS,
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                format!("{OPERATOR_PREFIX}reconcile_errors_total"),
                "Reconciliations that failed and were retried, by controller and reason.",
            ),
            &["controller", "reason"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                format!("{OPERATOR_PREFIX}reconcile_duration_seconds"),
                "Time of one reconciliation pass, by controller.",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                format!("{OPERATOR_PREFIX}watch_errors_total"),
                "Errors of the operator's watches, by the kind watched (each is retried with backoff).",
            ),
            &["kind"],
        )?;
        for kind in WATCHED_KINDS {
            watch_errors.with_label_values(&[kind]).inc_by(0);
        }
        let schedule_runs = IntCounterVec::new(
            Opts::new(
                "apimanager_backup_schedule_runs_total",
                "Due runs of backup schedules, by namespace, schedule and outcome (started, skipped, missed).",
            ),
            &["namespace", "schedule", "outcome"],
        )?;
        let schedule_last_success = GaugeVec::new(
            Opts::new(
                "apimanager_backup_schedule_last_success_timestamp_seconds",
                "Unix time of the latest successful backup of each schedule not suspended (its creation while it has none).",
            ),
            &SCHEDULE_LABELS,
        )?;
        let schedule_interval = GaugeVec::new(
            Opts::new(
                "apimanager_backup_schedule_interval_seconds",
                "Longest time between two of the next firings of each schedule not suspended.",
            ),
            &SCHEDULE_LABELS,
        )?;
        registry.register(Box::new(schedule_runs.clone()))?;
        registry.register(Box::new(schedule_last_success.clone()))?;
        registry.register(Box::new(schedule_interval.clone()))?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(admission_requests.clone()))?;
        registry.register(Box::new(admission_duration.clone()))?;
        registry.register(Box::new(backup_duration.clone()))?;
        registry.register(Box::new(backups.clone()))?;
        registry.register(Box::new(backup_failures.clone()))?;
        registry.register(Box::new(backups_by_destination.clone()))?;
        registry.register(Box::new(bytes_written.clone()))?;
        registry.register(Box::new(restore_duration.clone()))?;
        registry.register(Box::new(restores.clone()))?;
        registry.register(Box::new(backups_in_progress.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(oldest_running_start.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Self {
            registry,
            admission_requests,
            admission_duration,
            backup_duration,
            backups,
            backup_failures,
            backups_by_destination,
            bytes_written,
            restore_duration,
            restores,
            backups_in_progress,
            last_success,
            oldest_running_start,
            reconcile_errors,
            reconcile_duration,
            watch_errors,
            gauges_source: OnceLock::new(),
            schedule_runs,
            schedule_last_success,
            schedule_interval,
            schedule_source: Mutex::new(None),
        })
    }

    /// Registers `apimanager_backup_operator_leader` (1 while this replica leads) and returns it;
    /// only replicas that take part in leader election export it.
    pub fn leader_gauge(&self) -> Result<IntGauge, MetricsError> {
        let gauge = IntGauge::new(
            format!("{OPERATOR_PREFIX}leader"),
            "1 while this replica holds the leader Lease and runs the backup controller, else 0.",
        )?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    /// Records one answered admission review.
    pub fn observe_admission(&self, webhook: &str, operation: &str, allowed: bool, seconds: f64) {
        let allowed = if allowed { "true" } else { "false" };
        self.admission_requests.with_label_values(&[webhook, operation, allowed]).inc();
        self.admission_duration.with_label_values(&[webhook]).observe(seconds);
    }

    /// Records the end of one backup (once per backup: the caller makes sure of it); a failure
    /// also counts its reason.
    pub fn observe_backup(&self, end: OperationEnd) {
        self.backup_duration.with_label_values(&[end.outcome.label()]).observe(end.seconds);
        self.backups.with_label_values(&[end.outcome.label()]).inc();
        if let Outcome::Failed(reason) = end.outcome {
            self.backup_failures.with_label_values(&[reason]).inc();
        }
    }

    /// Records the end of one backup into `destination` (once per backup, as
    /// [`Metrics::observe_backup`]) and, for a completed one, the bytes it wrote.
    pub fn observe_backup_destination(&self, destination: Destination, outcome: Outcome, bytes: Option<u64>) {
        self.backups_by_destination.with_label_values(&[destination.label(), outcome.label()]).inc();
        if let (Outcome::Succeeded, Some(bytes)) = (outcome, bytes) {
            self.bytes_written.with_label_values(&[destination.label()]).inc_by(bytes);
        }
    }

    /// Records the end of one restore (once per restore: the caller makes sure of it), with the
    /// reason of its `Ready` condition ([`Reason::RestoreCompleted`] or the failure's).
    pub fn observe_restore(&self, end: OperationEnd) {
        let reason = match end.outcome {
            Outcome::Succeeded => Reason::RestoreCompleted.label(),
            Outcome::Failed(reason) => reason,
        };
        self.restore_duration.with_label_values(&[end.outcome.label()]).observe(end.seconds);
        self.restores.with_label_values(&[end.outcome.label(), reason]).inc();
    }

    /// Where the backup gauges are read from at each scrape (set once, over a watch-fed cache of
    /// the backups), so a deleted backup leaves them at once and every replica reports them.
    pub fn compute_backup_gauges_with(&self, source: BackupGaugesSource) {
        let _ = self.gauges_source.set(source);
    }

    /// Counts `count` due runs of schedule `schedule` in `namespace` that went `outcome`.
    pub fn schedule_runs(&self, namespace: &str, schedule: &str, outcome: RunOutcome, count: u64) {
        self.schedule_runs.with_label_values(&[namespace, schedule, outcome.label()]).inc_by(count);
    }

    /// Where the schedule gauges are read from at each scrape (the schedules controller's cache,
    /// while this replica leads); `None` while it does not.
    pub fn compute_schedule_gauges_with(&self, source: Option<ScheduleGaugesSource>) {
        *self.schedule_source.lock().unwrap_or_else(PoisonError::into_inner) = source;
    }

    /// Times one reconciliation pass of `controller` until the returned guard is dropped (also when
    /// the pass ends early or fails), so every pass is counted.
    pub fn time_reconcile(&self, controller: &str) -> prometheus::HistogramTimer {
        self.reconcile_duration.with_label_values(&[controller]).start_timer()
    }

    /// Counts a failed reconciliation of `controller`.
    pub fn reconcile_error(&self, controller: &str, reason: &str) {
        self.reconcile_errors.with_label_values(&[controller, reason]).inc();
    }

    /// Counts a failed watch of `kind` (one of [`WATCHED_KINDS`]).
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors.with_label_values(&[kind]).inc();
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, MetricsError> {
        if let Some(source) = self.gauges_source.get() {
            let gauges = source();
            self.backups_in_progress.set(i64::try_from(gauges.in_progress).unwrap_or(i64::MAX));
            for (vec, values) in
                [(&self.last_success, &gauges.last_success), (&self.oldest_running_start, &gauges.oldest_running_start)]
            {
                vec.reset();
                for ((namespace, apimanager), value) in values {
                    vec.with_label_values(&[namespace.as_str(), apimanager.as_str()]).set(*value);
                }
            }
        }
        self.schedule_last_success.reset();
        self.schedule_interval.reset();
        if let Some(source) = self.schedule_source.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            for gauge in source() {
                let labels = [gauge.schedule.0.as_str(), gauge.schedule.1.as_str()];
                self.schedule_last_success.with_label_values(&labels).set(gauge.last_success);
                self.schedule_interval.with_label_values(&labels).set(gauge.interval);
            }
        }
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counter_and_histogram_render_under_the_operator_prefix() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.observe_admission("validating", "CREATE", false, 0.002);
        let text = metrics.render().expect("metrics render");
        assert!(
            text.contains(r#"apimanager_backup_operator_admission_requests_total{allowed="false",operation="CREATE",webhook="validating"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"apimanager_backup_operator_admission_request_duration_seconds_count{webhook="validating"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(!text.contains("apimanager_backup_operator_leader"), "only electing replicas export it: {text}");
    }

    #[test]
    fn backup_metrics_render() {
        let metrics = Metrics::new().expect("metrics register");
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backups_total{outcome="succeeded"} 0"#), "outcomes start at zero: {text}");
        metrics.observe_backup(OperationEnd { outcome: Outcome::Succeeded, seconds: 42.0 });
        metrics.compute_backup_gauges_with(Box::new(|| BackupGauges {
            in_progress: 2,
            last_success: vec![(("3scale".into(), "example".into()), 1_700_000_000.0)],
            oldest_running_start: vec![(("3scale".into(), "example".into()), 1_700_000_100.0)],
        }));
        metrics.reconcile_error("backup", "ApiError");
        drop(metrics.time_reconcile("backup"));
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backups_total{outcome="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_backup_duration_seconds_sum{outcome="succeeded"} 42"#), "{text}");
        assert!(
            text.contains(
                r#"apimanager_backup_last_success_timestamp_seconds{apimanager="example",namespace="3scale"} 1700000000"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"apimanager_backup_oldest_running_start_timestamp_seconds{apimanager="example",namespace="3scale"} 1700000100"#
            ),
            "{text}"
        );
        assert!(text.contains("apimanager_backups_in_progress 2"), "{text}");
        assert!(
            text.contains(
                r#"apimanager_backup_operator_reconcile_errors_total{controller="backup",reason="ApiError"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"apimanager_backup_operator_reconcile_duration_seconds_count{controller="backup"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"apimanager_backup_failures_total{reason="ClaimInUse"} 0"#), "{text}");
        metrics.observe_backup(OperationEnd { outcome: Outcome::Failed("ClaimInUse"), seconds: 1.0 });
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backup_failures_total{reason="ClaimInUse"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_backups_total{outcome="failed"} 1"#), "{text}");
        for kind in WATCHED_KINDS {
            assert!(
                text.contains(&format!("apimanager_backup_operator_watch_errors_total{{kind=\"{kind}\"}} 0")),
                "{text}"
            );
        }
        metrics.watch_error("Pod");
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backup_operator_watch_errors_total{kind="Pod"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_backup_operator_watch_errors_total{kind="APIManager"} 0"#), "{text}");
    }

    #[test]
    fn backups_and_bytes_are_counted_by_destination() {
        let metrics = Metrics::new().expect("metrics register");
        let text = metrics.render().expect("render");
        for series in [
            r#"apimanager_backup_bytes_written_total{destination="persistentVolumeClaim"} 0"#,
            r#"apimanager_backup_bytes_written_total{destination="s3"} 0"#,
            r#"apimanager_backups_by_destination_total{destination="s3",outcome="failed"} 0"#,
        ] {
            assert!(text.contains(series), "present from the start: {series}");
        }
        metrics.observe_backup_destination(Destination::S3, Outcome::Succeeded, Some(1500));
        metrics.observe_backup_destination(Destination::S3, Outcome::Failed("JobFailed"), None);
        metrics.observe_backup_destination(Destination::PersistentVolumeClaim, Outcome::Succeeded, Some(20));
        let text = metrics.render().expect("render");
        for series in [
            r#"apimanager_backup_bytes_written_total{destination="s3"} 1500"#,
            r#"apimanager_backup_bytes_written_total{destination="persistentVolumeClaim"} 20"#,
            r#"apimanager_backups_by_destination_total{destination="s3",outcome="failed"} 1"#,
            r#"apimanager_backups_by_destination_total{destination="s3",outcome="succeeded"} 1"#,
        ] {
            assert!(text.contains(series), "{series}: {text}");
        }
    }

    #[test]
    fn schedule_metrics_render_while_a_source_is_set() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.schedule_runs("3scale", "nightly", RunOutcome::Started, 1);
        metrics.schedule_runs("3scale", "nightly", RunOutcome::Missed, 3);
        metrics.compute_schedule_gauges_with(Some(Box::new(|| {
            vec![ScheduleGauge {
                schedule: ("3scale".into(), "nightly".into()),
                last_success: 1_700_000_000.0,
                interval: 86_400.0,
            }]
        })));
        let text = metrics.render().expect("render");
        for line in [
            r#"apimanager_backup_schedule_runs_total{namespace="3scale",outcome="started",schedule="nightly"} 1"#,
            r#"apimanager_backup_schedule_runs_total{namespace="3scale",outcome="missed",schedule="nightly"} 3"#,
            r#"apimanager_backup_schedule_last_success_timestamp_seconds{namespace="3scale",schedule="nightly"} 1700000000"#,
            r#"apimanager_backup_schedule_interval_seconds{namespace="3scale",schedule="nightly"} 86400"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        metrics.compute_schedule_gauges_with(None);
        let text = metrics.render().expect("render");
        assert!(!text.contains("apimanager_backup_schedule_last_success_timestamp_seconds{"), "{text}");
    }

    #[test]
    fn restore_metrics_render_with_their_reasons() {
        let metrics = Metrics::new().expect("metrics register");
        let text = metrics.render().expect("render");
        assert!(
            text.contains(r#"apimanager_restores_total{outcome="succeeded",reason="RestoreCompleted"} 0"#),
            "{text}"
        );
        assert!(text.contains(r#"apimanager_restores_total{outcome="failed",reason="JobFailed"} 0"#), "{text}");
        metrics.observe_restore(OperationEnd { outcome: Outcome::Succeeded, seconds: 30.0 });
        metrics.observe_restore(OperationEnd { outcome: Outcome::Failed("Timeout"), seconds: 60.0 });
        let text = metrics.render().expect("render");
        assert!(
            text.contains(r#"apimanager_restores_total{outcome="succeeded",reason="RestoreCompleted"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"apimanager_restores_total{outcome="failed",reason="Timeout"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_restore_duration_seconds_sum{outcome="succeeded"} 30"#), "{text}");
        assert!(text.contains(r#"apimanager_restore_duration_seconds_count{outcome="failed"} 1"#), "{text}");
        assert!(
            text.contains(r#"apimanager_backups_total{outcome="succeeded"} 0"#),
            "restores are not backups: {text}"
        );
    }

    #[test]
    fn gauges_of_ended_backups_leave_at_the_next_scrape() {
        let metrics = Metrics::new().expect("metrics register");
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let source = running.clone();
        metrics.compute_backup_gauges_with(Box::new(move || BackupGauges {
            oldest_running_start: if source.load(std::sync::atomic::Ordering::SeqCst) {
                vec![(("ns".into(), "am".into()), 5.0)]
            } else {
                Vec::new()
            },
            ..BackupGauges::default()
        }));
        assert!(
            metrics.render().expect("render").contains("apimanager_backup_oldest_running_start_timestamp_seconds{")
        );
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(
            !metrics.render().expect("render").contains("apimanager_backup_oldest_running_start_timestamp_seconds{")
        );
    }

    #[test]
    fn leader_gauge_renders_once_registered() {
        let metrics = Metrics::new().expect("metrics register");
        let gauge = metrics.leader_gauge().expect("leader gauge");
        gauge.set(1);
        assert!(metrics.render().expect("render").contains("apimanager_backup_operator_leader 1"));
    }
}
