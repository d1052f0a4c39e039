//! The hub on a real RocksDB store: local events, participants' LPDUs, rejections with their
//! reasons, idempotent retries, group commit under concurrency, and a follower replica.

use std::sync::Arc;

use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{ChainError, EventError, KeyRing, UnverifiedLpdu, UnverifiedPdu, build_lpdu};
use mimi_bridge::hub::{HubError, RoomPreset};
use mimi_bridge::replay;
use mimi_bridge::store::{RoomSeq, Store};
use serde_json::json;

use crate::common::*;

#[test]
fn create_room_writes_the_opening_events_at_positions_0_to_4() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    let (room, events) = hub.create_room_blocking(ALICE, &RoomPreset::default(), TS).unwrap();
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, vec![0, 1, 2, 3, 4]);
    let timeline = replay::timeline(hub.store(), &room, 0, None).unwrap();
    let types: Vec<&str> = timeline.iter().map(|e| e.meta.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility"]
    );
    // Every event links to the previous tail; the create event links to nothing.
    assert_eq!(timeline[0].meta.prev_events, Some(vec![]));
    for pair in timeline.windows(2) {
        assert_eq!(pair[1].meta.prev_events, Some(vec![pair[0].event_id.clone()]));
    }
    // Auth events: create, PL (if any), the sender's membership.
    assert_eq!(
        timeline[4].meta.auth_events,
        Some(vec![events[0].event_id.clone(), events[2].event_id.clone(), events[1].event_id.clone()])
    );
    replay::verify_store(hub.store(), None, &KeyRing::default(), false).unwrap();
}

#[test]
fn participant_lpdus_are_completed_signed_and_linked() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    let room = room_with_bob(&hub);
    let appended = hub.submit_lpdu(part_lpdu(message(&room, BOB, "hi from part"))).unwrap().wait().unwrap();
    assert_eq!(appended.position, 7);
    assert!(!appended.duplicate);
    let last = replay::timeline(hub.store(), &room, 7, None).unwrap().remove(0);
    assert_eq!(last.event_id, appended.event_id);
    assert_eq!(last.meta.hub_server.as_deref(), Some(HUB));
    let pdu: serde_json::Value = serde_json::from_slice(&last.bytes).unwrap();
    assert!(pdu["signatures"][PART]["ed25519:part1"].is_string());
    assert!(pdu["signatures"][HUB]["ed25519:hub1"].is_string());
    assert!(pdu["hashes"]["lpdu"]["sha256"].is_string() && pdu["hashes"]["sha256"].is_string());
    replay::verify_store(hub.store(), Some(&room), &KeyRing::default(), false).unwrap();
}

#[test]
fn an_lpdu_retry_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    let room = room_with_bob(&hub);
    let lpdu = part_lpdu(message(&room, BOB, "once"));
    let first = hub.submit_lpdu(lpdu.clone()).unwrap().wait().unwrap();
    let second = hub.submit_lpdu(lpdu.clone()).unwrap().wait().unwrap();
    assert!(second.duplicate);
    assert_eq!((second.position, &second.event_id), (first.position, &first.event_id));
    // Also after a restart, when the retry can only be recognised through the store.
    drop(hub);
    let hub = open_hub(dir.path());
    let third = hub.submit_lpdu(lpdu).unwrap().wait().unwrap();
    assert!(third.duplicate && third.event_id == first.event_id);
    assert_eq!(replay::list_rooms(hub.store()).unwrap()[0].events, first.position + 1);
}

fn reject(hub: &mimi_bridge::hub::Hub, lpdu: UnverifiedLpdu) -> (String, HubError) {
    let expected_id = lpdu.reference_id(&LINEARIZED_02);
    let rejection = hub.submit_lpdu(lpdu).unwrap_err();
    assert_eq!(rejection.lpdu_id, expected_id, "rejections are reported under the LPDU's reference ID");
    (rejection.to_string(), rejection.error)
}

