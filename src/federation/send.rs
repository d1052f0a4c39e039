//! `PUT …/send/{txnId}`: PDUs and LPDUs from another server, each processed before the answer.
//!
//! The request is authenticated (X-Matrix) and each object handed to the hub's one entry point
//! (`Hub::receive`), which decides what it is and what this server's role in its room is. Rejections are reported per event in `failed_pdus`, keyed by the ID of the
//! object as received; retries are idempotent (a second copy is recognised, not appended). A
//! failure of this server's own storage fails the whole request with a 5xx instead, because a
//! peer takes a per-event rejection as final.

use serde_json::{Value, json};

use std::sync::atomic::Ordering;

use super::{Federation, x_matrix};
use crate::event::canonical::parse_object;
use crate::http::{MatrixError, Request, Response};
use crate::hub::{HubError, Refused};

/// Most PDUs and EDUs one transaction may carry.
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;

/// A failure of this server's storage is no verdict on the event: the whole request fails with
/// a 5xx so that the peer retries it (events already appended are recognised as duplicates).
fn local_failure(error: &HubError) -> Result<(), MatrixError> {
    if let HubError::Store(store) = error {
        tracing::error!(error = %store, "storing a federation transaction failed");
        return Err(MatrixError::internal("the server could not store the transaction; retry"));
    }
    Ok(())
}

/// The request's origin, by its X-Matrix signatures: over the body as sent (no parsing), else
/// over the parsed body, one such request at a time and off the runtime threads.
async fn authenticate(federation: &Federation, request: &Request, uri: &str) -> Result<String, MatrixError> {
    let (hub, keys) = (&federation.hub, federation.hub.directories().trusted_keys());
    let destination = hub.server_name().to_owned();
    let as_sent = x_matrix::verify_bytes_as_sent(&request.headers, "PUT", uri, &destination, &request.body, &keys)?;
    if let Some(origin) = as_sent {
        return Ok(origin);
    }
    let _turn = federation.unverified.acquire().await.map_err(|_| MatrixError::internal("shutting down"))?;
    federation.metrics.unverified_parses.fetch_add(1, Ordering::Relaxed);
    let (headers, uri, body) = (request.headers.clone(), uri.to_owned(), request.body.clone());
    let origin =
        tokio::task::spawn_blocking(move || x_matrix::verify_parsed(&headers, "PUT", &uri, &destination, &body, &keys))
            .await
            .map_err(|_| MatrixError::internal("checking the signature failed"))??;
    federation.metrics.parsed_and_verified.fetch_add(1, Ordering::Relaxed);
    Ok(origin)
}

/// Processes one transaction.
pub async fn put(federation: &Federation, _txn_id: &str, request: &Request) -> Result<Response, MatrixError> {
    let hub = &federation.hub;
    let uri = match &request.query {
        Some(q) => format!("{}?{q}", request.path),
        None => request.path.clone(),
    };
    let origin = authenticate(federation, request, &uri).await?;
    let bytes = request.body.clone();
    let body: Value = tokio::task::spawn_blocking(move || serde_json::from_slice(&bytes))
        .await
        .map_err(|_| MatrixError::internal("reading the transaction failed"))?
        .map_err(|e| MatrixError::bad_request("M_NOT_JSON", format!("body: {e}")))?;
    let pdus = body
        .get("pdus")
        .and_then(Value::as_array)
        .ok_or_else(|| MatrixError::bad_request("M_BAD_JSON", "pdus: expected an array"))?;
    if pdus.len() > MAX_PDUS || body.get("edus").and_then(Value::as_array).is_some_and(|e| e.len() > MAX_EDUS) {
        return Err(MatrixError::bad_request("M_TOO_LARGE", format!("at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")));
    }
    let mut failed = serde_json::Map::new();
    for (index, pdu) in pdus.iter().enumerate() {
        let object = match parse_object(pdu.to_string().as_bytes()) {
            Ok(object) => object,
            Err(e) => {
                failed.insert(format!("#{index}"), json!({"error": format!("not canonical JSON: {e}")}));
                continue;
            }
        };
        // Verifying, completing and (for a cold room) loading happen off the runtime threads;
        // only the wait for durability is async.
        let (hub, from) = (std::sync::Arc::clone(hub), origin.clone());
        let received = tokio::task::spawn_blocking(move || hub.receive(&from, object))
            .await
            .map_err(|_| MatrixError::internal("the server failed while storing the transaction; retry"))?;
        let refused = match received {
            Ok(pending) => match pending.durable().await {
                Ok(_) => continue,
                Err(error) => Refused { id: String::new(), error },
            },
            Err(refused) => *refused,
        };
        local_failure(&refused.error)?;
        let id = if refused.id.is_empty() { format!("#{index}") } else { refused.id };
        failed.insert(id, json!({"error": refused.error.to_string()}));
    }
    Ok(crate::http::json(hyper::StatusCode::OK, &json!({"failed_pdus": failed})))
}
