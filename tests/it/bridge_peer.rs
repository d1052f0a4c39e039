//! A peer server talks in a portal: it joins the MIMI room and sends MLS-encrypted MIMI content
//! as LPDUs through the federation `send` endpoint (X-Matrix signed, over real HTTP), and the
//! user on Synapse sees each message once, from the right ghost, with replies, edits and
//! reactions pointing at the right Matrix events.
//!
//! Until federation fetches keys and fans out, the test plays those parts through hooks: the
//! peer's key is pinned in the bridge's config (`mimi.trusted_keys`), its device object and key package are handed to the
//! bridge, its Welcome is read from the bridge's store, and it reads the hub's PDUs directly.

use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{ServerKey, UnverifiedLpdu, UnverifiedPdu, build_lpdu};
use mimi_bridge::federation::{UNSTABLE_PREFIX, x_matrix};
use mimi_bridge::hub::Hub;
use mimi_bridge::store::Store;
use mimi_bridge::translate::{OutboundContext, Outcome, Salt, to_mimi};
use serde_json::{Value, json};

use crate::bridge_synapse::{BridgeDir, open_portal, wait_for};
use crate::synapse::Synapse;

pub(crate) const PEER: &str = "part.test";
pub(crate) const BOB: &str = "@bob:part.test";
pub(crate) const GHOST: &str = "@mimi_part.test_bob:hs.test";
pub(crate) const ALICE_MIMI: &str = "@alice:mimi.hs.test";

/// The peer's view: its own store following the bridge's hub.
pub(crate) struct Peer {
    pub hub: Hub,
    key: ServerKey,
    _dir: tempfile::TempDir,
}

impl Peer {
    pub(crate) fn new(bridge_key: &ServerKey) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::from_seed("peer1", [5; 32]).unwrap();
        let hub = Hub::new(PEER, &key, Arc::new(Store::open(dir.path()).unwrap())).unwrap();
        hub.directories().trust_key("mimi.hs.test", bridge_key.key_id(), bridge_key.verifying_key()).unwrap();
        Self { hub, key, _dir: dir }
    }

    /// Follows the hub's log (a hook until the hub fans out).
    pub(crate) fn follow(&self, hub: &Hub, room: &str) {
        let from = self
            .hub
            .store()
            .short_room(room)
            .unwrap()
            .map_or(0, |s| self.hub.store().tail(s).unwrap().unwrap().seq + 1);
        let short = hub.store().short_room(room).unwrap().unwrap();
        for item in hub.store().pdus(short, from).unwrap() {
            let (_, bytes) = item.unwrap();
            self.hub.submit_followed(UnverifiedPdu::parse(&bytes).unwrap()).unwrap().wait().unwrap();
        }
    }

    /// Sends LPDUs to the bridge's federation listener, X-Matrix signed; returns `failed_pdus`.
    pub(crate) fn send(&self, address: std::net::SocketAddr, txn: &str, lpdus: &[UnverifiedLpdu]) -> Value {
        let pdus: Vec<Value> = lpdus
            .iter()
            .map(|l| serde_json::from_slice(&mimi_bridge::event::canonical::object_to_bytes(l.object())).unwrap())
            .collect();
        let body = json!({"pdus": pdus, "edus": []});
        let object = mimi_bridge::event::canonical::parse_object(body.to_string().as_bytes()).unwrap();
        let uri = format!("{UNSTABLE_PREFIX}/send/{txn}");
        let auth = x_matrix::sign_request(&self.key, PEER, "mimi.hs.test", "PUT", &uri, Some(&object));
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent
            .put(format!("http://{address}{uri}"))
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().read_json::<Value>().unwrap();
        assert_eq!(status, 200, "{body}");
        body["failed_pdus"].clone()
    }
}

