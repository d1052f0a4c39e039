//! The linear-log rules of a room: what makes a verified PDU the valid next entry.
//!
//! A hub-linearized log is a chain: every event names exactly the previous tail in
//! `prev_events`, is authored or completed by the room's hub, lists current state events as its
//! auth events, and passes the auth rules against the state before it. The hub appending, a
//! participant following the hub, and `log verify`/`log import` replaying a log all walk the
//! same `Chain`, so they reach the same verdict on the same bytes.

use super::auth::{AuthError, AuthInput, authorize, check_auth_events, select_auth_events};
use super::meta::EventMeta;
use super::pdu::Pdu;
use super::room_version::RoomVersion;
use super::state::{RoomState, StateEvent};

/// Why a PDU cannot be the next entry of a room's log.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainError {
    /// `prev_events` does not name the current tail.
    #[error("gap at position {position}: prev_events is {found:?}, but the local tail is {tail:?}")]
    Gap {
        /// The position the event would take.
        position: u64,
        /// The event's `prev_events`.
        found: Vec<String>,
        /// The local tail (`None` before the create event).
        tail: Option<String>,
    },
    /// The event belongs to another room.
    #[error("event is for room {found}, not {expected}")]
    WrongRoom {
        /// This log's room.
        expected: String,
        /// The event's room.
        found: String,
    },
    /// Neither authored nor completed by the room's hub.
    #[error(
        "event was neither authored nor completed by the room's hub {hub} (origin {origin}, hub_server {hub_server:?})"
    )]
    NotFromHub {
        /// The room's hub.
        hub: String,
        /// The event's origin.
        origin: String,
        /// The event's `hub_server`.
        hub_server: Option<String>,
    },
    /// The first event is not an `m.room.create` in a loggable room version.
    #[error("position 0 must be an m.room.create event of a supported room version: {0}")]
    BadCreate(String),
    /// The auth rules reject it.
    #[error("{0}")]
    Auth(#[from] AuthError),
}

/// The state of a room's log after its last accepted event.
#[derive(Debug, Clone)]
pub struct Chain {
    version: &'static RoomVersion,
    room_id: String,
    hub: String,
    state: RoomState,
    tail: Option<String>,
    next: u64,
}

/// The room version a create event declares, if this crate can log it.
pub fn create_version(
    meta: &EventMeta,
    content: &ruma::CanonicalJsonObject,
) -> Result<&'static RoomVersion, ChainError> {
    if meta.event_type != "m.room.create" || meta.state_key.as_deref() != Some("") {
        return Err(ChainError::BadCreate(format!("found type {:?}", meta.event_type)));
    }
    let Some(ruma::CanonicalJsonValue::String(id)) = content.get("room_version") else {
        return Err(ChainError::BadCreate("content.room_version is missing".into()));
    };
    RoomVersion::from_id(id)
        .filter(|v| v.loggable)
        .ok_or_else(|| ChainError::BadCreate(format!("room version {id:?} is not supported")))
}

impl Chain {
    /// An empty log for a room whose create event is `create` (not yet applied).
    pub fn for_create(create: &Pdu) -> Result<Self, ChainError> {
        let version = create_version(create.meta(), create.content())?;
        Ok(Self {
            version,
            room_id: create.meta().room_id.clone(),
            hub: create.meta().origin().to_owned(),
            state: RoomState::new(),
            tail: None,
            next: 0,
        })
    }

    /// The room's version.
    pub fn version(&self) -> &'static RoomVersion {
        self.version
    }

    /// The room ID.
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// The room's hub: the server of the create event's sender.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// The current state.
    pub fn state(&self) -> &RoomState {
        &self.state
    }

    /// The last event's ID.
    pub fn tail(&self) -> Option<&str> {
        self.tail.as_deref()
    }

    /// The position the next event takes (= number of events so far).
    pub fn next_position(&self) -> u64 {
        self.next
    }

    fn input<'a>(&self, meta: &'a EventMeta, content: &'a ruma::CanonicalJsonObject) -> AuthInput<'a> {
        AuthInput {
            room_id: &meta.room_id,
            event_type: &meta.event_type,
            state_key: meta.state_key.as_deref(),
            sender: &meta.sender,
            content,
            position: self.next,
        }
    }

    /// The auth events the hub lists for a new event.
    pub fn select_auth(&self, meta: &EventMeta, content: &ruma::CanonicalJsonObject) -> Vec<String> {
        select_auth_events(&self.input(meta, content), &self.state)
    }

    /// The auth rules for a new event against the current state.
    pub fn authorize(&self, meta: &EventMeta, content: &ruma::CanonicalJsonObject) -> Result<(), AuthError> {
        authorize(self.version.id, &self.input(meta, content), &self.state)
    }

    /// The `prev_events` of the next event.
    pub fn prev_events(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Checks that `pdu` is a valid next entry: room, link, hub, auth events, auth rules.
    pub fn check(&self, pdu: &Pdu) -> Result<(), ChainError> {
        let meta = pdu.meta();
        if meta.room_id != self.room_id {
            return Err(ChainError::WrongRoom { expected: self.room_id.clone(), found: meta.room_id.clone() });
        }
        let prev = meta.prev_events.clone().unwrap_or_default();
        if prev != self.prev_events() {
            return Err(ChainError::Gap { position: self.next, found: prev, tail: self.tail.clone() });
        }
        let origin = self.version.signer(meta);
        let from_hub = match &meta.hub_server {
            Some(hub) => *hub == self.hub && origin != self.hub && !self.version.hub_signs(),
            None => origin == self.hub,
        };
        if !from_hub {
            return Err(ChainError::NotFromHub {
                hub: self.hub.clone(),
                origin: origin.to_owned(),
                hub_server: meta.hub_server.clone(),
            });
        }
        let input = self.input(meta, pdu.content());
        check_auth_events(&input, meta.auth_events.as_deref().unwrap_or_default(), &self.state)?;
        authorize(self.version.id, &input, &self.state)?;
        Ok(())
    }

    /// Advances past `pdu` without checking it (it was checked, or built from this chain).
    pub fn apply(&mut self, pdu: &Pdu) {
        let meta = pdu.meta();
        if let Some(state_key) = &meta.state_key {
            let event = StateEvent {
                event_id: pdu.event_id().to_owned(),
                sender: meta.sender.clone(),
                content: pdu.content().clone(),
            };
            self.state.insert(meta.event_type.clone(), state_key.clone(), event);
        }
        self.tail = Some(pdu.event_id().to_owned());
        self.next += 1;
    }

    /// Resets the tail after a reload that applied only the state events.
    #[cfg(feature = "store")]
    pub(crate) fn restore_tail(&mut self, next: u64, tail: String) {
        self.next = next;
        self.tail = Some(tail);
    }

    /// Checks, then applies.
    pub fn push(&mut self, pdu: &Pdu) -> Result<(), ChainError> {
        self.check(pdu)?;
        self.apply(pdu);
        Ok(())
    }
}
