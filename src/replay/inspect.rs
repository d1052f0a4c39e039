//! `log list`, `log show` and `log state`: reading a log the way an admin debugging it needs.

use crate::event::canonical::parse_object;
use crate::event::state::{RoomState, StateEvent};
use crate::event::{EventMeta, UnverifiedPdu};
use crate::store::{RoomSeq, ShortRoomId, Store};

use super::{ReplayError, corrupt, room_version};

/// One room in `log list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    /// The room.
    pub room_id: String,
    /// Number of events.
    pub events: u64,
    /// The last event's ID.
    pub tail_event_id: String,
    /// The hub: the server of the create event's sender.
    pub hub: String,
}

/// One event of a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// 0-based position.
    pub position: u64,
    /// The event ID.
    pub event_id: String,
    /// The header.
    pub meta: EventMeta,
    /// The content.
    pub content: ruma::CanonicalJsonObject,
    /// The canonical JSON as stored.
    pub bytes: Vec<u8>,
}

fn entry(version: &'static crate::event::RoomVersion, seq: u64, bytes: Vec<u8>) -> Result<TimelineEntry, ReplayError> {
    let object = parse_object(&bytes).map_err(|e| corrupt(seq, &e))?;
    let pdu = UnverifiedPdu::from_object(object).map_err(|e| corrupt(seq, &e))?;
    Ok(TimelineEntry {
        position: seq,
        event_id: pdu.event_id(version),
        meta: pdu.meta().clone(),
        content: pdu.content().clone(),
        bytes,
    })
}

fn room(store: &Store, room_id: &str) -> Result<(ShortRoomId, &'static crate::event::RoomVersion), ReplayError> {
    let short = store.short_room(room_id)?.ok_or_else(|| ReplayError::UnknownRoom(room_id.to_owned()))?;
    Ok((short, room_version(store, short).map_err(|e| corrupt(0, &e))?))
}

/// Every room with its length, tail and hub.
pub fn list_rooms(store: &Store) -> Result<Vec<RoomSummary>, ReplayError> {
    let mut out = Vec::new();
    for (short, room_id) in store.rooms()? {
        let tail = store.tail(short)?.ok_or_else(|| corrupt(0, &"room without a tail"))?;
        let (_, version) = room(store, &room_id)?;
        let create = store.pdu_at(RoomSeq { room: short, seq: 0 })?.unwrap_or_default();
        let create = entry(version, 0, create)?;
        // A follower's record is kept here but names the room's hub in its create event.
        let hub = match create.content.get("mimi_hub") {
            Some(ruma::CanonicalJsonValue::String(hub)) if version.is_record() => hub.clone(),
            _ => create.meta.origin().to_owned(),
        };
        out.push(RoomSummary { room_id, events: tail.events()?, tail_event_id: tail.event_id, hub });
    }
    Ok(out)
}

/// Up to `limit` events of a room from position `from`.
pub fn timeline(
    store: &Store,
    room_id: &str,
    from: u64,
    limit: Option<u64>,
) -> Result<Vec<TimelineEntry>, ReplayError> {
    let (short, version) = room(store, room_id)?;
    let limit = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    for item in store.pdus(short, from)?.take(limit) {
        let (seq, bytes) = item?;
        out.push(entry(version, seq, bytes)?);
    }
    Ok(out)
}

/// One state entry in `log state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    /// Position of the state event in the log.
    pub position: u64,
    /// Its type.
    pub event_type: String,
    /// Its state key.
    pub state_key: String,
    /// The event.
    pub event: StateEvent,
}

/// The room state after the event at position `at` (default: the tail); returns the position
/// used and the state in (type, state key) order.
pub fn state_at(store: &Store, room_id: &str, at: Option<u64>) -> Result<(u64, Vec<StateRow>), ReplayError> {
    let (short, version) = room(store, room_id)?;
    let tail = store.tail(short)?.ok_or_else(|| corrupt(0, &"room without a tail"))?;
    let at = at.unwrap_or(tail.seq);
    if at > tail.seq {
        return Err(ReplayError::Invalid {
            line: 0,
            reason: format!("--at {at} is past the room's last position {}", tail.seq),
        });
    }
    let mut latest = std::collections::BTreeMap::new();
    for delta in store.state_deltas(short, at)? {
        latest.insert((delta.event_type, delta.state_key), delta.seq);
    }
    let mut state = RoomState::new();
    let mut positions = std::collections::BTreeMap::new();
    for ((event_type, state_key), seq) in latest {
        let bytes = store.pdu_at(RoomSeq { room: short, seq })?.ok_or_else(|| corrupt(seq, &"missing state event"))?;
        let e = entry(version, seq, bytes)?;
        positions.insert((event_type.clone(), state_key.clone()), seq);
        state.insert(
            event_type,
            state_key,
            StateEvent { event_id: e.event_id, sender: e.meta.sender, content: e.content },
        );
    }
    let rows = state
        .iter()
        .map(|((t, k), event)| StateRow {
            position: positions.get(&(t.to_owned(), k.to_owned())).copied().unwrap_or_default(),
            event_type: t.to_owned(),
            state_key: k.to_owned(),
            event: event.clone(),
        })
        .collect();
    Ok((at, rows))
}
