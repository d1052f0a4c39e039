//! What encrypting through the ghosts' own devices costs, MIMI → Matrix, beside an unencrypted
//! portal in the same run: a load tool, not a check of speed. It is `#[ignore]`d, asserts only
//! that every message arrives, and prints its figures
//! (`cargo test --release --test it ghosts_throughput -- --ignored --nocapture`).
//!
//! One real Synapse, one bridge in process (sync mode), two portals Alice opened by inviting Bob's
//! ghost (one encrypted, one not), Bob a peer server's user in both MIMI rooms.
//! - Latency: `LATENCY` messages one at a time, alternating between the rooms (after `WARM` not
//!   counted: the first makes the ghost's device), each from the peer's send (its MLS
//!   encryption, the hub's append) to the Matrix event's ID being recorded after the homeserver
//!   took it (for the encrypted room: after the ghost's device's `/sync`, the members' devices,
//!   the Megolm encryption and the send).
//! - Throughput: `BURST` messages sent back to back into one room, then the other; from the first
//!   send to the last one's Matrix event recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use mimi_bridge::event::ServerKey;
use mimi_bridge::store::Store;
use serde_json::json;

use crate::bridge_peer::{BOB, GHOST, PEER, Peer, bob_joins_over_federation, bob_mimi};
use crate::bridge_synapse::wait_for;
use crate::encrypted_portals::started;
use crate::encrypted_throughput::{report, room};

const WARM: usize = 5;
const LATENCY: usize = 100;
const BURST: usize = 200;

/// Bob in one MIMI room, sending through the bridge's federation listener.
struct Sender<'a> {
    peer: &'a Peer,
    running: &'a mimi_bridge::daemon::Running,
    store: &'a Arc<Store>,
    room: String,
    sent: usize,
}

impl Sender<'_> {
    /// Sends one message; returns the log event it became.
    fn send(&mut self, body: &str) -> String {
        self.sent += 1;
        let content = json!({"content": {"msgtype": "m.text", "body": body}});
        let mimi = bob_mimi(self.store, &self.room, &content);
        let lpdu = self.peer.hub.encrypt_lpdu(&self.room, BOB, &mimi, 1).unwrap();
        let txn = format!("{}-{}", self.room, self.sent);
        assert_eq!(self.peer.send(self.running.federation_address, &txn, &[lpdu]), json!({}));
        self.peer.follow(&self.running.hub, &self.room);
        let short = self.store.short_room(&self.room).unwrap().unwrap();
        self.store.tail(short).unwrap().unwrap().event_id
    }

    fn delivered(&self, log_event: &str) -> bool {
        self.store.matrix_event_of(log_event).unwrap().is_some()
    }
}

/// Milliseconds from the peer's send until the message is in the Matrix room.
fn one(sender: &mut Sender<'_>, body: &str) -> f64 {
    let started = Instant::now();
    let event = sender.send(body);
    while !sender.delivered(&event) {
        assert!(started.elapsed() < Duration::from_secs(30), "{body} never reached the portal");
        std::thread::sleep(Duration::from_micros(200));
    }
    started.elapsed().as_secs_f64() * 1000.0
}

/// Messages per second from the first send to the last one in the Matrix room.
fn burst(sender: &mut Sender<'_>, label: &str) -> f64 {
    let started = Instant::now();
    let events: Vec<String> = (0..BURST).map(|i| sender.send(&format!("{label} burst {i}"))).collect();
    for event in &events {
        wait_for("the burst in the portal", Duration::from_mins(2), || sender.delivered(event));
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = BURST as f64 / started.elapsed().as_secs_f64();
    rate
}

#[test]
#[ignore = "a load tool: prints figures"]
fn ghosts_throughput_beside_an_unencrypted_portal() {
    let mut bridge = crate::encryption_device::bridge_with_registration(false);
    let peer_key = ServerKey::from_seed("peer1", [5; 32]).unwrap();
    bridge.trusted.push(format!("{PEER}={}={}", peer_key.key_id(), peer_key.public_b64()));
    let (synapse, bridge_runtime, running, alice) = started(&bridge);
    let store = Arc::clone(running.hub.store());
    let encryption = RoomEncryptionEventContent::with_recommended_defaults();
    let rooms = [room(&alice, GHOST, Some(encryption)), room(&alice, GHOST, None)];
    let bridge_key =
        ServerKey::parse_synapse(&std::fs::read_to_string(bridge.dir.path().join("signing.key")).unwrap()).unwrap();
    let peer = Peer::new(&bridge_key);
    let mut senders: Vec<Sender<'_>> = rooms
        .iter()
        .map(|room| {
            let id = room.room_id().to_string();
            wait_for("the portal", Duration::from_secs(30), || store.portal_of(&id).unwrap().is_some());
            let mimi_room = store.portal_of(&id).unwrap().unwrap();
            bob_joins_over_federation(&peer, &running.hub, &mimi_room, running.federation_address);
            Sender { peer: &peer, running: &running, store: &store, room: mimi_room, sent: 0 }
        })
        .collect();

    let (mut sealed, mut plain) = (Vec::new(), Vec::new());
    for i in 0..WARM + LATENCY {
        let e = one(&mut senders[0], &format!("encrypted {i}"));
        let p = one(&mut senders[1], &format!("clear {i}"));
        if i >= WARM {
            sealed.push(e);
            plain.push(p);
        }
    }
    let clear_rate = burst(&mut senders[1], "clear");
    let encrypted_rate = burst(&mut senders[0], "encrypted");
    report(
        (
            &format!("peer's send → Matrix event sent as the ghost, {LATENCY} messages one at a time, interleaved"),
            &mut plain,
            &mut sealed,
        ),
        (&format!("burst of {BURST}, sent back to back, first send → last in the portal"), clear_rate, encrypted_rate),
    );
    let on_server = synapse.messages(&synapse.login("alice", "alice-password"), rooms[0].room_id().as_str());
    let from_ghost = on_server.iter().filter(|e| e["sender"] == GHOST && e["type"] == "m.room.encrypted").count();
    assert_eq!(from_ghost, WARM + LATENCY + BURST, "every message encrypted, once");
    assert!(bridge_runtime.block_on(running.stop()));
}
