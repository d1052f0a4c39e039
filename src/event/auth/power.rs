//! Power levels: how much each user may do, and who may change that.
//!
//! Every other rule ends in a comparison of levels, so reading them must never fail: a value that
//! is missing (or, in a state event that somehow slipped in malformed, not an integer) falls back to
//! the documented default. Validation is strict only for a *new* `m.room.power_levels` event, which
//! is rejected unless every level is an integer and every `users` key is a user ID; then the change
//! rules stop anyone from granting more than they hold or touching a peer at or above their level.

use std::collections::BTreeSet;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::{AuthError, AuthInput};
use crate::event::state::RoomState;

/// The top-level integer fields of `m.room.power_levels`.
const LEVEL_FIELDS: [&str; 7] = ["ban", "events_default", "invite", "kick", "redact", "state_default", "users_default"];

/// The power levels in force: the current `m.room.power_levels` content, or the creator-only
/// defaults when there is none.
pub(super) struct Levels<'a> {
    content: Option<&'a CanonicalJsonObject>,
    creator: Option<&'a str>,
}

impl<'a> Levels<'a> {
    pub(super) fn from_state(state: &'a RoomState) -> Self {
        Self {
            content: state.get("m.room.power_levels", "").map(|e| &e.content),
            creator: state.create().map(|c| c.sender.as_str()),
        }
    }

    /// A top-level level, with the defaults of Matrix v10.
    fn field(&self, name: &str) -> i64 {
        if let Some(value) = self.content.and_then(|c| int(c.get(name))) {
            return value;
        }
        match name {
            "ban" | "kick" | "redact" => 50,
            // 50 once a power-levels event exists, 0 before (so early state can be set up).
            "state_default" if self.content.is_some() => 50,
            _ => 0,
        }
    }

    pub(super) fn ban(&self) -> i64 {
        self.field("ban")
    }

    pub(super) fn kick(&self) -> i64 {
        self.field("kick")
    }

    pub(super) fn invite(&self) -> i64 {
        self.field("invite")
    }

    /// `users[user_id]`, else `users_default`; without a power-levels event, 100 for the creator.
    pub(super) fn user(&self, user_id: &str) -> i64 {
        match self.content {
            None if self.creator == Some(user_id) => 100,
            None => 0,
            Some(content) => int(object(content, "users").and_then(|u| u.get(user_id)))
                .unwrap_or_else(|| self.field("users_default")),
        }
    }

    /// Level needed to send `event_type`: `events[type]`, else `state_default` for state events
    /// (any `state_key`, even empty), else `events_default`.
    pub(super) fn required_for(&self, event_type: &str, is_state: bool) -> i64 {
        self.content
            .and_then(|c| int(object(c, "events").and_then(|e| e.get(event_type))))
            .unwrap_or_else(|| self.field(if is_state { "state_default" } else { "events_default" }))
    }
}

/// Rule 9: a new `m.room.power_levels` event (the sender is already known to be joined and to have
/// the level required for the event type).
pub(super) fn check_power_levels(ev: &AuthInput<'_>, state: &RoomState, levels: &Levels<'_>) -> Result<(), AuthError> {
    validate(ev.content)?;
    let Some(current) = state.get("m.room.power_levels", "") else {
        return Ok(());
    };
    let old = &current.content;
    let new = ev.content;
    let checker = Checker { sender: ev.sender, level: levels.user(ev.sender) };
    for field in LEVEL_FIELDS {
        checker.entry(field.to_owned(), int(old.get(field)), int(new.get(field)), false)?;
    }
    for (key, was, now) in changed(object(old, "events"), object(new, "events")) {
        checker.entry(format!("events[{key}]"), was, now, false)?;
    }
    for (key, was, now) in changed(object(old, "users"), object(new, "users")) {
        checker.entry(format!("users[{key}]"), was, now, key != ev.sender)?;
    }
    Ok(())
}

struct Checker<'a> {
    sender: &'a str,
    level: i64,
}

impl Checker<'_> {
    /// One added, changed or removed entry. `peer` marks another user's `users` entry, which the
    /// sender may only change while it is strictly below their own level (Matrix v10).
    fn entry(&self, field: String, old: Option<i64>, new: Option<i64>, peer: bool) -> Result<(), AuthError> {
        let reason = if old == new {
            return Ok(());
        } else if peer && old.is_some_and(|o| o >= self.level) {
            "the user's current level is not below the sender's"
        } else if old.is_some_and(|o| o > self.level) {
            "the current value is above the sender's level"
        } else if new.is_some_and(|n| n > self.level) {
            "the new value is above the sender's level"
        } else {
            return Ok(());
        };
        Err(AuthError::PowerLevelChangeForbidden {
            sender: self.sender.to_owned(),
            sender_level: self.level,
            field,
            old,
            new,
            reason,
        })
    }
}