/// MIMI content Bob writes, as a Matrix event would translate (replies and edits resolved
/// through the bridge's maps).
pub(crate) fn bob_mimi(bridge_store: &Arc<Store>, room: &str, content: &Value) -> Vec<u8> {
    let event = json!({"type": content.get("type").and_then(Value::as_str).unwrap_or("m.room.message"),
        "sender": BOB, "room_id": room, "event_id": "$peer", "origin_server_ts": 1, "content": content["content"]});
    let ctx = OutboundContext { room_uri: "mimi://mimi.hs.test/r/x".into(), salt: Salt::Random, matrix_origin: None };
    let ids = mimi_bridge::appservice::ids::StoreIds(Arc::clone(bridge_store));
    match to_mimi(&event, &ctx, &ids).unwrap().pop() {
        Some(Outcome::Message(content)) => content.encode(),
        other => panic!("{other:?}"),
    }
}

pub(crate) fn lpdu(
    peer: &Peer,
    room: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
) -> UnverifiedLpdu {
    let template = mimi_bridge::event::EventTemplate {
        room_id: room.to_owned(),
        event_type: event_type.to_owned(),
        sender: BOB.to_owned(),
        state_key: state_key.map(str::to_owned),
        content: crate::common::content(content),
        origin_server_ts: 1,
    };
    build_lpdu(&LINEARIZED_02, template, "mimi.hs.test", &peer.key, PEER).unwrap()
}

/// Bob joins through federation; his device is added by Alice's client; he joins the group.
pub(crate) fn bob_joins_over_federation(peer: &Peer, hub: &Hub, room: &str, address: std::net::SocketAddr) {
    let failed =
        peer.send(address, "t1", &[lpdu(peer, room, "m.room.member", Some(BOB), json!({"membership": "join"}))]);
    assert_eq!(failed, json!({}));
    peer.follow(hub, room);
    peer.hub.directories().register_device(BOB, "BOBDEV").unwrap();
    hub.directories().publish_device(&peer.hub.directories().device_object(BOB, "BOBDEV").unwrap().unwrap()).unwrap();
    peer.hub.directories().publish_key_packages(BOB, 1).unwrap();
    let claimed = peer.hub.directories().claim_key_package(BOB, "BOBDEV").unwrap().unwrap();
    let package = hub.directories().check_key_package(&claimed, BOB, "BOBDEV").unwrap();
    let commit = hub.commit_add(room, ALICE_MIMI, &[package], 1).unwrap().wait().unwrap();
    peer.follow(hub, room);
    peer.hub.join_group(room, BOB, &hub.welcome(&commit.event_id).unwrap().unwrap().message).unwrap();
}

