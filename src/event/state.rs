//! The room state a Linearized Matrix room has after some prefix of its log.
//!
//! The auth rules decide every new event against the state *before* it, and `log state` shows it to
//! an operator, so both need the same answer to "which event currently holds this slot". A slot is
//! the pair (`type`, `state_key`); the later event in list order wins. Order in the log is the only
//! tie-breaker: timestamps are chosen by senders and never consulted.
//!
//! Entries are reference-counted so that a snapshot per log position (cloning the whole state) costs
//! one pointer copy per slot rather than a deep copy of every content object. Slots are stored as a
//! map of maps (type, then state key) so lookups by borrowed strings need no allocation.

use std::collections::BTreeMap;
use std::sync::Arc;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

/// The parts of a state event the auth rules read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEvent {
    /// The event's ID (`$` + reference hash).
    pub event_id: String,
    /// The user who sent it.
    pub sender: String,
    /// Its (unredacted, or redacted if the content hash failed) content.
    pub content: CanonicalJsonObject,
}

/// Current state of a room: one event per (`type`, `state_key`) slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomState {
    /// `type` → `state_key` → event. Inner maps are never empty (nothing is ever removed).
    events: BTreeMap<String, BTreeMap<String, Arc<StateEvent>>>,
}

impl RoomState {
    /// An empty state (the state before the create event).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The event holding slot (`event_type`, `state_key`), if any.
    #[must_use]
    pub fn get(&self, event_type: &str, state_key: &str) -> Option<&StateEvent> {
        self.events.get(event_type)?.get(state_key).map(Arc::as_ref)
    }

    /// Puts `event` into slot (`event_type`, `state_key`), replacing whatever held it.
    pub fn insert(&mut self, event_type: String, state_key: String, event: StateEvent) {
        self.events.entry(event_type).or_default().insert(state_key, Arc::new(event));
    }

    /// Every slot and its event, ordered by (`type`, `state_key`).
    pub fn iter(&self) -> impl Iterator<Item = ((&str, &str), &StateEvent)> {
        self.events.iter().flat_map(|(t, slots)| slots.iter().map(move |(k, e)| ((t.as_str(), k.as_str()), e.as_ref())))
    }

    /// Number of occupied slots.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.values().map(BTreeMap::len).sum()
    }

    /// Whether no slot is occupied (true only before the create event).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The `m.room.create` event (slot (`m.room.create`, "")).
    #[must_use]
    pub fn create(&self) -> Option<&StateEvent> {
        self.get("m.room.create", "")
    }

    /// `content.membership` of `user_id`'s `m.room.member` event; `None` when there is no such
    /// event or its membership is not a string.
    #[must_use]
    pub fn membership(&self, user_id: &str) -> Option<&str> {
        match self.get("m.room.member", user_id)?.content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RoomState, StateEvent};
    use ruma::{CanonicalJsonObject, CanonicalJsonValue};

    fn ev(id: &str, sender: &str, content: serde_json::Value) -> StateEvent {
        let CanonicalJsonValue::Object(content) = CanonicalJsonValue::try_from(content).unwrap() else {
            panic!("content must be an object");
        };
        StateEvent { event_id: id.to_owned(), sender: sender.to_owned(), content }
    }

    #[test]
    fn insert_replaces_and_get_finds_latest() {
        let mut s = RoomState::new();
        assert!(s.is_empty());
        s.insert("m.room.topic".into(), String::new(), ev("$1", "@a:x", serde_json::json!({})));
        s.insert("m.room.topic".into(), String::new(), ev("$2", "@a:x", serde_json::json!({})));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get("m.room.topic", "").unwrap().event_id, "$2");
        assert!(s.get("m.room.topic", "x").is_none());
    }

    #[test]
    fn iter_is_in_key_order() {
        let mut s = RoomState::new();
        s.insert("m.room.member".into(), "@b:x".into(), ev("$3", "@b:x", serde_json::json!({})));
        s.insert("m.room.create".into(), String::new(), ev("$1", "@a:x", serde_json::json!({})));
        s.insert("m.room.member".into(), "@a:x".into(), ev("$2", "@a:x", serde_json::json!({})));
        let keys: Vec<_> = s.iter().map(|(k, e)| (k, e.event_id.as_str())).collect();
        assert_eq!(
            keys,
            [(("m.room.create", ""), "$1"), (("m.room.member", "@a:x"), "$2"), (("m.room.member", "@b:x"), "$3"),]
        );
    }

    #[test]
    fn create_and_membership_accessors() {
        let mut s = RoomState::new();
        assert!(s.create().is_none());
        s.insert("m.room.create".into(), String::new(), ev("$1", "@a:x", serde_json::json!({})));
        s.insert("m.room.member".into(), "@a:x".into(), ev("$2", "@a:x", serde_json::json!({"membership": "join"})));
        s.insert("m.room.member".into(), "@b:x".into(), ev("$3", "@b:x", serde_json::json!({"membership": 5})));
        assert_eq!(s.create().unwrap().sender, "@a:x");
        assert_eq!(s.membership("@a:x"), Some("join"));
        assert_eq!(s.membership("@b:x"), None);
        assert_eq!(s.membership("@c:x"), None);
        let copy = s.clone();
        assert_eq!(copy, s);
        assert_eq!(copy.get("m.room.create", "").unwrap().content, CanonicalJsonObject::new());
    }
}
