//! Per-peer daily quotas on what other servers' requests make this one store (rooms, consent
//! requests, abuse reports): without them one peer could fill the disk. Each (kind, peer) has one
//! count in the store, tagged with its UTC day, written in the batch that stores what it counts.

use crate::http::MatrixError;
use crate::queue::now_ms;
use crate::store::{Batch, Store};

/// Counts one more of `what` for `peer` in `batch`, or refuses with 429 `M_LIMIT_EXCEEDED` when
/// today's `limit` is used up. Reads the store: call it from a blocking thread, under the lock
/// that serializes writing what it counts, so that two requests cannot both take the last one.
pub fn take(store: &Store, what: &str, peer: &str, limit: u64, batch: &mut Batch) -> Result<(), MatrixError> {
    let day = now_ms() / 86_400_000;
    let counter = format!("quota {what} {peer}");
    let used = store.daily_count(&counter, day).map_err(|e| {
        tracing::error!(error = %e, "reading a quota failed");
        MatrixError::internal("quota not readable; retry")
    })?;
    if used >= limit {
        tracing::warn!(peer, quota = what, limit, "a server's daily quota is used up");
        return Err(MatrixError::new(
            hyper::StatusCode::TOO_MANY_REQUESTS,
            "M_LIMIT_EXCEEDED",
            format!("{peer} has sent its {limit} {what} for today (UTC)"),
        ));
    }
    batch.daily_count(&counter, day, used + 1);
    Ok(())
}
