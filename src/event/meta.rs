//! The typed header of an event, read once from its JSON with every field's shape checked.
//!
//! Hashes and signatures are computed over the JSON object itself; this header exists so that
//! code deciding about an event (auth rules, linking, routing) never re-reads untyped JSON.

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::error::EventError;

/// Longest event type or state key, in bytes.
pub const MAX_ID_BYTES: usize = 255;

/// The fields of an event that code decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// `room_id`.
    pub room_id: String,
    /// `type`.
    pub event_type: String,
    /// `sender`.
    pub sender: String,
    /// `state_key`; present (even empty) makes a state event.
    pub state_key: Option<String>,
    /// `origin_server_ts`, milliseconds.
    pub origin_server_ts: i64,
    /// `hub_server`, set on LPDUs and on PDUs a hub completed from one.
    pub hub_server: Option<String>,
    /// `prev_events`, absent on LPDUs.
    pub prev_events: Option<Vec<String>>,
    /// `auth_events`, absent on LPDUs.
    pub auth_events: Option<Vec<String>>,
}

impl EventMeta {
    /// Reads and checks the header fields of an event object.
    pub fn parse(object: &CanonicalJsonObject) -> Result<Self, EventError> {
        let room_id = string(object, "room_id")?;
        if !is_room_id(&room_id) {
            return Err(EventError::field("room_id", "a room ID `!opaque:server`"));
        }
        let sender = string(object, "sender")?;
        if !is_user_id(&sender) {
            return Err(EventError::field("sender", "a user ID `@localpart:server`"));
        }
        let event_type = string(object, "type")?;
        if event_type.is_empty() || event_type.len() > MAX_ID_BYTES {
            return Err(EventError::field("type", "a string of 1 to 255 bytes"));
        }
        let state_key = match object.get("state_key") {
            None => None,
            Some(CanonicalJsonValue::String(s)) if s.len() <= MAX_ID_BYTES => Some(s.clone()),
            Some(_) => return Err(EventError::field("state_key", "a string of at most 255 bytes")),
        };
        let origin_server_ts = match object.get("origin_server_ts") {
            Some(CanonicalJsonValue::Integer(ts)) if i64::from(*ts) >= 0 => i64::from(*ts),
            _ => {
                return Err(EventError::field("origin_server_ts", "a non-negative integer (milliseconds)"));
            }
        };
        if !matches!(object.get("content"), Some(CanonicalJsonValue::Object(_))) {
            return Err(EventError::field("content", "an object"));
        }
        let hub_server = match object.get("hub_server") {
            None => None,
            Some(CanonicalJsonValue::String(s)) if is_server_name(s) => Some(s.clone()),
            Some(_) => return Err(EventError::field("hub_server", "a server name")),
        };
        Ok(Self {
            room_id,
            event_type,
            sender,
            state_key,
            origin_server_ts,
            hub_server,
            prev_events: event_ids(object, "prev_events")?,
            auth_events: event_ids(object, "auth_events")?,
        })
    }

    /// The origin: the server part of the sender.
    pub fn origin(&self) -> &str {
        server_of(&self.sender)
    }

    /// Whether this is a state event.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }
}

/// The server part of a user or room ID (after the first `:`).
pub fn server_of(id: &str) -> &str {
    id.split_once(':').map_or("", |(_, server)| server)
}

fn string(object: &CanonicalJsonObject, field: &'static str) -> Result<String, EventError> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(s)) => Ok(s.clone()),
        _ => Err(EventError::field(field, "a string")),
    }
}

fn event_ids(object: &CanonicalJsonObject, field: &'static str) -> Result<Option<Vec<String>>, EventError> {
    let Some(value) = object.get(field) else {
        return Ok(None);
    };
    let CanonicalJsonValue::Array(items) = value else {
        return Err(EventError::field(field, "an array of event IDs"));
    };
    items
        .iter()
        .map(|item| match item {
            CanonicalJsonValue::String(id) if id.starts_with('$') && id.len() <= MAX_ID_BYTES => Ok(id.clone()),
            _ => Err(EventError::field(field, "an array of event IDs (`$…`)")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// `hostname[:port]` with the characters the grammar allows.
pub fn is_server_name(name: &str) -> bool {
    let (host, port) = match name.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (name, None),
    };
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `!opaque:server`.
pub fn is_room_id(id: &str) -> bool {
    id.len() <= MAX_ID_BYTES
        && id.strip_prefix('!').and_then(|rest| rest.split_once(':')).is_some_and(|(opaque, server)| {
            !opaque.is_empty()
                && opaque.bytes().all(|b| b.is_ascii_alphanumeric() || b".~_-".contains(&b))
                && is_server_name(server)
        })
}

/// `@localpart:server` (historical user IDs with upper case are accepted, as Matrix does).
pub fn is_user_id(id: &str) -> bool {
    id.len() <= MAX_ID_BYTES
        && id.strip_prefix('@').and_then(|rest| rest.split_once(':')).is_some_and(|(local, server)| {
            !local.is_empty() && local.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b':') && is_server_name(server)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::canonical::parse_object;

    #[test]
    fn identifier_grammar() {
        assert!(is_server_name("hub.example") && is_server_name("localhost:8448") && is_server_name("a-b.c"));
        assert!(!is_server_name("") && !is_server_name("a b") && !is_server_name("h:") && !is_server_name("h:123456"));
        assert!(
            is_room_id("!abc_~.-:hub.example") && !is_room_id("!:h") && !is_room_id("#a:h") && !is_room_id("!a b:h")
        );
        assert!(is_user_id("@alice:hub.example") && !is_user_id("alice:h") && !is_user_id("@:h") && !is_user_id("@a"));
    }

    #[test]
    fn header_errors_name_the_field() {
        let base = r#"{"room_id":"!r:h","sender":"@a:h","type":"m.t","origin_server_ts":1,"content":{}}"#;
        let meta = EventMeta::parse(&parse_object(base.as_bytes()).unwrap()).unwrap();
        assert_eq!(meta.origin(), "h");
        assert!(!meta.is_state());
        for (from, to, field) in [
            (r#""sender":"@a:h""#, r#""sender":"a""#, "sender"),
            (r#""origin_server_ts":1"#, r#""origin_server_ts":"1""#, "origin_server_ts"),
            (r#""content":{}"#, r#""content":[]"#, "content"),
            (r#""type":"m.t""#, r#""type":"m.t","prev_events":["x"]"#, "prev_events"),
            (r#""type":"m.t""#, r#""type":"m.t","state_key":1"#, "state_key"),
        ] {
            let bad = base.replace(from, to);
            let err = EventMeta::parse(&parse_object(bad.as_bytes()).unwrap()).unwrap_err();
            assert!(matches!(&err, EventError::Field { field: f, .. } if f == field), "{bad}: {err}");
        }
    }
}
