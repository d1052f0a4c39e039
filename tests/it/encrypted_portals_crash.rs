//! Kill -9 the bridge (the real `mimi-bridge serve` process) twice while a real end-to-end-
//! encrypting client talks in an encrypted portal, across the client's room-key rotation (every
//! 100 messages): after the restarts every message is in the MIMI log exactly once, in order,
//! decrypted — the device's Olm and Megolm state survived, and no room key it acknowledged was
//! lost. With the keys from `/sync` and from transactions (push mode).

use std::time::Duration;

use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::bridge_crash::{read_only, start_bridge, texts_once_all_arrived};
use crate::bridge_synapse::{BOT, config_yaml, wait_for};
use crate::encrypted_portals::E2eeClient;
use crate::synapse::Synapse;

const TOTAL: usize = 200;

#[test]
fn kill_9_mid_stream_in_an_encrypted_portal_loses_and_duplicates_nothing() {
    killed_mid_stream(false);
}

#[test]
fn in_push_mode_kill_9_mid_stream_in_an_encrypted_portal_loses_and_duplicates_nothing() {
    killed_mid_stream(true);
}

fn killed_mid_stream(push: bool) {
    let bridge = crate::encryption_device::bridge_with_registration(push);
    let mut synapse = Synapse::start(&[&bridge.registration]);
    if push {
        synapse.enable_push_extensions();
    }
    let config = bridge.dir.path().join("config.yaml");
    let yaml = config_yaml(bridge.dir.path(), synapse.port, bridge.as_port);
    std::fs::write(&config, format!("{yaml}encryption:\n  enabled: true\n  push: {push}\n")).unwrap();
    let log = bridge.dir.path().join("bridge.log");
    let mut child = start_bridge(&config, bridge.as_port, &log);

    synapse.register("alice", "alice-password");
    let alice = E2eeClient::login(&synapse, "alice", "alice-password");
    let room = alice.encrypted_room(BOT);
    let matrix_room = room.room_id().to_string();
    wait_for("the portal", Duration::from_secs(30), || {
        read_only(bridge.dir.path()).is_some_and(|s| s.portal_of(&matrix_room).unwrap().is_some())
    });
    let mimi_room = read_only(bridge.dir.path()).unwrap().portal_of(&matrix_room).unwrap().unwrap();
    alice.wait_for_member(&room, crate::encrypted_portals::OWNER);

    for i in 0..TOTAL {
        alice.send(&room, RoomMessageEventContent::text_plain(format!("message {i}")));
        // The second kill lands right after the client rotated its room key.
        if i == 37 || i == 101 {
            child.kill().unwrap();
            let _ = child.wait();
            child = start_bridge(&config, bridge.as_port, &log);
        }
    }
    let texts = texts_once_all_arrived(bridge.dir.path(), &mimi_room, TOTAL, child, &log);
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("message {i}")).collect();
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(texts, expected, "exactly once, in order; bridge log:\n{log}");
    assert!(!log.contains("undecryptable"), "{log}");
}
