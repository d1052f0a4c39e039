//! Prometheus metrics, served as text on their own listener (off unless configured), so the
//! appservice port exposes nothing an admin did not ask for.
//!
//! Plain atomics: the hot paths only add, and a scrape reads a snapshot good enough for rates.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the append-latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// The bridge's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Matrix events taken in from the homeserver.
    pub events_in: AtomicU64,
    /// Events sent to the homeserver.
    pub events_out: AtomicU64,
    /// Transactions taken in (new), and redelivered ones answered without storing.
    pub transactions: AtomicU64,
    /// Redelivered transactions.
    pub transactions_duplicate: AtomicU64,
    /// Retried requests to the homeserver.
    pub retries: AtomicU64,
    /// Events not bridged, by reason (the translation layer's counter names).
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// Events waiting in the intake queue.
    pub intake_depth: AtomicU64,
    /// Requests waiting in the homeserver queue.
    pub hs_queue_depth: AtomicU64,
    /// Append latency histogram: counts per bucket, plus the +Inf count and the sum in µs.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Lowers a gauge by one, never below zero.
    pub fn decrement(gauge: &AtomicU64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
    }

    /// Counts an event that was deliberately not bridged.
    pub fn dropped(&self, reason: &'static str) {
        if let Ok(mut dropped) = self.dropped.lock() {
            *dropped.entry(reason).or_default() += 1;
        }
    }

    /// How many events were dropped for `reason`.
    pub fn dropped_count(&self, reason: &str) -> u64 {
        self.dropped.lock().map_or(0, |d| d.get(reason).copied().unwrap_or(0))
    }

    /// Records the time from taking an event in to its append being durable.
    pub fn append_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP mimi_bridge_{name} {help}\n# TYPE mimi_bridge_{name} {kind}\nmimi_bridge_{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter("events_in_total", "Matrix events taken in from the homeserver.", "counter", load(&self.events_in));
        counter("events_out_total", "Events sent to the homeserver.", "counter", load(&self.events_out));
        counter("transactions_total", "Homeserver transactions taken in.", "counter", load(&self.transactions));
        counter(
            "transactions_duplicate_total",
            "Redelivered homeserver transactions answered without storing.",
            "counter",
            load(&self.transactions_duplicate),
        );
        counter("homeserver_retries_total", "Retried requests to the homeserver.", "counter", load(&self.retries));
        counter("intake_queue_depth", "Matrix events waiting to be bridged.", "gauge", load(&self.intake_depth));
        counter("homeserver_queue_depth", "Requests waiting for the homeserver.", "gauge", load(&self.hs_queue_depth));
        let _ = writeln!(
            out,
            "# HELP mimi_bridge_dropped_total Events not bridged, by reason.\n# TYPE mimi_bridge_dropped_total counter"
        );
        if let Ok(dropped) = self.dropped.lock() {
            for (reason, count) in dropped.iter() {
                let _ = writeln!(out, "mimi_bridge_dropped_total{{reason=\"{reason}\"}} {count}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP mimi_bridge_append_seconds From intake to durable append.\n# TYPE mimi_bridge_append_seconds histogram"
        );
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(out, "mimi_bridge_append_seconds_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let count = load(&self.latency_count);
        let sum = Duration::from_micros(load(&self.latency_sum_us)).as_secs_f64();
        let _ = writeln!(out, "mimi_bridge_append_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "mimi_bridge_append_seconds_sum {sum}\nmimi_bridge_append_seconds_count {count}");
        out
    }
}

/// Serves `GET /metrics` (and nothing else) for the metrics listener.
#[derive(Debug)]
pub struct MetricsHandler(pub std::sync::Arc<Metrics>);

impl super::Handler for MetricsHandler {
    async fn handle(&self, request: super::Request) -> super::Response {
        match (request.method == hyper::Method::GET, request.path.as_str()) {
            (true, "/metrics") => super::text(hyper::StatusCode::OK, self.0.render(), "text/plain; version=0.0.4"),
            (false, "/metrics") => super::MatrixError::method_not_allowed().response(),
            _ => super::MatrixError::unrecognized().response(),
        }
    }
}
