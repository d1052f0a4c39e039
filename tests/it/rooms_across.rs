//! Rooms across providers: two whole bridges (each the appservice of its own real Synapse and a
//! MIMI provider under one test CA), the hub of a room and a follower of it, talking through the
//! MIMI protocol over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::event::UnverifiedPdu;
use mimi_bridge::mimi::protocol::{FanoutExtra, FanoutMessage, Wire as _};
use mimi_bridge::mls::events::{COMMIT, CommitContent, ENCRYPTED, EncryptedContent, FANOUT, FanoutContent};
use mimi_bridge::store::Store;
use serde_json::{Value, json};

use crate::bridge_pair::{Side, Switch, side};
use crate::bridge_synapse::wait_for;
use crate::synapse::Synapse;

/// The ghost on `homeserver` of the MIMI user `@name:provider` (the tests' template).
pub(crate) fn ghost(name: &str, provider: &str, homeserver: &str) -> String {
    format!("@mimi_{provider}_{name}:{homeserver}")
}

/// The Matrix room on `side` that is the portal of `mimi_room`, once there is one.
pub(crate) fn portal_on(side: &Side, mimi_room: &str) -> String {
    let store = Arc::clone(side.running.hub.store());
    let record = || store.portal_record(mimi_room).unwrap();
    wait_for("the portal on the follower", Duration::from_mins(1), || record().is_some());
    let record: Value = serde_json::from_slice(&record().unwrap()).unwrap();
    record["matrix_room"].as_str().unwrap().to_owned()
}

/// The messages `sender` sent into `room` as `reader` sees them: (event ID, body), edits,
/// reactions and redacted messages left out.
pub(crate) fn messages_from(side: &Side, token: &str, room: &str, sender: &str) -> Vec<(String, String)> {
    messages_of(&side.synapse, token, room, sender)
}

/// [`messages_from`] on a homeserver.
pub(crate) fn messages_of(synapse: &Synapse, token: &str, room: &str, sender: &str) -> Vec<(String, String)> {
    synapse
        .messages(token, room)
        .into_iter()
        .filter(|e| e["sender"] == sender && e["type"] == "m.room.message")
        .filter(|e| e["content"]["m.relates_to"]["rel_type"] != "m.replace")
        .filter_map(|e| Some((e["event_id"].as_str()?.to_owned(), e["content"]["body"].as_str()?.to_owned())))
        .collect()
}

/// The MLS messages (commits and application messages) of a room's log at the hub, in order.
pub(crate) fn hub_transcript(store: &Store, room: &str) -> Vec<Vec<u8>> {
    log(store, room)
        .into_iter()
        .filter_map(|pdu| match pdu.meta().event_type.as_str() {
            COMMIT => Some(CommitContent::parse(pdu.content()).unwrap().message),
            ENCRYPTED => Some(EncryptedContent::parse(pdu.content()).unwrap().ciphertext),
            _ => None,
        })
        .collect()
}

/// The MLS messages of a follower's record of a room, in order (Welcomes left out); every
/// application message came with the hub's frank.
pub(crate) fn record_transcript(store: &Store, room: &str) -> Vec<Vec<u8>> {
    log(store, room)
        .into_iter()
        .filter(|pdu| pdu.meta().event_type == FANOUT)
        .map(|pdu| FanoutMessage::decode(&FanoutContent::parse(pdu.content()).unwrap().fanout).unwrap())
        .filter(|fanout| !matches!(fanout.extra, FanoutExtra::Welcome(_)))
        .inspect(|fanout| assert!(!matches!(fanout.extra, FanoutExtra::Application(None)), "unfranked"))
        .map(|fanout| fanout.message)
        .collect()
}

fn log(store: &Store, room: &str) -> Vec<UnverifiedPdu> {
    let short = store.short_room(room).unwrap().unwrap();
    store.pdus(short, 0).unwrap().map(|item| UnverifiedPdu::parse(&item.unwrap().1).unwrap()).collect()
}

