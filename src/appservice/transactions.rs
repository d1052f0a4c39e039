//! `PUT /_matrix/app/v1/transactions/{txnId}`: answered 200 only once durable (see `intake`).
//!
//! The ID is the path segment percent-decoded to bytes, never through a lossy UTF-8 decoding:
//! distinct IDs must stay distinct, or a new transaction is taken for a redelivery and its events
//! are lost. Every ID that is valid UTF-8 (all Synapse makes) keeps the key it had before.

use std::sync::atomic::Ordering;

use super::service::Appservice;
use crate::http::{MatrixError, Request, Response, json};

/// Takes the transaction in.
pub async fn put(app: &Appservice, txn_id: &[u8], request: &Request) -> Result<Response, MatrixError> {
    if txn_id.is_empty() || txn_id.len() > 255 {
        return Err(MatrixError::bad_request("M_INVALID_PARAM", "txnId: expected 1 to 255 bytes"));
    }
    let taken = app.intake.take(txn_id, &request.body).await?;
    if taken.duplicate {
        app.metrics.transactions_duplicate.fetch_add(1, Ordering::Relaxed);
    } else {
        app.metrics.transactions.fetch_add(1, Ordering::Relaxed);
        let new = u64::try_from(taken.new_events).unwrap_or(u64::MAX);
        app.metrics.events_in.fetch_add(new, Ordering::Relaxed);
        app.metrics.intake_depth.fetch_add(new, Ordering::Relaxed);
    }
    Ok(json(hyper::StatusCode::OK, &serde_json::json!({})))
}
