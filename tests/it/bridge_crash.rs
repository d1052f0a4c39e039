//! Kill -9 the bridge (the real `mimi-bridge serve` process) while a user talks in a portal on a
//! real Synapse, restart it, and check that every message reached the MIMI log exactly once, in
//! order: what the bridge acknowledged was durable, and what it had not acknowledged Synapse
//! delivered again. The same with SIGTERM, where the bridge must also stop by itself, in
//! bounded time, with exit status 0.

use std::process::{Child, Stdio};
use std::time::Duration;

use mimi_bridge::store::Store;
use serde_json::json;

use crate::bridge_synapse::{BOT, BridgeDir, config_yaml, mimi_messages, wait_for};
use crate::synapse::Synapse;

/// Messages the user sends.
const TOTAL: usize = 200;

/// Starts `mimi-bridge serve` and waits until it is ready.
pub(crate) fn start_bridge(config: &std::path::Path, as_port: u16, log: &std::path::Path) -> Child {
    start_bridge_crashing_at(config, as_port, log, "")
}

/// [`start_bridge`], aborting at `step` of opening a portal (`MIMI_BRIDGE_CRASH_AT`).
fn start_bridge_crashing_at(config: &std::path::Path, as_port: u16, log: &std::path::Path, step: &str) -> Child {
    start_bridge_with(config, as_port, log, &[("MIMI_BRIDGE_CRASH_AT", step)])
}

