//! Storage truth in checked-in fixtures: a data directory written by schema version 1 must open
//! and verify with every later build. `tests/fixtures/store-v1/expected.json` records what it
//! holds.

use std::path::{Path, PathBuf};

use mimi_bridge::event::KeyRing;
use mimi_bridge::replay;
use mimi_bridge::store::Store;

use crate::common::*;

fn fixture() -> PathBuf {
    fixture_of(1)
}

fn fixture_of(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/store-v{version}"))
}

/// What a fixture's `expected.json` says it holds.
fn expected_of(version: u32) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture_of(version).join("expected.json")).unwrap()).unwrap()
}

/// A fixture's room holds the plaintexts of its two messages, and its group carries on: Alice
/// sends a third.
fn its_group_carries_on(hub: &mimi_bridge::hub::Hub, room: &str) {
    let sent = [crate::mls_rooms::mimi(1), crate::mls_rooms::mimi(2)];
    assert_eq!(crate::mls_rooms::plaintexts(hub, room), sent.iter().cloned().map(Some).collect::<Vec<_>>());
    hub.send_encrypted(room, ALICE, &crate::mls_rooms::mimi(3), TS).unwrap().wait().unwrap();
    assert_eq!(crate::mls_rooms::plaintexts(hub, room).len(), 3);
}

/// Opening writes to a RocksDB directory, so tests open a copy.
fn copy_of(dir: &Path) -> tempfile::TempDir {
    let target = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "expected.json" {
            std::fs::copy(entry.path(), target.path().join(entry.file_name())).unwrap();
        }
    }
    target
}

#[test]
fn schema_v1_fixture_opens_and_verifies() {
    let expected = expected_of(1);
    let copy = copy_of(&fixture().join("db"));
    let store = Store::open(copy.path()).unwrap();
    let rooms = replay::list_rooms(&store).unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0].room_id, expected["room_id"].as_str().unwrap());
    assert_eq!(rooms[0].events, expected["events"].as_u64().unwrap());
    assert_eq!(rooms[0].tail_event_id, expected["tail_event_id"].as_str().unwrap());
    assert_eq!(replay::verify_store(&store, None, &KeyRing::new(), false).unwrap().events, rooms[0].events);
}

/// Writes the fixture. Run once per schema version:
/// `MIMI_BRIDGE_WRITE_FIXTURE=1 cargo test --release --test it fixtures::write -- --ignored`
#[test]
#[ignore = "writes tests/fixtures/store-v1; run by hand when a schema version is added"]
fn write_schema_v1_fixture() {
    if std::env::var_os("MIMI_BRIDGE_WRITE_FIXTURE").is_none() {
        return;
    }
    let db = fixture().join("db");
    let _ = std::fs::remove_dir_all(fixture());
    std::fs::create_dir_all(&db).unwrap();
    let (room, events, tail) = {
        let hub = open_hub(&db);
        let room = room_with_bob(&hub);
        hub.submit_local(message(&room, ALICE, "written by schema version 1")).unwrap().wait().unwrap();
        hub.submit_lpdu(part_lpdu(message(&room, BOB, "and read by every later build"))).unwrap().wait().unwrap();
        let summary = replay::list_rooms(hub.store()).unwrap().remove(0);
        (room, summary.events, summary.tail_event_id)
    };
    let expected = serde_json::json!({"room_id": room, "events": events, "tail_event_id": tail, "schema_version": 1});
    freeze(&fixture(), &expected);
}

fn freeze(fixture: &Path, expected: &serde_json::Value) {
    let db = fixture.join("db");
    for entry in std::fs::read_dir(&db).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("LOG") || name == "LOCK" {
            std::fs::remove_file(db.join(name)).unwrap();
        }
    }
    std::fs::write(fixture.join("expected.json"), format!("{expected:#}\n")).unwrap();
}

/// Schema 2 added MLS: an encrypted room whose hub holds Alice's client, two messages' plaintexts
/// and one commit. The reopened hub verifies it, shows the plaintexts and carries on sending.
#[test]
fn schema_v2_fixture_opens_verifies_and_its_group_carries_on() {
    let expected = expected_of(2);
    let copy = copy_of(&fixture_of(2).join("db"));
    let room = expected["room_id"].as_str().unwrap();
    {
        let store = Store::open(copy.path()).unwrap();
        let summary = replay::verify_store(&store, None, &KeyRing::new(), false).unwrap();
        assert_eq!((summary.events, summary.mls_commits), (expected["events"].as_u64().unwrap(), 1));
    }
    let hub = open_hub(copy.path());
    its_group_carries_on(&hub, room);
}

