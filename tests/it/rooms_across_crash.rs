//! Two bridges as real `mimi-bridge serve` processes, the hub of a MIMI room and a follower of
//! it: while Alice (hs.test) and Bob (hs-b.test) each send 200 messages, each bridge is killed
//! with SIGKILL once and restarted. Each sees every message of the other exactly once, in
//! order; both logs verify; the hub's log and the follower's record hold the same MLS messages
//! in the same order.

use std::process::Child;
use std::time::Duration;

use mimi_bridge::store::Store;
use serde_json::json;

use crate::bridge_crash::start_bridge;
use crate::bridge_synapse::{BOT, BridgeDir, wait_for};
use crate::rooms_across::{bodies, ghost, hub_transcript, record_transcript, same_transcript, verify};
use crate::synapse::Synapse;

/// Messages each user sends.
const EACH: usize = 200;

/// One side: its Synapse, its bridge's directory and config, the bridge process.
struct Proc {
    synapse: Synapse,
    bridge: BridgeDir,
    config: std::path::PathBuf,
    child: Child,
}

impl Proc {
    fn start(homeserver: &str, ca: &crate::pki::TestCa, listen: u16, peer: (&str, u16)) -> Self {
        let (synapse, bridge, config) = crate::bridge_pair::configured(homeserver, ca, listen, peer);
        let child = start_bridge(&config, bridge.as_port, &bridge.dir.path().join("bridge.log"));
        Self { synapse, bridge, config, child }
    }

    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = start_bridge(&self.config, self.bridge.as_port, &self.bridge.dir.path().join("bridge.log"));
    }

    /// The store, read-only beside the running bridge.
    fn store(&self) -> Option<Store> {
        Store::open_existing(&self.bridge.dir.path().join("data")).ok()
    }

    fn texts(&self, token: &str, room: &str, sender: &str) -> Vec<String> {
        bodies(crate::rooms_across::messages_of(&self.synapse, token, room, sender))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn kill_9_of_each_bridge_mid_stream_loses_and_doubles_nothing_across_providers() {
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(2);
    let mut a = Proc::start("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 1));
    let mut b = Proc::start("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports));

    // Bob opens a portal of his own first: that gives him his MLS device and its last-resort
    // KeyPackage, which Alice's bridge claims when she invites his ghost.
    b.synapse.register("bob", "password");
    let bob = b.synapse.login("bob", "password");
    let own = b.synapse.create_room(&bob, &json!({"preset": "private_chat"}));
    b.synapse.invite(&bob, &own, &BOT.replace("hs.test", "hs-b.test"));
    wait_for("Bob's portal", Duration::from_mins(1), || {
        b.store().is_some_and(|s| s.portal_of(&own).unwrap().is_some())
    });
    a.synapse.register("alice", "password");
    let alice = a.synapse.login("alice", "password");
    let room_a = a.synapse.create_room(&alice, &json!({"preset": "private_chat"}));
    a.synapse.invite(&alice, &room_a, &ghost("bob", "mimi.hs-b.test", "hs.test"));
    let portal = |side: &Proc, key: &str| side.store().and_then(|s| s.portal_of(key).unwrap());
    wait_for("Alice's portal", Duration::from_mins(1), || portal(&a, &room_a).is_some());
    let mimi_room = portal(&a, &room_a).unwrap();
    let record = |side: &Proc| side.store().and_then(|s| s.portal_record(&mimi_room).unwrap());
    wait_for("the portal at Bob's", Duration::from_mins(1), || record(&b).is_some());
    let record: serde_json::Value = serde_json::from_slice(&record(&b).unwrap()).unwrap();
    let room_b = record["matrix_room"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{}", crate::synapse::encode(&room_b));
    wait_for("Bob's invite", Duration::from_mins(1), || {
        b.synapse.call(crate::synapse::Method::Post, Some(&bob), &join, Some(&json!({}))).0 == 200
    });

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

    let (hub, follower) = (a.store().unwrap(), b.store().unwrap());
    verify(&hub, &mimi_room);
    verify(&follower, &mimi_room);
    let (hub, record) = (hub_transcript(&hub, &mimi_room), record_transcript(&follower, &mimi_room));
    assert!(record.len() >= 2 * EACH, "{} messages recorded", record.len());
    same_transcript(&hub, &record);
}
