//! The federation listener's figures for `/metrics`: what it had to do before a peer was
//! authenticated, and what it refused to store.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct FederationMetrics {
    /// Bodies parsed to check a signature that did not verify over the bytes as sent.
    pub unverified_parses: AtomicU64,
    /// Of those, the ones whose signature then verified (peers that send non-canonical JSON).
    pub parsed_and_verified: AtomicU64,
}

impl crate::http::metrics::MetricsSource for FederationMetrics {
    fn render(&self, out: &mut String) {
        let families = [
            (
                "mimi_bridge_federation_unverified_parses_total",
                "Request bodies parsed before their X-Matrix signature verified (it did not over the bytes as sent).",
                &self.unverified_parses,
            ),
            (
                "mimi_bridge_federation_parsed_and_verified_total",
                "Of those, bodies whose signature verified once canonicalized (peers sending non-canonical JSON).",
                &self.parsed_and_verified,
            ),
        ];
        for (name, help, value) in families {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
    }
}
