//! The bridge's own Matrix device, managed through the appservice API (MSC4190, Matrix v1.17)
//! and acted as with `?user_id=…&device_id=…` (MSC4326): no `/login`, no password, no
//! interactive authentication.

use hyper::Method;
use serde_json::json;

use super::transport::{Payload, enc};
use super::{HomeserverClient, HomeserverError, string_field, with_query};

impl HomeserverClient {
    /// `PUT /_matrix/client/v3/devices/{deviceId}?user_id=…`: creates `owner`'s device
    /// `device_id` (or renames it, if it exists).
    pub async fn put_device(&self, owner: &str, device_id: &str, display_name: &str) -> Result<(), HomeserverError> {
        let path = with_query(format!("/_matrix/client/v3/devices/{}", enc(device_id)), &[("user_id", Some(owner))]);
        self.call(Method::PUT, path, Some(Payload::json(&json!({ "display_name": display_name }))?)).await?;
        Ok(())
    }

    /// `GET /_matrix/client/v3/devices?user_id=…`: the IDs of `owner`'s devices.
    pub async fn devices_of(&self, owner: &str) -> Result<Vec<String>, HomeserverError> {
        let path = with_query("/_matrix/client/v3/devices".to_owned(), &[("user_id", Some(owner))]);
        let body = self.call(Method::GET, path, None).await?;
        let devices = body.get("devices").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
        Ok(devices.iter().filter_map(|d| d.get("device_id")?.as_str().map(str::to_owned)).collect())
    }

    /// `DELETE /_matrix/client/v3/devices/{deviceId}?user_id=…` (MSC4190: no interactive
    /// authentication for an appservice).
    pub async fn delete_device(&self, owner: &str, device_id: &str) -> Result<(), HomeserverError> {
        let path = with_query(format!("/_matrix/client/v3/devices/{}", enc(device_id)), &[("user_id", Some(owner))]);
        self.call(Method::DELETE, path, None).await?;
        Ok(())
    }

    /// `GET /_matrix/client/v3/account/whoami` as `owner`'s device `device_id`: the device the
    /// homeserver says the request acted as.
    pub async fn whoami_device(&self, owner: &str, device_id: &str) -> Result<String, HomeserverError> {
        let query = [("user_id", Some(owner)), ("device_id", Some(device_id))];
        let body =
            self.call(Method::GET, with_query("/_matrix/client/v3/account/whoami".to_owned(), &query), None).await?;
        string_field(&body, "device_id", "whoami")
    }

    /// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}` as `owner`'s device
    /// `device_id`, with `messages` (user → device → content).
    pub async fn send_to_device(
        &self,
        (owner, device_id): (&str, &str),
        event_type: &str,
        txn_id: &str,
        messages: &serde_json::Value,
    ) -> Result<(), HomeserverError> {
        let path = format!("/_matrix/client/v3/sendToDevice/{}/{}", enc(event_type), enc(txn_id));
        let path = with_query(path, &[("user_id", Some(owner)), ("device_id", Some(device_id))]);
        self.call(Method::PUT, path, Some(Payload::json(&json!({ "messages": messages }))?)).await?;
        Ok(())
    }

    /// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}` as `owner`'s device
    /// `device_id` (the transaction ID is then the device's, and the homeserver remembers it across
    /// its restarts: a repeat returns the first event's ID); returns the event ID.
    pub async fn send_event_as_device(
        &self,
        acting: (&str, &str),
        (room_id, event_type, txn_id): (&str, &str, &str),
        content: &serde_json::Value,
    ) -> Result<String, HomeserverError> {
        let path = format!("/_matrix/client/v3/rooms/{}/send/{}/{}", enc(room_id), enc(event_type), enc(txn_id));
        let reply = self.device_call(acting, Method::PUT, &path, &[], Some(content), None).await?;
        string_field(&reply, "event_id", "send")
    }
}

impl HomeserverClient {
    /// `GET /_matrix/client/v3/user/{userId}/account_data/{type}` as `acting`: the content, if set.
    pub async fn account_data(
        &self,
        acting: (&str, &str),
        kind: &str,
    ) -> Result<Option<serde_json::Value>, HomeserverError> {
        let path = format!("/_matrix/client/v3/user/{}/account_data/{}", enc(acting.0), enc(kind));
        match self.device_call(acting, Method::GET, &path, &[], None, None).await {
            Ok(content) => Ok(Some(content)),
            Err(HomeserverError::Matrix { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}` as `acting`.
    pub async fn put_account_data(
        &self,
        acting: (&str, &str),
        kind: &str,
        content: &serde_json::Value,
    ) -> Result<(), HomeserverError> {
        let path = format!("/_matrix/client/v3/user/{}/account_data/{}", enc(acting.0), enc(kind));
        self.device_call(acting, Method::PUT, &path, &[], Some(content), None).await.map(drop)
    }

    /// One JSON request as `owner`'s device `device_id` (its end-to-end encryption requests, its
    /// `/sync`), with `query` beside `user_id` and `device_id`; `timeout` for a long poll.
    pub async fn device_call(
        &self,
        (owner, device_id): (&str, &str),
        method: Method,
        path: &str,
        query: &[(&str, Option<&str>)],
        body: Option<&serde_json::Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<serde_json::Value, HomeserverError> {
        let mut params = vec![("user_id", Some(owner)), ("device_id", Some(device_id))];
        params.extend_from_slice(query);
        let path = with_query(path.to_owned(), &params);
        let payload = body.map(Payload::json).transpose()?;
        let timeout = timeout.unwrap_or(self.request_timeout);
        let reply = self.transport.send(method, &path, payload, timeout, self.max_json_bytes).await?;
        if !reply.is_success() {
            return Err(reply.error());
        }
        super::parse_json(&reply.body, path.split('?').next().unwrap_or_default())
    }
}