/// `MIMI_BRIDGE_WRITE_FIXTURE=1 cargo test --release --test it fixtures::write -- --ignored`
#[test]
#[ignore = "writes tests/fixtures/store-v2; run by hand when a schema version is added"]
fn write_schema_v2_fixture() {
    write_pair_fixture(2);
}

/// A room of two servers' clients (one commit) with a message of each, as `version` writes it.
fn write_pair_fixture(version: u32) {
    if std::env::var_os("MIMI_BRIDGE_WRITE_FIXTURE").is_none() {
        return;
    }
    let fixture = fixture_of(version);
    let _ = std::fs::remove_dir_all(&fixture);
    let part = tempfile::tempdir().unwrap();
    let (room, events, tail) = {
        let pair = crate::mls_rooms::Pair::new(&fixture.join("db"), part.path());
        pair.alice_sends(1);
        pair.part_sends(BOB, 2).unwrap();
        let summary = replay::list_rooms(pair.hub.store()).unwrap().remove(0);
        (pair.room.clone(), summary.events, summary.tail_event_id)
    };
    let expected =
        serde_json::json!({"room_id": room, "events": events, "tail_event_id": tail, "schema_version": version});
    freeze(&fixture, &expected);
}

/// Schema 3 moved the homeserver queue, the portals' cursors and the hosted media into their own
/// families; schema 4 added the provider's. The v3 store opens (upgraded) with its queue
/// entry, cursor and chunked attachment where they were, verifies, and its group carries on.
#[test]
fn schema_v3_fixture_opens_with_its_queue_cursor_and_media() {
    use mimi_bridge::store::{QueueId, ShortRoomId};
    let expected = expected_of(3);
    let copy = copy_of(&fixture_of(3).join("db"));
    let room = expected["room_id"].as_str().unwrap();
    {
        let store = Store::open(copy.path()).unwrap();
        let summary = replay::verify_store(&store, None, &KeyRing::new(), false).unwrap();
        assert_eq!((summary.events, summary.mls_commits), (expected["events"].as_u64().unwrap(), 1));
        let page = store.queue_page(QueueId::Homeserver, "!portal:hs.test", 0, 10).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [7]);
        assert_eq!(store.portal_cursor(ShortRoomId(1)).unwrap(), 3);
        let blob: Vec<u8> = (0..300_000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
        assert_eq!(store.media("fixturemedia").unwrap().unwrap(), blob);
        assert!(store.consent("a", "b", None).unwrap().is_none(), "schema 4's families exist, empty");
    }
    let hub = open_hub(copy.path());
    hub.send_encrypted(room, ALICE, &crate::mls_rooms::mimi(3), TS).unwrap().wait().unwrap();
    assert_eq!(crate::mls_rooms::plaintexts(&hub, room).len(), 3);
}

