//! `log verify`: every room, every event, recomputed; in MLS rooms every commit replayed
//! against the group's public state (no secrets needed), with the hub's own checks.

use crate::event::{Chain, KeyRing, Pdu};
use crate::mls::public::{MlsCheckError, PublicView, Step, apply_step, check_event};
use crate::store::{RoomSeq, ShortRoomId, Store};

use super::pipeline::pipeline;
use super::{EventFault, Failure, ReplayError, check_event_bytes, progress, room_version};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifySummary {
    /// Rooms verified.
    pub rooms: usize,
    /// Events verified.
    pub events: u64,
    /// `m.mls.commit` events replayed against the group's public state.
    pub mls_commits: u64,
}

/// Verifies every room (or one) in a store. `overrides` replaces the stored keys of each server
/// it names: an admin pins the keys they trust.
pub fn verify_store(
    store: &Store,
    room: Option<&str>,
    overrides: &KeyRing,
    show_progress: bool,
) -> Result<VerifySummary, ReplayError> {
    let keys = effective_keys(store, overrides)?;
    let rooms: Vec<_> = store.rooms()?.into_iter().filter(|(_, id)| room.is_none_or(|r| r == id)).collect();
    if let (Some(room), true) = (room, rooms.is_empty()) {
        return Err(ReplayError::UnknownRoom(room.to_owned()));
    }
    let mut summary = VerifySummary::default();
    for (short, room_id) in rooms {
        let (events, commits) = verify_room(store, short, &room_id, &keys, show_progress)?;
        summary.events += events;
        summary.mls_commits += commits;
        summary.rooms += 1;
    }
    Ok(summary)
}

/// The keys the data directory holds (trusted by its hub, or imported with a log), with every
/// server named in `overrides` taking only the overriding keys.
pub(crate) fn effective_keys(store: &Store, overrides: &KeyRing) -> Result<KeyRing, ReplayError> {
    let mut keys = KeyRing::new();
    for (server, key_id, public) in store.imported_keys()?.into_iter().chain(store.server_keys()?) {
        if overrides.knows_server(&server) {
            continue;
        }
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) {
            keys.insert(&server, &key_id, key);
        }
    }
    keys.extend(overrides);
    Ok(keys)
}

fn verify_room(
    store: &Store,
    short: ShortRoomId,
    room_id: &str,
    keys: &KeyRing,
    show_progress: bool,
) -> Result<(u64, u64), ReplayError> {
    let fail = |position: Option<u64>, event_id: Option<String>, reason: String| {
        ReplayError::Check(Failure { room_id: room_id.to_owned(), position, event_id, line: None, reason })
    };
    let tail = store.tail(short)?.ok_or_else(|| fail(None, None, "room has no tail record".into()))?;
    let bar = progress(if show_progress { tail.events()? } else { 0 }, "verify");
    if !show_progress {
        bar.finish_and_clear();
    }
    let version = room_version(store, short).map_err(|reason| fail(Some(0), None, reason))?;
    let mut chain: Option<Chain> = None;
    // The group's public state, from the create event's group info, moved by every commit.
    let mut mls: Option<PublicView> = None;
    let mut commits = 0u64;
    let mut last_commit = None;
    let mut expected = 0u64;
    let check = |(seq, bytes): (u64, Vec<u8>)| {
        let checked = check_event_bytes(&bytes, version, keys);
        let indexed = checked.as_ref().ok().map(|pdu| check_indexes(store, short, seq, pdu));
        (seq, checked, indexed)
    };
    let input = store.pdus(short, 0)?.map(|item| item.map_err(ReplayError::from));
    pipeline(input, check, |(seq, checked, indexed)| {
        if seq != expected {
            return Err(fail(Some(expected), None, format!("position {expected} is missing (next stored is {seq})")));
        }
        let pdu = checked.map_err(|fault| match fault {
            EventFault::Invalid(reason) => fail(Some(seq), None, reason),
            EventFault::Check { event_id, reason } => fail(Some(seq), event_id, reason),
        })?;
        let id = || Some(pdu.event_id().to_owned());
        let chain = match &mut chain {
            Some(chain) => chain,
            None => chain.insert(Chain::for_create(&pdu).map_err(|e| fail(Some(0), id(), e.to_string()))?),
        };
        let mls_fail = |e: MlsCheckError| fail(Some(seq), id(), format!("MLS: {e}"));
        let step = check_event(mls.as_ref(), seq, &pdu, chain.state(), None, true).map_err(mls_fail)?;
        if matches!(step, Step::Commit(_)) {
            commits += 1;
            last_commit = Some(seq);
        }
        chain.push(&pdu).map_err(|e| fail(Some(seq), id(), e.to_string()))?;
        apply_step(&mut mls, step, pdu.event_id()).map_err(mls_fail)?;
        if let Some(Err(reason)) = indexed {
            return Err(fail(Some(seq), id(), reason));
        }
        expected += 1;
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    let last = expected.checked_sub(1).ok_or_else(|| fail(None, None, "room has no events".into()))?;
    if tail.seq != last || chain.as_ref().and_then(Chain::tail) != Some(tail.event_id.as_str()) {
        return Err(fail(
            Some(last),
            Some(tail.event_id),
            format!("tail record says position {} but the log ends at {last}", tail.seq),
        ));
    }
    // The hub reloads a room's group from the latest commit the index names.
    let indexed = store.latest_commit(short)?;
    if indexed != last_commit {
        return Err(fail(
            last_commit,
            None,
            format!("latest-commit index says {indexed:?}, the log's last commit is at {last_commit:?}"),
        ));
    }
    Ok((expected, commits))
}

/// The indexes written beside an event must agree with it: the event-ID index points here, and
/// a state delta (which the hub and `log state` rebuild state from) exists exactly for state
/// events, naming their (type, state key).
fn check_indexes(store: &Store, short: ShortRoomId, seq: u64, pdu: &Pdu) -> Result<(), String> {
    let here = RoomSeq { room: short, seq };
    match store.event_position(pdu.event_id()).map_err(|e| e.to_string())? {
        Some(pos) if pos == here => {}
        Some(pos) => return Err(format!("event ID index points to position {} instead", pos.seq)),
        None => return Err("event ID index has no entry for this event".into()),
    }
    let meta = pdu.meta();
    let expected = meta.state_key.as_ref().map(|k| (meta.event_type.clone(), k.clone()));
    let recorded = store.state_delta_at(here).map_err(|e| e.to_string())?;
    if recorded != expected {
        return Err(format!("state delta index says {recorded:?}, the event is {expected:?}"));
    }
    Ok(())
}
