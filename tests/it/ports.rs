//! Loopback ports for servers whose port must be known before they start (Synapse, and the
//! bridge's listeners that Synapse's registration names).
//!
//! A port from `bind(":0")` is taken from the kernel's ephemeral range, so the next outgoing
//! connection of any test may be given it before the server binds it. These come from below that
//! range, each handed out once per process, and are checked free when handed out.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// Where the ephemeral range starts (Linux's default `ip_local_port_range`).
const EPHEMERAL: u16 = 32_768;
const FIRST: u16 = 10_000;

static NEXT: AtomicU16 = AtomicU16::new(0);

/// `n` consecutive loopback ports, free a moment ago, never handed out before in this process.
pub(crate) fn consecutive(n: u16) -> u16 {
    // Processes start at different places so that two test runs side by side rarely meet.
    let start = FIRST + u16::try_from(std::process::id() % 1000).unwrap_or(0) * 16;
    let _ = NEXT.compare_exchange(0, start, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let mut first = NEXT.fetch_add(n, Ordering::Relaxed);
        if first + n >= EPHEMERAL {
            NEXT.store(FIRST, Ordering::Relaxed);
            first = NEXT.fetch_add(n, Ordering::Relaxed);
        }
        if (first..first + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
}
