//! Both directions of an encrypted portal across kills: Alice's real end-to-end-encrypting
//! client (matrix-sdk) talks in an encrypted portal on `hs.test` with Bob on `hs-b.test`, each
//! behind a real `mimi-bridge serve` process, the two bridges speaking the MIMI protocol over
//! mutual TLS. While both send 100 messages, Alice's bridge (the hub, holding the ghosts'
//! devices) is killed with SIGKILL twice and restarted. Alice's client then reads every one of
//! Bob's messages decrypted from his ghost, exactly once, in order, with no undecryptable event,
//! and Bob reads every one of Alice's: no Megolm index, Olm session or transaction was lost or
//! reused across the kills. With the keys from `/sync` and from transactions (push mode).

use std::time::Duration;

use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::bridge_synapse::wait_for;
use crate::encrypted_ghosts::timeline;
use crate::encrypted_portals::{E2eeClient, OWNER};
use crate::rooms_across::{bodies, ghost, messages_of};
use crate::rooms_across_crash::Proc;
use crate::rooms_across_media::{image_from, images, send_image};

/// Messages each user sends.
const EACH: usize = 100;

#[test]
fn kill_9_of_the_bridge_holding_the_ghosts_devices_loses_and_doubles_nothing_both_ways() {
    across_kills(false);
}

#[test]
fn in_push_mode_kill_9_of_the_bridge_holding_the_ghosts_devices_loses_and_doubles_nothing_both_ways() {
    across_kills(true);
}

fn across_kills(push: bool) {
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(2);
    let encryption = format!("encryption:\n  enabled: true\n  push: {push}\n");
    let b = Proc::start_with("hs-b.test", &ca, (ports + 1, ("mimi.hs.test", ports)), "");
    let mut a = Proc::start_with("hs.test", &ca, (ports, ("mimi.hs-b.test", ports + 1)), &encryption);

    let bob = b.bob_with_a_portal();

    a.synapse.register("alice", "password");
    let alice = E2eeClient::login(&a.synapse, "alice", "password");
    let bob_at_a = ghost("bob", "mimi.hs-b.test", "hs.test");
    let room = alice.encrypted_room(&bob_at_a);
    let room_a = room.room_id().to_string();
    let (_, room_b) = b.joins_bob(&a, &bob, &room_a);
    alice.wait_for_member(&room, OWNER);

    for i in 0..EACH {
        alice.send(&room, RoomMessageEventContent::text_plain(format!("a{i}")));
        b.synapse.send_text(&bob, &room_b, &format!("b{i}"));
        if i == 30 || i == 70 {
            a.kill_and_restart();
        }
    }

    let expected = |prefix: &str| (0..EACH).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    let at_b = || bodies(messages_of(&b.synapse, &bob, &room_b, &alice_at_b));
    wait_for("Alice's messages at Bob's", Duration::from_mins(3), || at_b().len() >= EACH);
    let from_bob =
        || timeline(&alice, &room).into_iter().filter(|e| e.sender == bob_at_a && e.event_type != "m.room.member");
    wait_for("Bob's messages in Alice's client", Duration::from_mins(3), || from_bob().count() >= EACH);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(at_b(), expected("a"), "once each, in order");
    let shown: Vec<_> = from_bob().collect();
    assert!(shown.iter().all(|e| !e.undecryptable), "every event decrypted: {shown:#?}");
    let texts: Vec<String> = shown.iter().map(|e| e.content["body"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(texts, expected("b"), "once each, in order, decrypted");

    images_both_ways(&alice, &room, &b, (&bob, &room_b));
}

/// Alice's client sends an image encrypted (the homeserver holds ciphertext only): Bob reads
/// the same bytes. Bob's image reaches Alice's portal encrypted the same way by his ghost: her
/// client decrypts the same bytes, and the homeserver's copy is not them.
fn images_both_ways(alice: &E2eeClient, room: &matrix_sdk::Room, b: &Proc, (bob, room_b): (&str, &str)) {
    let (from_alice, from_bob) = images();
    alice.runtime.block_on(async {
        let config = matrix_sdk::attachment::AttachmentConfig::new();
        room.send_attachment("pic.png", &mime::IMAGE_PNG, from_alice.clone(), config).await.unwrap();
    });
    send_image(&b.synapse, bob, room_b, &from_bob);
    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    wait_for("Alice's image at Bob's", Duration::from_mins(1), || {
        image_from(&b.synapse, bob, room_b, &alice_at_b).is_some()
    });
    assert!(image_from(&b.synapse, bob, room_b, &alice_at_b) == Some(from_alice), "the same bytes at Bob's");

    let bob_at_a = ghost("bob", "mimi.hs-b.test", "hs.test");
    let image =
        || timeline(alice, room).into_iter().find(|e| e.sender == bob_at_a && e.content["msgtype"] == "m.image");
    wait_for("Bob's image in Alice's client", Duration::from_mins(1), || image().is_some());
    let content = image().unwrap().content;
    assert!(content["url"].is_null() && content["file"]["url"].is_string(), "{content:#}");
    let file = serde_json::from_value(content["file"].clone()).unwrap();
    let request = MediaRequestParameters { source: MediaSource::Encrypted(Box::new(file)), format: MediaFormat::File };
    let bytes = alice.runtime.block_on(alice.client().media().get_media_content(&request, false)).unwrap();
    assert!(bytes == from_bob, "Alice's client decrypts Bob's image");
    let stored = MediaRequestParameters {
        source: MediaSource::Plain(content["file"]["url"].as_str().unwrap().into()),
        format: MediaFormat::File,
    };
    let on_server = alice.runtime.block_on(alice.client().media().get_media_content(&stored, false)).unwrap();
    assert!(on_server.len() == from_bob.len() && on_server != from_bob, "the homeserver holds ciphertext");
}
