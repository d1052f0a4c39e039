//! Auth-event selection and the auth rules of room version
//! `org.matrix.i-d.ralston-mimi-linearized-matrix.02`.
//!
//! The hub must refuse anything the rules forbid before appending it, and every participant re-runs
//! the same rules to catch a misbehaving hub, so the outcome has to be a pure function of the event,
//! its log position and the state before it: no I/O, no clocks, no hash-ordered collections. On a
//! linear log the state before an event is simply the current state, so the DAG-era checks against
//! each event's own `auth_events` collapse into [`check_auth_events`] plus [`authorize`].
//!
//! The rules are Matrix room v10's minus restricted joins, third-party invites, `notifications` and
//! `m.federate`. Membership rules live in `auth_member.rs`, power-level rules in `auth_power.rs`.

use std::collections::BTreeSet;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::state::RoomState;

mod member;
mod power;

use power::Levels;

/// What the auth rules need to know about the event being authorized.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The room the event claims to be in.
    pub room_id: &'a str,
    /// `type`.
    pub event_type: &'a str,
    /// `state_key`; `Some` (even `Some("")`) makes it a state event.
    pub state_key: Option<&'a str>,
    /// `sender`.
    pub sender: &'a str,
    /// `content`.
    pub content: &'a CanonicalJsonObject,
    /// 0-based position this event will take in the room's log (the create event is 0, so the
    /// event right after the create is at position 1).
    pub position: u64,
}

/// Why an event is not allowed. Every message names the users and levels involved.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum AuthError {
    /// An `m.room.create` event somewhere other than the start of the log.
    #[error("m.room.create must be the first event of the room, but would be at position {position}")]
    CreateNotFirst { position: u64 },
    /// The first event of a log is not `m.room.create`.
    #[error("the first event of a room must be m.room.create, not {event_type}")]
    FirstEventNotCreate { event_type: String },
    /// `m.room.create` whose `state_key` is absent or not empty.
    #[error("m.room.create must have an empty state_key, found {}", show_str(.state_key.as_deref()))]
    CreateStateKey { state_key: Option<String> },
    /// The creator's server differs from the room ID's server.
    #[error("m.room.create sender {sender} is not on the room's server {room_server}")]
    CreateWrongServer { sender: String, room_server: String },
    /// `content.room_version` of the create event is missing or not this room's version.
    #[error("room version must be {expected}, found {}", show_str(.found.as_deref()))]
    WrongRoomVersion { expected: String, found: Option<String> },
    /// The create event lists auth events.
    #[error("m.room.create must list no auth events, found {count}")]
    CreateHasAuthEvents { count: usize },
    /// The state has no `m.room.create` event.
    #[error("the room has no m.room.create event")]
    MissingCreate,
    /// The event's `auth_events` do not include the create event.
    #[error("auth_events does not include the m.room.create event")]
    CreateNotListed,
    /// The same event ID is listed twice in `auth_events`.
    #[error("auth event {event_id} is listed more than once")]
    DuplicateAuthEvent { event_id: String },
    /// A listed auth event is current state, but of a slot this event may not cite.
    #[error("auth event {event_id} ({event_type}, {state_key:?}) is not allowed for this event")]
    UnexpectedAuthEvent { event_id: String, event_type: String, state_key: String },
    /// A listed auth event is not the current event of any state slot (old, unknown or rejected).
    #[error("auth event {event_id} is not part of the room's current state")]
    StaleAuthEvent { event_id: String },
    /// An `m.room.member` event without a `state_key`.
    #[error("{event_type} event from {sender} has no state_key")]
    MissingStateKey { event_type: String, sender: String },
    /// An `m.room.member` event without a string `content.membership`.
    #[error("m.room.member event for {target} has no string content.membership")]
    MissingMembership { target: String },
    /// `content.membership` is not one of join, invite, leave, ban, knock.
    #[error("unknown membership {membership:?} for {target}")]
    UnknownMembership { target: String, membership: String },
    /// The `state_key` must name the sender (own membership, or a `@`-prefixed state key).
    #[error("{event_type} with state_key {state_key} must be sent by {state_key}, not {sender}")]
    StateKeyNotSender { event_type: String, sender: String, state_key: String },
    /// The sender must be joined for this event.
    #[error("sender {sender} is not joined to the room (membership: {})", show_str(.membership.as_deref()))]
    NotJoined { sender: String, membership: Option<String> },
    /// The user the event concerns is banned.
    #[error("{user} is banned from the room")]
    Banned { user: String },
    /// The join rule does not let this user join or knock.
    #[error("join rule {join_rule:?} does not let {sender} {action} (membership: {})", show_str(.membership.as_deref()))]
    JoinRuleForbids { sender: String, join_rule: String, action: &'static str, membership: Option<String> },
    /// The target's current membership does not allow this transition.
    #[error("{target} cannot go from membership {} to {to}", show_str(.from.as_deref()))]
    MembershipConflict { target: String, from: Option<String>, to: String },
    /// The sender's power level is below what the action needs.
    #[error("{sender} has power level {have} but needs {need} to {action}")]
    InsufficientPower { sender: String, have: i64, need: i64, action: String },
    /// The target's power level is not below the sender's.
    #[error(
        "{sender} (power level {sender_level}) cannot {action} {target} (power level {target_level}): target must be below the sender"
    )]
    TargetPowerTooHigh { sender: String, sender_level: i64, target: String, target_level: i64, action: &'static str },
    /// `m.room.power_levels` content is malformed.
    #[error("invalid m.room.power_levels content: {reason}")]
    InvalidPowerLevels { reason: String },
    /// A power-level change the sender is not powerful enough to make.
    #[error(
        "{sender} (power level {sender_level}) may not change {field} from {} to {}: {reason}",
        show_level(*.old), show_level(*.new)
    )]
    PowerLevelChangeForbidden {
        sender: String,
        sender_level: i64,
        field: String,
        old: Option<i64>,
        new: Option<i64>,
        reason: &'static str,
    },
}

