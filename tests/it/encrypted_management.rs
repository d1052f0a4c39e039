//! A management room in an encrypted direct chat (what Element makes by default), against a real
//! Synapse and a real end-to-end-encrypting client: the bridge's device joins it, decrypts the
//! command and answers Megolm-encrypted.

use std::time::Duration;

use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::bridge_synapse::{BOT, wait_for};
use crate::encrypted_ghosts::{Shown, timeline};
use crate::encrypted_portals::OWNER;

#[test]
fn commands_in_an_encrypted_direct_chat_are_read_and_answered_encrypted() {
    let bridge = crate::encryption_device::bridge_with_registration(false);
    let (synapse, bridge_runtime, running, alice) = crate::encrypted_portals::started(&bridge);
    let room = alice.runtime.block_on(async {
        let mut request = CreateRoom::new();
        request.preset = Some(RoomPreset::TrustedPrivateChat);
        request.is_direct = true;
        request.invite = vec![OwnedUserId::try_from(BOT).unwrap()];
        request.initial_state = vec![
            InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
                .to_raw_any(),
        ];
        alice.client().create_room(request).await.unwrap()
    });
    alice.wait_for_member(&room, OWNER);
    alice.send(&room, RoomMessageEventContent::text_plain("version"));

    let answered = |shown: &Shown| shown.content["body"].as_str().is_some_and(|b| b.starts_with("mimi-bridge "));
    let mut answers = Vec::new();
    wait_for("the answer", Duration::from_mins(1), || {
        answers = timeline(&alice, &room).into_iter().filter(|e| e.sender == OWNER).collect();
        answers.iter().any(answered)
    });
    assert!(answers.iter().all(|e| e.event_type != "m.room.message" || e.encrypted.is_some()), "{answers:#?}");
    assert!(answers.iter().any(|e| e.content["body"].as_str().is_some_and(|b| b.starts_with("Hello!"))));
    let token = synapse.login("alice", "alice-password");
    let clear = synapse.texts(&token, room.room_id().as_str());
    assert!(clear.iter().all(|(sender, _)| sender != OWNER && sender != BOT), "nothing in the clear: {clear:?}");
    assert_eq!(running.appservice.metrics.refused_count("undecryptable"), 0);
    assert!(bridge_runtime.block_on(running.stop()));
}
