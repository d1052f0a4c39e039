//! Two bridges as real `mimi-bridge serve` processes, the hub of a MIMI room and a follower of
//! it: while Alice (hs.test) and Bob (hs-b.test) each send 200 messages, each bridge is killed
//! with SIGKILL once and restarted; then replies, an edit, a reaction, a redaction and an image
//! each way cross while both are killed again. Each sees every message of the other exactly
//! once, in order, relations pointing right; both logs verify; the hub's log and the follower's record hold the same MLS messages
//! in the same order.

use std::process::Child;
use std::time::Duration;

use mimi_bridge::store::Store;
use serde_json::json;

use crate::bridge_crash::start_bridge;
use crate::bridge_synapse::{BOT, BridgeDir, wait_for};
use crate::rooms_across::{bodies, ghost, hub_transcript, messages_of, record_transcript, same_transcript, verify};
use crate::rooms_across_media::{image_from, images, send_image};
use crate::synapse::Synapse;
use crate::synapse::encode;

/// Messages each user sends.
const EACH: usize = 200;

/// One side: its Synapse, its bridge's directory and config, the bridge process.
pub(crate) struct Proc {
    pub(crate) synapse: Synapse,
    bridge: BridgeDir,
    config: std::path::PathBuf,
    child: Child,
}

impl Proc {
    fn start(homeserver: &str, ca: &crate::pki::TestCa, listen: u16, peer: (&str, u16)) -> Self {
        Self::start_with(homeserver, ca, (listen, peer), "")
    }

    /// [`Proc::start`] with `extra` config sections.
    pub(crate) fn start_with(
        homeserver: &str,
        ca: &crate::pki::TestCa,
        (listen, peer): (u16, (&str, u16)),
        extra: &str,
    ) -> Self {
        let (synapse, bridge, config) = crate::bridge_pair::configured_with(homeserver, ca, (listen, peer), extra);
        let child = start_bridge(&config, bridge.as_port, &bridge.dir.path().join("bridge.log"));
        Self { synapse, bridge, config, child }
    }

