//! A portal of a MIMI room hubbed elsewhere, opened by a bridge with `encryption.enabled`: the
//! bot creates it encrypted and the bridge's device joins it, so the homeserver holds only
//! ciphertext of the room, as MIMI does. Two real `mimi-bridge serve` processes over mutual TLS:
//! Alice (on `hs.test`, unencrypted) invites Bob's ghost; Bob's real end-to-end-encrypting client
//! (matrix-sdk) on `hs-b.test` reads Alice's messages decrypted from her ghost's own device, and
//! his encrypted messages reach Alice decrypted.

use std::time::Duration;

use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::bridge_synapse::wait_for;
use crate::encrypted_ghosts::timeline;
use crate::encrypted_portals::{E2eeClient, OWNER};
use crate::rooms_across::{bodies, ghost, messages_of};
use crate::rooms_across_crash::Proc;

/// Messages each user sends.
const EACH: usize = 5;

#[test]
fn a_portal_of_a_room_hubbed_elsewhere_is_encrypted_and_carries_messages_both_ways() {
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(2);
    let encryption = "encryption:\n  enabled: true\n";
    let a = Proc::start_with("hs.test", &ca, (ports, ("mimi.hs-b.test", ports + 1)), "");
    let b = Proc::start_with("hs-b.test", &ca, (ports + 1, ("mimi.hs.test", ports)), encryption);

    let bob_token = b.bob_with_a_portal();
    let bob = E2eeClient::login(&b.synapse, "bob", "password");
    a.synapse.register("alice", "password");
    let alice = a.synapse.login("alice", "password");
    let room_a = a.synapse.create_room(&alice, &serde_json::json!({"preset": "private_chat"}));
    a.synapse.invite(&alice, &room_a, &ghost("bob", "mimi.hs-b.test", "hs.test"));
    let (_, room_b) = b.joins_bob(&a, &bob_token, &room_a);

    let state = format!("/_matrix/client/v3/rooms/{room_b}/state/m.room.encryption/");
    assert_eq!(b.synapse.get(Some(&bob_token), &state)["algorithm"], "m.megolm.v1.aes-sha2");
    let room = bob.runtime.block_on(async {
        let settings = matrix_sdk::config::SyncSettings::default().timeout(Duration::from_millis(200));
        bob.client().sync_once(settings).await.unwrap();
        bob.client().get_room(&OwnedRoomId::try_from(room_b.as_str()).unwrap()).expect("Bob's client knows the room")
    });
    bob.wait_for_member(&room, &OWNER.replace("hs.test", "hs-b.test"));

    for i in 0..EACH {
        a.synapse.send_text(&alice, &room_a, &format!("a{i}"));
        bob.send(&room, RoomMessageEventContent::text_plain(format!("b{i}")));
    }

    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    let expected = |prefix: &str| (0..EACH).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let mut from_alice = Vec::new();
    wait_for("Alice's messages in Bob's client", Duration::from_mins(1), || {
        from_alice = timeline(&bob, &room).into_iter().filter(|e| e.sender == alice_at_b).collect();
        from_alice.iter().filter(|e| e.event_type == "m.room.message").count() >= EACH
    });
    let texts: Vec<&str> = from_alice.iter().filter_map(|e| e.content["body"].as_str()).collect();
    assert_eq!(texts, expected("a"), "decrypted, once each, in order");
    assert!(from_alice.iter().all(|e| !e.undecryptable), "{from_alice:#?}");
    assert!(from_alice.iter().filter(|e| e.event_type == "m.room.message").all(|e| e.encrypted.is_some()));
    let on_b = messages_of(&b.synapse, &bob_token, &room_b, &alice_at_b);
    assert!(on_b.is_empty(), "hs-b holds no clear message of Alice's: {on_b:?}");

    let bob_at_a = ghost("bob", "mimi.hs-b.test", "hs.test");
    wait_for("Bob's messages at Alice's", Duration::from_mins(1), || {
        messages_of(&a.synapse, &alice, &room_a, &bob_at_a).len() >= EACH
    });
    assert_eq!(bodies(messages_of(&a.synapse, &alice, &room_a, &bob_at_a)), expected("b"));
}