/// An optional string for a message: `none` when absent, `""` when empty, else as is.
fn show_str(value: Option<&str>) -> String {
    match value {
        None => "none".to_owned(),
        Some("") => "\"\"".to_owned(),
        Some(v) => v.to_owned(),
    }
}

fn show_level(value: Option<i64>) -> String {
    value.map_or_else(|| "unset".to_owned(), |v| v.to_string())
}

/// The (type, `state_key`) slots this event may cite, in selection order. Empty for the create event.
fn allowed_slots<'a>(ev: &AuthInput<'a>) -> Vec<(&'static str, &'a str)> {
    if ev.event_type == "m.room.create" {
        return Vec::new();
    }
    let mut slots = vec![("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", ev.sender)];
    if ev.event_type == "m.room.member" {
        if let Some(target) = ev.state_key.filter(|t| *t != ev.sender) {
            slots.push(("m.room.member", target));
        }
        if matches!(content_str(ev.content, "membership"), Some("join" | "invite")) {
            slots.push(("m.room.join_rules", ""));
        }
    }
    slots
}

/// Which event IDs the hub puts in `auth_events`, in this order: create, current power levels (if
/// any), sender's member (if any), and for `m.room.member` also the target's member (if any, skipped
/// when target == sender) and current join rules when `content.membership` is "join" or "invite".
/// De-duplicated. The create event gets none.
#[must_use]
pub fn select_auth_events(ev: &AuthInput<'_>, state: &RoomState) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for (event_type, state_key) in allowed_slots(ev) {
        if let Some(event) = state.get(event_type, state_key)
            && !ids.contains(&event.event_id)
        {
            ids.push(event.event_id.clone());
        }
    }
    ids
}

/// Checks an event's listed `auth_events` against the current state: the create event must list
/// none; any other event must list the create event, no ID twice, and only IDs that are the current
/// event of a slot [`select_auth_events`] could have chosen. Completeness is not required.
///
/// # Errors
///
/// [`AuthError::CreateHasAuthEvents`], [`AuthError::MissingCreate`] (no create in `state`),
/// [`AuthError::DuplicateAuthEvent`], [`AuthError::UnexpectedAuthEvent`] (current state of a slot
/// this event may not cite), [`AuthError::StaleAuthEvent`] (not current state at all) or
/// [`AuthError::CreateNotListed`], checked in that order.
pub fn check_auth_events(ev: &AuthInput<'_>, listed: &[String], state: &RoomState) -> Result<(), AuthError> {
    if ev.event_type == "m.room.create" {
        return if listed.is_empty() { Ok(()) } else { Err(AuthError::CreateHasAuthEvents { count: listed.len() }) };
    }
    if state.create().is_none() {
        return Err(AuthError::MissingCreate);
    }
    let slots = allowed_slots(ev);
    let mut seen = BTreeSet::new();
    let mut cites_create = false;
    for id in listed {
        if !seen.insert(id.as_str()) {
            return Err(AuthError::DuplicateAuthEvent { event_id: id.clone() });
        }
        let slot = slots.iter().find(|(t, k)| state.get(t, k).is_some_and(|e| e.event_id == *id));
        match slot {
            Some((t, _)) => cites_create |= *t == "m.room.create",
            None => return Err(not_allowed(id, state)),
        }
    }
    if cites_create { Ok(()) } else { Err(AuthError::CreateNotListed) }
}