/// A counter of the bridge's metrics (0 when absent).
pub(crate) fn metric(side: &Side, series: &str) -> u64 {
    let text = side.running.appservice.metrics.render();
    text.lines().find_map(|line| line.strip_prefix(series).map(|v| v.trim().parse().unwrap())).unwrap_or(0)
}

/// Checks the texts `mimi-bridge log show --decrypt --json` prints for the `event_type` events of
/// a side's log of `room`: Alice's first to her welcome of Carol, Bob's reply and Dave's message.
fn shows_decrypted(side: &Side, room: &str, event_type: &str) {
    let data = side.config.parent().unwrap().join("data");
    let args = ["log", "show", "--data-dir", data.to_str().unwrap(), "--room", room, "--decrypt", "--json"];
    let out = crate::common::run(&args, b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let texts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["pdu"]["type"] == event_type)
        .filter_map(|e| e["decrypted"]["body"]["text"].as_str().map(str::to_owned))
        .collect();
    let (first, last) = (texts.iter().position(|t| t == "a0"), texts.iter().position(|t| t == "welcome, Carol"));
    assert!(first.is_some_and(|first| last > Some(first)), "{event_type}: {texts:?}");
    assert!(texts.contains(&"re a0".to_owned()) && texts.contains(&"Dave here".to_owned()), "{texts:?}");
}

/// The hub's transcript holds the record's, from the record's first message on, in the same
/// order; returns where the record's part ends in the hub's.
pub(crate) fn same_transcript(hub: &[Vec<u8>], record: &[Vec<u8>]) -> usize {
    let start = hub.iter().position(|m| *m == record[0]).expect("the record's first message is in the hub's log");
    let end = start + record.len();
    assert!(hub[start..end] == record[..], "the same MLS messages in the same order");
    end
}