#[test]
fn bad_lpdus_are_rejected_each_with_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    let room = room_with_bob(&hub);
    let before = replay::list_rooms(hub.store()).unwrap()[0].events;

    // A non-member sending.
    let (msg, err) = reject(&hub, part_lpdu(message(&room, "@carol:part.example", "let me in")));
    assert!(matches!(err, HubError::Event(EventError::Auth(_))), "{err:?}");
    assert!(msg.contains("@carol:part.example") && msg.contains("not joined"), "{msg}");

    // Wrong hub_server.
    let other = build_lpdu(&LINEARIZED_02, message(&room, BOB, "x"), "other.example", &part_key(), PART).unwrap();
    let (_, err) = reject(&hub, other);
    assert!(matches!(&err, HubError::Event(EventError::WrongHub { found, .. }) if found == "other.example"), "{err:?}");

    // A forged signature: signed by a key the hub does not trust for part.example.
    let forger = mimi_bridge::event::ServerKey::from_seed("part1", [1; 32]).unwrap();
    let counterfeit = build_lpdu(&LINEARIZED_02, message(&room, BOB, "forged"), HUB, &forger, PART).unwrap();
    let (_, err) = reject(&hub, counterfeit);
    assert!(
        matches!(&err, HubError::Event(EventError::BadSignature { server, role: "origin", .. }) if server == PART),
        "{err:?}"
    );

    // Content changed after signing: the LPDU hash no longer matches.
    let lpdu = part_lpdu(message(&room, BOB, "original"));
    let mut tampered: serde_json::Value =
        serde_json::from_slice(&mimi_bridge::event::canonical::object_to_bytes(lpdu.object())).unwrap();
    tampered["content"]["body"] = json!("changed");
    let tampered = UnverifiedLpdu::parse(tampered.to_string().as_bytes()).unwrap();
    let (_, err) = reject(&hub, tampered);
    assert!(matches!(&err, HubError::Event(EventError::HashMismatch { which: "hashes.lpdu.sha256", .. })), "{err:?}");

    // Oversized: the completed PDU would exceed 65,536 bytes.
    let big = "x".repeat(65_000);
    let (msg, err) = reject(&hub, part_lpdu(message(&room, BOB, &big)));
    assert!(matches!(err, HubError::Event(EventError::TooLarge { limit: 65_536, .. })), "{err:?}");
    assert!(msg.contains("65536"), "{msg}");

    // Unknown room.
    let (_, err) = reject(&hub, part_lpdu(message("!nope:hub.example", BOB, "x")));
    assert!(matches!(err, HubError::UnknownRoom(_)), "{err:?}");

    assert_eq!(replay::list_rooms(hub.store()).unwrap()[0].events, before, "nothing rejected was stored");
    replay::verify_store(hub.store(), None, &KeyRing::default(), false).unwrap();
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    for (input, field) in [
        (&b"{not json"[..], "invalid JSON"),
        (br#"{"a": 1.5}"#, "float"),
        (br#"{"a": 1, "a": 2}"#, "duplicate key"),
        (br#"{"room_id":"!r:h","sender":"@a:h","type":"m","origin_server_ts":1,"content":{}}"#, "hub_server"),
        (
            br#"{"room_id":"!r:h","sender":"nobody","type":"m","origin_server_ts":1,"content":{},"hub_server":"h"}"#,
            "sender",
        ),
    ] {
        let err = UnverifiedLpdu::parse(input).unwrap_err();
        assert!(err.to_string().contains(field), "{}: {err}", String::from_utf8_lossy(input));
    }
}

#[test]
fn local_events_from_remote_users_and_wrong_room_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    let room = room_with_bob(&hub);
    let err = hub.submit_local(message(&room, BOB, "spoof")).unwrap_err();
    assert!(matches!(err, HubError::NotLocalSender { .. }), "{err:?}");

    // A followed create event in a room version this crate cannot log.
    let follower = open_follower(tempfile::tempdir().unwrap().path());
    let mut create = replay::timeline(hub.store(), &room, 0, Some(1)).unwrap().remove(0);
    let mut object: serde_json::Value = serde_json::from_slice(&create.bytes).unwrap();
    object["content"]["room_version"] = json!("10");
    create.bytes = object.to_string().into_bytes();
    let err = follower.submit_followed(UnverifiedPdu::parse(&create.bytes).unwrap()).unwrap_err();
    assert!(matches!(&err, HubError::Chain(ChainError::BadCreate(reason)) if reason.contains("\"10\"")), "{err:?}");
}

#[test]
fn a_follower_replicates_the_hub_and_refuses_gaps() {
    let hub_dir = tempfile::tempdir().unwrap();
    let part_dir = tempfile::tempdir().unwrap();
    let hub = open_hub(hub_dir.path());
    let follower = open_follower(part_dir.path());
    let room = room_with_bob(&hub);
    for i in 0..5 {
        hub.submit_local(message(&room, ALICE, &format!("m{i}"))).unwrap().wait().unwrap();
    }
    let events = replay::timeline(hub.store(), &room, 0, None).unwrap();
    // Skipping position 3 is a gap, named with the local tail.
    for e in &events[..3] {
        follower.submit_followed(UnverifiedPdu::parse(&e.bytes).unwrap()).unwrap().wait().unwrap();
    }
    let err = follower.submit_followed(UnverifiedPdu::parse(&events[4].bytes).unwrap()).unwrap_err();
    match err {
        HubError::Chain(ChainError::Gap { position, found, tail }) => {
            assert_eq!(position, 3);
            assert_eq!(found, vec![events[3].event_id.clone()]);
            assert_eq!(tail.as_deref(), Some(events[2].event_id.as_str()));
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    for e in &events[3..] {
        follower.submit_followed(UnverifiedPdu::parse(&e.bytes).unwrap()).unwrap().wait().unwrap();
    }
    // A redelivered event is a duplicate, not an error.
    let again = follower.submit_followed(UnverifiedPdu::parse(&events[5].bytes).unwrap()).unwrap().wait().unwrap();
    assert!(again.duplicate);
    let replica = replay::list_rooms(follower.store()).unwrap();
    assert_eq!(replica[0].tail_event_id, events.last().unwrap().event_id);
    assert_eq!(replica[0].hub, HUB);
    replay::verify_store(follower.store(), None, &KeyRing::default(), false).unwrap();
    // Same bytes on both sides.
    for e in &events {
        let pos = follower.store().event_position(&e.event_id).unwrap().unwrap();
        assert_eq!(follower.store().pdu_at(RoomSeq { room: pos.room, seq: e.position }).unwrap().unwrap(), e.bytes);
    }
}

#[test]
fn a_forged_hub_event_is_refused_by_the_follower() {
    let hub = open_hub(tempfile::tempdir().unwrap().path());
    let follower = open_follower(tempfile::tempdir().unwrap().path());
    let room = room_with_bob(&hub);
    let create = replay::timeline(hub.store(), &room, 0, Some(1)).unwrap().remove(0);
    let mut object: serde_json::Value = serde_json::from_slice(&create.bytes).unwrap();
    object["origin_server_ts"] = json!(1);
    let err = follower.submit_followed(UnverifiedPdu::parse(object.to_string().as_bytes()).unwrap()).unwrap_err();
    assert!(matches!(err, HubError::Event(EventError::HashMismatch { which: "hashes.sha256", .. })), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_across_rooms_are_gap_free_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Arc::new(open_hub(dir.path()));
    let mut rooms = Vec::new();
    for _ in 0..4 {
        rooms.push(hub.create_room(ALICE, &RoomPreset::default(), TS).await.unwrap().0);
    }
    let mut tasks = Vec::new();
    for writer in 0..32 {
        let hub = Arc::clone(&hub);
        let room = rooms[writer % rooms.len()].clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut positions = Vec::new();
            for i in 0..25 {
                let done = hub.submit_local(message(&room, ALICE, &format!("w{writer} #{i}"))).unwrap().wait().unwrap();
                positions.push(done.position);
            }
            positions
        }));
    }
    for task in tasks {
        let positions = task.await.unwrap();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "one writer's appends keep their order");
    }
    let path = hub.store().path().to_owned();
    drop(hub);
    let store = Store::open(&path).unwrap();
    for summary in replay::list_rooms(&store).unwrap() {
        assert_eq!(summary.events, 5 + 8 * 25);
    }
    let verified = replay::verify_store(&store, None, &KeyRing::default(), false).unwrap();
    assert_eq!(verified.events, 4 * (5 + 200));
}