/// `MIMI_BRIDGE_WRITE_FIXTURE=1 cargo test --release --test it fixtures::write -- --ignored`, with
/// a schema-3 build (commit 6389ad3) — written by that build, kept here as the record of how.
#[test]
#[ignore = "writes tests/fixtures/store-v3; run by hand when a schema version is added"]
fn write_schema_v3_fixture() {
    use mimi_bridge::store::{Batch, QueueId, QueueKey, ShortRoomId};
    if std::env::var_os("MIMI_BRIDGE_WRITE_FIXTURE").is_none() {
        return;
    }
    let fixture = fixture_of(3);
    let _ = std::fs::remove_dir_all(&fixture);
    let part = tempfile::tempdir().unwrap();
    let (room, events, tail) = {
        let pair = crate::mls_rooms::Pair::new(&fixture.join("db"), part.path());
        pair.alice_sends(1);
        pair.part_sends(BOB, 2).unwrap();
        let mut batch = Batch::new();
        let key = QueueKey { queue: QueueId::Homeserver, dest: "!portal:hs.test".into(), seq: 7 };
        batch.queue_push(&key, 1_700_000_000_000, br#"{"kind":"send","room":"!portal:hs.test"}"#);
        batch.portal_cursor(ShortRoomId(1), 3);
        let blob: Vec<u8> = (0..300_000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
        batch.media("fixturemedia", &blob);
        pair.hub.store().write(batch).unwrap();
        let summary = replay::list_rooms(pair.hub.store()).unwrap().remove(0);
        (pair.room.clone(), summary.events, summary.tail_event_id)
    };
    let expected = serde_json::json!({"room_id": room, "events": events, "tail_event_id": tail, "schema_version": 3});
    freeze(&fixture, &expected);
}

/// Schema 5 retired the KeyPackages published with LM-triple credentials. The v4 store opens
/// (upgraded to 5): Alice's two packages are replaced by two with her client URI (the one-time
/// package's private keys forgotten, a last resort for the last resort), the provider's records stay, the log
/// verifies, and a device with a client URI credential joins the group whose leaves carry
/// triples, then everyone sends.
#[test]
fn schema_v4_fixture_reissues_its_key_packages_with_client_uris() {
    use mimi_bridge::mls::member::Member;
    use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _, VLBytes};
    use openmls::prelude::{BasicCredential, KeyPackageIn, KeyPackageRef, OpenMlsProvider as _};
    use openmls_traits::storage::StorageProvider as _;

    let expected = expected_of(4);
    let copy = copy_of(&fixture_of(4).join("db"));
    let room = expected["room_id"].as_str().unwrap().to_owned();
    let (old, old_flags): (Vec<String>, Vec<bool>) = {
        let store = Store::open_existing(copy.path()).unwrap();
        store.key_packages(ALICE, "ALICEDEV").unwrap().into_iter().map(|(r, v)| (r, v[0] == 1)).unzip()
    };
    assert_eq!(old.len(), 2);
    let part = tempfile::tempdir().unwrap();
    let pair = crate::mls_rooms::Pair { hub: open_hub(copy.path()), part: open_follower(part.path()), room };
    let store = pair.hub.store();
    assert!(store.retired_key_packages().unwrap().is_empty());
    let provider = Member::provider_for(store, ALICE, "ALICEDEV");
    let new = store.key_packages(ALICE, "ALICEDEV").unwrap();
    assert_eq!(new.len(), 2);
    assert_eq!(new.iter().filter(|(_, value)| value[0] == 1).count(), 1, "one last resort");
    for (reference, value) in &new {
        assert!(!old.contains(reference));
        let package = KeyPackageIn::tls_deserialize_exact(&value[1..]).unwrap();
        let identity = BasicCredential::try_from(package.unverified_credential().credential).unwrap();
        assert_eq!(identity.identity(), b"mimi://hub.example/d/alice/ALICEDEV");
    }
    let one_time = old.iter().zip(&old_flags).filter(|(_, last_resort)| !**last_resort).map(|(r, _)| r);
    for reference in one_time {
        let tls = VLBytes::new(hex::decode(reference).unwrap()).tls_serialize_detached().unwrap();
        let reference = KeyPackageRef::tls_deserialize_exact(&tls[..]).unwrap();
        let bundle: Option<openmls::prelude::KeyPackageBundle> = provider.storage().key_package(&reference).unwrap();
        assert!(bundle.is_none(), "a retired one-time package's private keys are gone");
    }
    assert!(store.consent("mimi://part.example/u/bob", "mimi://hub.example/u/alice", None).unwrap().is_some());
    assert!(store.key_package_claim(b"fixture-ref", "part.example").unwrap().is_some());
    let claimed = pair.hub.directories().claim_key_package(ALICE, "ALICEDEV").unwrap().unwrap();
    pair.hub.directories().check_key_package(&claimed, ALICE, "ALICEDEV").unwrap();

    crate::mls_rooms::join(&pair.hub, &pair.room, crate::mls_rooms::CAROL);
    pair.add(crate::mls_rooms::CAROL, "CAROLDEV");
    pair.alice_sends(3);
    pair.part_sends(crate::mls_rooms::CAROL, 4).unwrap();
    let plaintexts = crate::mls_rooms::plaintexts(&pair.hub, &pair.room);
    assert_eq!(plaintexts, [1, 2, 3, 4].map(|n| Some(crate::mls_rooms::mimi(n))));
    let summary = replay::verify_store(store, None, &KeyRing::new(), false).unwrap();
    assert_eq!(summary.mls_commits, 2);
}

/// `MIMI_BRIDGE_WRITE_FIXTURE=1 cargo test --release --test it fixtures::write -- --ignored`, with
/// a schema-4 build (commit 3b309d2): the v3 fixture's room, and Alice's published KeyPackages
/// (LM identity triples: one one-time, one last resort), a consent record and a claim record.
#[test]
#[ignore = "writes tests/fixtures/store-v4; run by hand when a schema version is added"]
fn write_schema_v4_fixture() {
    use mimi_bridge::store::Batch;
    if std::env::var_os("MIMI_BRIDGE_WRITE_FIXTURE").is_none() {
        return;
    }
    let fixture = fixture_of(4);
    let _ = std::fs::remove_dir_all(&fixture);
    let part = tempfile::tempdir().unwrap();
    let (room, events, tail, packages) = {
        let pair = crate::mls_rooms::Pair::new(&fixture.join("db"), part.path());
        pair.alice_sends(1);
        pair.part_sends(BOB, 2).unwrap();
        pair.hub.directories().publish_key_packages(ALICE, 1).unwrap();
        let packages = pair.hub.store().key_packages(ALICE, "ALICEDEV").unwrap();
        let mut batch = Batch::new();
        let (bob, alice) = ("mimi://part.example/u/bob", "mimi://hub.example/u/alice");
        batch.consent(bob, alice, None, Some(br#"{"state":"granted","at":1700000000000}"#));
        batch.key_package_claim(b"fixture-ref", "part.example", br#"{"provider":"part.example"}"#);
        pair.hub.store().write(batch).unwrap();
        let summary = replay::list_rooms(pair.hub.store()).unwrap().remove(0);
        (pair.room.clone(), summary.events, summary.tail_event_id, packages.len())
    };
    let expected = serde_json::json!({
        "room_id": room, "events": events, "tail_event_id": tail, "schema_version": 4, "key_packages": packages,
    });
    freeze(&fixture, &expected);
}

/// `MIMI_BRIDGE_WRITE_FIXTURE=1 cargo test --release --test it fixtures::write -- --ignored`, with
/// a schema-5 build (commit c8bf385): a room of two servers' clients (client URI credentials)
/// with messages of both.
#[test]
#[ignore = "writes tests/fixtures/store-v5; run by hand when a schema version is added"]
fn write_schema_v5_fixture() {
    write_pair_fixture(5);
}

/// `MIMI_BRIDGE_WRITE_FIXTURE=1 cargo test --release --test it fixtures::write -- --ignored`, with
/// a schema-6 build (commit 458d4b2): as the v5 fixture.
#[test]
#[ignore = "writes tests/fixtures/store-v6; run by hand when a schema version is added"]
fn write_schema_v6_fixture() {
    write_pair_fixture(6);
}

/// Schema 6 added `commitid_removed` (a follower's record of whom a commit removed): the v5
/// store opens with it empty, verifies, and its group carries on.
#[test]
fn schema_v5_fixture_opens_verifies_and_its_group_carries_on() {
    let expected = expected_of(5);
    let copy = copy_of(&fixture_of(5).join("db"));
    let room = expected["room_id"].as_str().unwrap();
    let hub = open_hub(copy.path());
    let summary = replay::verify_store(hub.store(), None, &KeyRing::new(), false).unwrap();
    assert_eq!((summary.events, summary.mls_commits), (expected["events"].as_u64().unwrap(), 1));
    assert_eq!(replay::list_rooms(hub.store()).unwrap()[0].tail_event_id, expected["tail_event_id"].as_str().unwrap());
    let commit = hub.store().welcomes().unwrap().remove(0).0;
    assert!(hub.store().removed_by(&commit).unwrap().is_empty());
    its_group_carries_on(&hub, room);
}

/// Schema 7 added `cryptokey_value` (the bridge device's crypto state): the v6 store opens with
/// it empty, verifies, and its group carries on.
#[test]
fn schema_v6_fixture_opens_verifies_and_its_group_carries_on() {
    let expected = expected_of(6);
    let copy = copy_of(&fixture_of(6).join("db"));
    let room = expected["room_id"].as_str().unwrap();
    let hub = open_hub(copy.path());
    let summary = replay::verify_store(hub.store(), None, &KeyRing::new(), false).unwrap();
    assert_eq!((summary.events, summary.mls_commits), (expected["events"].as_u64().unwrap(), 1));
    assert!(hub.store().crypto_records(b"").unwrap().is_empty());
    its_group_carries_on(&hub, room);
}