/// Keys whose integer value differs between two maps, with old and new value.
fn changed<'a>(
    old: Option<&'a CanonicalJsonObject>,
    new: Option<&'a CanonicalJsonObject>,
) -> Vec<(&'a str, Option<i64>, Option<i64>)> {
    let keys: BTreeSet<&str> = old.into_iter().chain(new).flat_map(|m| m.keys().map(String::as_str)).collect();
    keys.into_iter()
        .map(|k| (k, int(old.and_then(|m| m.get(k))), int(new.and_then(|m| m.get(k)))))
        .filter(|(_, was, now)| was != now)
        .collect()
}

/// Rule 9.1–9.3: every level an integer, `events`/`users` objects of integers, `users` keyed by
/// user IDs.
fn validate(content: &CanonicalJsonObject) -> Result<(), AuthError> {
    let invalid = |reason: String| Err(AuthError::InvalidPowerLevels { reason });
    for field in LEVEL_FIELDS {
        if let Some(value) = content.get(field)
            && int(Some(value)).is_none()
        {
            return invalid(format!("`{field}` must be an integer, found {}", kind(value)));
        }
    }
    for map in ["events", "users"] {
        let Some(value) = content.get(map) else {
            continue;
        };
        let CanonicalJsonValue::Object(entries) = value else {
            return invalid(format!("`{map}` must be an object, found {}", kind(value)));
        };
        for (key, value) in entries {
            if map == "users" && !crate::event::meta::is_user_id(key) {
                return invalid(format!("`users` key {key:?} is not a valid user ID"));
            }
            if int(Some(value)).is_none() {
                return invalid(format!("`{map}[{key}]` must be an integer, found {}", kind(value)));
            }
        }
    }
    Ok(())
}

fn int(value: Option<&CanonicalJsonValue>) -> Option<i64> {
    match value {
        Some(CanonicalJsonValue::Integer(i)) => Some(i64::from(*i)),
        _ => None,
    }
}

fn object<'a>(content: &'a CanonicalJsonObject, key: &str) -> Option<&'a CanonicalJsonObject> {
    match content.get(key) {
        Some(CanonicalJsonValue::Object(o)) => Some(o),
        _ => None,
    }
}

