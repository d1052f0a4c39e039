//! `encryption.recovery_key_file`, against a real Synapse: the first start writes the key
//! (owner-readable) and keeps the device owner's cross-signing keys in their secret storage,
//! encrypted with it; a bridge on a new store with the same file takes the same identity back
//! and signs its new device with it; without the file a new store means a new identity and a
//! new file. A ghost's identity, made when it first speaks in an encrypted room, is kept and
//! taken back the same way.

use std::sync::Arc;

use mimi_bridge::appservice::homeserver::HomeserverClient;
use mimi_bridge::daemon;
use mimi_bridge::e2ee::Device;
use mimi_bridge::e2ee::device::Readers;
use mimi_bridge::e2ee::ghosts::GhostDevices;
use mimi_bridge::e2ee::recovery::RecoveryKey;
use mimi_bridge::store::Store;
use serde_json::{Value, json};

use crate::bridge_peer::GHOST;
use crate::bridge_synapse::BridgeDir;
use crate::encryption_device::{AS_TOKEN, bridge_with_registration, config_with};
use crate::synapse::Synapse;

const OWNER: &str = "@mimibot_device:hs.test";

/// Starts a bridge in `bridge`'s directory with the recovery key in `file`, and returns, once it
/// stopped, its device ID with the owner's keys as the homeserver shows them.
fn start_and_stop(bridge: &BridgeDir, synapse: &Synapse, file: &std::path::Path) -> (String, Value) {
    let config = config_with(bridge, synapse.port, &format!("  recovery_key_file: {}\n", file.display()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(daemon::start(&config)).unwrap();
    assert!(runtime.block_on(running.stop()));
    let devices = synapse.get(Some(AS_TOKEN), &format!("/_matrix/client/v3/devices?user_id={OWNER}"));
    let device = devices["devices"][0]["device_id"].as_str().unwrap().to_owned();
    let query = format!("/_matrix/client/v3/keys/query?user_id={OWNER}");
    (device, synapse.post(Some(AS_TOKEN), &query, &json!({"device_keys": {OWNER: []}})))
}

fn master_key(keys: &Value) -> Value {
    master_key_of(keys, OWNER)
}

fn master_key_of(keys: &Value, user: &str) -> Value {
    keys["master_keys"][user]["keys"].clone()
}

/// Whether `device` is signed by the owner's current self-signing key.
fn signed(keys: &Value, device: &str) -> bool {
    signed_by(keys, (OWNER, device))
}

/// Whether `user`'s `device` is signed by their current self-signing key.
fn signed_by(keys: &Value, (user, device): (&str, &str)) -> bool {
    let self_signing = keys["self_signing_keys"][user]["keys"].as_object().expect("a self-signing key");
    let (id, _) = self_signing.iter().next().unwrap();
    keys["device_keys"][user][device]["signatures"][user][id].is_string()
}

fn account_data(synapse: &Synapse, kind: &str) -> Value {
    synapse.get(Some(AS_TOKEN), &format!("/_matrix/client/v3/user/{OWNER}/account_data/{kind}?user_id={OWNER}"))
}

#[test]
fn a_new_store_takes_the_owners_identity_back_with_the_recovery_key() {
    let first = bridge_with_registration(false);
    let synapse = Synapse::start(&[&first.registration]);
    let keep = tempfile::tempdir().unwrap();
    let file = keep.path().join("recovery-key.txt");

    let (device, keys) = start_and_stop(&first, &synapse, &file);
    let written = std::fs::read_to_string(&file).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    let key_id = written.lines().find_map(|l| l.strip_prefix("key_id: ")).expect("a key_id line").to_owned();
    assert!(written.lines().any(|l| l.starts_with("recovery_key: Es")), "{written}");
    assert_eq!(account_data(&synapse, "m.secret_storage.default_key")["key"], key_id.as_str());
    assert!(account_data(&synapse, &format!("m.secret_storage.key.{key_id}"))["mac"].is_string());
    for secret in ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing"] {
        let stored = account_data(&synapse, secret);
        assert!(stored["encrypted"][&key_id]["ciphertext"].is_string(), "{secret}: {stored}");
    }
    assert!(signed(&keys, &device));

    // The data directory is lost: a new store, the same file (and the same address, the one
    // the registration gives the homeserver).
    let new_store = || BridgeDir { as_port: first.as_port, ..bridge_with_registration(false) };
    let second = new_store();
    let (new_device, restored) = start_and_stop(&second, &synapse, &file);
    assert_ne!(new_device, device, "a new store makes a new device");
    assert_eq!(master_key(&restored), master_key(&keys), "the owner's identity is the same");
    assert!(signed(&restored, &new_device), "the new device is signed with the kept keys: {restored:#}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written, "the file is never rewritten");

    // Lost with its file too: a new identity, and a new file.
    std::fs::remove_file(&file).unwrap();
    let third = new_store();
    let (last_device, reset) = start_and_stop(&third, &synapse, &file);
    assert_ne!(master_key(&reset), master_key(&keys));
    assert!(signed(&reset, &last_device));
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert!(!rewritten.contains(&format!("key_id: {key_id}")), "{rewritten}");
    assert!(account_data(&synapse, "m.cross_signing.master")["encrypted"].get(&key_id).is_none());
}

/// The ghost speaks once in `room` through a new store's devices, the recovery key in `file`;
/// returns its devices and keys as the homeserver shows them then.
fn ghost_speaks_from_a_new_store(
    (synapse, homeserver, runtime): (&Synapse, &Arc<HomeserverClient>, &tokio::runtime::Runtime),
    room: &str,
    file: &std::path::Path,
) -> Value {
    let data = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let store = Arc::new(Store::open(data.path()).unwrap());
        let recovery = Some(Arc::new(RecoveryKey::open_or_create(file).unwrap()));
        let id = Device::id_in(&store).unwrap();
        homeserver.put_device(OWNER, &id, "bridge").await.unwrap();
        let device = Device::open(store, Arc::clone(homeserver), (OWNER, &id), recovery).await.unwrap();
        let ghosts = GhostDevices::beside(&device);
        let encryption = json!({"algorithm": "m.megolm.v1.aes-sha2"});
        let readers = Readers { users: vec!["@alice:hs.test".to_owned()], encryption, history: None };
        let event = ("m.room.message", &json!({"msgtype": "m.text", "body": "hello"}));
        let ghost = ghosts.ready(GHOST).await.unwrap();
        ghost.send_encrypted((room, &format!("t.{id}")), &readers, event).await.unwrap();
    });
    synapse.post(Some(AS_TOKEN), "/_matrix/client/v3/keys/query", &json!({"device_keys": {GHOST: []}}))
}

