//! Builders for auth-rule tests: events pass through `authorize` before they enter the state.

use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::Value;

use super::{AuthError, AuthInput, authorize};
use crate::event::state::{RoomState, StateEvent};

pub(super) const VERSION: &str = "org.matrix.i-d.ralston-mimi-linearized-matrix.02";
pub(super) const ROOM: &str = "!r:hub.example";
pub(super) const ALICE: &str = "@alice:hub.example";
pub(super) const BOB: &str = "@bob:part.example";
pub(super) const CAROL: &str = "@carol:part.example";

pub(super) fn obj(value: Value) -> CanonicalJsonObject {
    match CanonicalJsonValue::try_from(value).unwrap() {
        CanonicalJsonValue::Object(o) => o,
        other => panic!("not an object: {other:?}"),
    }
}

pub(super) struct Room {
    pub(super) state: RoomState,
    pub(super) len: u64,
}

impl Room {
    pub(super) fn empty() -> Self {
        Self { state: RoomState::new(), len: 0 }
    }

    /// Created by Alice, who has joined (positions 0 and 1).
    pub(super) fn new() -> Self {
        let mut room = Self::empty();
        room.send(ALICE, "m.room.create", Some(""), serde_json::json!({"room_version": VERSION})).unwrap();
        room.member(ALICE, ALICE, "join").unwrap();
        room
    }

    /// Alice's room with the given join rule and Bob joined (invited first unless public).
    pub(super) fn with_bob(join_rule: &str) -> Self {
        let mut room = Self::new();
        room.send(ALICE, "m.room.join_rules", Some(""), serde_json::json!({"join_rule": join_rule})).unwrap();
        if join_rule != "public" {
            room.member(ALICE, BOB, "invite").unwrap();
        }
        room.member(BOB, BOB, "join").unwrap();
        room
    }

    pub(super) fn check(
        &self,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<(), AuthError> {
        let content = obj(content);
        let ev = AuthInput { room_id: ROOM, event_type, state_key, sender, content: &content, position: self.len };
        authorize(VERSION, &ev, &self.state)
    }

    /// Authorizes and, if allowed, appends (state events update the state).
    pub(super) fn send(
        &mut self,
        sender: &str,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<(), AuthError> {
        self.check(sender, event_type, state_key, content.clone())?;
        self.force(sender, event_type, state_key, content);
        Ok(())
    }

    /// Appends without authorizing.
    pub(super) fn force(&mut self, sender: &str, event_type: &str, state_key: Option<&str>, content: Value) {
        if let Some(key) = state_key {
            let event =
                StateEvent { event_id: format!("${}", self.len), sender: sender.to_owned(), content: obj(content) };
            self.state.insert(event_type.to_owned(), key.to_owned(), event);
        }
        self.len += 1;
    }

    pub(super) fn member(&mut self, sender: &str, target: &str, membership: &str) -> Result<(), AuthError> {
        self.send(sender, "m.room.member", Some(target), serde_json::json!({"membership": membership}))
    }

    pub(super) fn levels(&mut self, content: Value) -> Result<(), AuthError> {
        self.send(ALICE, "m.room.power_levels", Some(""), content)
    }

    pub(super) fn id(&self, event_type: &str, state_key: &str) -> String {
        self.state.get(event_type, state_key).unwrap().event_id.clone()
    }
}
