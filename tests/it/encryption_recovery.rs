//! `encryption.recovery_key_file`, against a real Synapse: the first start writes the key
//! (owner-readable) and keeps the device owner's cross-signing keys in their secret storage,
//! encrypted with it; a bridge on a new store with the same file takes the same identity back
//! and signs its new device with it; without the file a new store means a new identity and a
//! new file.

use mimi_bridge::daemon;
use serde_json::{Value, json};

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
    keys["master_keys"][OWNER]["keys"].clone()
}

/// Whether `device` is signed by the owner's current self-signing key.
fn signed(keys: &Value, device: &str) -> bool {
    let self_signing = keys["self_signing_keys"][OWNER]["keys"].as_object().expect("a self-signing key");
    let (id, _) = self_signing.iter().next().unwrap();
    keys["device_keys"][OWNER][device]["signatures"][OWNER][id].is_string()
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
