//! Making events: a participant's LPDU, the hub's completion of it, and hub-authored events.
//!
//! Each builder computes exactly what `check::inspect` recomputes, in the order the protocol
//! fixes: hashes first (they are signed), then signatures over the redacted form, then the
//! reference hash for the ID.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int};

use super::check::Form;
use super::error::EventError;
use super::hash::{content_hash, lpdu_content_hash};
use super::keys::ServerKey;
use super::meta::EventMeta;
use super::pdu::{Pdu, UnverifiedLpdu, VerifiedLpdu};
use super::room_version::RoomVersion;
use super::sign::sign_event;

/// What an author decides about a new event; links, hashes and signatures are added by the
/// builders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTemplate {
    /// The room.
    pub room_id: String,
    /// The event type.
    pub event_type: String,
    /// The sender (a user of the server that signs as origin).
    pub sender: String,
    /// `Some` for state events.
    pub state_key: Option<String>,
    /// The content.
    pub content: CanonicalJsonObject,
    /// Milliseconds since the epoch.
    pub origin_server_ts: i64,
}

impl EventTemplate {
    fn into_object(self) -> Result<CanonicalJsonObject, EventError> {
        let ts = Int::new(self.origin_server_ts)
            .ok_or_else(|| EventError::field("origin_server_ts", "an integer within ±(2^53-1)"))?;
        let mut object = CanonicalJsonObject::new();
        object.insert("room_id".into(), CanonicalJsonValue::String(self.room_id));
        object.insert("type".into(), CanonicalJsonValue::String(self.event_type));
        object.insert("sender".into(), CanonicalJsonValue::String(self.sender));
        if let Some(state_key) = self.state_key {
            object.insert("state_key".into(), CanonicalJsonValue::String(state_key));
        }
        object.insert("content".into(), CanonicalJsonValue::Object(self.content));
        object.insert("origin_server_ts".into(), CanonicalJsonValue::Integer(ts));
        Ok(object)
    }
}

fn id_array(ids: &[String]) -> CanonicalJsonValue {
    CanonicalJsonValue::Array(ids.iter().cloned().map(CanonicalJsonValue::String).collect())
}

fn set_hash(object: &mut CanonicalJsonObject, lpdu: bool, value: String) {
    let hashes =
        object.entry("hashes".to_owned()).or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()));
    if !matches!(hashes, CanonicalJsonValue::Object(_)) {
        *hashes = CanonicalJsonValue::Object(CanonicalJsonObject::new());
    }
    if let CanonicalJsonValue::Object(hashes) = hashes {
        let sha = CanonicalJsonValue::String(value);
        if lpdu {
            let inner = CanonicalJsonObject::from([("sha256".to_owned(), sha)]);
            hashes.insert("lpdu".to_owned(), CanonicalJsonValue::Object(inner));
        } else {
            hashes.insert("sha256".to_owned(), sha);
        }
    }
}

/// A participant's LPDU for `hub`, hashed and signed by the origin.
pub fn build_lpdu(
    version: &RoomVersion,
    template: EventTemplate,
    hub: &str,
    origin_key: &ServerKey,
    origin: &str,
) -> Result<UnverifiedLpdu, EventError> {
    let mut object = template.into_object()?;
    object.insert("hub_server".into(), CanonicalJsonValue::String(hub.to_owned()));
    let _lpdu_id = sign_as(version, &mut object, origin_key, origin);
    UnverifiedLpdu::from_object(object)
}

/// The hub's completion of a verified LPDU: links, PDU hash (keeping `hashes.lpdu`), hub
/// signature beside the origin's.
pub fn complete_lpdu(
    version: &RoomVersion,
    lpdu: VerifiedLpdu,
    auth_events: &[String],
    prev_events: &[String],
    hub_key: &ServerKey,
    hub: &str,
) -> Result<Pdu, EventError> {
    let mut object = lpdu.object;
    object.insert("auth_events".into(), id_array(auth_events));
    object.insert("prev_events".into(), id_array(prev_events));
    let event_id = sign_as(version, &mut object, hub_key, hub);
    let mut meta = lpdu.meta;
    meta.auth_events = Some(auth_events.to_vec());
    meta.prev_events = Some(prev_events.to_vec());
    Pdu::from_signed_parts(object, meta, event_id, None)
}

/// A hub-authored event (no `hub_server`: the hub cannot sign twice under its own name).
pub fn build_local(
    version: &RoomVersion,
    template: EventTemplate,
    auth_events: &[String],
    prev_events: &[String],
    key: &ServerKey,
    server: &str,
) -> Result<Pdu, EventError> {
    let mut object = template.into_object()?;
    object.insert("auth_events".into(), id_array(auth_events));
    object.insert("prev_events".into(), id_array(prev_events));
    let event_id = sign_as(version, &mut object, key, server);
    let meta = EventMeta::parse(&object)?;
    Pdu::from_signed_parts(object, meta, event_id, None)
}

/// Hashes and signs an object in whatever form it is in: an LPDU gets `hashes.lpdu` and the
/// origin's signature; a PDU gets `hashes.sha256` (keeping any `hashes.lpdu`) and `server`'s
/// signature over its redacted form.
/// Returns the event ID (the reference hash) of the result.
pub fn sign_as(version: &RoomVersion, object: &mut CanonicalJsonObject, key: &ServerKey, server: &str) -> String {
    match Form::of(version, object) {
        Form::Lpdu => {
            let hash = lpdu_content_hash(object);
            object.remove("hashes");
            set_hash(object, true, hash);
        }
        Form::HubPdu | Form::Pdu => {
            let hash = content_hash(version, object);
            set_hash(object, false, hash);
        }
    }
    sign_event(version, key, server, object)
}
