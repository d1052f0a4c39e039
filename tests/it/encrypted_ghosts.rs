//! What arrives from MIMI into an encrypted portal, against a real Synapse and a real
//! end-to-end-encrypting client: a peer server's user (Bob) talks in the MIMI room, and Alice's
//! client (matrix-sdk) reads each message decrypted, from Bob's ghost, encrypted by a device
//! of that ghost's own (never the bridge's device speaking for it, which clients flag), with
//! replies, edits and reactions pointing at the right events. A member who joins later reads
//! what is bridged from her invite on (the room's history being shared); once she left, the room key changes and she cannot read what
//! follows. In both key-delivery modes.

use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::deserialized_responses::{TimelineEventKind, VerificationLevel, VerificationState};
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedUserId, UInt};
use mimi_bridge::event::ServerKey;
use serde_json::{Value, json};

use crate::bridge_peer::{BOB, GHOST, PEER, Peer, bob_joins_over_federation, bob_mimi};
use crate::bridge_synapse::wait_for;
use crate::encrypted_portals::E2eeClient;
use crate::synapse::Synapse;

/// One event as a client shows it.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pub(crate) event_id: String,
    pub(crate) sender: String,
    pub(crate) event_type: String,
    pub(crate) content: Value,
    /// The Megolm session and the device that encrypted it; `None` for a clear event.
    pub(crate) encrypted: Option<(String, String, VerificationState)>,
    pub(crate) undecryptable: bool,
}

/// The room's events from its start, as `client` decrypts them (after a sync for new keys).
pub(crate) fn timeline(client: &E2eeClient, room: &matrix_sdk::Room) -> Vec<Shown> {
    client.runtime.block_on(async {
        let settings = matrix_sdk::config::SyncSettings::default().timeout(Duration::from_millis(100));
        client.client().sync_once(settings).await.unwrap();
        let mut options = MessagesOptions::forward();
        options.limit = UInt::from(1000u32);
        let messages = room.messages(options).await.unwrap();
        messages
            .chunk
            .into_iter()
            .map(|event| {
                let raw: Value = event.raw().deserialize_as_unchecked().unwrap();
                let encrypted = event.encryption_info().map(|info| {
                    let device = info.sender_device.as_ref().map(ToString::to_string).unwrap_or_default();
                    (info.session_id().unwrap_or_default().to_owned(), device, info.verification_state.clone())
                });
                Shown {
                    event_id: raw["event_id"].as_str().unwrap_or_default().to_owned(),
                    sender: raw["sender"].as_str().unwrap_or_default().to_owned(),
                    event_type: raw["type"].as_str().unwrap_or_default().to_owned(),
                    content: raw["content"].clone(),
                    encrypted,
                    undecryptable: matches!(event.kind, TimelineEventKind::UnableToDecrypt { .. }),
                }
            })
            .collect()
    })
}

