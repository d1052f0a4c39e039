//! Kill -9 the bridge (the real `mimi-bridge serve` process) while a user talks in a portal on a
//! real Synapse, restart it, and check that every message reached the MIMI log exactly once, in
//! order: what the bridge acknowledged was durable, and what it had not acknowledged Synapse
//! delivered again.

use std::process::{Child, Stdio};
use std::time::Duration;

use mimi_bridge::store::Store;
use serde_json::json;

use crate::bridge_synapse::{BOT, BridgeDir, config_yaml, mimi_messages, wait_for};
use crate::synapse::Synapse;

/// Messages the user sends.
const TOTAL: usize = 200;

/// Starts `mimi-bridge serve` and waits until it is ready.
fn start_bridge(config: &std::path::Path, as_port: u16, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = crate::common::bin()
        .args(["serve", "-c", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    wait_for("the bridge to be ready", Duration::from_mins(1), || {
        agent
            .get(format!("http://127.0.0.1:{as_port}/_matrix/mau/ready"))
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    child
}

fn read_only(dir: &std::path::Path) -> Option<Store> {
    Store::open_existing(&dir.join("data")).ok()
}

#[test]
fn kill_9_mid_stream_loses_and_duplicates_nothing() {
    let bridge = BridgeDir::new();
    let mut synapse = Synapse::start(&[&bridge.registration]);
    let config = bridge.dir.path().join("config.yaml");
    std::fs::write(&config, config_yaml(bridge.dir.path(), synapse.port, bridge.as_port)).unwrap();
    let log = bridge.dir.path().join("bridge.log");
    let mut child = start_bridge(&config, bridge.as_port, &log);

    synapse.register("alice", "alice-password");
    let token = synapse.login("alice", "alice-password");
    let room = synapse.create_room(&token, &json!({"preset": "private_chat"}));
    synapse.invite(&token, &room, BOT);
    wait_for("the portal", Duration::from_secs(30), || {
        read_only(bridge.dir.path()).is_some_and(|s| s.portal_of(&room).unwrap().is_some())
    });
    let mimi_room = read_only(bridge.dir.path()).unwrap().portal_of(&room).unwrap().unwrap();

    // 200 messages; the bridge is killed with SIGKILL three times while they flow.
    let kills = [37, 91, 150];
    let mut seed = 0x9e37_79b9_u32;
    for i in 0..TOTAL {
        synapse.send_text(&token, &room, &format!("message {i}"));
        if kills.contains(&i) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            std::thread::sleep(Duration::from_millis(u64::from(seed % 200)));
            child.kill().unwrap();
            child.wait().unwrap();
            child = start_bridge(&config, bridge.as_port, &log);
        }
    }
    let count = || read_only(bridge.dir.path()).map_or(0, |s| mimi_messages(&s, &mimi_room).len());
    wait_for("all messages in the MIMI log", Duration::from_mins(3), || count() >= TOTAL);
    std::thread::sleep(Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();

    let store = Store::open_existing(&bridge.dir.path().join("data")).unwrap();
    let texts: Vec<String> = mimi_messages(&store, &mimi_room)
        .iter()
        .map(|(_, c)| mimi_bridge::mimi::json::content_to_json(c)["body"]["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "exactly once, in order; bridge log:\n{}", std::fs::read_to_string(&log).unwrap());
    drop(store);
    let out =
        crate::common::run(&["log", "verify", "--data-dir", bridge.dir.path().join("data").to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    synapse.stop();
}

#[test]
fn serve_stops_naming_the_field_when_the_homeserver_refuses_the_token() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let config = bridge.dir.path().join("config.yaml");
    let yaml = config_yaml(bridge.dir.path(), synapse.port, bridge.as_port)
        .replace("as_0123456789abcdef0123456789abcdef", "as_not_the_registered_token_0123456789");
    std::fs::write(&config, yaml).unwrap();
    let out = crate::common::run(&["serve", "-c", config.to_str().unwrap()], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("appservice.as_token"), "{stderr}");
    assert!(stderr.contains("config.yaml"), "{stderr}");
}
