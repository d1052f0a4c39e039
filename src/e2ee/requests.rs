//! The device's requests to the homeserver, made as the device (`user_id` and `device_id` beside
//! the `as_token`, MSC4326): the library says what to send, and is told the answer only once the
//! homeserver took it, so a request that failed is simply made again.

use std::time::Duration;

use hyper::Method;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, OutgoingRequest, ToDeviceRequest};
use ruma::TransactionId;
use ruma::api::IncomingResponse;
use ruma::api::client::keys::{claim_keys, get_keys, upload_keys, upload_signatures};
use ruma::api::client::message::send_message_event;
use ruma::api::client::to_device::send_event_to_device;
use ruma::exports::http;
use serde_json::{Value, json};

use super::{Device, E2eeError, machine_error};

/// How long the homeserver may wait on other servers for keys (`/keys/query`, `/keys/claim`).
const FEDERATION_WAIT: Duration = Duration::from_secs(10);

/// Parses a successful answer as the ruma response the library takes.
fn parse<R: IncomingResponse>(body: &Value, what: &str) -> Result<R, E2eeError> {
    let bytes = serde_json::to_vec(body).map_err(E2eeError::Json)?;
    R::try_from_http_response(http::Response::new(bytes)).map_err(|e| E2eeError::Malformed(format!("{what}: {e}")))
}

fn body_of(value: &impl serde::Serialize) -> Result<Value, E2eeError> {
    serde_json::to_value(value).map_err(E2eeError::Json)
}

fn millis(wait: Option<Duration>) -> u64 {
    u64::try_from(wait.unwrap_or(FEDERATION_WAIT).as_millis()).unwrap_or(u64::MAX)
}

impl Device {
    /// Sends what the library has to send, until it has nothing more (bounded: a request that
    /// keeps coming back is left for the next call).
    pub async fn flush(&self) -> Result<(), E2eeError> {
        for _ in 0..8 {
            let requests = self.machine.outgoing_requests().await.map_err(machine_error)?;
            if requests.is_empty() {
                return Ok(());
            }
            for request in &requests {
                self.send(request).await?;
            }
        }
        Ok(())
    }

    /// Makes one request and hands the answer to the library.
    pub(super) async fn send(&self, request: &OutgoingRequest) -> Result<(), E2eeError> {
        let id = request.request_id();
        let machine = &self.machine;
        match request.request() {
            AnyOutgoingRequest::KeysUpload(upload) => {
                let mut body = json!({});
                if let Some(keys) = &upload.device_keys {
                    body["device_keys"] = body_of(keys)?;
                }
                if !upload.one_time_keys.is_empty() {
                    body["one_time_keys"] = body_of(&upload.one_time_keys)?;
                }
                if !upload.fallback_keys.is_empty() {
                    body["fallback_keys"] = body_of(&upload.fallback_keys)?;
                }
                let answer = self.call(Method::POST, "/_matrix/client/v3/keys/upload", &body).await?;
                let response: upload_keys::v3::Response = parse(&answer, "keys/upload")?;
                machine.mark_request_as_sent(id, &response).await.map_err(machine_error)?;
            }
            AnyOutgoingRequest::KeysQuery(query) => {
                let body = json!({ "device_keys": body_of(&query.device_keys)?, "timeout": millis(query.timeout) });
                let answer = self.call(Method::POST, "/_matrix/client/v3/keys/query", &body).await?;
                let response: get_keys::v3::Response = parse(&answer, "keys/query")?;
                machine.mark_request_as_sent(id, &response).await.map_err(machine_error)?;
            }
            AnyOutgoingRequest::KeysClaim(claim) => self.claim(id, claim).await?,
            AnyOutgoingRequest::ToDeviceRequest(to_device) => self.to_device(to_device).await?,
            AnyOutgoingRequest::SignatureUpload(upload) => {
                let body = body_of(&upload.signed_keys)?;
                let answer = self.call(Method::POST, "/_matrix/client/v3/keys/signatures/upload", &body).await?;
                let response: upload_signatures::v3::Response = parse(&answer, "keys/signatures/upload")?;
                machine.mark_request_as_sent(id, &response).await.map_err(machine_error)?;
            }
            AnyOutgoingRequest::RoomMessage(message) => {
                // In-room verification, which the bridge does not start; answered so it is not
                // asked again.
                let body = body_of(&message.content)?;
                let kind = ruma::events::MessageLikeEventContent::event_type(&*message.content).to_string();
                let (room, txn, owner) = (message.room_id.as_str(), message.txn_id.as_str(), Some(self.acting().0));
                let event_id = self.homeserver.send_event(room, &kind, txn, &body, owner, None).await?;
                let event_id =
                    ruma::OwnedEventId::try_from(event_id).map_err(|e| E2eeError::Malformed(e.to_string()))?;
                let response = send_message_event::v3::Response::new(event_id);
                machine.mark_request_as_sent(id, &response).await.map_err(machine_error)?;
            }
        }
        Ok(())
    }

    /// Claims one-time keys, for Olm sessions with devices the device has none with.
    pub(super) async fn claim(&self, id: &TransactionId, claim: &claim_keys::v3::Request) -> Result<(), E2eeError> {
        let body = json!({ "one_time_keys": body_of(&claim.one_time_keys)?, "timeout": millis(claim.timeout) });
        let answer = self.call(Method::POST, "/_matrix/client/v3/keys/claim", &body).await?;
        let response: claim_keys::v3::Response = parse(&answer, "keys/claim")?;
        self.machine.mark_request_as_sent(id, &response).await.map_err(machine_error)
    }

    /// Sends to-device messages (the homeserver recognises a repeated transaction ID).
    pub(super) async fn to_device(&self, to_device: &ToDeviceRequest) -> Result<(), E2eeError> {
        let (kind, txn) = (to_device.event_type.to_string(), to_device.txn_id.to_string());
        let messages = body_of(&to_device.messages)?;
        self.homeserver.send_to_device(self.acting(), &kind, &txn, &messages).await?;
        let response = send_event_to_device::v3::Response::new();
        self.machine.mark_request_as_sent(&to_device.txn_id, &response).await.map_err(machine_error)
    }

    pub(super) async fn call(&self, method: Method, path: &str, body: &Value) -> Result<Value, E2eeError> {
        Ok(self.homeserver.device_call(self.acting(), method, path, &[], Some(body), None).await?)
    }
}