/// [`start_bridge`] with extra environment variables.
fn start_bridge_with(
    config: &std::path::Path,
    as_port: u16,
    log_path: &std::path::Path,
    env: &[(&str, &str)],
) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
    let mut child = crate::common::bin()
        .args(["serve", "-c", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let started = std::time::Instant::now();
    while !agent
        .get(format!("http://127.0.0.1:{as_port}/_matrix/mau/ready"))
        .call()
        .is_ok_and(|r| r.status().as_u16() == 200)
    {
        let log = || std::fs::read_to_string(log_path).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the bridge stopped at start ({status}); its log:\n{}", log());
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "the bridge was not ready within 1 min; its log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Alice registers and opens a portal by inviting the bot; (her token, the Matrix room, the MIMI
/// room), once the bridge has recorded the portal.
fn alice_opens_a_portal(synapse: &Synapse, dir: &std::path::Path) -> (String, String, String) {
    synapse.register("alice", "alice-password");
    let token = synapse.login("alice", "alice-password");
    let room = synapse.create_room(&token, &json!({"preset": "private_chat"}));
    synapse.invite(&token, &room, BOT);
    wait_for("the portal", Duration::from_secs(30), || {
        read_only(dir).is_some_and(|s| s.portal_of(&room).unwrap().is_some())
    });
    let mimi_room = read_only(dir).unwrap().portal_of(&room).unwrap().unwrap();
    (token, room, mimi_room)
}

/// The texts of a MIMI room's messages, in log order.
pub(crate) fn texts_of(store: &Store, mimi_room: &str) -> Vec<String> {
    mimi_messages(store, mimi_room)
        .iter()
        .map(|(_, c)| mimi_bridge::mimi::json::content_to_json(c)["body"]["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the MIMI room's log holds `total` messages (and a second more, for any extra to
/// show), stops the bridge and returns the messages' texts in log order.
pub(crate) fn texts_once_all_arrived(
    dir: &std::path::Path,
    mimi_room: &str,
    total: usize,
    mut child: Child,
    log: &std::path::Path,
) -> Vec<String> {
    let count = || read_only(dir).map_or(0, |s| mimi_messages(&s, mimi_room).len());
    let started = std::time::Instant::now();
    while count() < total {
        if started.elapsed() > Duration::from_mins(3) {
            let _ = child.kill();
            let _ = child.wait();
            let texts = read_only(dir).map(|s| texts_of(&s, mimi_room)).unwrap_or_default();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("timed out after 3 min with {} of {total} messages: {texts:?}\nbridge log:\n{log}", texts.len());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
    texts_of(&read_only(dir).unwrap(), mimi_room)
}

pub(crate) fn read_only(dir: &std::path::Path) -> Option<Store> {
    Store::open_existing(&dir.join("data")).ok()
}

#[test]
fn kill_9_mid_stream_loses_and_duplicates_nothing() {
    interrupted_mid_stream(|child| child.kill().unwrap());
}

#[test]
fn sigterm_mid_stream_drains_exits_0_and_loses_nothing() {
    interrupted_mid_stream(|child| {
        let pid = child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = std::time::Instant::now();
        let status = child.wait().unwrap();
        assert!(status.success(), "SIGTERM exits 0: {status}");
        let grace = mimi_bridge::daemon::SHUTDOWN_GRACE + Duration::from_secs(5);
        assert!(started.elapsed() < grace, "stopped within the grace period ({:?})", started.elapsed());
    });
}

/// 200 messages; the bridge is stopped by `stop` three times while they flow and restarted.
fn interrupted_mid_stream(stop: impl Fn(&mut Child)) {
    let bridge = BridgeDir::new();
    let mut synapse = Synapse::start(&[&bridge.registration]);
    let config = bridge.dir.path().join("config.yaml");
    std::fs::write(&config, config_yaml(bridge.dir.path(), synapse.port, bridge.as_port)).unwrap();
    let log = bridge.dir.path().join("bridge.log");
    let mut child = start_bridge(&config, bridge.as_port, &log);

    let (token, room, mimi_room) = alice_opens_a_portal(&synapse, bridge.dir.path());

    let kills = [37, 91, 150];
    let mut seed = 0x9e37_79b9_u32;
    for i in 0..TOTAL {
        synapse.send_text(&token, &room, &format!("message {i}"));
        if kills.contains(&i) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            std::thread::sleep(Duration::from_millis(u64::from(seed % 200)));
            stop(&mut child);
            let _ = child.wait();
            child = start_bridge(&config, bridge.as_port, &log);
        }
    }
    let texts = texts_once_all_arrived(bridge.dir.path(), &mimi_room, TOTAL, child, &log);
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "exactly once, in order; bridge log:\n{}", std::fs::read_to_string(&log).unwrap());
    let out =
        crate::common::run(&["log", "verify", "--data-dir", bridge.dir.path().join("data").to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    synapse.stop();
}

/// The bridge dies (abort, as kill -9 would leave it) right after each step of opening a portal
/// is durable; restarted, it finishes opening the same MIMI room: one per portal, ever.
#[test]
fn a_crash_at_each_step_of_opening_a_portal_leaves_exactly_one_mimi_room() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let config = bridge.dir.path().join("config.yaml");
    std::fs::write(&config, config_yaml(bridge.dir.path(), synapse.port, bridge.as_port)).unwrap();
    let log = bridge.dir.path().join("bridge.log");
    synapse.register("alice", "alice-password");
    let token = synapse.login("alice", "alice-password");
    let ghost = crate::bridge_peer::GHOST;
    for (done, step) in ["portal-intent", "portal-room", "portal-invite"].into_iter().enumerate() {
        let mut child = start_bridge_crashing_at(&config, bridge.as_port, &log, step);
        let room = synapse.create_room(&token, &json!({"preset": "private_chat"}));
        synapse.invite(&token, &room, ghost);
        wait_for("the crash", Duration::from_secs(30), || child.try_wait().unwrap().is_some());
        assert!(!child.wait().unwrap().success(), "{step}: aborted");
        let store = read_only(bridge.dir.path()).unwrap();
        assert!(store.portal_of(&room).unwrap().is_none(), "{step}: the crash came before the portal was recorded");
        drop(store);
        let mut child = start_bridge(&config, bridge.as_port, &log);
        wait_for("the portal", Duration::from_secs(30), || {
            read_only(bridge.dir.path()).is_some_and(|s| s.portal_of(&room).unwrap().is_some())
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let store = read_only(bridge.dir.path()).unwrap();
        let rooms = mimi_bridge::replay::list_rooms(&store).unwrap();
        assert_eq!(rooms.len(), done + 1, "{step}: one MIMI room per portal: {rooms:?}");
        let mimi_room = store.portal_of(&room).unwrap().unwrap();
        let state = mimi_bridge::replay::state_at(&store, &mimi_room, None);
        assert!(state.is_ok(), "{step}: the room's state reads back");
        assert!(store.portal_intent(&room).unwrap().is_none(), "{step}: the intent is cleared with the record");
    }
    let out =
        crate::common::run(&["log", "verify", "--data-dir", bridge.dir.path().join("data").to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
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

/// The disk fills while a user talks (`MIMI_BRIDGE_FAULT_FULL_DISK` stands in for it: the tests
/// cannot mount a small filesystem on every machine): the bridge refuses the transaction it
/// cannot store (Synapse keeps it), stops with exit status 1 naming the cause, and once space is
/// freed a restart takes in what Synapse redelivers — every message exactly once, in order.
#[test]
fn a_full_disk_stops_the_bridge_with_status_1_and_a_restart_loses_nothing() {
    let bridge = BridgeDir::new();
    let mut synapse = Synapse::start(&[&bridge.registration]);
    let config = bridge.dir.path().join("config.yaml");
    std::fs::write(&config, config_yaml(bridge.dir.path(), synapse.port, bridge.as_port)).unwrap();
    let log = bridge.dir.path().join("bridge.log");
    let flag = bridge.dir.path().join("disk-full");
    let env = [("MIMI_BRIDGE_FAULT_FULL_DISK", flag.to_str().unwrap())];
    let mut child = start_bridge_with(&config, bridge.as_port, &log, &env);

    let (token, room, mimi_room) = alice_opens_a_portal(&synapse, bridge.dir.path());
    let count = || read_only(bridge.dir.path()).map_or(0, |s| mimi_messages(&s, &mimi_room).len());
    for i in 0..10 {
        synapse.send_text(&token, &room, &format!("message {i}"));
    }
    wait_for("the first messages in the MIMI log", Duration::from_mins(1), || count() >= 10);

    std::fs::write(&flag, b"").unwrap();
    for i in 10..20 {
        synapse.send_text(&token, &room, &format!("message {i}"));
    }
    wait_for("the bridge to stop", Duration::from_mins(1), || child.try_wait().unwrap().is_some());
    let status = child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "a store that refuses writes exits 1: {logged}");
    assert!(logged.contains("No space left on device"), "the cause is logged: {logged}");

    std::fs::remove_file(&flag).unwrap();
    let mut child = start_bridge_with(&config, bridge.as_port, &log, &env);
    wait_for("all messages in the MIMI log", Duration::from_mins(2), || count() >= 20);
    std::thread::sleep(Duration::from_secs(1));
    child.kill().unwrap();
    child.wait().unwrap();
    let store = read_only(bridge.dir.path()).unwrap();
    let texts = texts_of(&store, &mimi_room);
    let expected: Vec<String> = (0..20).map(|i| format!("message {i}")).collect();
    assert_eq!(texts, expected, "exactly once, in order");
    synapse.stop();
}
