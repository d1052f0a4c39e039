//! What the benches share: a fixed-window rate meter.

use std::time::{Duration, Instant};

/// Calls `op` repeatedly for about `window` and returns calls per second.
#[allow(clippy::cast_precision_loss, reason = "a printed rate")]
pub(crate) fn rate(window: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        for _ in 0..64 {
            op();
        }
        n += 64;
    }
    n as f64 / start.elapsed().as_secs_f64()
}
