//! What the bench reads off the machine and the API server: peak and current RSS, CPU time, and
//! the API server's own request counters.

use std::collections::BTreeMap;

/// A field of `/proc/<pid>/status` in KiB (`VmHWM` peak RSS, `VmRSS` current RSS).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS of `pid` to its current RSS (Linux `clear_refs` 5), so a phase's peak is its own.
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// MiB from KiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// User + system CPU seconds of `pid`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User + system CPU seconds of this process's children that have ended and been waited for
/// (here: the processes the node stand-in ran as the step Pods' containers).
pub fn ended_children_cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) writes only into the zeroed struct passed to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The number of cores (online CPUs).
pub fn cores() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

/// Busy and total jiffies of all cores (`/proc/stat`), to get the machine's busy share of a span.
pub fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .map(|line| line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Webhook calls the API server made and the seconds they took in all, from its
/// `apiserver_admission_webhook_admission_duration_seconds` histogram (every webhook, operation
/// and verdict).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WebhookCalls {
    /// Calls.
    pub count: f64,
    /// Seconds, summed over the calls.
    pub seconds: f64,
}

impl WebhookCalls {
    /// Mean milliseconds per call (0 without calls).
    pub fn mean_ms(&self) -> f64 {
        if self.count > 0.0 { self.seconds * 1000.0 / self.count } else { 0.0 }
    }
}

impl std::ops::Add for WebhookCalls {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self { count: self.count + other.count, seconds: self.seconds + other.seconds }
    }
}

impl std::ops::Sub for WebhookCalls {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self { count: self.count - other.count, seconds: self.seconds - other.seconds }
    }
}

/// The API server's webhook calls so far, through `client` (an administrator's).
pub async fn webhook_calls(client: &kube::Client) -> Result<WebhookCalls, kube::Error> {
    Ok(parse_webhook_calls(&metrics_text(client).await?))
}

fn parse_webhook_calls(text: &str) -> WebhookCalls {
    const NAME: &str = "apiserver_admission_webhook_admission_duration_seconds";
    let value = |line: &str| line.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()).unwrap_or(0.0);
    let sum_of = |suffix: &str| {
        let prefix = format!("{NAME}_{suffix}");
        text.lines()
            .filter(|line| line.strip_prefix(&prefix).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .map(value)
            .sum::<f64>()
    };
    WebhookCalls { count: sum_of("count"), seconds: sum_of("sum") }
}

async fn metrics_text(client: &kube::Client) -> Result<String, kube::Error> {
    let request = http::Request::get("/metrics").body(Vec::new()).map_err(kube::Error::HttpError)?;
    client.request_text(request).await
}

/// `apiserver_request_total` summed by `resource[/subresource]`, verb and response code, watches
/// left out.
pub type RequestCounts = BTreeMap<(String, String, String), f64>;

/// Reads the API server's request counters through `client` (an administrator's).
pub async fn apiserver_requests(client: &kube::Client) -> Result<RequestCounts, kube::Error> {
    Ok(parse_requests(&metrics_text(client).await?))
}

fn parse_requests(text: &str) -> RequestCounts {
    let mut counts = RequestCounts::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line["apiserver_request_total{".len()..].rsplit_once("} ") else { continue };
        let label = |name: &str| {
            let key = format!("{name}=\"");
            labels.split(",").find_map(|pair| pair.strip_prefix(&key)?.strip_suffix('"')).unwrap_or("").to_owned()
        };
        let verb = label("verb");
        if verb == "WATCH" || label("resource").is_empty() {
            continue;
        }
        let subresource = label("subresource");
        let resource =
            if subresource.is_empty() { label("resource") } else { format!("{}/{subresource}", label("resource")) };
        *counts.entry((resource, verb, label("code"))).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// `after - before`, per key.
pub fn difference(before: &RequestCounts, after: &RequestCounts) -> RequestCounts {
    after
        .iter()
        .map(|(key, value)| (key.clone(), value - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, value)| *value > 0.0)
        .collect()
}

/// Per-resource totals (all verbs) of `counts`.
pub fn by_resource(counts: &RequestCounts) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for ((resource, _, _), value) in counts {
        *totals.entry(resource.clone()).or_default() += value;
    }
    totals
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_webhook_calls_over_every_label_set() {
        let text = r#"apiserver_admission_webhook_admission_duration_seconds_bucket{name="a",operation="CREATE",rejected="false",type="admit",le="0.005"} 3
apiserver_admission_webhook_admission_duration_seconds_sum{name="a",operation="CREATE",rejected="false",type="admit"} 0.5
apiserver_admission_webhook_admission_duration_seconds_count{name="a",operation="CREATE",rejected="false",type="admit"} 4
apiserver_admission_webhook_admission_duration_seconds_sum{name="b",operation="CREATE",rejected="true",type="validating"} 0.25
apiserver_admission_webhook_admission_duration_seconds_count{name="b",operation="CREATE",rejected="true",type="validating"} 1
apiserver_admission_webhook_request_total{name="a"} 9"#;
        let calls = super::parse_webhook_calls(text);
        assert_eq!(calls, super::WebhookCalls { count: 5.0, seconds: 0.75 });
        assert_eq!(calls.mean_ms(), 150.0);
    }

    #[test]
    fn sums_requests_by_resource_and_verb_without_watches() {
        let text = r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="apps.3scale.net",resource="apimanagerbackups",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 5
apiserver_request_total{code="409",component="apiserver",dry_run="",group="apps.3scale.net",resource="apimanagerbackups",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="batch",resource="jobs",scope="cluster",subresource="",verb="WATCH",version="v1"} 3"#;
        let counts = super::parse_requests(text);
        assert_eq!(counts.len(), 2);
        let key = |code: &str| ("apimanagerbackups/status".to_owned(), "PATCH".to_owned(), code.to_owned());
        assert_eq!((counts[&key("200")], counts[&key("409")]), (5.0, 1.0));
        assert_eq!(super::by_resource(&counts)["apimanagerbackups/status"], 6.0);
    }
}
