//! Per-destination figures, for a queue whose destinations are few and named by operators (other
//! providers' domains): a stuck peer shows up as its own growing depth and failures rather than
//! hiding in the queue's totals. A queue of Matrix rooms keeps none, since rooms are unbounded;
//! and past [`MAX_DESTINATIONS`] the rest count under `other`, so the exposition stays bounded
//! whatever the store holds. A destination keeps its series once seen (at 0 when drained), so it
//! never moves between its name and `other`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::http::metrics::DestinationStats;

/// Destinations shown by name.
pub const MAX_DESTINATIONS: usize = 256;

/// Where destinations past [`MAX_DESTINATIONS`] are counted.
const OTHER: &str = "other";

#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    depth: u64,
    failures: u64,
}

/// The figures of one queue's destinations (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct DestinationMetrics {
    dests: Mutex<BTreeMap<String, Figures>>,
}

impl DestinationMetrics {
    fn with(&self, dest: &str, update: impl FnOnce(&mut Figures)) {
        let mut dests = self.dests.lock().unwrap_or_else(PoisonError::into_inner);
        let named = dests.len() - usize::from(dests.contains_key(OTHER));
        let key = if dests.contains_key(dest) || named < MAX_DESTINATIONS { dest } else { OTHER };
        update(dests.entry(key.to_owned()).or_default());
    }

    /// `count` entries for `dest` are durable (queued now, or found in the store on resume).
    pub(super) fn queued(&self, dest: &str, count: u64) {
        self.with(dest, |f| f.depth += count);
    }

    /// An entry for `dest` was removed (delivered or dropped).
    pub(super) fn removed(&self, dest: &str) {
        self.with(dest, |f| f.depth = f.depth.saturating_sub(1));
    }

    /// A delivery to `dest` failed.
    pub(super) fn failed(&self, dest: &str) {
        self.with(dest, |f| f.failures += 1);
    }

    /// Every series, with the age of the oldest entry a worker is on from `heads` (destination,
    /// queue time in ms of the entry its worker is on) as of `now_ms`.
    pub(super) fn snapshot(&self, heads: &[(String, u64)], now_ms: u64) -> Vec<DestinationStats> {
        let dests = self.dests.lock().unwrap_or_else(PoisonError::into_inner);
        let mut oldest: BTreeMap<&str, u64> = BTreeMap::new();
        for (dest, head_ms) in heads {
            let label = if dests.contains_key(dest.as_str()) { dest.as_str() } else { OTHER };
            let age = now_ms.saturating_sub(*head_ms);
            oldest.entry(label).and_modify(|a| *a = (*a).max(age)).or_insert(age);
        }
        dests
            .iter()
            .map(|(dest, f)| DestinationStats {
                dest: dest.clone(),
                depth: f.depth,
                oldest: Duration::from_millis(oldest.get(dest.as_str()).copied().unwrap_or(0)),
                failures: f.failures,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_past_the_limit_count_under_other() {
        let metrics = DestinationMetrics::default();
        for i in 0..MAX_DESTINATIONS + 10 {
            metrics.queued(&format!("p{i}.example"), 1);
        }
        metrics.failed("late.example");
        metrics.removed("p0.example");
        let heads = [("p1.example".to_owned(), 1_000), ("late.example".to_owned(), 500)];
        let stats = metrics.snapshot(&heads, 3_000);
        assert_eq!(stats.len(), MAX_DESTINATIONS + 1);
        let of = |dest: &str| stats.iter().find(|s| s.dest == dest).unwrap();
        assert_eq!((of("p0.example").depth, of("p1.example").oldest), (0, Duration::from_secs(2)));
        let other = of(OTHER);
        assert_eq!((other.depth, other.failures, other.oldest), (10, 1, Duration::from_millis(2_500)));
        assert!(!stats.iter().any(|s| s.dest == "late.example"));
    }
}
