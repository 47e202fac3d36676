//! Prometheus metrics of the operator (README, "Metrics"), served at `/metrics`.

use crate::reconcile::outcome::Failure;
use std::sync::OnceLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Errors while registering or encoding metrics.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// How a backup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step finished.
    Succeeded,
    /// It failed for good, with this reason (one of [`Failure::REASONS`]).
    Failed(&'static str),
}

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

/// Every metric the operator exports, in its own registry.
pub struct Metrics {
    registry: Registry,
    admission_requests: IntCounterVec,
    admission_duration: HistogramVec,
    backup_duration: HistogramVec,
    backups: IntCounterVec,
    backup_failures: IntCounterVec,
    backups_in_progress: IntGauge,
    last_success: GaugeVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: HistogramVec,
    watch_errors: IntCounter,
    in_progress_source: OnceLock<InProgressSource>,
}

/// Counts the backups in progress when `/metrics` is scraped.
pub type InProgressSource = Box<dyn Fn() -> usize + Send + Sync>;

impl Metrics {
    /// A registry with the operator's metrics and the process collector.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new("admission_requests_total", "Admission reviews answered, by webhook, operation and verdict."),
            &["webhook", "operation", "allowed"],
        )?;
        let admission_duration = HistogramVec::new(
            HistogramOpts::new("admission_request_duration_seconds", "Time to answer an admission review.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["webhook"],
        )?;
        let backup_duration = HistogramVec::new(
            HistogramOpts::new(
                "apimanager_backup_duration_seconds",
                "Time from a backup's start to its end, by outcome.",
            )
            .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0]),
            &["outcome"],
        )?;
        let backups =
            IntCounterVec::new(Opts::new("apimanager_backups_total", "Backups ended, by outcome."), &["outcome"])?;
        for label in Outcome::LABELS {
            backups.with_label_values(&[label]);
        }
        let backup_failures = IntCounterVec::new(
            Opts::new("apimanager_backup_failures_total", "Backups failed, by the reason of their Failed condition."),
            &["reason"],
        )?;
        for reason in Failure::REASONS {
            backup_failures.with_label_values(&[reason]);
        }
        let backups_in_progress = IntGauge::new("apimanager_backups_in_progress", "Backups started and not ended.")?;
        let last_success = GaugeVec::new(
            Opts::new(
                "apimanager_backup_last_success_timestamp_seconds",
                "Unix time of the last successful backup, by APIManagerBackup.",
            ),
            &["namespace", "name"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Reconciliations that failed and were retried, by reason."),
            &["reason"],
        )?;
        let watch_errors = IntCounter::new(
            "apimanager_backup_operator_watch_errors_total",
            "Errors of the controller's watches (each is retried with backoff).",
        )?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(admission_requests.clone()))?;
        registry.register(Box::new(admission_duration.clone()))?;
        registry.register(Box::new(backup_duration.clone()))?;
        registry.register(Box::new(backups.clone()))?;
        registry.register(Box::new(backup_failures.clone()))?;
        registry.register(Box::new(backups_in_progress.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Time of one reconciliation pass, by controller.")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
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
            backups_in_progress,
            last_success,
            reconcile_errors,
            reconcile_duration,
            watch_errors,
            in_progress_source: OnceLock::new(),
        })
    }

    /// Records one answered admission review.
    pub fn observe_admission(&self, webhook: &str, operation: &str, allowed: bool, seconds: f64) {
        let allowed = if allowed { "true" } else { "false" };
        self.admission_requests.with_label_values(&[webhook, operation, allowed]).inc();
        self.admission_duration.with_label_values(&[webhook]).observe(seconds);
    }

    /// Records the end of a backup that took `seconds`; a success also sets its timestamp, a failure
    /// counts its reason.
    pub fn observe_backup(&self, namespace: &str, name: &str, outcome: Outcome, seconds: f64, ended_at_unix: f64) {
        self.backup_duration.with_label_values(&[outcome.label()]).observe(seconds);
        self.backups.with_label_values(&[outcome.label()]).inc();
        match outcome {
            Outcome::Succeeded => self.last_success.with_label_values(&[namespace, name]).set(ended_at_unix),
            Outcome::Failed(reason) => self.backup_failures.with_label_values(&[reason]).inc(),
        }
    }

    /// Where `apimanager_backups_in_progress` is read from at each scrape (set once, by the
    /// reconciler, over its cache), so a deleted backup leaves the gauge at once.
    pub fn count_in_progress_with(&self, source: InProgressSource) {
        let _ = self.in_progress_source.set(source);
    }

    /// Times one reconciliation pass of `controller` until the returned guard is dropped (also when
    /// the pass ends early or fails), so every pass is counted.
    pub fn time_reconcile(&self, controller: &str) -> prometheus::HistogramTimer {
        self.reconcile_duration.with_label_values(&[controller]).start_timer()
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors.with_label_values(&[reason]).inc();
    }

    /// Counts a failed watch of the controller.
    pub fn watch_error(&self) {
        self.watch_errors.inc();
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, MetricsError> {
        if let Some(count) = self.in_progress_source.get() {
            self.backups_in_progress.set(i64::try_from(count()).unwrap_or(i64::MAX));
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
    fn admission_counter_and_histogram_render() {
        let metrics = Metrics::new().expect("metrics register");
        metrics.observe_admission("validating", "CREATE", false, 0.002);
        let text = metrics.render().expect("metrics render");
        assert!(
            text.contains(r#"admission_requests_total{allowed="false",operation="CREATE",webhook="validating"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"admission_request_duration_seconds_count{webhook="validating"} 1"#), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn backup_metrics_render() {
        let metrics = Metrics::new().expect("metrics register");
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backups_total{outcome="succeeded"} 0"#), "outcomes start at zero: {text}");
        metrics.observe_backup("3scale", "nightly", Outcome::Succeeded, 42.0, 1_700_000_000.0);
        metrics.count_in_progress_with(Box::new(|| 2));
        metrics.reconcile_error("Api");
        drop(metrics.time_reconcile("backup"));
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backups_total{outcome="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_backup_duration_seconds_sum{outcome="succeeded"} 42"#), "{text}");
        assert!(
            text.contains(
                r#"apimanager_backup_last_success_timestamp_seconds{name="nightly",namespace="3scale"} 1700000000"#
            ),
            "{text}"
        );
        assert!(text.contains("apimanager_backups_in_progress 2"), "{text}");
        assert!(text.contains(r#"reconcile_errors_total{reason="Api"} 1"#), "{text}");
        assert!(text.contains(r#"reconcile_duration_seconds_count{controller="backup"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_backup_failures_total{reason="ClaimInUse"} 0"#), "{text}");
        metrics.observe_backup("3scale", "nightly", Outcome::Failed("ClaimInUse"), 1.0, 1_700_000_001.0);
        let text = metrics.render().expect("render");
        assert!(text.contains(r#"apimanager_backup_failures_total{reason="ClaimInUse"} 1"#), "{text}");
        assert!(text.contains(r#"apimanager_backups_total{outcome="failed"} 1"#), "{text}");
        assert!(text.contains("apimanager_backup_operator_watch_errors_total 0"), "{text}");
        metrics.watch_error();
        let text = metrics.render().expect("render");
        assert!(text.contains("apimanager_backup_operator_watch_errors_total 1"), "{text}");
    }
}