#[test]
fn a_new_store_takes_a_ghosts_identity_back_with_the_recovery_key() {
    let bridge = bridge_with_registration(false);
    let synapse = Synapse::start(&[&bridge.registration]);
    let keep = tempfile::tempdir().unwrap();
    let file = keep.path().join("recovery-key.txt");
    synapse.register("alice", "alice-password");
    let alice = synapse.login("alice", "alice-password");
    let encryption =
        json!({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}});
    let body = json!({"preset": "private_chat", "initial_state": [encryption], "invite": [GHOST]});
    let room =
        synapse.post(Some(&alice), "/_matrix/client/v3/createRoom", &body)["room_id"].as_str().unwrap().to_owned();
    let homeserver =
        Arc::new(HomeserverClient::new(&format!("http://127.0.0.1:{}", synapse.port), AS_TOKEN, "bridge").unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        for user in [OWNER, GHOST] {
            homeserver.register_ghost(user.strip_prefix('@').unwrap().split(':').next().unwrap()).await.unwrap();
        }
        homeserver.join(&room, Some(GHOST)).await.unwrap();
    });

    let first = ghost_speaks_from_a_new_store((&synapse, &homeserver, &runtime), &room, &file);
    let (device, _) = first["device_keys"][GHOST].as_object().unwrap().iter().next().unwrap();
    assert!(signed_by(&first, (GHOST, device)), "{first:#}");
    let key_id =
        std::fs::read_to_string(&file).unwrap().lines().find_map(|l| l.strip_prefix("key_id: ").map(str::to_owned));
    let path = format!("/_matrix/client/v3/user/{GHOST}/account_data/m.cross_signing.master?user_id={GHOST}");
    let stored = synapse.get(Some(AS_TOKEN), &path);
    assert!(stored["encrypted"][key_id.unwrap()]["ciphertext"].is_string(), "in the ghost's secret storage: {stored}");

    let again = ghost_speaks_from_a_new_store((&synapse, &homeserver, &runtime), &room, &file);
    let devices: Vec<&String> = again["device_keys"][GHOST].as_object().unwrap().keys().collect();
    assert_eq!(devices.len(), 1, "the lost store's device is gone: {devices:?}");
    assert_ne!(devices[0], device, "a new store makes a new device");
    assert_eq!(master_key_of(&again, GHOST), master_key_of(&first, GHOST), "the ghost's identity is the same");
    assert!(signed_by(&again, (GHOST, devices[0])), "signed with the kept keys: {again:#}");
}

/// A file the bridge cannot use stops it at start, naming the file and the field.
#[test]
fn a_damaged_recovery_key_file_stops_the_bridge_naming_the_field() {
    let bridge = bridge_with_registration(false);
    let synapse = Synapse::start(&[&bridge.registration]);
    let file = bridge.dir.path().join("recovery-key.txt");
    std::fs::write(&file, "recovery_key: EsTc not a key\nkey_id: abc\niv: AAAA\nmac: AAAA\n").unwrap();
    let config = config_with(&bridge, synapse.port, &format!("  recovery_key_file: {}\n", file.display()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Err(error) = runtime.block_on(daemon::start(&config)) else { panic!("the bridge started") };
    let message = error.to_string();
    assert!(message.contains("encryption.recovery_key_file"), "{message}");
    assert!(message.contains(&file.display().to_string()) && message.contains("recovery_key"), "{message}");
}
