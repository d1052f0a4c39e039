//! Per-peer figures for `/metrics`: requests to each provider (answered or failed, and the time
//! they took) and from each (served or refused), and abuse reports received. Peers are named by
//! their authenticated domain; past [`MAX_PEERS`] the rest count under `other`, so the exposition
//! stays bounded whatever a CA issues.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Peers shown by name.
pub const MAX_PEERS: usize = 256;

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    out_requests: u64,
    out_failures: u64,
    out_seconds: f64,
    in_requests: u64,
    in_refused: u64,
    reencrypted: u64,
    healed: u64,
}

/// A family: name, kind, help, and its value for one peer.
type Family = (&'static str, &'static str, &'static str, fn(&Figures) -> String);

/// The figures (see the module documentation).
#[derive(Debug, Default)]
pub struct PeerMetrics {
    peers: Mutex<BTreeMap<String, Figures>>,
    abuse_reports: std::sync::atomic::AtomicU64,
}

impl PeerMetrics {
    fn with(&self, peer: &str, update: impl FnOnce(&mut Figures)) {
        let mut peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = if peers.contains_key(peer) || peers.len() < MAX_PEERS { peer } else { "other" };
        update(peers.entry(key.to_owned()).or_default());
    }

    /// A request to `peer` ended: answered (any status below 500) or failed, after `elapsed`.
    pub fn outbound(&self, peer: &str, answered: bool, elapsed: Duration) {
        self.with(peer, |f| {
            f.out_requests += 1;
            f.out_failures += u64::from(!answered);
            f.out_seconds += elapsed.as_secs_f64();
        });
    }

    /// A request from `peer` was served, or refused (4xx/5xx).
    pub fn inbound(&self, peer: &str, refused: bool) {
        self.with(peer, |f| {
            f.in_requests += 1;
            f.in_refused += u64::from(refused);
        });
    }

    /// A message `peer` (a room's hub) found too old was encrypted anew for its epoch.
    pub fn reencrypted(&self, peer: &str) {
        self.with(peer, |f| f.reencrypted += 1);
    }

    /// `count` messages `peer` (a follower) had missed were sent again from a room's log.
    pub fn healed(&self, peer: &str, count: usize) {
        self.with(peer, |f| f.healed += count as u64);
    }

    /// An abuse report was stored.
    pub fn abuse_report(&self) {
        self.abuse_reports.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests to and from `peer` so far: (out, out failed, in, in refused).
    pub fn counts(&self, peer: &str) -> (u64, u64, u64, u64) {
        let peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        peers.get(peer).map_or((0, 0, 0, 0), |f| (f.out_requests, f.out_failures, f.in_requests, f.in_refused))
    }
}

impl crate::http::metrics::MetricsSource for PeerMetrics {
    fn render(&self, out: &mut String) {
        let peers = self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let families: [Family; 7] = [
            ("peer_requests_out_total", "counter", "Requests to another provider.", |f| f.out_requests.to_string()),
            ("peer_failures_out_total", "counter", "Requests to another provider that got no answer or a 5xx.", |f| {
                f.out_failures.to_string()
            }),
            ("peer_seconds_out_sum", "counter", "Time spent on requests to another provider.", |f| {
                format!("{:.6}", f.out_seconds)
            }),
            ("peer_requests_in_total", "counter", "Requests from another provider (authenticated).", |f| {
                f.in_requests.to_string()
            }),
            ("peer_refused_in_total", "counter", "Requests from another provider answered 4xx or 5xx.", |f| {
                f.in_refused.to_string()
            }),
            ("peer_reencrypted_total", "counter", "Messages a room's hub found too old, encrypted anew.", |f| {
                f.reencrypted.to_string()
            }),
            ("peer_healed_total", "counter", "Messages a follower had missed, sent again from a room's log.", |f| {
                f.healed.to_string()
            }),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP mimi_bridge_{name} {help}\n# TYPE mimi_bridge_{name} {kind}");
            for (peer, figures) in &peers {
                let _ = writeln!(out, "mimi_bridge_{name}{{peer=\"{peer}\"}} {}", value(figures));
            }
        }
        let reports = self.abuse_reports.load(std::sync::atomic::Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP mimi_bridge_abuse_reports_total Abuse reports received and stored.\n# TYPE mimi_bridge_abuse_reports_total counter\nmimi_bridge_abuse_reports_total {reports}"
        );
    }
}