/// The ghost's events (not its membership) once `ready` holds for them.
fn ghost_events(
    client: &E2eeClient,
    room: &matrix_sdk::Room,
    what: &str,
    ready: impl Fn(&[Shown]) -> bool,
) -> Vec<Shown> {
    let started = std::time::Instant::now();
    loop {
        let all = timeline(client, room);
        let shown: Vec<Shown> =
            all.iter().filter(|e| e.sender == GHOST && e.event_type != "m.room.member").cloned().collect();
        if ready(&shown) {
            return shown;
        }
        assert!(started.elapsed() < Duration::from_mins(1), "{what}, in {all:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ghost's events once `n` of them are there, all decrypted.
fn from_ghost(client: &E2eeClient, room: &matrix_sdk::Room, n: usize) -> Vec<Shown> {
    let what = format!("{n} decrypted events from the ghost");
    ghost_events(client, room, &what, |shown| shown.len() >= n && shown.iter().all(|e| !e.undecryptable))
}

#[test]
fn messages_from_mimi_reach_an_encrypted_portal_encrypted_by_the_ghosts_own_device() {
    from_mimi_into_an_encrypted_portal(false);
}

/// The same with the bridge's keys taken from transactions (push mode).
#[test]
fn in_push_mode_messages_from_mimi_reach_an_encrypted_portal_encrypted_by_the_ghosts_own_device() {
    from_mimi_into_an_encrypted_portal(true);
}

fn from_mimi_into_an_encrypted_portal(push: bool) {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let mut bridge = crate::encryption_device::bridge_with_registration(push);
    let peer_key = ServerKey::from_seed("peer1", [5; 32]).unwrap();
    bridge.trusted.push(format!("{PEER}={}={}", peer_key.key_id(), peer_key.public_b64()));
    let mut synapse = Synapse::start(&[&bridge.registration]);
    if push {
        synapse.enable_push_extensions();
    }
    let bridge_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = crate::encryption_device::config(&bridge, synapse.port, push);
    let running = bridge_runtime.block_on(mimi_bridge::daemon::start(&config)).unwrap();
    let (hub, store) = (Arc::clone(&running.hub), Arc::clone(running.hub.store()));
    let address = running.federation_address;
    synapse.register("alice", "alice-password");
    synapse.register("carol", "carol-password");
    let alice = E2eeClient::login(&synapse, "alice", "alice-password");
    let room = alice.encrypted_room(GHOST);
    let matrix_room = room.room_id().to_string();
    wait_for("the portal", Duration::from_secs(30), || store.portal_of(&matrix_room).unwrap().is_some());
    let mimi_room = store.portal_of(&matrix_room).unwrap().unwrap();
    let hello = alice.send(&room, RoomMessageEventContent::text_plain("hello Bob")).to_string();
    wait_for("Alice's message in the log", Duration::from_secs(30), || store.mapped(&hello).unwrap().is_some());

    let bridge_key =
        ServerKey::parse_synapse(&std::fs::read_to_string(bridge.dir.path().join("signing.key")).unwrap()).unwrap();
    let peer = Peer::new(&bridge_key);
    bob_joins_over_federation(&peer, &hub, &mimi_room, address);
    let mut txn = 0;
    let mut send = |content: &Value| {
        txn += 1;
        let lpdu = peer.hub.encrypt_lpdu(&mimi_room, BOB, &bob_mimi(&store, &mimi_room, content), 1).unwrap();
        assert_eq!(peer.send(address, &format!("b{txn}"), &[lpdu]), json!({}));
        peer.follow(&hub, &mimi_room);
    };
    let text = |body: &str| json!({"content": {"msgtype": "m.text", "body": body}});
    for i in 0..20 {
        send(&text(&format!("from Bob {i}")));
    }
    let first = from_ghost(&alice, &room, 1).remove(0).event_id;
    send(&json!({"content": {"msgtype": "m.text", "body": "a reply",
        "m.relates_to": {"m.in_reply_to": {"event_id": hello}}}}));
    send(&json!({"content": {"msgtype": "m.text", "body": "* from Bob, edited",
        "m.new_content": {"msgtype": "m.text", "body": "from Bob, edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": first}}}));
    send(&json!({"type": "m.reaction",
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": hello, "key": "🎉"}}}));

    let shown = from_ghost(&alice, &room, 23);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(from_ghost(&alice, &room, 23).len(), 23, "each exactly once");
    let bodies: Vec<&str> = shown.iter().take(20).map(|e| e.content["body"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("from Bob {i}")).collect();
    assert_eq!(bodies, expected, "decrypted, in order");
    let (reply, edit, reaction) = (&shown[20], &shown[21], &shown[22]);
    assert_eq!(reply.content["body"], "a reply");
    assert_eq!(reply.content["m.relates_to"]["m.in_reply_to"]["event_id"], hello.as_str());
    assert_eq!(
        (&edit.content["m.relates_to"]["rel_type"], &edit.content["m.relates_to"]["event_id"]),
        (&json!("m.replace"), &json!(first))
    );
    assert_eq!(edit.content["m.new_content"]["body"], "from Bob, edited");
    assert_eq!((reaction.event_type.as_str(), &reaction.content["m.relates_to"]["key"]), ("m.reaction", &json!("🎉")));
    // Every one Megolm-encrypted by a device of the ghost's, which clients hold to be its sender.
    let devices_path = format!("/_matrix/client/v3/devices?user_id={GHOST}");
    let ghost_devices = synapse.get(Some(crate::encryption_device::AS_TOKEN), &devices_path);
    let ghost_devices = ghost_devices["devices"].as_array().unwrap();
    assert_eq!(ghost_devices.len(), 1, "{ghost_devices:?}");
    let ghost_device = ghost_devices[0]["device_id"].as_str().unwrap();
    for event in &shown {
        let (_, device, state) = event.encrypted.as_ref().expect("encrypted");
        assert_eq!(device, ghost_device);
        // Signed by the ghost's own cross-signing keys: an unverified user, not a device its
        // sender does not own or did not sign.
        assert_eq!(state, &VerificationState::Unverified(VerificationLevel::UnverifiedIdentity));
    }
    // Relations stay in the clear, for the homeserver's aggregations.
    let on_server = synapse.messages(&alice_token(&synapse), &matrix_room);
    let edit_on_server = on_server.iter().find(|e| e["event_id"] == edit.event_id.as_str()).unwrap();
    assert_eq!(edit_on_server["type"], "m.room.encrypted");
    assert_eq!(edit_on_server["content"]["m.relates_to"]["event_id"], first.as_str());

    joins_later_and_leaves(&synapse, (&alice, &room), &mut send);
    assert_eq!(running.appservice.metrics.refused_count("undecryptable"), 0);
    assert!(bridge_runtime.block_on(running.stop()));
}

/// Alice's access token (a login of her own, beside her client's).
fn alice_token(synapse: &Synapse) -> String {
    synapse.login("alice", "alice-password")
}

/// Carol is invited and joins: she reads what Bob says from her invite on. Carol leaves: the room key changes, and what Bob
/// says after cannot be decrypted with any key she holds.
fn joins_later_and_leaves(
    synapse: &Synapse,
    (alice, room): (&E2eeClient, &matrix_sdk::Room),
    send: &mut impl FnMut(&Value),
) {
    let carol = E2eeClient::login(synapse, "carol", "carol-password");
    alice
        .runtime
        .block_on(async { room.invite_user_by_id(&OwnedUserId::try_from("@carol:hs.test").unwrap()).await.unwrap() });
    // Shared history: invited, she is given the room key as clients give it.
    send(&json!({"content": {"msgtype": "m.text", "body": "Carol is invited"}}));
    let carols_room = carol.runtime.block_on(async {
        let client = carol.client();
        let settings = matrix_sdk::config::SyncSettings::default().timeout(Duration::from_millis(200));
        client.sync_once(settings).await.unwrap();
        client.join_room_by_id(room.room_id()).await.unwrap()
    });
    alice.wait_for_member(room, "@carol:hs.test");
    send(&json!({"content": {"msgtype": "m.text", "body": "welcome, Carol"}}));
    // Carol reads what was bridged since her invite (what came before was never hers to read).
    let seen = ghost_events(&carol, &carols_room, "the welcome decrypted", |shown| {
        shown.iter().any(|e| e.content["body"] == "welcome, Carol")
    });
    assert!(seen.iter().any(|e| e.content["body"] == "Carol is invited" && !e.undecryptable), "{seen:#?}");
    let welcome = seen.iter().find(|e| e.content["body"] == "welcome, Carol").unwrap();
    let session_with_carol = welcome.encrypted.as_ref().unwrap().0.clone();

    carol.runtime.block_on(async { carols_room.leave().await.unwrap() });
    wait_for("Carol gone", Duration::from_secs(30), || {
        alice.runtime.block_on(async {
            let settings = matrix_sdk::config::SyncSettings::default().timeout(Duration::from_millis(200));
            alice.client().sync_once(settings).await.unwrap();
            room.get_member_no_sync(&OwnedUserId::try_from("@carol:hs.test").unwrap())
                .await
                .unwrap()
                .is_none_or(|m| *m.membership() != MembershipState::Join)
        })
    });
    send(&json!({"content": {"msgtype": "m.text", "body": "Carol has gone"}}));
    let shown = from_ghost(alice, room, 26);
    let gone = shown.iter().find(|e| e.content["body"] == "Carol has gone").expect("Alice reads it");
    let later_session = &gone.encrypted.as_ref().unwrap().0;
    assert_ne!(later_session, &session_with_carol, "the room key changed when Carol left");
    // Both events as the homeserver holds them, given to Carol's client to decrypt.
    let on_server = synapse.messages(&alice_token(synapse), room.room_id().as_str());
    let carol_decrypts = |event_id: &str| {
        let event = on_server.iter().find(|e| e["event_id"] == event_id).unwrap();
        let raw = Raw::new(event).unwrap().cast_unchecked();
        let shown = carol.runtime.block_on(async { carols_room.decrypt_event(&raw, None).await.unwrap() });
        matches!(shown.kind, TimelineEventKind::Decrypted(_))
    };
    assert!(carol_decrypts(&welcome.event_id), "Carol held the key of her time in the room");
    assert!(!carol_decrypts(&gone.event_id), "Carol never received the new room key");
}