#[test]
fn hashes_must_have_exactly_the_shape_of_their_form() {
    // Extra keys in `hashes` would be signed by the origin but reshaped by everyone after it.
    let hub = open_hub(tempfile::tempdir().unwrap().path());
    let room = room_with_bob(&hub);
    let mut object = part_lpdu(message(&room, BOB, "odd hashes")).object().clone();
    if let Some(ruma::CanonicalJsonValue::Object(hashes)) = object.get_mut("hashes") {
        hashes.insert("foo".into(), ruma::CanonicalJsonValue::String("bar".into()));
    }
    object.remove("signatures");
    mimi_bridge::event::sign::sign_event(&LINEARIZED_02, &part_key(), PART, &mut object);
    let (_, err) = reject(&hub, UnverifiedLpdu::from_object(object).unwrap());
    assert!(matches!(&err, HubError::Event(EventError::Field { field, .. }) if field == "hashes"), "{err:?}");
    replay::verify_store(hub.store(), None, &KeyRing::default(), false).unwrap();
}

#[test]
fn unsigned_is_dropped_on_ingest() {
    let hub = open_hub(tempfile::tempdir().unwrap().path());
    let room = room_with_bob(&hub);
    let mut object = part_lpdu(message(&room, BOB, "with extras")).object().clone();
    object.insert(
        "unsigned".into(),
        ruma::CanonicalJsonValue::Object(content(json!({"note": "not covered by anything"}))),
    );
    let appended = hub.submit_lpdu(UnverifiedLpdu::from_object(object).unwrap()).unwrap().wait().unwrap();
    let stored = replay::timeline(hub.store(), &room, appended.position, Some(1)).unwrap().remove(0);
    assert!(!String::from_utf8(stored.bytes).unwrap().contains("unsigned"));
    replay::verify_store(hub.store(), None, &KeyRing::default(), false).unwrap();
}