#[test]
fn a_peers_messages_reach_the_portal_as_the_ghost_with_relations_intact() {
    let mut bridge = BridgeDir::new();
    let peer_key = ServerKey::from_seed("peer1", [5; 32]).unwrap();
    bridge.trusted.push(format!("{PEER}={}={}", peer_key.key_id(), peer_key.public_b64()));
    let synapse = Synapse::start(&[&bridge.registration]);
    let bridge_key =
        ServerKey::parse_synapse(&std::fs::read_to_string(bridge.dir.path().join("signing.key")).unwrap()).unwrap();
    let portal = open_portal(&synapse, &bridge, GHOST);
    let (hub, store) = (Arc::clone(&portal.running.hub), Arc::clone(portal.running.hub.store()));
    let room = portal.mimi_room.clone();
    let address = portal.running.federation_address;
    let peer = Peer::new(&bridge_key);
    // Alice writes first, on Synapse.
    let hello = synapse.send_text(&portal.token, &portal.matrix_room, "hello Bob");
    wait_for("Alice's message in the log", Duration::from_secs(30), || store.mapped(&hello).unwrap().is_some());

    bob_joins_over_federation(&peer, &hub, &room, address);

    // Bob: two messages, a reply to Alice, an edit of his first, a reaction to Alice's.
    let send = |txn: &str, mimi: Vec<u8>| {
        let lpdu = peer.hub.encrypt_lpdu(&room, BOB, &mimi, 1).unwrap();
        assert_eq!(peer.send(address, txn, std::slice::from_ref(&lpdu)), json!({}));
        // A retry of the same transaction is recognised, not appended twice.
        assert_eq!(peer.send(address, txn, &[lpdu]), json!({}));
        peer.follow(&hub, &room);
    };
    let text = |body: &str| json!({"content": {"msgtype": "m.text", "body": body}});
    send("m1", bob_mimi(&store, &room, &text("hi Alice")));
    send("m2", bob_mimi(&store, &room, &text("second")));
    wait_for("Bob's first message on Synapse", Duration::from_secs(30), || {
        synapse.texts(&portal.token, &portal.matrix_room).iter().any(|(s, b)| s == GHOST && b == "hi Alice")
    });
    let ghost_event = |body: &str| {
        synapse
            .messages(&portal.token, &portal.matrix_room)
            .into_iter()
            .find(|e| e["sender"] == GHOST && e["content"]["body"] == body)
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let first = ghost_event("hi Alice");
    send(
        "m3",
        bob_mimi(
            &store,
            &room,
            &json!({"content": {"msgtype": "m.text", "body": "a reply",
        "m.relates_to": {"m.in_reply_to": {"event_id": hello}}}}),
        ),
    );
    send(
        "m4",
        bob_mimi(
            &store,
            &room,
            &json!({"content": {"msgtype": "m.text", "body": "* hi, Alice",
        "m.new_content": {"msgtype": "m.text", "body": "hi, Alice"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": first}}}),
        ),
    );
    send(
        "m5",
        bob_mimi(
            &store,
            &room,
            &json!({"type": "m.reaction",
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "🎉"}}}),
        ),
    );

    wait_for("all of Bob's events on Synapse", Duration::from_secs(30), || {
        synapse
            .messages(&portal.token, &portal.matrix_room)
            .iter()
            .filter(|e| e["sender"] == GHOST && e["type"] != "m.room.member")
            .count()
            >= 5
    });
    std::thread::sleep(Duration::from_millis(500));
    let from_ghost: Vec<Value> = synapse
        .messages(&portal.token, &portal.matrix_room)
        .into_iter()
        .filter(|e| e["sender"] == GHOST && e["type"] != "m.room.member")
        .collect();
    assert_eq!(from_ghost.len(), 5, "each exactly once: {from_ghost:#?}");
    let bodies: Vec<&str> = from_ghost.iter().take(3).map(|e| e["content"]["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["hi Alice", "second", "a reply"]);
    assert_eq!(from_ghost[2]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], hello.as_str());
    assert_eq!(from_ghost[3]["content"]["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(from_ghost[3]["content"]["m.relates_to"]["event_id"], first.as_str());
    assert_eq!(from_ghost[3]["content"]["m.new_content"]["body"], "hi, Alice");
    assert_eq!(from_ghost[4]["type"], "m.reaction");
    assert_eq!(from_ghost[4]["content"]["m.relates_to"]["event_id"], hello.as_str());
    assert_eq!(from_ghost[4]["content"]["m.relates_to"]["key"], "🎉");

    an_untrusted_key_is_refused(address, &store, &room);
    attachments_travel_both_ways(&synapse, &portal, address, |mimi| send("m6", mimi));

    // Alice kicks Bob's ghost: Bob is out of the MIMI room (a kick, Alice's event), and what
    // he sends next is refused by the room's rules.
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", crate::synapse::encode(&portal.matrix_room));
    synapse.post(Some(&portal.token), &kick, &json!({"user_id": GHOST, "reason": "testing"}));
    wait_for("Bob out of the MIMI room", Duration::from_secs(30), || {
        hub.membership(&room, BOB).unwrap().as_deref() == Some("leave")
    });
    let lpdu = peer.hub.encrypt_lpdu(&room, BOB, &bob_mimi(&store, &room, &text("while kicked")), 1).unwrap();
    let answer = peer.send(address, "k1", &[lpdu]);
    assert!(answer.to_string().contains("not joined"), "{answer}");
}

/// Alice sends an image: the bridge downloads it from Synapse's authenticated media API,
/// encrypts it as MIMI requires and hosts the ciphertext; the MIMI message points at it. Bob
/// forwards the same attachment back: the bridge fetches, verifies and decrypts it, uploads the
/// plaintext to Synapse as the ghost and sends the image.
fn attachments_travel_both_ways(
    synapse: &Synapse,
    portal: &crate::bridge_synapse::Portal,
    address: std::net::SocketAddr,
    forward: impl Fn(Vec<u8>),
) {
    let store = portal.running.hub.store();
    // Larger than two storage chunks: served by the bridge a chunk at a time.
    let image: Vec<u8> = (0..600_000u32).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let uploaded: Value = agent
        .post(format!("{}/_matrix/media/v3/upload?filename=pic.png", synapse.base_url))
        .header("Authorization", &format!("Bearer {}", portal.token))
        .header("Content-Type", "image/png")
        .send(image.as_slice())
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let mxc = uploaded["content_uri"].as_str().unwrap();
    let sent = synapse.send(
        &portal.token,
        &portal.matrix_room,
        "m.room.message",
        &json!({"msgtype": "m.image", "body": "pic.png", "url": mxc, "info": {"mimetype": "image/png", "size": 600_000}}),
    );
    wait_for("the image in the MIMI log", Duration::from_secs(30), || store.mapped(&sent).unwrap().is_some());
    let log_event = store.log_event_of(&sent).unwrap().unwrap();
    let content = mimi_bridge::mimi::MimiContent::decode(&store.plaintext(&log_event).unwrap().unwrap()).unwrap();
    let mimi_bridge::mimi::Part::External(external) = &content.body.part else { panic!("{content:?}") };
    assert_eq!(external.content_type, "image/png");
    let id = mimi_bridge::federation::media::local_id("mimi.hs.test", &external.url).expect("hosted here");
    let hosted =
        agent.get(format!("http://{address}/_mimi/media/v1/{id}")).call().unwrap().body_mut().read_to_vec().unwrap();
    let digest: [u8; 32] = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&hosted)).into();
    assert_eq!(external.content_hash, digest, "the hash names the ciphertext");
    assert_eq!(mimi_bridge::translate::media::decrypt_from_mimi(&hosted, external).unwrap(), image);

    let mut forwarded = content.clone();
    forwarded.salt = [9; 16];
    forwarded.set_extension(
        mimi_bridge::mimi::ExtensionKey::Int(1),
        mimi_bridge::mimi::cbor::Value::Text("mimi://part.test/u/bob".into()),
    );
    forward(forwarded.encode());
    let ghost_image = || {
        synapse
            .messages(&portal.token, &portal.matrix_room)
            .into_iter()
            .find(|e| e["sender"] == GHOST && e["content"]["msgtype"] == "m.image")
    };
    wait_for("the forwarded image on Synapse", Duration::from_secs(30), || ghost_image().is_some());
    let url = ghost_image().unwrap()["content"]["url"].as_str().unwrap().to_owned();
    let path = url.strip_prefix("mxc://").unwrap();
    let downloaded = agent
        .get(format!("{}/_matrix/client/v1/media/download/{path}", synapse.base_url))
        .header("Authorization", &format!("Bearer {}", portal.token))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    assert_eq!(downloaded, image, "the ghost's upload is the original file");
}

/// A request signed by a key the bridge does not trust is refused and appends nothing.
fn an_untrusted_key_is_refused(address: std::net::SocketAddr, store: &Store, room: &str) {
    let evil = ServerKey::from_seed("evil", [6; 32]).unwrap();
    let tail = || store.tail(store.short_room(room).unwrap().unwrap()).unwrap().unwrap().seq;
    let before = tail();
    let uri = format!("{UNSTABLE_PREFIX}/send/x");
    let empty = ruma::CanonicalJsonObject::new();
    let auth = x_matrix::sign_request(&evil, PEER, "mimi.hs.test", "PUT", &uri, Some(&empty));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response =
        agent.put(format!("http://{address}{uri}")).header("Authorization", &auth).send(b"{}".as_slice()).unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.body_mut().read_json::<Value>().unwrap()["errcode"], "M_FORBIDDEN");
    assert_eq!(tail(), before);
}
