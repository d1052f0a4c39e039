//! `encryption.require_verification`, against a real Synapse and real end-to-end-encrypting
//! clients: Alice has signed her device with her cross-signing keys, Carol has not. Alice's
//! message is bridged; Carol's is refused, Carol told in the room (encrypted, by the bridge's
//! device), and counted — never bridged and never dropped silently.

use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::bridge_synapse::{BOT, mimi_messages, text_of, wait_for};
use crate::encrypted_portals::{E2eeClient, OWNER};
use crate::synapse::Synapse;

/// Makes `user`'s cross-signing keys and signs the client's device with them.
fn cross_sign(client: &E2eeClient, user: &str, password: &str) {
    client.runtime.block_on(async {
        let encryption = client.client().encryption();
        if let Err(error) = encryption.bootstrap_cross_signing(None).await {
            let response = error.as_uiaa_response().expect("only interactive authentication may be asked");
            let identifier = uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(user.to_owned()));
            let mut auth = uiaa::Password::new(identifier, password.to_owned());
            auth.session.clone_from(&response.session);
            encryption.bootstrap_cross_signing(Some(uiaa::AuthData::Password(auth))).await.unwrap();
        }
    });
}

#[test]
fn with_require_verification_only_messages_from_devices_their_owners_signed_are_bridged() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let bridge = crate::encryption_device::bridge_with_registration(false);
    let synapse = Synapse::start(&[&bridge.registration]);
    let bridge_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = crate::encryption_device::config_with(&bridge, synapse.port, "  require_verification: true\n");
    let running = bridge_runtime.block_on(mimi_bridge::daemon::start(&config)).unwrap();
    let store = Arc::clone(running.hub.store());
    synapse.register("alice", "alice-password");
    synapse.register("carol", "carol-password");
    let alice = E2eeClient::login(&synapse, "alice", "alice-password");
    cross_sign(&alice, "alice", "alice-password");
    let carol = E2eeClient::login(&synapse, "carol", "carol-password");
    let room = alice.encrypted_room(BOT);
    let matrix_room = room.room_id().to_string();
    wait_for("the portal", Duration::from_secs(30), || store.portal_of(&matrix_room).unwrap().is_some());
    let mimi_room = store.portal_of(&matrix_room).unwrap().unwrap();
    alice.wait_for_member(&room, OWNER);
    alice.runtime.block_on(async {
        room.invite_user_by_id(&OwnedUserId::try_from("@carol:hs.test").unwrap()).await.unwrap();
    });
    let carols_room = carol.runtime.block_on(async {
        let settings = matrix_sdk::config::SyncSettings::default().timeout(Duration::from_millis(200));
        carol.client().sync_once(settings).await.unwrap();
        carol.client().join_room_by_id(room.room_id()).await.unwrap()
    });
    alice.wait_for_member(&room, "@carol:hs.test");
    carol.wait_for_member(&carols_room, OWNER);

    alice.send(&room, RoomMessageEventContent::text_plain("from a signed device"));
    carol.send(&carols_room, RoomMessageEventContent::text_plain("from an unsigned device"));
    alice.send(&room, RoomMessageEventContent::text_plain("signed again"));

    let metrics = &running.appservice.metrics;
    wait_for("Carol's message refused", Duration::from_mins(1), || metrics.refused_count("undecryptable") == 1);
    wait_for("Alice's messages in the log", Duration::from_secs(30), || mimi_messages(&store, &mimi_room).len() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let texts: Vec<Option<String>> = mimi_messages(&store, &mimi_room).iter().map(|(_, c)| text_of(c)).collect();
    assert_eq!(texts, [Some("from a signed device".to_owned()), Some("signed again".to_owned())]);
    // The notice, encrypted like the room (by the bridge's device), reaches Carol decrypted.
    let is_notice = |e: &&crate::encrypted_ghosts::Shown| {
        let body = e.content["body"].as_str().unwrap_or_default();
        e.sender == OWNER && body.contains("was not bridged") && body.contains("could not decrypt")
    };
    let mut notice = None;
    wait_for("the notice to Carol", Duration::from_secs(30), || {
        notice = crate::encrypted_ghosts::timeline(&carol, &carols_room).iter().find(is_notice).cloned();
        notice.is_some()
    });
    let (_, device, _) = notice.unwrap().encrypted.expect("Megolm-encrypted");
    let devices =
        synapse.get(Some(crate::encryption_device::AS_TOKEN), &format!("/_matrix/client/v3/devices?user_id={OWNER}"));
    assert_eq!(device, devices["devices"][0]["device_id"].as_str().unwrap(), "the bridge's device: {devices}");
    let token = synapse.login("alice", "alice-password");
    let clear = synapse.texts(&token, &matrix_room);
    assert!(clear.iter().all(|(_, body)| !body.contains("was not bridged")), "no clear notice: {clear:?}");
    assert_eq!(store.intake_len().unwrap(), 0);
    assert!(bridge_runtime.block_on(running.stop()));
}
