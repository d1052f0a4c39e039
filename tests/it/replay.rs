//! Export → import → verify round trips, and verification that names what is wrong.

use mimi_bridge::event::KeyRing;
use mimi_bridge::hub::Hub;
use mimi_bridge::replay::{self, ReplayError};
use mimi_bridge::store::{Batch, RoomSeq, Store, batch::EventRecord};
use proptest::prelude::*;

use crate::common::*;

/// A hub with one room of 12 events: opening events, Bob's invite and join, and messages both ways.
pub(crate) fn sample(dir: &std::path::Path) -> (Hub, String) {
    let hub = open_hub(dir);
    let room = room_with_bob(&hub);
    for i in 0..3 {
        hub.submit_local(message(&room, ALICE, &format!("alice {i}"))).unwrap().wait().unwrap();
        hub.submit_lpdu(part_lpdu(message(&room, BOB, &format!("bob {i} \u{2713}")))).unwrap().wait().unwrap();
    }
    (hub, room)
}

fn export(hub: &Hub, room: &str) -> Vec<u8> {
    let mut out = Vec::new();
    replay::export_room(hub.store(), room, &mut out, false).unwrap();
    out
}

#[test]
fn export_import_verify_round_trip_is_byte_identical() {
    let (hub, room) = sample(tempfile::tempdir().unwrap().path());
    let exported = export(&hub, &room);
    let lines: Vec<&[u8]> = exported.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1 + 13);
    let header: serde_json::Value = serde_json::from_slice(lines[0]).unwrap();
    assert_eq!(header["events"], 13);
    assert_eq!(header["room_version"], "org.matrix.i-d.ralston-mimi-linearized-matrix.02");
    assert_eq!(header["keys"][HUB]["ed25519:hub1"], hub_key().public_b64());
    assert_eq!(header["keys"][PART]["ed25519:part1"], part_key().public_b64());

    let target_dir = tempfile::tempdir().unwrap();
    let target = Store::open(target_dir.path()).unwrap();
    let summary = replay::import_log(&target, &mut &exported[..], &KeyRing::new(), false).unwrap();
    assert_eq!((summary.room_id.as_str(), summary.events), (room.as_str(), 13));
    assert_eq!(replay::verify_store(&target, None, &KeyRing::new(), false).unwrap().events, 13);
    let mut again = Vec::new();
    replay::export_room(&target, &room, &mut again, false).unwrap();
    assert_eq!(again, exported);
    // Importing the same room twice is refused, and writes nothing.
    let err = replay::import_log(&target, &mut &exported[..], &KeyRing::new(), false).unwrap_err();
    assert!(matches!(err, ReplayError::RoomExists(_)), "{err:?}");
}

fn import_err(exported: &[u8]) -> ReplayError {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = replay::import_log(&store, &mut &exported[..], &KeyRing::new(), false).unwrap_err();
    assert!(store.rooms().unwrap().is_empty(), "a failed import stores nothing");
    err
}

fn lines(exported: &[u8]) -> Vec<Vec<u8>> {
    exported.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect()
}

