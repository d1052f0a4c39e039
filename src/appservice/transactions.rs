//! `PUT /_matrix/app/v1/transactions/{txnId}`: answered 200 only once durable (see `intake`; in
//! push mode the bridge device's part too, `e2ee::push`).
//!
//! The ID is the path segment percent-decoded to bytes, never through a lossy UTF-8 decoding:
//! distinct IDs must stay distinct, or a new transaction is taken for a redelivery and its events
//! are lost. Every ID that is valid UTF-8 (all Synapse makes) keeps the key it had before.
//!
//! Each new event's push delay (from its `origin_server_ts` to the transaction's arrival here,
//! the handler's start, after its body was read) goes into a histogram: how far behind the
//! homeserver pushes, apart from what the bridge itself takes.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::service::Appservice;
use crate::http::{MatrixError, Request, Response, json};

/// Takes the transaction in.
pub async fn put(app: &Appservice, txn_id: &[u8], request: &Request) -> Result<Response, MatrixError> {
    if txn_id.is_empty() || txn_id.len() > 255 {
        return Err(MatrixError::bad_request("M_INVALID_PARAM", "txnId: expected 1 to 255 bytes"));
    }
    let received = SystemTime::now();
    // Only while the start's checks run: every later transaction goes by unsearched.
    if app.probing() {
        let probes = super::device::probes_in(&request.body);
        if !probes.is_empty() {
            app.probed(probes);
        }
    }
    // Push mode: room keys first, so the events that need them find them; stored before the
    // answer (a failure makes the homeserver send the transaction again).
    if let Some(device) = app.pushed(&request.body, Duration::from_mins(1)).await? {
        device.receive_transaction(&request.body).await.map_err(|e| {
            tracing::warn!(error = %e, "the bridge's device could not take a transaction in");
            MatrixError::internal("the bridge's device could not take the transaction in")
        })?;
    }
    let taken = app.intake.take(txn_id, &request.body).await?;
    if taken.duplicate {
        app.metrics.transactions_duplicate.fetch_add(1, Ordering::Relaxed);
    } else {
        for ms in taken.origin_ts {
            let stamped = UNIX_EPOCH + Duration::from_millis(ms);
            app.metrics.push_delay(received.duration_since(stamped).unwrap_or_default());
        }
        app.metrics.transactions.fetch_add(1, Ordering::Relaxed);
        let new = u64::try_from(taken.new_events).unwrap_or(u64::MAX);
        app.metrics.events_in.fetch_add(new, Ordering::Relaxed);
        app.metrics.intake_depth.fetch_add(new, Ordering::Relaxed);
    }
    Ok(json(hyper::StatusCode::OK, &serde_json::json!({})))
}
