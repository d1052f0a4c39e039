//! Storage truth in checked-in fixtures: a data directory written by schema version 1 must open
//! and verify with every later build. `tests/fixtures/store-v1/expected.json` records what it
//! holds.

use std::path::{Path, PathBuf};

use mimi_bridge::event::KeyRing;
use mimi_bridge::replay;
use mimi_bridge::store::Store;

use crate::common::*;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1")
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
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap();
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
    for entry in std::fs::read_dir(&db).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("LOG") || name == "LOCK" {
            std::fs::remove_file(db.join(name)).unwrap();
        }
    }
    let expected = serde_json::json!({"room_id": room, "events": events, "tail_event_id": tail, "schema_version": 1});
    std::fs::write(fixture().join("expected.json"), format!("{expected:#}\n")).unwrap();
}
