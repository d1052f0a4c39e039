//! Shared fixtures: a hub server and a participant server with fixed keys, on real RocksDB
//! stores in temporary directories.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{EventTemplate, ServerKey, UnverifiedLpdu, build_lpdu};
use mimi_bridge::hub::{Hub, RoomPreset};
use mimi_bridge::store::Store;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

pub(crate) const HUB: &str = "hub.example";
pub(crate) const PART: &str = "part.example";
pub(crate) const ALICE: &str = "@alice:hub.example";
pub(crate) const BOB: &str = "@bob:part.example";
pub(crate) const TS: i64 = 1_700_000_000_000;

pub(crate) fn hub_key() -> ServerKey {
    ServerKey::from_seed("hub1", [7; 32]).unwrap()
}

pub(crate) fn part_key() -> ServerKey {
    ServerKey::from_seed("part1", [9; 32]).unwrap()
}

/// A hub over a fresh store in `dir`, trusting the participant's key.
pub(crate) fn open_hub(dir: &Path) -> Hub {
    let store = Arc::new(Store::open(dir).unwrap());
    let hub = Hub::new(HUB, &hub_key(), store).unwrap();
    let part = part_key();
    hub.directories().trust_key(PART, part.key_id(), part.verifying_key()).unwrap();
    hub
}

/// A participant's store following the hub, trusting the hub's key.
pub(crate) fn open_follower(dir: &Path) -> Hub {
    let store = Arc::new(Store::open(dir).unwrap());
    let hub = Hub::new(PART, &part_key(), store).unwrap();
    let key = hub_key();
    hub.directories().trust_key(HUB, key.key_id(), key.verifying_key()).unwrap();
    hub
}

pub(crate) fn content(json: serde_json::Value) -> CanonicalJsonObject {
    match CanonicalJsonValue::try_from(json).unwrap() {
        CanonicalJsonValue::Object(o) => o,
        _ => panic!("content must be an object"),
    }
}

pub(crate) fn template(
    room: &str,
    sender: &str,
    event_type: &str,
    state_key: Option<&str>,
    body: serde_json::Value,
) -> EventTemplate {
    EventTemplate {
        room_id: room.to_owned(),
        event_type: event_type.to_owned(),
        sender: sender.to_owned(),
        state_key: state_key.map(str::to_owned),
        content: content(body),
        origin_server_ts: TS,
    }
}

pub(crate) fn message(room: &str, sender: &str, body: &str) -> EventTemplate {
    template(room, sender, "m.room.message", None, serde_json::json!({"msgtype": "m.text", "body": body}))
}

/// An LPDU from the participant server.
pub(crate) fn part_lpdu(t: EventTemplate) -> UnverifiedLpdu {
    build_lpdu(&LINEARIZED_02, t, HUB, &part_key(), PART).unwrap()
}

/// Creates a room on the hub with Bob (a participant user) invited and joined.
pub(crate) fn room_with_bob(hub: &Hub) -> String {
    let preset = RoomPreset::default();
    let (room, _) = hub.create_room_blocking(ALICE, &preset, TS).unwrap();
    let invite = template(&room, ALICE, "m.room.member", Some(BOB), serde_json::json!({"membership": "invite"}));
    hub.submit_local(invite).unwrap().wait().unwrap();
    let join = template(&room, BOB, "m.room.member", Some(BOB), serde_json::json!({"membership": "join"}));
    hub.submit_lpdu(part_lpdu(join)).unwrap().wait().unwrap();
    room
}

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mimi-bridge"))
}

/// Runs the binary with `args`, feeding `stdin`.
pub(crate) fn run(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child =
        bin().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// This process's resident set size, in KiB.
pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