fn kind(value: &CanonicalJsonValue) -> &'static str {
    match value {
        CanonicalJsonValue::Null => "null",
        CanonicalJsonValue::Bool(_) => "a boolean",
        CanonicalJsonValue::Integer(_) => "an integer",
        CanonicalJsonValue::String(_) => "a string",
        CanonicalJsonValue::Array(_) => "an array",
        CanonicalJsonValue::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::AuthError;
    use super::super::test_util::{ALICE, BOB, CAROL, Room};

    /// Alice (creator), Bob and Carol joined to a public room; no power-levels event yet.
    fn room() -> Room {
        let mut room = Room::with_bob("public");
        room.member(CAROL, CAROL, "join").unwrap();
        room
    }

    fn levels(bob: i64, carol: i64) -> serde_json::Value {
        json!({"users": {ALICE: 100, BOB: bob, CAROL: carol}})
    }

    #[test]
    fn first_power_levels_allowed() {
        let mut room = room();
        assert_eq!(room.levels(levels(50, 50)), Ok(()));
    }

    #[test]
    fn string_level_rejected() {
        let mut room = room();
        let err = room.levels(json!({"ban": "50"}));
        assert!(matches!(err, Err(AuthError::InvalidPowerLevels { ref reason }) if reason.contains("`ban`")));
    }

    #[test]
    fn non_integer_maps_rejected() {
        let mut room = room();
        for content in [
            json!({"events": {"m.room.name": "50"}}),
            json!({"events": []}),
            json!({"users": {ALICE: true}}),
            json!({"users": 5}),
        ] {
            let err = room.levels(content.clone());
            assert!(matches!(err, Err(AuthError::InvalidPowerLevels { .. })), "{content}");
        }
    }

    #[test]
    fn users_key_must_be_user_id() {
        let mut room = room();
        let err = room.levels(json!({"users": {"alice": 100}}));
        assert!(matches!(err, Err(AuthError::InvalidPowerLevels { ref reason }) if reason.contains("\"alice\"")));
        assert!(crate::event::meta::is_user_id("@a.b_c=d/e+f-9:example.org:8448"));
        for bad in ["", "@", "@:x", "@a:", "@a b:x", "a:x", "@a"] {
            assert!(!crate::event::meta::is_user_id(bad), "{bad}");
        }
        assert!(!crate::event::meta::is_user_id(&format!("@{}:x", "a".repeat(254))));
    }

    #[test]
    fn demote_peer_at_equal_level_rejected() {
        let mut room = room();
        room.levels(levels(50, 50)).unwrap();
        let err = room.send(BOB, "m.room.power_levels", Some(""), levels(50, 0));
        assert!(matches!(err, Err(AuthError::PowerLevelChangeForbidden { ref field, old: Some(50), new: Some(0), .. })
            if *field == format!("users[{CAROL}]")));
    }

    #[test]
    fn demote_lower_peer_allowed() {
        let mut room = room();
        room.levels(levels(50, 20)).unwrap();
        assert_eq!(room.send(BOB, "m.room.power_levels", Some(""), levels(50, 0)), Ok(()));
        assert_eq!(room.send(BOB, "m.room.power_levels", Some(""), levels(50, 50)), Ok(()));
    }

    #[test]
    fn removing_peer_at_equal_level_rejected() {
        let mut room = room();
        room.levels(levels(50, 50)).unwrap();
        let err = room.send(BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}}));
        assert!(matches!(err, Err(AuthError::PowerLevelChangeForbidden { new: None, .. })));
    }

    #[test]
    fn raise_above_own_level_rejected() {
        let mut room = room();
        room.levels(levels(50, 0)).unwrap();
        let err = room.send(BOB, "m.room.power_levels", Some(""), levels(51, 0));
        assert!(matches!(err, Err(AuthError::PowerLevelChangeForbidden { new: Some(51), .. })));
        let err = room.send(BOB, "m.room.power_levels", Some(""), levels(50, 60));
        assert!(matches!(err, Err(AuthError::PowerLevelChangeForbidden { new: Some(60), .. })));
    }

    #[test]
    fn lowering_own_entry_allowed() {
        let mut room = room();
        room.levels(levels(50, 50)).unwrap();
        assert_eq!(room.send(BOB, "m.room.power_levels", Some(""), levels(10, 50)), Ok(()));
        let err = room.send(BOB, "m.room.power_levels", Some(""), levels(10, 50));
        assert!(matches!(err, Err(AuthError::InsufficientPower { have: 10, need: 50, .. })));
    }

    #[test]
    fn top_level_changes_bounded_by_sender_level() {
        let mut room = room();
        room.levels(json!({"users": {ALICE: 100, BOB: 50}, "ban": 100})).unwrap();
        let err = room.send(BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 50}, "ban": 50}));
        assert!(
            matches!(err, Err(AuthError::PowerLevelChangeForbidden { ref field, old: Some(100), .. }) if field == "ban")
        );
        let err = room.send(
            BOB,
            "m.room.power_levels",
            Some(""),
            json!({"users": {ALICE: 100, BOB: 50}, "ban": 100, "kick": 60}),
        );
        assert!(
            matches!(err, Err(AuthError::PowerLevelChangeForbidden { ref field, old: None, new: Some(60), .. }) if field == "kick")
        );
        let ok = json!({"users": {ALICE: 100, BOB: 50}, "ban": 100, "kick": 50});
        assert_eq!(room.send(BOB, "m.room.power_levels", Some(""), ok), Ok(()));
    }

    #[test]
    fn events_entries_bounded_by_sender_level() {
        let mut room = room();
        room.levels(json!({"users": {ALICE: 100, BOB: 50}, "events": {"m.room.name": 75}})).unwrap();
        let base = |events: serde_json::Value| json!({"users": {ALICE: 100, BOB: 50}, "events": events});
        let err = room.send(BOB, "m.room.power_levels", Some(""), base(json!({})));
        assert!(
            matches!(err, Err(AuthError::PowerLevelChangeForbidden { ref field, .. }) if field == "events[m.room.name]")
        );
        let err = room.send(BOB, "m.room.power_levels", Some(""), base(json!({"m.room.name": 75, "m.room.topic": 51})));
        assert!(matches!(err, Err(AuthError::PowerLevelChangeForbidden { new: Some(51), .. })));
        let ok = base(json!({"m.room.name": 75, "m.room.topic": 50}));
        assert_eq!(room.send(BOB, "m.room.power_levels", Some(""), ok), Ok(()));
    }

    #[test]
    fn power_levels_needs_state_level_first() {
        let mut room = room();
        room.levels(json!({"users": {ALICE: 100, BOB: 49}})).unwrap();
        let err = room.send(BOB, "m.room.power_levels", Some(""), json!({"users": {ALICE: 100, BOB: 49}, "invite": 1}));
        assert!(matches!(err, Err(AuthError::InsufficientPower { have: 49, need: 50, .. })));
    }

    #[test]
    fn error_message_names_levels() {
        let mut room = room();
        room.levels(levels(50, 50)).unwrap();
        let err = room.send(BOB, "m.room.power_levels", Some(""), levels(50, 0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "@bob:part.example (power level 50) may not change users[@carol:part.example] from 50 \
             to 0: the user's current level is not below the sender's"
        );
    }
}