#[test]
fn import_names_the_line_and_splits_exit_codes() {
    let (hub, room) = sample(tempfile::tempdir().unwrap().path());
    let original = lines(&export(&hub, &room));

    // Not JSON: exit 2, naming the line.
    let mut broken = original.clone();
    broken[5] = b"{\"oops\":".to_vec();
    let err = import_err(&join(&broken));
    assert!(matches!(err, ReplayError::Invalid { line: 6, .. }), "{err:?}");
    assert_eq!(err.exit_code(), 2);

    // Two events swapped: the link check fails at the first of them (exit 1).
    let mut swapped = original.clone();
    swapped.swap(8, 9);
    let err = import_err(&join(&swapped));
    match &err {
        ReplayError::Check(f) => {
            assert_eq!((f.line, f.position), (Some(9), Some(7)));
            assert!(f.reason.contains("prev_events"), "{}", f.reason);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.exit_code(), 1);

    // A dropped event: the header count no longer matches (exit 2).
    let mut short = original.clone();
    short.remove(10);
    assert!(matches!(import_err(&join(&short)), ReplayError::Invalid { line: 1, .. }));

    // A wrong pinned key: signatures no longer verify (exit 1).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut pinned = KeyRing::new();
    pinned.insert(
        PART,
        "ed25519:part1",
        mimi_bridge::event::ServerKey::from_seed("x", [3; 32]).unwrap().verifying_key(),
    );
    let err = replay::import_log(&store, &mut &join(&original)[..], &pinned, false).unwrap_err();
    assert!(matches!(&err, ReplayError::Check(f) if f.reason.contains("does not verify")), "{err:?}");
}

#[test]
fn verify_names_room_position_and_event_of_a_tampered_store() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, room) = sample(dir.path());
    let victim = replay::timeline(hub.store(), &room, 9, Some(1)).unwrap().remove(0);
    let tampered = String::from_utf8(victim.bytes.clone()).unwrap().replace("alice 1", "alice 9");
    assert_ne!(tampered.as_bytes(), &victim.bytes[..]);
    let short = hub.store().short_room(&room).unwrap().unwrap();
    let mut batch = Batch::new();
    batch.append_event(&EventRecord {
        pos: RoomSeq { room: short, seq: 9 },
        event_id: &victim.event_id,
        bytes: tampered.as_bytes(),
        state: None,
        lpdu_id: None,
    });
    // Appending position 9 again moved the tail record; put it back so only the PDU differs.
    let tail = replay::timeline(hub.store(), &room, 12, Some(1)).unwrap().remove(0);
    let tail_bytes = tail.bytes.clone();
    batch.append_event(&EventRecord {
        pos: RoomSeq { room: short, seq: 12 },
        event_id: &tail.event_id,
        bytes: &tail_bytes,
        state: None,
        lpdu_id: None,
    });
    hub.store().write(batch).unwrap();
    let err = replay::verify_store(hub.store(), None, &KeyRing::new(), false).unwrap_err();
    match err {
        ReplayError::Check(f) => {
            assert_eq!(f.room_id, room);
            assert_eq!(f.position, Some(9));
            assert_eq!(f.event_id.as_deref(), Some(victim.event_id.as_str()));
            assert!(f.reason.contains("hashes.sha256"), "{}", f.reason);
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any single changed byte anywhere in an export is detected: import refuses the file.
    #[test]
    fn any_single_changed_byte_is_detected(at in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let exported = EXPORT.with(Clone::clone);
        let i = at.index(exported.len());
        prop_assume!(exported[i] != replacement);
        let mut mutated = exported.clone();
        mutated[i] = replacement;
        let result = IMPORT_TARGET.with(|(store, _)| replay::import_log(store, &mut &mutated[..], &KeyRing::new(), false));
        prop_assert!(result.is_err(), "byte {} changed {:?} -> {:?} was not detected", i, exported[i] as char, replacement as char);
    }
}

thread_local! {
    static EXPORT: Vec<u8> = {
        let dir = tempfile::tempdir().unwrap();
        let (hub, room) = sample(dir.path());
        export(&hub, &room)
    };
    static IMPORT_TARGET: (Store, tempfile::TempDir) = {
        let dir = tempfile::tempdir().unwrap();
        (Store::open(dir.path()).unwrap(), dir)
    };
}

#[test]
fn an_export_without_events_or_with_unsigned_is_refused() {
    let (hub, room) = sample(tempfile::tempdir().unwrap().path());
    let original = lines(&export(&hub, &room));
    let mut header: serde_json::Value = serde_json::from_slice(&original[0]).unwrap();
    header["events"] = 0.into();
    header["keys"] = serde_json::json!({});
    let canonical = mimi_bridge::event::canonical::to_bytes(&ruma::CanonicalJsonValue::try_from(header).unwrap());
    let err = import_err(&join(&[canonical]));
    assert!(matches!(&err, ReplayError::Invalid { line: 1, reason } if reason.contains("at least 1")), "{err:?}");

    // `unsigned` is covered by nothing, so a log must not carry it (or a change to it would pass).
    let mut with_unsigned = original.clone();
    let mut event: serde_json::Value = serde_json::from_slice(&with_unsigned[8]).unwrap();
    event["unsigned"] = serde_json::json!({"age": 1});
    with_unsigned[8] = mimi_bridge::event::canonical::to_bytes(&ruma::CanonicalJsonValue::try_from(event).unwrap());
    let err = import_err(&join(&with_unsigned));
    assert!(matches!(&err, ReplayError::Check(f) if f.reason.contains("unsigned") && f.line == Some(9)), "{err:?}");
}

#[test]
fn keys_that_came_with_an_import_are_not_trusted_by_a_hub() {
    let (hub, room) = sample(tempfile::tempdir().unwrap().path());
    let exported = export(&hub, &room);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    replay::import_log(&store, &mut &exported[..], &KeyRing::new(), false).unwrap();
    assert!(store.server_keys().unwrap().is_empty());
    assert_eq!(store.imported_keys().unwrap().len(), 2);
    assert_eq!(replay::verify_store(&store, None, &KeyRing::new(), false).unwrap().events, 13);
}
