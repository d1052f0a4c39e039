//! Prometheus metrics, served as text on their own listener (off unless configured), so the
//! appservice port exposes nothing an admin did not ask for.
//!
//! Plain atomics: the hot paths only add, and a scrape reads a snapshot good enough for rates.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets.
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// A latency histogram: counts per bucket, the count and the sum in µs.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP mimi_bridge_{name} {help}\n# TYPE mimi_bridge_{name} histogram");
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(out, "mimi_bridge_{name}_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let count = load(&self.count);
        let sum = Duration::from_micros(load(&self.sum_us)).as_secs_f64();
        let _ = writeln!(out, "mimi_bridge_{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "mimi_bridge_{name}_sum {sum}\nmimi_bridge_{name}_count {count}");
    }
}

/// What a durable queue shows (`queue::Queue` implements it).
pub trait QueueStats: Send + Sync + std::fmt::Debug {
    /// The queue's name (the `queue` label).
    fn name(&self) -> &'static str;
    /// Entries waiting, delivered, failed attempts, entries given up on.
    fn counts(&self) -> [u64; 4];
    /// Age of the oldest entry being worked on.
    fn oldest_age(&self) -> Duration;
    /// Destinations with entries (and a worker).
    fn destinations(&self) -> usize;
    /// Figures per destination, for a queue whose destinations are bounded (none otherwise).
    fn per_destination(&self) -> Vec<DestinationStats> {
        Vec::new()
    }
}

/// One destination's figures in a durable queue.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationStats {
    /// The destination (the `dest` label), or `other` past the queue's limit.
    pub dest: String,
    /// Entries waiting.
    pub depth: u64,
    /// Age of the oldest entry being worked on (zero when none is).
    pub oldest: Duration,
    /// Failed delivery attempts.
    pub failures: u64,
}

/// A per-destination family: name, kind, help, and its value for one destination.
type DestinationFamily = (&'static str, &'static str, &'static str, fn(&DestinationStats) -> String);

/// Another part's figures, rendered into the exposition as they are.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Appends families in the Prometheus text format.
    fn render(&self, out: &mut String);
}

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
    /// Megolm-encrypted events the bridge's device decrypted.
    pub decrypted: AtomicU64,
    /// Events not bridged, by reason (the translation layer's counter names).
    dropped: Mutex<BTreeMap<&'static str, u64>>,
    /// Users' messages the MIMI room refused (the sender was told), by reason.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Events waiting in the intake queue.
    pub intake_depth: AtomicU64,
    /// From an event's `origin_server_ts` to its transaction reaching the bridge.
    push: Histogram,
    /// From taking an event in to its append being durable.
    append: Histogram,
    /// From an append being durable to the ghost's send starting.
    handoff: Histogram,
    /// The durable delivery queues.
    queues: Mutex<Vec<Arc<dyn QueueStats>>>,
    /// Other parts' figures (the MIMI provider's, per peer).
    sources: Mutex<Vec<Arc<dyn MetricsSource>>>,
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

    /// Counts a user's message the MIMI room refused (its sender is told).
    pub fn refused(&self, reason: &'static str) {
        if let Ok(mut refused) = self.refused.lock() {
            *refused.entry(reason).or_default() += 1;
        }
    }

    /// How many users' messages were refused for `reason`.
    pub fn refused_count(&self, reason: &str) -> u64 {
        self.refused.lock().map_or(0, |r| r.get(reason).copied().unwrap_or(0))
    }

    /// Records the time from an event's `origin_server_ts` to its transaction reaching the bridge.
    pub fn push_delay(&self, elapsed: Duration) {
        self.push.observe(elapsed);
    }

    /// Records the time from taking an event in to its append being durable.
    pub fn append_latency(&self, elapsed: Duration) {
        self.append.observe(elapsed);
    }

    /// Records the time from an append being durable to the ghost's send starting.
    pub fn handoff_latency(&self, elapsed: Duration) {
        self.handoff.observe(elapsed);
    }

    /// Shows a durable queue's figures.
    pub fn add_queue(&self, queue: Arc<dyn QueueStats>) {
        if let Ok(mut queues) = self.queues.lock() {
            queues.push(queue);
        }
    }

    /// Shows another part's figures.
    pub fn add_source(&self, source: Arc<dyn MetricsSource>) {
        if let Ok(mut sources) = self.sources.lock() {
            sources.push(source);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
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
        counter(
            "decrypted_events_total",
            "Megolm-encrypted events the bridge's device decrypted.",
            "counter",
            load(&self.decrypted),
        );
        counter("intake_queue_depth", "Matrix events waiting to be bridged.", "gauge", load(&self.intake_depth));
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
            "# HELP mimi_bridge_messages_refused_total Users' messages the MIMI room refused (the sender was told), by \
             reason.\n# TYPE mimi_bridge_messages_refused_total counter"
        );
        if let Ok(refused) = self.refused.lock() {
            for (reason, count) in refused.iter() {
                let _ = writeln!(out, "mimi_bridge_messages_refused_total{{reason=\"{reason}\"}} {count}");
            }
        }
        self.push.render(
            &mut out,
            "push_delay_seconds",
            "From an event's origin_server_ts to the homeserver's transaction carrying it reaching the bridge.",
        );
        self.append.render(&mut out, "append_seconds", "From intake to durable append.");
        self.handoff.render(&mut out, "handoff_seconds", "From a durable append to the ghost's send starting.");
        self.render_queues(&mut out);
        if let Ok(sources) = self.sources.lock() {
            for source in sources.iter() {
                source.render(&mut out);
            }
        }
        out
    }
}

