//! The log demo: two servers and one hub-linearized, MLS-encrypted room, on real RocksDB stores.
//!
//! `hub.test` creates an encrypted room for @alice (her device creates the MLS group; its epoch-0
//! group info goes into the create event) and invites @bob of `part.test`. Bob's server signs
//! LPDUs (his join and his messages) and submits them to the hub, which checks, completes, signs
//! and appends them beside Alice's own events. Alice adds Bob's device with an `m.mls.commit`
//! (key package claimed from part.test, device object vouched for by part.test); the Welcome is
//! released once the commit is in the log. Messages are Matrix text translated to MIMI content
//! and encrypted as `m.room.encrypted`. `part.test` follows the hub: it verifies every PDU, runs
//! the same MLS checks and decrypts into its own copy, which must end at the same tail. Run by
//! `scripts/demo`, which then inspects both data directories with the `mimi-bridge log` tools.
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
use mimi_bridge::translate::{MemoryIdMap, OutboundContext, Outcome, Salt, to_mimi};
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

/// Appends to the follower what it lacks of the hub's log.
fn follow(hub: &Hub, follower: &Hub, room: &str) -> Result<()> {
    let from = replay::list_rooms(follower.store())?.first().map_or(0, |r| r.events);
    for entry in replay::timeline(hub.store(), room, from, None)? {
        follower.submit_followed(UnverifiedPdu::parse(&entry.bytes)?)?.wait()?;
    }
    Ok(())
}

/// A Matrix text message translated to MIMI content (CBOR).
fn mimi_text(room: &str, sender: &str, text: &str) -> Result<Vec<u8>> {
    let event = serde_json::json!({
        "type": "m.room.message", "sender": sender, "room_id": room, "event_id": format!("$demo{}", now_ms()),
        "origin_server_ts": now_ms(), "content": {"msgtype": "m.text", "body": text},
    });
    let ctx = OutboundContext {
        room_uri: format!("mimi://{HUB}/r/{}", room.trim_start_matches('!').split(':').next().unwrap_or_default()),
        salt: Salt::Random,
        matrix_origin: None,
    };
    match to_mimi(&event, &ctx, &MemoryIdMap::new())?.pop() {
        Some(Outcome::Message(content)) => Ok(content.encode()),
        other => bail!("text did not translate to a message: {other:?}"),
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
    hub.directories().trust_key(PART, part_key.key_id(), part_key.verifying_key())?;
    let follower = Hub::new(PART, &part_key, Arc::new(Store::open(part_dir.as_ref())?))?;
    follower.directories().trust_key(HUB, hub_key.key_id(), hub_key.verifying_key())?;
    hub.directories().register_device(ALICE, "ALICEPHONE")?;
    follower.directories().register_device(BOB, "BOBLAPTOP")?;
    let preset = RoomPreset { encrypted: true, ..RoomPreset::default() };
    let (room, opening) = hub.create_room_blocking(ALICE, &preset, now_ms())?;
    println!("hub.test created {room} ({} opening events), MLS group at epoch 0", opening.len());

    let invite = event(&room, ALICE, "m.room.member", Some(BOB), content(&[("membership", "invite")]));
    hub.submit_local(invite)?.wait()?;
    let lpdu = |t| build_lpdu(&LINEARIZED_02, t, HUB, &part_key, PART);
    let join = hub
        .submit_lpdu(lpdu(event(&room, BOB, "m.room.member", Some(BOB), content(&[("membership", "join")])))?)?
        .wait()?;
    println!("part.test's LPDU for @bob's join became {} at position {}", join.event_id, join.position);

    follow(&hub, &follower, &room)?;

    // Bob's device joins the group: part.test vouches for it and publishes key packages; Alice
    // claims one and commits; the Welcome goes to part.test once the commit is in the log.
    hub.directories()
        .publish_device(&follower.directories().device_object(BOB, "BOBLAPTOP")?.context("Bob's device object")?)?;
    follower.directories().publish_key_packages(BOB, 1)?;
    let claimed = follower.directories().claim_key_package(BOB, "BOBLAPTOP")?.context("a key package")?;
    let package = hub.directories().check_key_package(&claimed, BOB, "BOBLAPTOP")?;
    let commit = hub.commit_add(&room, ALICE, &[package], now_ms())?.wait()?;
    let welcome = hub.welcome(&commit.event_id)?.context("the Welcome")?;
    follow(&hub, &follower, &room)?;
    follower.join_group(&room, BOB, &welcome.message)?;
    println!(
        "  #{:<2} m.mls.commit adds @bob's device; the group is at epoch {:?}",
        commit.position,
        hub.mls_epoch(&room)?
    );

    let lines = [
        (ALICE, "Welcome, Bob. This room lives on hub.test."),
        (BOB, "Thanks! My server signs LPDUs; yours orders and countersigns them."),
        (ALICE, "Every event names the previous tail in prev_events; our words travel as MLS ciphertext."),
        (BOB, "And anyone can replay the log offline with `mimi-bridge log verify`, commits included."),
    ];
    for (sender, text) in lines {
        let mimi = mimi_text(&room, sender, text)?;
        let appended = if sender == ALICE {
            hub.send_encrypted(&room, sender, &mimi, now_ms())?.wait()?
        } else {
            hub.submit_lpdu(follower.encrypt_lpdu(&room, sender, &mimi, now_ms())?)?.wait()?
        };
        println!("  #{:<2} {sender} (m.room.encrypted): {text}", appended.position);
    }
    // A retried LPDU is recognised and not appended twice.
    let retry = follower.encrypt_lpdu(&room, BOB, &mimi_text(&room, BOB, "sent twice")?, now_ms())?;
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

    // part.test follows the hub: verify (and decrypt) every PDU in order.
    follow(&hub, &follower, &room)?;
    let timeline = replay::timeline(hub.store(), &room, 0, None)?;
    let hub_tail = replay::list_rooms(hub.store())?.remove(0).tail_event_id;
    let part_tail = replay::list_rooms(follower.store())?.remove(0).tail_event_id;
    println!("part.test followed {} events; tails agree: {}", timeline.len(), hub_tail == part_tail);
    println!("{room}");
    Ok(())
}
