//! The log demo: two servers and one hub-linearized room, on real RocksDB stores.
//!
//! `hub.test` creates a room for @alice and invites @bob of `part.test`. Bob's server signs LPDUs
//! (his join and his messages) and submits them to the hub, which completes, signs and appends
//! them beside Alice's own events. `part.test` then follows the hub: it verifies every PDU and
//! appends it to its own copy, which must end at the same tail. Run by `scripts/demo`, which then
//! inspects both data directories with the `mimi-bridge log` tools.
//!
//! Usage: `demo HUB_DIR PART_DIR HUB_KEY_FILE PART_KEY_FILE`

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{EventTemplate, ServerKey, UnverifiedPdu, build_lpdu};
use mimi_bridge::hub::{Hub, RoomPreset};
use mimi_bridge::replay;
use mimi_bridge::store::Store;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

const HUB: &str = "hub.test";
const PART: &str = "part.test";
const ALICE: &str = "@alice:hub.test";
const BOB: &str = "@bob:part.test";

fn content(pairs: &[(&str, &str)]) -> CanonicalJsonObject {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), CanonicalJsonValue::String((*v).to_owned()))).collect()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

fn event(
    room: &str,
    sender: &str,
    event_type: &str,
    state_key: Option<&str>,
    body: CanonicalJsonObject,
) -> EventTemplate {
    EventTemplate {
        room_id: room.to_owned(),
        event_type: event_type.to_owned(),
        sender: sender.to_owned(),
        state_key: state_key.map(str::to_owned),
        content: body,
        origin_server_ts: now_ms(),
    }
}

fn load_key(path: &str) -> Result<ServerKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    ServerKey::parse_synapse(&text).with_context(|| format!("parsing {path}"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [hub_dir, part_dir, hub_key, part_key] = args.as_slice() else {
        bail!("usage: demo HUB_DIR PART_DIR HUB_KEY_FILE PART_KEY_FILE");
    };
    let (hub_key, part_key) = (load_key(hub_key)?, load_key(part_key)?);

    let hub = Hub::new(HUB, &hub_key, Arc::new(Store::open(hub_dir.as_ref())?))?;
    hub.trust_key(PART, part_key.key_id(), part_key.verifying_key())?;
    let (room, opening) = hub.create_room_blocking(ALICE, &RoomPreset::default(), now_ms())?;
    println!("hub.test created {room} ({} opening events)", opening.len());

    let invite = event(&room, ALICE, "m.room.member", Some(BOB), content(&[("membership", "invite")]));
    hub.submit_local(invite)?.wait()?;
    let lpdu = |t| build_lpdu(&LINEARIZED_02, t, HUB, &part_key, PART);
    let join = hub
        .submit_lpdu(lpdu(event(&room, BOB, "m.room.member", Some(BOB), content(&[("membership", "join")])))?)?
        .wait()?;
    println!("part.test's LPDU for @bob's join became {} at position {}", join.event_id, join.position);

    let lines = [
        (ALICE, "Welcome, Bob. This room lives on hub.test."),
        (BOB, "Thanks! My server signs LPDUs; yours orders and countersigns them."),
        (ALICE, "Every event names the previous tail in prev_events."),
        (BOB, "And anyone can replay the log offline with `mimi-bridge log verify`."),
    ];
    for (sender, text) in lines {
        let body = content(&[("msgtype", "m.text"), ("body", text)]);
        let appended = if sender == ALICE {
            hub.submit_local(event(&room, sender, "m.room.message", None, body))?.wait()?
        } else {
            hub.submit_lpdu(lpdu(event(&room, sender, "m.room.message", None, body))?)?.wait()?
        };
        println!("  #{:<2} {sender}: {text}", appended.position);
    }
    // A retried LPDU is recognised and not appended twice.
    let retry =
        lpdu(event(&room, BOB, "m.room.message", None, content(&[("msgtype", "m.text"), ("body", "sent twice")])))?;
    let first = hub.submit_lpdu(retry.clone())?.wait()?;
    let again = hub.submit_lpdu(retry)?.wait()?;
    println!(
        "an LPDU retried: position {} both times, duplicate={}",
        again.position,
        again.duplicate && again.event_id == first.event_id
    );
    // Alice's server refuses an LPDU from a user who never joined, and says why.
    let stranger = lpdu(event(&room, "@mallory:part.test", "m.room.message", None, content(&[("body", "hi")])))?;
    if let Err(rejection) = hub.submit_lpdu(stranger) {
        println!("rejected as expected: {rejection}");
    }

    // part.test follows the hub: verify and append every PDU in order.
    let follower = Hub::new(PART, &part_key, Arc::new(Store::open(part_dir.as_ref())?))?;
    follower.trust_key(HUB, hub_key.key_id(), hub_key.verifying_key())?;
    let timeline = replay::timeline(hub.store(), &room, 0, None)?;
    for entry in &timeline {
        follower.submit_followed(UnverifiedPdu::parse(&entry.bytes)?)?.wait()?;
    }
    let hub_tail = replay::list_rooms(hub.store())?.remove(0).tail_event_id;
    let part_tail = replay::list_rooms(follower.store())?.remove(0).tail_event_id;
    println!("part.test followed {} events; tails agree: {}", timeline.len(), hub_tail == part_tail);
    println!("{room}");
    Ok(())
}
