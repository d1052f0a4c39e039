//! `PUT …/send/{txnId}`: PDUs and LPDUs from another server, each processed before the answer.
//!
//! The request is authenticated (X-Matrix) and each object handed to the hub's one entry point
//! (`Hub::receive`), which decides what it is and what this server's role in its room is. Rejections are reported per event in `failed_pdus`, keyed by the ID of the
//! object as received; retries are idempotent (a second copy is recognised, not appended). A
//! failure of this server's own storage fails the whole request with a 5xx instead, because a
//! peer takes a per-event rejection as final.

use serde_json::{Value, json};

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::{Federation, x_matrix};
use crate::event::canonical::parse_object;
use crate::event::meta::{is_user_id, server_of};
use crate::http::{MatrixError, Request, Response};
use crate::hub::{Hub, HubError, Refused};

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

/// The rooms of a transaction that one of `server`'s users is invited to or joins in it: the
/// only new rooms whose history this server takes from another.
fn wanted_rooms(pdus: &[Value], server: &str) -> BTreeSet<String> {
    pdus.iter()
        .filter(|pdu| pdu.get("type").and_then(Value::as_str) == Some("m.room.member"))
        .filter(|pdu| {
            let member = pdu.get("state_key").and_then(Value::as_str).unwrap_or_default();
            is_user_id(member) && server_of(member) == server
        })
        .filter(|pdu| matches!(pdu.pointer("/content/membership").and_then(Value::as_str), Some("invite" | "join")))
        .filter_map(|pdu| pdu.get("room_id").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Whom this server lets start rooms in its store: only rooms one of its users is in, and at
/// most `per_day` a day from one server.
#[derive(Debug)]
pub struct NewRooms {
    /// New rooms one server may start here per day (UTC).
    pub per_day: u64,
    /// Serializes taking the quota.
    turn: std::sync::Mutex<()>,
}

impl NewRooms {
    /// At most `per_day` new rooms per server and day.
    pub fn new(per_day: u64) -> Self {
        Self { per_day, turn: std::sync::Mutex::new(()) }
    }

    /// Whether `origin` may start `room_id` here (blocking: reads and writes the store).
    fn admit(&self, hub: &Hub, origin: &str, room_id: &str, wanted: &BTreeSet<String>) -> Result<(), Box<Refused>> {
        let refused = |error| Box::new(Refused { id: String::new(), error });
        if hub.store().short_room(room_id).map_err(|e| refused(HubError::Store(e)))?.is_some() {
            return Ok(());
        }
        if !wanted.contains(room_id) {
            return Err(refused(HubError::RoomNotWanted {
                room_id: room_id.to_owned(),
                server: hub.server_name().to_owned(),
            }));
        }
        let _turn = self.turn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = crate::store::Batch::new();
        crate::http::quota::take(hub.store(), "new rooms", origin, self.per_day, &mut batch)
            .map_err(|e| refused(HubError::Quota(e.error)))?;
        hub.store().write(batch).map_err(|e| refused(HubError::Store(e)))
    }
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
    let wanted = std::sync::Arc::new(wanted_rooms(pdus, hub.server_name()));
    let mut failed = serde_json::Map::new();
    for (index, pdu) in pdus.iter().enumerate() {
        let new_room = (pdu.get("type").and_then(Value::as_str) == Some("m.room.create")
            && pdu.get("prev_events").is_some())
        .then(|| pdu.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned());
        let object = match parse_object(pdu.to_string().as_bytes()) {
            Ok(object) => object,
            Err(e) => {
                failed.insert(format!("#{index}"), json!({"error": format!("not canonical JSON: {e}")}));
                continue;
            }
        };
        // Verifying, completing and (for a cold room) loading happen off the runtime threads;
        // only the wait for durability is async.
        let (hub, from, wanted, rooms) = (
            std::sync::Arc::clone(hub),
            origin.clone(),
            std::sync::Arc::clone(&wanted),
            std::sync::Arc::clone(&federation.rooms),
        );
        let received = tokio::task::spawn_blocking(move || {
            if let Some(room_id) = new_room {
                rooms.admit(&hub, &from, &room_id, &wanted)?;
            }
            hub.receive(&from, object)
        })
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
