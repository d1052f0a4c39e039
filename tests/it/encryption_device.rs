//! `encryption.enabled`: the bridge's own Matrix device, against a real Synapse. With the
//! registration `generate-registration` writes, the bridge creates its device through the
//! appservice device management (MSC4190) and acts as it (MSC4326); with a registration written
//! before, it refuses to start and says what to change. In push mode a to-device probe must come
//! back in a transaction.

use std::path::Path;

use mimi_bridge::config::Config;
use mimi_bridge::daemon;

use crate::bridge_synapse::{BridgeDir, config_yaml_trusting};
use crate::synapse::{Method, Synapse};

pub(crate) const AS_TOKEN: &str = "as_0123456789abcdef0123456789abcdef";
const OWNER: &str = "@mimibot_device:hs.test";

pub(crate) fn config(bridge: &BridgeDir, hs_port: u16, push: bool) -> Config {
    config_with(bridge, hs_port, &format!("  push: {push}\n"))
}

/// The bridge's config with `encryption` enabled and `more` of that section.
pub(crate) fn config_with(bridge: &BridgeDir, hs_port: u16, more: &str) -> Config {
    let yaml = config_yaml_trusting(bridge.dir.path(), hs_port, bridge.as_port, &bridge.trusted);
    Config::from_yaml(&format!("{yaml}encryption:\n  enabled: true\n{more}"), Path::new("test.yaml")).unwrap()
}

/// A bridge directory whose registration is written for `encryption` (push mode if `push`).
pub(crate) fn bridge_with_registration(push: bool) -> BridgeDir {
    let bridge = BridgeDir::new();
    std::fs::write(&bridge.registration, config(&bridge, 1, push).registration().to_yaml()).unwrap();
    bridge
}

#[test]
fn the_bridge_creates_its_device_and_acts_as_it() {
    let bridge = bridge_with_registration(false);
    let written = std::fs::read_to_string(&bridge.registration).unwrap();
    assert!(written.contains("io.element.msc4190: true") && !written.contains("msc3202"), "{written}");
    assert!(written.contains("^@mimibot_device:hs\\.test$"), "the owner is in the namespace: {written}");
    let synapse = Synapse::start(&[&bridge.registration]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(daemon::start(&config(&bridge, synapse.port, false))).unwrap();

    let devices = synapse.get(Some(AS_TOKEN), &format!("/_matrix/client/v3/devices?user_id={OWNER}"));
    let devices = devices["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let device = devices[0]["device_id"].as_str().unwrap();
    assert!(device.starts_with("MIMIBRIDGE") && device.len() == 18, "{device}");
    assert_eq!(devices[0]["display_name"], "mimi-bridge");
    let whoami = format!("/_matrix/client/v3/account/whoami?user_id={OWNER}&device_id={device}");
    assert_eq!(synapse.get(Some(AS_TOKEN), &whoami)["device_id"], device);
    // Signed by the owner's self-signing key, which the owner's master key signs.
    let query = format!("/_matrix/client/v3/keys/query?user_id={OWNER}");
    let keys = synapse.post(Some(AS_TOKEN), &query, &serde_json::json!({"device_keys": {OWNER: []}}));
    let self_signing = keys["self_signing_keys"][OWNER]["keys"].as_object().expect("self-signing key").clone();
    let (self_signing_id, _) = self_signing.iter().next().unwrap();
    assert!(keys["device_keys"][OWNER][device]["signatures"][OWNER][self_signing_id].is_string(), "{keys:#}");
    assert!(keys["master_keys"][OWNER]["keys"].is_object(), "{keys:#}");
    assert!(runtime.block_on(running.stop()));
}

/// Encryption enabled in the config but the registration written before (the owner of the
/// device not in its namespace): the bridge refuses to start and says to regenerate it.
#[test]
fn with_a_registration_written_before_encryption_was_enabled_the_bridge_says_to_regenerate_it() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Err(error) = runtime.block_on(daemon::start(&config(&bridge, synapse.port, false))) else {
        panic!("the bridge started")
    };
    let message = error.to_string();
    assert!(message.contains("encryption.enabled") && message.contains("generate-registration"), "{message}");
    assert!(message.contains(OWNER), "{message}");
    let (status, _) =
        synapse.call(Method::Get, Some(AS_TOKEN), &format!("/_matrix/client/v3/devices?user_id={OWNER}"), None);
    assert_ne!(status, 200, "no such user");
}

/// Push mode: the device's to-device probe must come back in a transaction. Without Synapse's
/// experimental flags the bridge refuses to start, naming them; once the admin set them and
/// restarted Synapse, it starts.
#[test]
fn push_mode_needs_to_device_messages_in_transactions() {
    let bridge = bridge_with_registration(true);
    let written = std::fs::read_to_string(&bridge.registration).unwrap();
    assert!(written.contains("org.matrix.msc3202: true"), "{written}");
    let mut synapse = Synapse::start(&[&bridge.registration]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let Err(error) = runtime.block_on(daemon::start(&config(&bridge, synapse.port, true))) else {
        panic!("the bridge started")
    };
    let message = error.to_string();
    assert!(message.contains("encryption.push") && message.contains("msc2409_to_device_messages_enabled"), "{message}");
    drop(runtime);

    // The admin sets the flags and restarts Synapse (a new bridge directory: the first one's
    // store stays locked by this process).
    let second = bridge_with_registration(true);
    std::fs::copy(&second.registration, &bridge.registration).unwrap();
    synapse.enable_push_extensions();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(daemon::start(&config(&second, synapse.port, true))).unwrap();
    // The failed start's device (its keys uploaded, its store the first directory) is gone: the
    // new store's device has a new ID and is the owner's only one.
    let devices = synapse.get(Some(AS_TOKEN), &format!("/_matrix/client/v3/devices?user_id={OWNER}"));
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
    assert!(runtime.block_on(running.stop()));
}
