//! `PUT …/send/{txnId}`: PDUs and LPDUs from another server, each processed before the answer.
//!
//! An LPDU must come from its origin (the sender's server, authenticated by X-Matrix) and is
//! completed and appended if this server is its room's hub; a PDU from a room's hub extends this
//! server's copy. Rejections are reported per event in `failed_pdus`, keyed by the ID of the
//! object as received; retries are idempotent (a second copy is recognised, not appended). A
//! failure of this server's own storage fails the whole request with a 5xx instead, because a
//! peer takes a per-event rejection as final.

use serde_json::{Value, json};

use super::Federation;
use crate::event::canonical::parse_object;
use crate::event::meta::server_of;
use crate::event::room_version::LINEARIZED_02;
use crate::event::{UnverifiedLpdu, UnverifiedPdu};
use crate::http::{MatrixError, Request, Response};
use crate::hub::HubError;

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

/// Processes one transaction.
pub async fn put(federation: &Federation, _txn_id: &str, request: &Request) -> Result<Response, MatrixError> {
    let hub = &federation.hub;
    let uri = match &request.query {
        Some(q) => format!("{}?{q}", request.path),
        None => request.path.clone(),
    };
    let keys = hub.trusted_keys();
    let origin =
        super::x_matrix::verify_request(&request.headers, "PUT", &uri, hub.server_name(), &request.body, &keys)?;
    let body: Value = serde_json::from_slice(&request.body)
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
        let is_lpdu = object.contains_key("hub_server") && !object.contains_key("prev_events");
        if is_lpdu {
            let lpdu = match UnverifiedLpdu::from_object(object) {
                Ok(lpdu) => lpdu,
                Err(e) => {
                    failed.insert(format!("#{index}"), json!({"error": e.to_string()}));
                    continue;
                }
            };
            if server_of(&lpdu.meta().sender) != origin {
                let id = lpdu.reference_id(&LINEARIZED_02);
                failed.insert(id, json!({"error": format!("sender is not a user of the origin {origin}")}));
                continue;
            }
            if let Err(rejection) = hub.append_lpdu(lpdu).await {
                local_failure(&rejection.error)?;
                failed.insert(rejection.lpdu_id, json!({"error": rejection.error.to_string()}));
            }
        } else {
            let pdu = match UnverifiedPdu::from_object(object) {
                Ok(pdu) => pdu,
                Err(e) => {
                    failed.insert(format!("#{index}"), json!({"error": e.to_string()}));
                    continue;
                }
            };
            let id = pdu.event_id(&LINEARIZED_02);
            // A room's events come from its hub: the create event's sender's server.
            let room_hub = match hub.room_hub(&pdu.meta().room_id) {
                Some(room_hub) => room_hub,
                None if pdu.meta().event_type == "m.room.create" => server_of(&pdu.meta().sender).to_owned(),
                None => String::new(),
            };
            if room_hub != origin {
                failed.insert(id, json!({"error": format!("{origin} is not this room's hub")}));
                continue;
            }
            if let Err(error) = hub.follow(pdu).await {
                local_failure(&error)?;
                failed.insert(id, json!({"error": error.to_string()}));
            }
        }
    }
    Ok(crate::http::json(hyper::StatusCode::OK, &json!({"failed_pdus": failed})))
}
