//! Prometheus metrics of the operator (DESIGN §5), served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Errors while registering or encoding metrics.
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Every metric the operator exports, in its own registry.
pub struct Metrics {
    registry: Registry,
    admission_requests: IntCounterVec,
    admission_duration: HistogramVec,
}

impl Metrics {
    /// A registry with the operator's metrics and the process collector.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new(
                "admission_requests_total",
                "Admission reviews answered, by webhook, operation and verdict.",
            ),
            &["webhook", "operation", "allowed"],
        )?;
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "admission_request_duration_seconds",
                "Time to answer an admission review.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["webhook"],
        )?;
        registry.register(Box::new(admission_requests.clone()))?;
        registry.register(Box::new(admission_duration.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            admission_requests,
            admission_duration,
        })
    }

    /// Records one answered admission review.
    pub fn observe_admission(&self, webhook: &str, operation: &str, allowed: bool, seconds: f64) {
        let allowed = if allowed { "true" } else { "false" };
        self.admission_requests
            .with_label_values(&[webhook, operation, allowed])
            .inc();
        self.admission_duration
            .with_label_values(&[webhook])
            .observe(seconds);
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, MetricsError> {
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
        assert!(text.contains(r#"admission_requests_total{allowed="false",operation="CREATE",webhook="validating"} 1"#), "{text}");
        assert!(
            text.contains(r#"admission_request_duration_seconds_count{webhook="validating"} 1"#),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