impl Metrics {
    fn render_queues(&self, out: &mut String) {
        let Ok(queues) = self.queues.lock() else { return };
        let families = [
            ("queue_depth", "gauge", "Entries waiting in a durable delivery queue."),
            ("queue_delivered_total", "counter", "Entries delivered."),
            ("queue_failures_total", "counter", "Failed delivery attempts."),
            ("queue_dropped_total", "counter", "Entries given up on after a final error (reported)."),
        ];
        for (index, (name, kind, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP mimi_bridge_{name} {help}\n# TYPE mimi_bridge_{name} {kind}");
            for queue in queues.iter() {
                let _ = writeln!(out, "mimi_bridge_{name}{{queue=\"{}\"}} {}", queue.name(), queue.counts()[index]);
            }
        }
        let _ = writeln!(
            out,
            "# HELP mimi_bridge_queue_oldest_seconds Age of the oldest entry being delivered.\n# TYPE mimi_bridge_queue_oldest_seconds gauge"
        );
        for queue in queues.iter() {
            let _ = writeln!(
                out,
                "mimi_bridge_queue_oldest_seconds{{queue=\"{}\"}} {}",
                queue.name(),
                queue.oldest_age().as_secs_f64()
            );
        }
        let _ = writeln!(
            out,
            "# HELP mimi_bridge_queue_destinations Destinations with entries.\n# TYPE mimi_bridge_queue_destinations gauge"
        );
        for queue in queues.iter() {
            let _ =
                writeln!(out, "mimi_bridge_queue_destinations{{queue=\"{}\"}} {}", queue.name(), queue.destinations());
        }
        let per_destination: Vec<_> = queues.iter().map(|q| (q.name(), q.per_destination())).collect();
        let families: [DestinationFamily; 3] = [
            ("queue_destination_depth", "gauge", "Entries waiting for one destination.", |d| d.depth.to_string()),
            (
                "queue_destination_oldest_seconds",
                "gauge",
                "Age of the oldest entry being delivered to one destination.",
                |d| d.oldest.as_secs_f64().to_string(),
            ),
            ("queue_destination_failures_total", "counter", "Failed delivery attempts to one destination.", |d| {
                d.failures.to_string()
            }),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP mimi_bridge_{name} {help}\n# TYPE mimi_bridge_{name} {kind}");
            for (queue, dests) in &per_destination {
                for d in dests {
                    let _ = writeln!(
                        out,
                        "mimi_bridge_{name}{{queue=\"{queue}\",dest=\"{}\"}} {}",
                        escape(&d.dest),
                        value(d)
                    );
                }
            }
        }
    }
}

/// A label value as the text format writes it (a destination is a name from elsewhere).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `GET /metrics` (and nothing else) for the metrics listener.
#[derive(Debug)]
pub struct MetricsHandler(pub Arc<Metrics>);

impl super::Handler for MetricsHandler {
    async fn handle(&self, request: super::Request) -> super::Response {
        match (request.method == hyper::Method::GET, request.path.as_str()) {
            (true, "/metrics") => super::text(hyper::StatusCode::OK, self.0.render(), "text/plain; version=0.0.4"),
            (false, "/metrics") => super::MatrixError::method_not_allowed().response(),
            _ => super::MatrixError::unrecognized().response(),
        }
    }
}
