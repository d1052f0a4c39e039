//! Rooms as a ghost or the bot: create, invite, join, leave, send, state, redact.
//!
//! `as_user: None` acts as the appservice's own user (`sender_localpart`); `Some(mxid)` adds
//! `?user_id=` and acts as that user, which must be in the appservice's namespace. Sends and
//! redactions carry the caller's txnId: Synapse de-duplicates per (request path, appservice) and
//! only in memory, so txnIds must be unique across ghosts and restarts and the caller keeps the
//! resulting event ID itself.

use hyper::Method;
use serde::Serialize;
use serde_json::{Value, json};

use super::transport::{Payload, enc};
use super::{HomeserverClient, HomeserverError, string_field, with_query};

impl HomeserverClient {
    /// `POST /_matrix/client/v3/createRoom` with `body` as is; returns the new room's ID.
    /// Not idempotent: a retry after a lost answer may create a second room.
    pub async fn create_room<B: Serialize + ?Sized>(
        &self,
        as_user: Option<&str>,
        body: &B,
    ) -> Result<String, HomeserverError> {
        let path = with_query("/_matrix/client/v3/createRoom".to_owned(), &[("user_id", as_user)]);
        let reply = self.call(Method::POST, path, Some(Payload::json(body)?)).await?;
        string_field(&reply, "room_id", "createRoom")
    }

    /// `POST /_matrix/client/v3/rooms/{roomId}/invite`: `as_user` invites `target`.
    pub async fn invite(&self, room_id: &str, as_user: Option<&str>, target: &str) -> Result<(), HomeserverError> {
        let path = with_query(format!("/_matrix/client/v3/rooms/{}/invite", enc(room_id)), &[("user_id", as_user)]);
        self.call(Method::POST, path, Some(Payload::json(&json!({ "user_id": target }))?)).await?;
        Ok(())
    }

    /// `POST /_matrix/client/v3/rooms/{roomId}/kick`: `as_user` removes `target`, saying why.
    pub async fn kick(
        &self,
        room_id: &str,
        as_user: Option<&str>,
        target: &str,
        reason: &str,
    ) -> Result<(), HomeserverError> {
        let path = with_query(format!("/_matrix/client/v3/rooms/{}/kick", enc(room_id)), &[("user_id", as_user)]);
        self.call(Method::POST, path, Some(Payload::json(&json!({ "user_id": target, "reason": reason }))?)).await?;
        Ok(())
    }

    /// `POST /_matrix/client/v3/join/{roomIdOrAlias}`; returns the room ID joined.
    pub async fn join(&self, room_id_or_alias: &str, as_user: Option<&str>) -> Result<String, HomeserverError> {
        let path = with_query(format!("/_matrix/client/v3/join/{}", enc(room_id_or_alias)), &[("user_id", as_user)]);
        let reply = self.call(Method::POST, path, Some(Payload::json(&json!({}))?)).await?;
        string_field(&reply, "room_id", "join")
    }

    /// `POST /_matrix/client/v3/rooms/{roomId}/leave`.
    pub async fn leave(&self, room_id: &str, as_user: Option<&str>) -> Result<(), HomeserverError> {
        let path = with_query(format!("/_matrix/client/v3/rooms/{}/leave", enc(room_id)), &[("user_id", as_user)]);
        self.call(Method::POST, path, Some(Payload::json(&json!({}))?)).await?;
        Ok(())
    }

    /// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`; returns the event ID.
    ///
    /// `ts` (milliseconds since the epoch) sets the event's `origin_server_ts` (appservice
    /// timestamp massaging); it does not change the event's place in the room. Repeating the
    /// same `txn_id` soon after returns the same event ID instead of sending twice.
    pub async fn send_event<C: Serialize + ?Sized>(
        &self,
        room_id: &str,
        event_type: &str,
        txn_id: &str,
        content: &C,
        as_user: Option<&str>,
        ts: Option<i64>,
    ) -> Result<String, HomeserverError> {
        let ts = ts.map(|t| t.to_string());
        let path = with_query(
            format!("/_matrix/client/v3/rooms/{}/send/{}/{}", enc(room_id), enc(event_type), enc(txn_id)),
            &[("user_id", as_user), ("ts", ts.as_deref())],
        );
        let reply = self.call(Method::PUT, path, Some(Payload::json(content)?)).await?;
        string_field(&reply, "event_id", "send")
    }

    /// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`; returns the event
    /// ID. `ts` as in [`send_event`](Self::send_event). Setting the same content again is a
    /// no-op on the homeserver, which answers with the current event's ID.
    pub async fn send_state<C: Serialize + ?Sized>(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: &C,
        as_user: Option<&str>,
        ts: Option<i64>,
    ) -> Result<String, HomeserverError> {
        let ts = ts.map(|t| t.to_string());
        let path = with_query(
            format!("/_matrix/client/v3/rooms/{}/state/{}/{}", enc(room_id), enc(event_type), enc(state_key)),
            &[("user_id", as_user), ("ts", ts.as_deref())],
        );
        let reply = self.call(Method::PUT, path, Some(Payload::json(content)?)).await?;
        string_field(&reply, "event_id", "state")
    }

    /// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`; returns the redaction's
    /// event ID.
    pub async fn redact(
        &self,
        room_id: &str,
        event_id: &str,
        txn_id: &str,
        as_user: Option<&str>,
        reason: Option<&str>,
    ) -> Result<String, HomeserverError> {
        let path = with_query(
            format!("/_matrix/client/v3/rooms/{}/redact/{}/{}", enc(room_id), enc(event_id), enc(txn_id)),
            &[("user_id", as_user)],
        );
        let body = reason.map_or_else(|| json!({}), |reason| json!({ "reason": reason }));
        let reply = self.call(Method::PUT, path, Some(Payload::json(&body)?)).await?;
        string_field(&reply, "event_id", "redact")
    }

    /// `GET /_matrix/client/v3/rooms/{roomId}/members?not_membership=leave`: the room's members
    /// (joined, invited, banned or knocking) and their membership, as `as_user` (a member) sees
    /// them.
    pub async fn members(
        &self,
        room_id: &str,
        as_user: Option<&str>,
    ) -> Result<Vec<(String, String)>, HomeserverError> {
        let path = with_query(
            format!("/_matrix/client/v3/rooms/{}/members", enc(room_id)),
            &[("not_membership", Some("leave")), ("user_id", as_user)],
        );
        let reply = self.call(Method::GET, path, None).await?;
        let chunk = reply.get("chunk").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let member = |event: &Value| {
            let user = event.get("state_key")?.as_str()?;
            Some((user.to_owned(), event.pointer("/content/membership")?.as_str()?.to_owned()))
        };
        Ok(chunk.iter().filter_map(member).collect())
    }

    /// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`: the content of one
    /// state event, or `None` if the room has no such state (404). Not being allowed to see the
    /// room (403) stays an error.
    pub async fn room_state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        as_user: Option<&str>,
    ) -> Result<Option<Value>, HomeserverError> {
        let path = with_query(
            format!("/_matrix/client/v3/rooms/{}/state/{}/{}", enc(room_id), enc(event_type), enc(state_key)),
            &[("user_id", as_user)],
        );
        match self.call(Method::GET, path, None).await {
            Ok(content) => Ok(Some(content)),
            Err(HomeserverError::Matrix { status: 404, errcode, .. }) if errcode == "M_NOT_FOUND" => Ok(None),
            Err(e) => Err(e),
        }
    }
}