#[test]
fn a_key_id_never_changes_its_key() {
    let hub = open_hub(tempfile::tempdir().unwrap().path());
    let other = mimi_bridge::event::ServerKey::from_seed("part1", [2; 32]).unwrap();
    let err = hub.directories().trust_key(PART, "ed25519:part1", other.verifying_key()).unwrap_err();
    assert!(matches!(err, HubError::KeyConflict { .. }), "{err:?}");
    hub.directories().trust_key(PART, "ed25519:part1", part_key().verifying_key()).unwrap();
}

#[test]
fn a_retried_lpdu_is_acknowledged_only_through_the_store() {
    let hub = open_hub(tempfile::tempdir().unwrap().path());
    let room = room_with_bob(&hub);
    let lpdu = part_lpdu(message(&room, BOB, "twice, quickly"));
    // Submit both before waiting for either: the retry must still resolve through the store.
    let first = hub.submit_lpdu(lpdu.clone()).unwrap();
    let second = hub.submit_lpdu(lpdu).unwrap();
    let (a, b) = (first.wait().unwrap(), second.wait().unwrap());
    assert!(!a.duplicate && b.duplicate && a.event_id == b.event_id);
    assert_eq!(hub.store().event_position(&a.event_id).unwrap().map(|p| p.seq), Some(a.position));
}

#[test]
fn a_redelivered_tail_is_a_duplicate_even_before_it_is_durable() {
    let hub = open_hub(tempfile::tempdir().unwrap().path());
    let follower = open_follower(tempfile::tempdir().unwrap().path());
    let room = room_with_bob(&hub);
    let events = replay::timeline(hub.store(), &room, 0, None).unwrap();
    for e in &events[..events.len() - 1] {
        follower.submit_followed(UnverifiedPdu::parse(&e.bytes).unwrap()).unwrap().wait().unwrap();
    }
    let last = &events[events.len() - 1].bytes;
    let first = follower.submit_followed(UnverifiedPdu::parse(last).unwrap()).unwrap();
    let again = follower.submit_followed(UnverifiedPdu::parse(last).unwrap()).unwrap();
    let (a, b) = (first.wait().unwrap(), again.wait().unwrap());
    assert!(!a.duplicate && b.duplicate && a.position == b.position && a.event_id == b.event_id);
}

/// Loaded room heads are bounded: with room for 4, twelve rooms in use keep at most about 4
/// loaded, evicted rooms load again on their next use, and every log stays whole and verifies.
#[test]
fn idle_room_heads_are_evicted_and_reloaded_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    hub.set_max_loaded_rooms(4);
    let rooms: Vec<String> =
        (0..12).map(|_| hub.create_room_blocking(ALICE, &RoomPreset::default(), TS).unwrap().0).collect();
    assert!(hub.loaded_rooms() <= 5, "{} heads loaded", hub.loaded_rooms());
    for round in 0..3 {
        for room in &rooms {
            let appended = hub.submit_local(message(room, ALICE, &format!("round {round}"))).unwrap().wait().unwrap();
            assert_eq!(appended.position, 5 + round, "{room}: the reloaded head continues the log");
        }
        assert!(hub.loaded_rooms() <= 5, "{} heads loaded", hub.loaded_rooms());
    }
    assert_eq!(replay::verify_store(hub.store(), None, &KeyRing::default(), false).unwrap().events, 12 * 8);
}

/// Rooms loaded, appended to and evicted by several threads at once: a head loaded while
/// another thread appended and had the room evicted is stale and must not be used, or two
/// events would claim one position. Every message lands once and every log verifies.
#[test]
fn concurrent_loads_and_evictions_never_fork_a_log() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let hub = open_hub(dir.path());
    hub.set_max_loaded_rooms(2);
    let rooms: Vec<String> =
        (0..6).map(|_| hub.create_room_blocking(ALICE, &RoomPreset::default(), TS).unwrap().0).collect();
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (hub, rooms) = (&hub, &rooms);
            scope.spawn(move || {
                for round in 0..ROUNDS {
                    let room = &rooms[(t + round) % rooms.len()];
                    hub.submit_local(message(room, ALICE, &format!("{t}/{round}"))).unwrap().wait().unwrap();
                }
            });
        }
    });
    let verified = replay::verify_store(hub.store(), None, &KeyRing::default(), false).unwrap();
    assert_eq!(verified.events, u64::try_from(rooms.len() * 5 + THREADS * ROUNDS).unwrap());
}
