//! Replay and verification of room logs, offline: the tools an admin or a gatekeeper uses to
//! find out exactly where and why a log stops being valid.
//!
//! Verification recomputes everything from the stored bytes — canonical encoding, both
//! hashes, every signature, every event ID, every `prev_events` link and every auth decision —
//! through the same `event` code the hub used, and names the first event that fails.
//! Signature and hash checks are independent per event and run on every core; the chain
//! (links and auth) is walked in order.

mod export;
mod import;
mod inspect;
mod pipeline;
mod verify;

use crate::event::canonical::{object_to_bytes, parse_object};
use crate::event::chain::create_version;
use crate::event::check::{Form, required_signers};
use crate::event::sign::signing_servers;
use crate::event::{EventError, KeyRing, Pdu, RoomVersion, UnverifiedPdu};
use crate::store::{RoomSeq, ShortRoomId, Store, StoreError};

pub use export::{ExportHeader, export_room};
pub use import::{ImportSummary, import_log};
pub use inspect::{RoomSummary, StateRow, TimelineEntry, list_rooms, state_at, timeline};
pub use verify::{VerifySummary, verify_store};

/// Where and why a log failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The room.
    pub room_id: String,
    /// 0-based position in the room's log, when the failure is at an event.
    pub position: Option<u64>,
    /// The event's ID, when it could be computed.
    pub event_id: Option<String>,
    /// 1-based line of an export file, for `import`.
    pub line: Option<usize>,
    /// The first reason.
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "room {}", self.room_id)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if let Some(position) = self.position {
            write!(f, ", position {position}")?;
        }
        if let Some(event_id) = &self.event_id {
            write!(f, ", event {event_id}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Replay failures, split by who is at fault: the input (exit 2) or the log's validity (exit 1).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayError {
    /// A hash, signature, event ID, link or auth check failed.
    #[error("verification failed: {0}")]
    Check(Failure),
    /// The input is not JSON or not the documented format.
    #[error("line {line}: {reason}")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// What was expected.
        reason: String,
    },
    /// The room is not in the data directory.
    #[error("no room {0} in the data directory")]
    UnknownRoom(String),
    /// Import into a data directory that already holds the room.
    #[error("room {0} already exists in the target data directory")]
    RoomExists(String),
    /// Storage failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Reading or writing a stream failed.
    #[error("I/O: {0}")]
    Io(String),
}

impl ReplayError {
    /// The process exit code: 1 when a check failed, 2 for bad input or usage.
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::Check(_) => 1,
            _ => 2,
        }
    }
}

/// Why one serialized event is not acceptable, split as `ReplayError` splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventFault {
    /// Not JSON, not canonical, or not a PDU's shape.
    Invalid(String),
    /// Not authentic.
    Check { event_id: Option<String>, reason: String },
}

/// The per-event, order-independent checks: the bytes are canonical JSON of a PDU whose hashes
/// and required signatures hold, signed by no one else.
pub(crate) fn check_event_bytes(bytes: &[u8], version: &RoomVersion, keys: &KeyRing) -> Result<Pdu, EventFault> {
    let object = parse_object(bytes).map_err(|e| EventFault::Invalid(e.to_string()))?;
    let canonical = object_to_bytes(&object);
    if canonical != bytes {
        let at = canonical.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(canonical.len().min(bytes.len()));
        return Err(EventFault::Invalid(format!("not canonical JSON (first difference at byte {at})")));
    }
    let unverified = UnverifiedPdu::from_object(object).map_err(|e| match e {
        EventError::Field { .. } | EventError::Json(_) => EventFault::Invalid(e.to_string()),
        other => EventFault::Check { event_id: None, reason: other.to_string() },
    })?;
    let meta = unverified.meta().clone();
    let form = if meta.hub_server.is_some() { Form::HubPdu } else { Form::Pdu };
    let signers = required_signers(form, version.signer(&meta), meta.hub_server.as_deref());
    let fault = |reason: String, u: &UnverifiedPdu| EventFault::Check { event_id: Some(u.event_id(version)), reason };
    if unverified.object().contains_key("unsigned") {
        return Err(fault(
            "`unsigned` is covered by no hash or signature; logged events carry none".to_owned(),
            &unverified,
        ));
    }
    if let Some(extra) = signing_servers(unverified.object()).into_iter().find(|s| !signers.iter().any(|r| r == s)) {
        return Err(fault(EventError::UnexpectedSignature { server: extra.to_owned() }.to_string(), &unverified));
    }
    unverified.verify_with_bytes(version, keys, Some(canonical)).map_err(|failure| {
        let (error, event_id) = *failure;
        EventFault::Check { event_id, reason: error.to_string() }
    })
}

/// A stored event that cannot be read back: the store, not the log's validity, is at fault.
pub(crate) fn corrupt(seq: u64, e: &dyn std::fmt::Display) -> ReplayError {
    ReplayError::Store(StoreError::Corrupt(format!("position {seq}: {e}")))
}

/// The room version a room's create event (position 0) declares.
pub(crate) fn room_version(store: &Store, short: ShortRoomId) -> Result<&'static RoomVersion, String> {
    let bytes =
        store.pdu_at(RoomSeq { room: short, seq: 0 }).map_err(|e| e.to_string())?.ok_or("no event at position 0")?;
    let object = parse_object(&bytes).map_err(|e| e.to_string())?;
    let create = UnverifiedPdu::from_object(object).map_err(|e| format!("position 0 is not a PDU: {e}"))?;
    create_version(create.meta(), create.content()).map_err(|e| e.to_string())
}

/// A progress bar on a terminal, invisible in pipes.
pub(crate) fn progress(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} events ({per_sec})") {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}