    pub(crate) fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = start_bridge(&self.config, self.bridge.as_port, &self.bridge.dir.path().join("bridge.log"));
    }

    /// The store, read-only beside the running bridge.
    pub(crate) fn store(&self) -> Option<Store> {
        Store::open_existing(&self.bridge.dir.path().join("data")).ok()
    }

    /// Bob (on this side) opens a portal of his own: that gives him his MLS device and its
    /// last-resort KeyPackage, which the other bridge claims when his ghost is invited there.
    /// Returns his access token.
    pub(crate) fn bob_with_a_portal(&self) -> String {
        self.synapse.register("bob", "password");
        let bob = self.synapse.login("bob", "password");
        let own = self.synapse.create_room(&bob, &json!({"preset": "private_chat"}));
        self.synapse.invite(&bob, &own, &BOT.replace("hs.test", &self.synapse.server_name));
        wait_for("Bob's portal", Duration::from_mins(1), || {
            self.store().is_some_and(|s| s.portal_of(&own).unwrap().is_some())
        });
        bob
    }

    /// Bob (on this side, with `bob`'s token) joins the portal of `room_a`, the room on `a`
    /// that invited his ghost, once this bridge opened it; returns the MIMI room and his room.
    pub(crate) fn joins_bob(&self, a: &Proc, bob: &str, room_a: &str) -> (String, String) {
        let portal = || a.store().and_then(|s| s.portal_of(room_a).unwrap());
        wait_for("Alice's portal", Duration::from_mins(1), || portal().is_some());
        let mimi_room = portal().unwrap();
        let record = || self.store().and_then(|s| s.portal_record(&mimi_room).unwrap());
        wait_for("the portal at Bob's", Duration::from_mins(1), || record().is_some());
        let record: serde_json::Value = serde_json::from_slice(&record().unwrap()).unwrap();
        let room_b = record["matrix_room"].as_str().unwrap().to_owned();
        let join = format!("/_matrix/client/v3/join/{}", encode(&room_b));
        wait_for("Bob's invite", Duration::from_mins(1), || {
            self.synapse.call(crate::synapse::Method::Post, Some(bob), &join, Some(&json!({}))).0 == 200
        });
        (mimi_room, room_b)
    }

    fn texts(&self, token: &str, room: &str, sender: &str) -> Vec<String> {
        bodies(messages_of(&self.synapse, token, room, sender))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failed run keeps its diagnosis: the last warnings of the bridge and of its
        // homeserver (their directories go).
        if std::thread::panicking() {
            let bridge = std::fs::read_to_string(self.bridge.dir.path().join("bridge.log")).unwrap_or_default();
            for (whose, log) in [("bridge", bridge), ("homeserver", self.synapse.log())] {
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- {}'s {whose}, last lines ---", self.synapse.server_name);
                for line in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}

#[test]
fn kill_9_of_each_bridge_mid_stream_loses_and_doubles_nothing_across_providers() {
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(2);
    let mut a = Proc::start("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 1));
    let mut b = Proc::start("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports));

    let bob = b.bob_with_a_portal();
    a.synapse.register("alice", "password");
    let alice = a.synapse.login("alice", "password");
    let room_a = a.synapse.create_room(&alice, &json!({"preset": "private_chat"}));
    a.synapse.invite(&alice, &room_a, &ghost("bob", "mimi.hs-b.test", "hs.test"));
    let (mimi_room, room_b) = b.joins_bob(&a, &bob, &room_a);

    for i in 0..EACH {
        a.synapse.send_text(&alice, &room_a, &format!("a{i}"));
        b.synapse.send_text(&bob, &room_b, &format!("b{i}"));
        match i {
            60 => a.kill_and_restart(),
            130 => b.kill_and_restart(),
            _ => {}
        }
    }
    let expected = |prefix: &str| (0..EACH).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let (alice_at_b, bob_at_a) =
        (ghost("alice", "mimi.hs.test", "hs-b.test"), ghost("bob", "mimi.hs-b.test", "hs.test"));
    wait_for("Alice's messages at Bob's", Duration::from_mins(3), || b.texts(&bob, &room_b, &alice_at_b).len() >= EACH);
    wait_for("Bob's messages at Alice's", Duration::from_mins(3), || a.texts(&alice, &room_a, &bob_at_a).len() >= EACH);
    assert_eq!(b.texts(&bob, &room_b, &alice_at_b), expected("a"), "once each, in order");
    assert_eq!(a.texts(&alice, &room_a, &bob_at_a), expected("b"), "once each, in order");

    relations_and_images_across_kills(&mut a, &mut b, (&alice, &room_a), (&bob, &room_b));

    let (hub, follower) = (a.store().unwrap(), b.store().unwrap());
    verify(&hub, &mimi_room);
    verify(&follower, &mimi_room);
    let (hub, record) = (hub_transcript(&hub, &mimi_room), record_transcript(&follower, &mimi_room));
    assert!(record.len() >= 2 * EACH, "{} messages recorded", record.len());
    same_transcript(&hub, &record);
}

/// After the stream: Bob replies to Alice's first message and edits his second, Alice reacts to
/// Bob's third and redacts her fourth, and each sends an image; both bridges are killed and
/// restarted while these are under way. Each arrives once, pointing at the right event.
fn relations_and_images_across_kills(
    a: &mut Proc,
    b: &mut Proc,
    (alice, room_a): (&str, &str),
    (bob, room_b): (&str, &str),
) {
    let (alice_at_b, bob_at_a) =
        (ghost("alice", "mimi.hs.test", "hs-b.test"), ghost("bob", "mimi.hs-b.test", "hs.test"));
    let nth = |side: &Proc, token: &str, room: &str, sender: &str, n: usize| {
        messages_of(&side.synapse, token, room, sender)[n].0.clone()
    };
    let (a0_at_a, a0_at_b) = (nth(a, alice, room_a, "@alice:hs.test", 0), nth(b, bob, room_b, &alice_at_b, 0));
    let (b1_at_b, b1_at_a) = (nth(b, bob, room_b, "@bob:hs-b.test", 1), nth(a, alice, room_a, &bob_at_a, 1));
    let (b2_at_a, b2_at_b) = (nth(a, alice, room_a, &bob_at_a, 2), nth(b, bob, room_b, "@bob:hs-b.test", 2));
    let (a3_at_a, a3_at_b) = (nth(a, alice, room_a, "@alice:hs.test", 3), nth(b, bob, room_b, &alice_at_b, 3));
    let reply = json!({"msgtype": "m.text", "body": "re a0", "m.relates_to": {"m.in_reply_to": {"event_id": a0_at_b}}});
    b.synapse.send(bob, room_b, "m.room.message", &reply);
    let edit = json!({
        "msgtype": "m.text", "body": "* b1 edited", "m.new_content": {"msgtype": "m.text", "body": "b1 edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": b1_at_b},
    });
    b.synapse.send(bob, room_b, "m.room.message", &edit);
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": b2_at_a, "key": "👍"}});
    a.synapse.send(alice, room_a, "m.reaction", &reaction);
    let redact = format!("/_matrix/client/v3/rooms/{}/redact/{}/r1", encode(room_a), encode(&a3_at_a));
    a.synapse.put(Some(alice), &redact, &json!({}));
    let (from_alice, from_bob) = images();
    send_image(&a.synapse, alice, room_a, &from_alice);
    send_image(&b.synapse, bob, room_b, &from_bob);
    b.kill_and_restart();
    a.kill_and_restart();

    let from = |side: &Proc, token: &str, room: &str, sender: &str, kind: &str| {
        let events = side.synapse.messages(token, room).into_iter().filter(|e| e["sender"] == sender);
        events
            .filter(|e| {
                kind == "reply" && e["content"]["body"] == "re a0"
                    || kind == "edit" && e["content"]["m.relates_to"]["rel_type"] == "m.replace"
                    || kind == "reaction" && e["type"] == "m.reaction"
            })
            .collect::<Vec<_>>()
    };
    wait_for("the relations at Alice's", Duration::from_mins(2), || {
        !from(a, alice, room_a, &bob_at_a, "reply").is_empty() && !from(a, alice, room_a, &bob_at_a, "edit").is_empty()
    });
    wait_for("the reaction at Bob's", Duration::from_mins(2), || {
        !from(b, bob, room_b, &alice_at_b, "reaction").is_empty()
    });
    let (reply, edit) = (from(a, alice, room_a, &bob_at_a, "reply"), from(a, alice, room_a, &bob_at_a, "edit"));
    assert_eq!((reply.len(), edit.len()), (1, 1), "once each");
    assert_eq!(reply[0]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], a0_at_a.as_str());
    assert_eq!(edit[0]["content"]["m.relates_to"]["event_id"], b1_at_a.as_str());
    assert_eq!(edit[0]["content"]["m.new_content"]["body"], "b1 edited");
    let reaction = from(b, bob, room_b, &alice_at_b, "reaction");
    assert_eq!(reaction.len(), 1, "once");
    assert_eq!(reaction[0]["content"]["m.relates_to"]["event_id"], b2_at_b.as_str());
    let at_b = format!("/_matrix/client/v3/rooms/{}/event/{}", encode(room_b), encode(&a3_at_b));
    wait_for("Alice's redaction at Bob's", Duration::from_mins(2), || {
        b.synapse.get(Some(bob), &at_b)["content"].as_object().is_some_and(serde_json::Map::is_empty)
    });
    wait_for("the images", Duration::from_mins(2), || {
        image_from(&b.synapse, bob, room_b, &alice_at_b).is_some()
            && image_from(&a.synapse, alice, room_a, &bob_at_a).is_some()
    });
    assert!(image_from(&b.synapse, bob, room_b, &alice_at_b) == Some(from_alice), "the same bytes at Bob's");
    assert!(image_from(&a.synapse, alice, room_a, &bob_at_a) == Some(from_bob), "the same bytes at Alice's");
}