/// `log verify` of the bridge's store; then the room exported and imported into a new store,
/// where it verifies again.
pub(crate) fn verify(store: &Store, room: &str) {
    let keys = mimi_bridge::event::KeyRing::new();
    let summary = mimi_bridge::replay::verify_store(store, None, &keys, false);
    assert!(summary.is_ok(), "{summary:?}");
    let mut export = Vec::new();
    mimi_bridge::replay::export_room(store, room, &mut export, false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let imported = Store::open(dir.path()).unwrap();
    let summary = mimi_bridge::replay::import_log(&imported, &mut export.as_slice(), &keys, false);
    assert!(summary.is_ok(), "{summary:?}");
    let summary = mimi_bridge::replay::verify_store(&imported, Some(room), &keys, false);
    assert!(summary.is_ok(), "imported: {summary:?}");
}

/// Alice of hs.test and Bob of hs-b.test in one MIMI room hubbed by Alice's bridge, each in
/// the portal on their own homeserver.
pub(crate) struct Across {
    pub(crate) a: Side,
    pub(crate) b: Side,
    /// The hub's way to the follower, which can play it being down.
    pub(crate) to_b: Switch,
    pub(crate) alice: String,
    pub(crate) bob: String,
    pub(crate) room_a: String,
    pub(crate) room_b: String,
    pub(crate) mimi_room: String,
    _pki: tempfile::TempDir,
}

/// Bob gets a portal of his own on hs-b (his MLS device); Alice opens a portal on hs-a by
/// inviting Bob's ghost, and Bob joins the portal that appears on hs-b. Returns their tokens,
/// the two Matrix rooms and the MIMI room.
pub(crate) fn alice_invites_bob(a: &Side, b: &Side) -> ([String; 2], [String; 2], String) {
    let bob = b.user_with_a_portal("bob", "mimi.hs-b.test");
    a.synapse.register("alice", "password");
    let alice = a.synapse.login("alice", "password");
    let room_a = a.synapse.create_room(&alice, &json!({"preset": "private_chat"}));
    a.synapse.invite(&alice, &room_a, &ghost("bob", "mimi.hs-b.test", "hs.test"));
    let store_a = Arc::clone(a.running.hub.store());
    wait_for("Alice's portal", Duration::from_mins(1), || store_a.portal_of(&room_a).unwrap().is_some());
    let mimi_room = store_a.portal_of(&room_a).unwrap().unwrap();
    let room_b = portal_on(b, &mimi_room);
    b.synapse.join(&bob, &room_b);
    ([alice, bob], [room_a, room_b], mimi_room)
}

impl Across {
    /// Alice invites Bob's ghost: her bridge claims Bob's key material from his provider, adds
    /// his client, and the Welcome reaches his provider, which opens a portal and invites him.
    pub(crate) fn open() -> Self {
        let pki = tempfile::tempdir().unwrap();
        let ca = crate::pki::TestCa::new(pki.path(), "test CA");
        let ports = crate::ports::consecutive(3);
        let a = side("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 2));
        let to_b = Switch::start(ports + 2, ports + 1);
        let b = side("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports));
        let ([alice, bob], [room_a, room_b], mimi_room) = alice_invites_bob(&a, &b);
        Self { a, b, to_b, alice, bob, room_a, room_b, mimi_room, _pki: pki }
    }

    /// Alice's messages as Bob sees them.
    pub(crate) fn at_b(&self) -> Vec<String> {
        bodies(messages_from(&self.b, &self.bob, &self.room_b, &ghost("alice", "mimi.hs.test", "hs-b.test")))
    }

    /// Bob's messages as Alice sees them.
    pub(crate) fn at_a(&self) -> Vec<String> {
        bodies(messages_from(&self.a, &self.alice, &self.room_a, &ghost("bob", "mimi.hs-b.test", "hs.test")))
    }
}

pub(crate) fn bodies(messages: Vec<(String, String)>) -> Vec<String> {
    messages.into_iter().map(|(_, body)| body).collect()
}

fn expected(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Both talk at once; each sees the other's messages once, in order; a reply and a reaction
/// cross and point at the right events on each side.
fn talk_and_relate(x: &Across) {
    let (a, b) = (&x.a, &x.b);
    for i in 0..20 {
        a.synapse.send_text(&x.alice, &x.room_a, &format!("a{i}"));
        b.synapse.send_text(&x.bob, &x.room_b, &format!("b{i}"));
    }
    wait_for("Alice's 20 at Bob's", Duration::from_mins(1), || x.at_b().len() >= 20);
    wait_for("Bob's 20 at Alice's", Duration::from_mins(1), || x.at_a().len() >= 20);
    assert_eq!(x.at_b(), expected("a", 20));
    assert_eq!(x.at_a(), expected("b", 20));

    let (alice_at_b, bob_at_a) =
        (ghost("alice", "mimi.hs.test", "hs-b.test"), ghost("bob", "mimi.hs-b.test", "hs.test"));
    let a0_at_b = messages_from(b, &x.bob, &x.room_b, &alice_at_b)[0].0.clone();
    let reply = json!({"msgtype": "m.text", "body": "re a0", "m.relates_to": {"m.in_reply_to": {"event_id": a0_at_b}}});
    b.synapse.send(&x.bob, &x.room_b, "m.room.message", &reply);
    let b1_at_a = messages_from(a, &x.alice, &x.room_a, &bob_at_a)[1].0.clone();
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": b1_at_a, "key": "👍"}});
    a.synapse.send(&x.alice, &x.room_a, "m.reaction", &reaction);
    wait_for("Bob's reply at Alice's", Duration::from_mins(1), || x.at_a().contains(&"re a0".to_owned()));
    let a0_at_a = messages_from(a, &x.alice, &x.room_a, "@alice:hs.test")[0].0.clone();
    let reply_at_a = a.synapse.messages(&x.alice, &x.room_a).into_iter().find(|e| e["content"]["body"] == "re a0");
    assert_eq!(reply_at_a.unwrap()["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], a0_at_a.as_str());
    let b1_at_b = messages_from(b, &x.bob, &x.room_b, "@bob:hs-b.test")[1].0.clone();
    let reacted = || {
        b.synapse
            .messages(&x.bob, &x.room_b)
            .into_iter()
            .find(|e| e["type"] == "m.reaction" && e["sender"] == alice_at_b)
    };
    wait_for("Alice's reaction at Bob's", Duration::from_mins(1), || reacted().is_some());
    assert_eq!(reacted().unwrap()["content"]["m.relates_to"]["event_id"], b1_at_b.as_str());
}

/// Bob's provider is unreachable for a while: the hub keeps fanning out to its queue and
/// delivers, in order, once it is back.
fn follower_away(x: &Across) {
    x.to_b.set_up(false);
    for i in 0..10 {
        x.a.synapse.send_text(&x.alice, &x.room_a, &format!("while away {i}"));
    }
    wait_for("a refused delivery", Duration::from_mins(1), || x.to_b.refused() > 0);
    x.to_b.set_up(true);
    wait_for("the queued messages at Bob's", Duration::from_mins(2), || x.at_b().len() >= 30);
    assert_eq!(x.at_b(), [expected("a", 20), expected("while away ", 10)].concat());
}

/// While Bob's provider is unreachable, Dave of hs.test joins Alice's portal and speaks: his
/// client is added, a commit Bob's provider has not seen.
pub(crate) fn dave_speaks_while_b_is_away(x: &Across) {
    let a = &x.a;
    x.to_b.set_up(false);
    a.synapse.register("dave", "password");
    let dave_token = a.synapse.login("dave", "password");
    a.synapse.invite(&x.alice, &x.room_a, "@dave:hs.test");
    a.synapse.join(&dave_token, &x.room_a);
    a.synapse.send_text(&dave_token, &x.room_a, "Dave here");
    let hub_a = Arc::clone(&a.running.hub);
    wait_for("Dave's client", Duration::from_mins(1), || hub_a.in_group(&x.mimi_room, "@dave:mimi.hs.test").unwrap());
}

/// A commit Bob's provider has not seen: while it is unreachable, Dave of hs.test joins
/// Alice's portal and speaks (his client is added: a new epoch). Bob's next message is
/// encrypted in the old epoch; the hub answers epochTooOld, and Bob's provider sends the same
/// plaintext again, re-encrypted, once its record has caught up: it arrives once. Returns how
/// many times Alice saw it.
fn stale_epoch(x: &Across) -> impl Fn() -> usize + '_ {
    let b = &x.b;
    dave_speaks_while_b_is_away(x);
    b.synapse.send_text(&x.bob, &x.room_b, "sent in an old epoch");
    let reencrypted = || metric(b, "mimi_bridge_peer_reencrypted_total{peer=\"mimi.hs.test\"}");
    wait_for("the hub's refusal of a too old epoch", Duration::from_mins(1), || {
        metric(b, "mimi_bridge_queue_failures_total{queue=\"provider\"}") > 0
    });
    assert_eq!(reencrypted(), 0, "not before the record caught up");
    x.to_b.set_up(true);
    let stale = move || x.at_a().iter().filter(|body| *body == "sent in an old epoch").count();
    wait_for("the re-encrypted message at Alice's", Duration::from_mins(1), || stale() > 0);
    assert_eq!(reencrypted(), 1);
    let dave_at_b = ghost("dave", "mimi.hs.test", "hs-b.test");
    wait_for("Dave's message at Bob's", Duration::from_mins(1), || {
        bodies(messages_from(b, &x.bob, &x.room_b, &dave_at_b)) == ["Dave here"]
    });
    stale
}

/// Carol of hs-b.test is invited later: her client reads from its Welcome on, and she is
/// invited to the portal on her homeserver when the record reaches it.
fn welcomed_later(x: &Across) {
    let (a, b) = (&x.a, &x.b);
    let carol_token = b.user_with_a_portal("carol", "mimi.hs-b.test");
    a.synapse.invite(&x.alice, &x.room_a, &ghost("carol", "mimi.hs-b.test", "hs.test"));
    let join_path = format!("/_matrix/client/v3/join/{}", crate::synapse::encode(&x.room_b));
    let join = || b.synapse.call(crate::synapse::Method::Post, Some(&carol_token), &join_path, Some(&json!({}))).0;
    wait_for("Carol's invite", Duration::from_mins(1), || join() == 200);
    a.synapse.send_text(&x.alice, &x.room_a, "welcome, Carol");
    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    let at_carol = || bodies(messages_from(b, &carol_token, &x.room_b, &alice_at_b));
    wait_for("Alice's welcome at Carol's", Duration::from_mins(1), || !at_carol().is_empty());
    assert_eq!(at_carol(), ["welcome, Carol"], "nothing from before her Welcome");
}

/// Bob edits one of his messages and Alice redacts one of hers: each reaches the other side,
/// pointing at the right event there.
fn edit_and_redact(x: &Across) {
    let (a, b) = (&x.a, &x.b);
    let (bob_at_a, alice_at_b) =
        (ghost("bob", "mimi.hs-b.test", "hs.test"), ghost("alice", "mimi.hs.test", "hs-b.test"));
    let b2_at_b = messages_from(b, &x.bob, &x.room_b, "@bob:hs-b.test")[2].clone();
    let b2_at_a = messages_from(a, &x.alice, &x.room_a, &bob_at_a)[2].clone();
    assert_eq!((b2_at_b.1.as_str(), b2_at_a.1.as_str()), ("b2", "b2"));
    let edit = json!({
        "msgtype": "m.text", "body": "* b2 edited", "m.new_content": {"msgtype": "m.text", "body": "b2 edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": b2_at_b.0},
    });
    b.synapse.send(&x.bob, &x.room_b, "m.room.message", &edit);
    let edited = || {
        let messages = a.synapse.messages(&x.alice, &x.room_a).into_iter();
        messages.filter(|e| e["sender"] == bob_at_a).find(|e| e["content"]["m.relates_to"]["rel_type"] == "m.replace")
    };
    wait_for("Bob's edit at Alice's", Duration::from_mins(1), || edited().is_some());
    let edited = edited().unwrap();
    assert_eq!(edited["content"]["m.relates_to"]["event_id"], b2_at_a.0.as_str());
    assert_eq!(edited["content"]["m.new_content"]["body"], "b2 edited");

    let a3_at_a = messages_from(a, &x.alice, &x.room_a, "@alice:hs.test")[3].clone();
    let a3_at_b = messages_from(b, &x.bob, &x.room_b, &alice_at_b)[3].clone();
    assert_eq!((a3_at_a.1.as_str(), a3_at_b.1.as_str()), ("a3", "a3"));
    let room = crate::synapse::encode(&x.room_a);
    let redact = format!("/_matrix/client/v3/rooms/{room}/redact/{}/{}", crate::synapse::encode(&a3_at_a.0), "r1");
    a.synapse.put(Some(&x.alice), &redact, &json!({"reason": "test"}));
    let at_b = format!("/_matrix/client/v3/rooms/{}/event/{}", crate::synapse::encode(&x.room_b), a3_at_b.0);
    wait_for("Alice's redaction at Bob's", Duration::from_mins(1), || {
        b.synapse.get(Some(&x.bob), &at_b)["content"].as_object().is_some_and(serde_json::Map::is_empty)
    });
}

/// Dave leaves Alice's portal: he leaves the MIMI room and Alice's client commits his client's
/// removal; Bob's record follows that commit, and the room goes on.
fn local_leave(x: &Across) {
    let dave = x.a.synapse.login("dave", "password");
    x.a.synapse.post(
        Some(&dave),
        &format!("/_matrix/client/v3/rooms/{}/leave", crate::synapse::encode(&x.room_a)),
        &json!({}),
    );
    let hub_a = &x.a.running.hub;
    wait_for("Dave's client removed", Duration::from_mins(1), || {
        !hub_a.has_clients(&x.mimi_room, "@dave:mimi.hs.test").unwrap()
    });
    assert_eq!(hub_a.membership(&x.mimi_room, "@dave:mimi.hs.test").unwrap().as_deref(), Some("leave"));
    x.a.synapse.send_text(&x.alice, &x.room_a, "after Dave left");
    wait_for("Alice's message after the removal", Duration::from_mins(1), || {
        x.at_b().last().is_some_and(|m| m == "after Dave left")
    });
    assert_eq!(x.b.running.hub.mls_epoch(&x.mimi_room).unwrap(), hub_a.mls_epoch(&x.mimi_room).unwrap());
}

/// The management room: Bob's bridge lists the room as hubbed at Alice's provider; Alice opens
/// a second room with Bob by his URI, which reaches Bob's homeserver as a portal too.
fn management(x: &Across) {
    let rooms = x.b.command(&x.bob, "rooms");
    assert!(rooms.contains(&format!("{} ⇄ {} (hubbed at mimi.hs.test)", x.room_b, x.mimi_room)), "{rooms}");
    let answer = x.a.command(&x.alice, "invite mimi://mimi.hs-b.test/u/bob");
    assert!(answer.starts_with("Opened a portal with mimi://mimi.hs-b.test/u/bob"), "{answer}");
    let store = x.b.running.hub.store();
    let followed =
        || store.portals_page(None, 100).unwrap().iter().filter(|(r, _)| r.ends_with(":mimi.hs.test")).count();
    wait_for("the second room at Bob's", Duration::from_mins(1), || followed() == 2);
}

#[test]
fn two_homeservers_talk_through_a_mimi_room_hubbed_by_one_bridge() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let x = Across::open();
    talk_and_relate(&x);
    follower_away(&x);
    let stale = stale_epoch(&x);
    welcomed_later(&x);
    assert_eq!(stale(), 1, "the message sent in an old epoch arrived once");
    edit_and_redact(&x);
    crate::rooms_across_media::images_cross(&x);
    local_leave(&x);
    crate::rooms_across_leaves::kicked_at_the_hub(&x);
    crate::rooms_across_leaves::declined(&x);
    management(&x);
    let after_bob = crate::rooms_across_leaves::bob_leaves(&x);

    // Both logs verify, and again once exported and imported; `log show --decrypt` beside the
    // running bridges prints the MIMI content of the hub's `m.room.encrypted` and of the
    // follower's application `m.mimi.fanout`s alike; the hub's log and the follower's record
    // hold the same MLS messages in the same order (the record from the commit that added Bob's
    // client on).
    verify(x.a.running.hub.store(), &x.mimi_room);
    verify(x.b.running.hub.store(), &x.mimi_room);
    shows_decrypted(&x.a, &x.mimi_room, ENCRYPTED);
    shows_decrypted(&x.b, &x.mimi_room, FANOUT);
    let (hub, record) = (
        hub_transcript(x.a.running.hub.store(), &x.mimi_room),
        record_transcript(x.b.running.hub.store(), &x.mimi_room),
    );
    assert!(record.len() >= 20 + 20 + 10 + 2 + 3 + 2, "{} messages recorded", record.len());
    let end = same_transcript(&hub, &record);
    assert_eq!(hub.len(), end + 1, "the record ends with Bob's removal: Alice's next message went nowhere");
    assert_eq!(x.b.running.hub.mls_epoch(&x.mimi_room).unwrap(), Some(after_bob));
}