/// The error for a listed ID outside the allowed slots: unexpected if it is current state of some
/// other slot, stale otherwise.
fn not_allowed(id: &str, state: &RoomState) -> AuthError {
    match state.iter().find(|(_, e)| e.event_id == id) {
        Some(((event_type, state_key), _)) => AuthError::UnexpectedAuthEvent {
            event_id: id.to_owned(),
            event_type: event_type.to_owned(),
            state_key: state_key.to_owned(),
        },
        None => AuthError::StaleAuthEvent { event_id: id.to_owned() },
    }
}

/// The auth rules (digest §7.2, Matrix v10 where the digest defers to it) against the state
/// *before* this event. `room_version` is the room's version ID; the create event's
/// `content.room_version` must equal it.
///
/// # Errors
///
/// The first rule the event breaks, as an [`AuthError`] naming the users and levels involved.
pub fn authorize(room_version: &str, ev: &AuthInput<'_>, state: &RoomState) -> Result<(), AuthError> {
    if ev.event_type == "m.room.create" {
        return check_create(room_version, ev);
    }
    if ev.position == 0 {
        return Err(AuthError::FirstEventNotCreate { event_type: ev.event_type.to_owned() });
    }
    if state.create().is_none() {
        return Err(AuthError::MissingCreate);
    }
    let levels = Levels::from_state(state);
    if ev.event_type == "m.room.member" {
        return member::check(ev, state, &levels);
    }
    let membership = state.membership(ev.sender);
    if membership != Some("join") {
        return Err(AuthError::NotJoined { sender: ev.sender.to_owned(), membership: membership.map(str::to_owned) });
    }
    let have = levels.user(ev.sender);
    let need = levels.required_for(ev.event_type, ev.state_key.is_some());
    if have < need {
        return Err(AuthError::InsufficientPower {
            sender: ev.sender.to_owned(),
            have,
            need,
            action: format!("send {}", ev.event_type),
        });
    }
    if let Some(state_key) = ev.state_key
        && state_key.starts_with('@')
        && state_key != ev.sender
    {
        return Err(AuthError::StateKeyNotSender {
            event_type: ev.event_type.to_owned(),
            sender: ev.sender.to_owned(),
            state_key: state_key.to_owned(),
        });
    }
    if ev.event_type == "m.room.power_levels" {
        return power::check_power_levels(ev, state, &levels);
    }
    Ok(())
}

fn check_create(room_version: &str, ev: &AuthInput<'_>) -> Result<(), AuthError> {
    if ev.position != 0 {
        return Err(AuthError::CreateNotFirst { position: ev.position });
    }
    if ev.state_key != Some("") {
        return Err(AuthError::CreateStateKey { state_key: ev.state_key.map(str::to_owned) });
    }
    let room_server = crate::event::meta::server_of(ev.room_id);
    // A follower's record of a room is kept (and created) by the follower, not the room's hub.
    let record = crate::event::RoomVersion::from_id(room_version).is_some_and(crate::event::RoomVersion::is_record);
    if room_server.is_empty() || (crate::event::meta::server_of(ev.sender) != room_server && !record) {
        return Err(AuthError::CreateWrongServer { sender: ev.sender.to_owned(), room_server: room_server.to_owned() });
    }
    let found = content_str(ev.content, "room_version");
    if found != Some(room_version) {
        return Err(AuthError::WrongRoomVersion { expected: room_version.to_owned(), found: found.map(str::to_owned) });
    }
    Ok(())
}

/// The power level of `user_id` in `state`: `users[user]`, else `users_default`, else 0; with no
/// power-levels event the creator (sender of the create event) has 100 and everyone else 0.
#[must_use]
pub fn user_power_level(state: &RoomState, user_id: &str) -> i64 {
    Levels::from_state(state).user(user_id)
}

/// `content[key]` if it is a string.
fn content_str<'a>(content: &'a CanonicalJsonObject, key: &str) -> Option<&'a str> {
    match content.get(key) {
        Some(CanonicalJsonValue::String(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// A test room that runs every event through [`authorize`] before appending it.
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
