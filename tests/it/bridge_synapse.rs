//! The bridge attached to a real Synapse (from `PyPI`, `SQLite`, 127.0.0.1): a user opens a portal by
//! inviting the bot, talks, edits, replies, reacts and redacts; every event lands in the MIMI log
//! exactly once, in order, MLS-encrypted, and the log verifies. An encrypted Matrix room is
//! refused with a notice, and so is a message too large once encrypted.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_bridge::config::Config;
use mimi_bridge::daemon::{self, Running};
use mimi_bridge::event::{KeyRing, UnverifiedPdu, room_version::LINEARIZED_02};
use mimi_bridge::mimi::MimiContent;
use mimi_bridge::replay;
use serde_json::{Value, json};

use crate::synapse::Synapse;

pub(crate) const BOT: &str = "@mimibot:hs.test";

/// A bridge configuration for a Synapse on `hs_port`, the appservice on `as_port`.
pub(crate) fn config_yaml(dir: &Path, hs_port: u16, as_port: u16) -> String {
    config_yaml_trusting(dir, hs_port, as_port, &[])
}

/// [`config_yaml`] with `mimi.trusted_keys` (peers' keys pinned in the config).
pub(crate) fn config_yaml_trusting(dir: &Path, hs_port: u16, as_port: u16, trusted: &[String]) -> String {
    let trusted = if trusted.is_empty() { "[]".to_owned() } else { format!("{trusted:?}") };
    format!(
        "homeserver:\n  address: http://127.0.0.1:{hs_port}\n  domain: hs.test\n\
         appservice:\n  address: http://127.0.0.1:{as_port}\n  hostname: 127.0.0.1\n  port: {as_port}\n  id: mimi\n  \
         bot:\n    username: mimibot\n  as_token: as_0123456789abcdef0123456789abcdef\n  \
         hs_token: hs_0123456789abcdef0123456789abcdef\n  username_template: mimi_{{server}}_{{localpart}}\n\
         mimi:\n  server_name: mimi.hs.test\n  signing_key: {key}\n  federation_listen: 127.0.0.1:{fed}\n  trusted_keys: {trusted}\n\
         database:\n  path: {data}\n  sync: sync\n",
        key = dir.join("signing.key").display(),
        data = dir.join("data").display(),
        fed = as_port.wrapping_add(1).max(1),
    )
}

/// A bridge directory: its signing key, its registration (for Synapse) and a free port.
pub(crate) struct BridgeDir {
    pub dir: tempfile::TempDir,
    /// `mimi.trusted_keys`.
    pub trusted: Vec<String>,
    pub as_port: u16,
    pub registration: std::path::PathBuf,
}

impl BridgeDir {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = crate::common::run(&["keygen", "--out", dir.path().join("signing.key").to_str().unwrap()], b"");
        assert!(out.status.success());
        // The appservice listens on `as_port`, the federation listener on the next one.
        let as_port = crate::ports::consecutive(2);
        let config = Config::from_yaml(&config_yaml(dir.path(), 1, as_port), Path::new("test.yaml")).unwrap();
        let registration = dir.path().join("registration.yaml");
        std::fs::write(&registration, config.registration().to_yaml()).unwrap();
        Self { dir, trusted: Vec::new(), as_port, registration }
    }

    pub(crate) fn config(&self, synapse: &Synapse) -> Config {
        let yaml = config_yaml_trusting(self.dir.path(), synapse.port, self.as_port, &self.trusted);
        Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap()
    }
}

pub(crate) fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The MIMI contents of the room's `m.room.encrypted` events, in log order.
pub(crate) fn mimi_messages(store: &mimi_bridge::store::Store, room: &str) -> Vec<(String, MimiContent)> {
    let short = store.short_room(room).unwrap().unwrap();
    let mut out = Vec::new();
    for item in store.pdus(short, 0).unwrap() {
        let (_, bytes) = item.unwrap();
        let pdu = UnverifiedPdu::parse(&bytes).unwrap();
        if pdu.meta().event_type == "m.room.encrypted" {
            let event_id = pdu.event_id(&LINEARIZED_02);
            let plaintext = store.plaintext(&event_id).unwrap().expect("plaintext stored with the event");
            out.push((event_id, MimiContent::decode(&plaintext).unwrap()));
        }
    }
    out
}

pub(crate) fn text_of(content: &MimiContent) -> Option<String> {
    let json = mimi_bridge::mimi::json::content_to_json(content);
    json["body"]["text"].as_str().map(str::to_owned)
}

pub(crate) fn message_id(store: &mimi_bridge::store::Store, matrix_event_id: &str) -> String {
    let bytes = store.mapped(matrix_event_id).unwrap().expect("mapped");
    serde_json::from_slice::<Value>(&bytes).unwrap()["message_id"].as_str().unwrap().to_owned()
}

pub(crate) fn hex(id: Option<mimi_bridge::mimi::MessageId>) -> Option<String> {
    id.map(|m| m.to_hex())
}

pub(crate) struct Portal {
    /// Runs the bridge; dropped last.
    pub _runtime: tokio::runtime::Runtime,
    pub running: Running,
    pub token: String,
    pub matrix_room: String,
    pub mimi_room: String,
}

/// Starts the bridge in-process and registers and logs in Alice; returns her access token.
fn start_with_alice(synapse: &Synapse, bridge: &BridgeDir) -> (tokio::runtime::Runtime, Running, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(daemon::start(&bridge.config(synapse))).unwrap();
    synapse.register("alice", "alice-password");
    let token = synapse.login("alice", "alice-password");
    (runtime, running, token)
}

/// Starts the bridge in-process, registers Alice and opens a portal by inviting `invitee` (the
/// bot or a ghost).
pub(crate) fn open_portal(synapse: &Synapse, bridge: &BridgeDir, invitee: &str) -> Portal {
    let (runtime, running, token) = start_with_alice(synapse, bridge);
    let matrix_room = synapse.create_room(&token, &json!({"preset": "private_chat", "name": "portal"}));
    synapse.invite(&token, &matrix_room, invitee);
    let store = Arc::clone(running.hub.store());
    wait_for("the portal", Duration::from_secs(30), || store.portal_of(&matrix_room).unwrap().is_some());
    let mimi_room = store.portal_of(&matrix_room).unwrap().unwrap();
    Portal { _runtime: runtime, running, token, matrix_room, mimi_room }
}

#[test]
fn a_portal_carries_messages_edits_replies_reactions_and_redactions_into_the_mimi_log_once() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let portal = open_portal(&synapse, &bridge, BOT);
    let store = Arc::clone(portal.running.hub.store());
    let room = &portal.matrix_room;

    let mut sent = Vec::new();
    for i in 0..200 {
        sent.push(synapse.send_text(&portal.token, room, &format!("message {i}")));
    }
    let edit = json!({"msgtype": "m.text", "body": "* message 0, edited",
        "m.new_content": {"msgtype": "m.text", "body": "message 0, edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": sent[0]}});
    synapse.send(&portal.token, room, "m.room.message", &edit);
    let reply =
        json!({"msgtype": "m.text", "body": "a reply to 1", "m.relates_to": {"m.in_reply_to": {"event_id": sent[1]}}});
    synapse.send(&portal.token, room, "m.room.message", &reply);
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": sent[2], "key": "👍"}});
    synapse.send(&portal.token, room, "m.reaction", &reaction);
    synapse.post(
        Some(&portal.token),
        &format!(
            "/_matrix/client/v3/rooms/{}/redact/{}",
            crate::synapse::encode(room),
            crate::synapse::encode(&sent[3])
        ),
        &json!({}),
    );

    wait_for("204 messages in the MIMI log", Duration::from_mins(2), || {
        store.short_room(&portal.mimi_room).unwrap().is_some() && mimi_messages(&store, &portal.mimi_room).len() >= 204
    });
    std::thread::sleep(Duration::from_millis(500));
    let messages = mimi_messages(&store, &portal.mimi_room);
    assert_eq!(messages.len(), 204, "each Matrix event exactly once");
    for (i, (_, content)) in messages.iter().take(200).enumerate() {
        assert_eq!(text_of(content).as_deref(), Some(format!("message {i}").as_str()), "in order");
    }
    let id = |n: usize| Some(message_id(&store, &sent[n]));
    let (edit, reply, reaction, deletion) = (&messages[200].1, &messages[201].1, &messages[202].1, &messages[203].1);
    assert_eq!((hex(edit.replaces), text_of(edit).as_deref()), (id(0), Some("message 0, edited")));
    assert_eq!((hex(reply.in_reply_to), text_of(reply).as_deref()), (id(1), Some("a reply to 1")));
    assert_eq!(hex(reaction.in_reply_to), id(2));
    assert_eq!(hex(deletion.replaces), id(3));
    assert!(store.intake_len().unwrap() == 0);
    assert!(portal.running.appservice.metrics.dropped_count("own_namespace") >= 1, "the bot's own join is not bridged");
    let summary = replay::verify_store(&store, None, &KeyRing::new(), false).unwrap();
    assert_eq!(summary.rooms, 1);
}

/// A legal ~60 KB Matrix message is over the MIMI event limit once MLS-encrypted: it is not
/// appended, and instead of vanishing it is answered with one notice naming the limit (from the
/// durable homeserver queue) and counted; the portal goes on bridging what follows.
#[test]
fn a_message_too_large_once_encrypted_is_refused_with_a_notice_and_counted() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let portal = open_portal(&synapse, &bridge, BOT);
    let store = Arc::clone(portal.running.hub.store());
    let room = &portal.matrix_room;
    let big = synapse.send_text(&portal.token, room, &"x".repeat(60 * 1024));
    synapse.send_text(&portal.token, room, "after the big one");

    let notices = || -> Vec<String> {
        synapse
            .messages(&portal.token, room)
            .iter()
            .filter(|e| e["sender"] == BOT && e["content"]["msgtype"] == "m.notice")
            .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
            .collect()
    };
    wait_for("the refusal notice", Duration::from_mins(1), || !notices().is_empty());
    wait_for("the next message in the MIMI log", Duration::from_mins(1), || {
        store.short_room(&portal.mimi_room).unwrap().is_some() && !mimi_messages(&store, &portal.mimi_room).is_empty()
    });
    let notices = notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].starts_with("Your message was not bridged: it is "), "{notices:?}");
    assert!(notices[0].ends_with("bytes once encrypted, over the 65,536-byte limit of a MIMI room event."));
    let texts: Vec<Option<String>> = mimi_messages(&store, &portal.mimi_room).iter().map(|(_, c)| text_of(c)).collect();
    assert_eq!(texts, [Some("after the big one".to_owned())], "the big message is not in the log");
    assert_eq!(store.mapped(&big).unwrap(), None);
    let metrics = &portal.running.appservice.metrics;
    assert_eq!(metrics.refused_count("too_large"), 1);
    assert!(metrics.render().lines().any(|l| l == "mimi_bridge_messages_refused_total{reason=\"too_large\"} 1"));
    assert_eq!(metrics.dropped_count("bridge_error"), 0, "not counted as a silent drop");
    assert!(store.intake_len().unwrap() == 0);
}

#[test]
fn an_encrypted_matrix_room_is_refused_with_a_notice() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let (_runtime, running, token) = start_with_alice(&synapse, &bridge);
    let encryption =
        json!({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}});
    let room = synapse.create_room(&token, &json!({"preset": "private_chat", "initial_state": [encryption]}));
    synapse.invite(&token, &room, BOT);
    wait_for("the refusal notice", Duration::from_secs(30), || {
        synapse.messages(&token, &room).iter().any(|e| e["sender"] == BOT && e["content"]["msgtype"] == "m.notice")
    });
    assert_eq!(running.hub.store().portal_of(&room).unwrap(), None);
    assert!(running.hub.store().portals().unwrap().is_empty());
}

#[test]
fn a_direct_chat_with_the_bot_is_a_management_room() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let (_runtime, running, token) = start_with_alice(&synapse, &bridge);
    let dm =
        synapse.create_room(&token, &json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [BOT]}));
    let notices = || -> Vec<String> {
        synapse
            .messages(&token, &dm)
            .iter()
            .filter(|e| e["sender"] == BOT && e["content"]["msgtype"] == "m.notice")
            .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
            .collect()
    };
    wait_for("the bot's greeting", Duration::from_secs(30), || !notices().is_empty());
    for command in ["version", "ping", "rooms", "open"] {
        let before = notices().len();
        synapse.send_text(&token, &dm, command);
        wait_for(command, Duration::from_secs(30), || notices().len() > before);
    }
    let answers = notices();
    assert!(answers[1].starts_with("mimi-bridge "), "{answers:?}");
    assert!(answers[2].starts_with("pong"), "{answers:?}");
    assert!(answers[3].starts_with("No portals yet"), "{answers:?}");
    assert!(answers[4].starts_with("Opened a portal"), "{answers:?}");
    // The management room is not a portal; the opened room is, and Alice is invited to it.
    let store = running.hub.store();
    assert_eq!(store.portal_of(&dm).unwrap(), None);
    assert_eq!(store.portals().unwrap().len(), 1);
    let sync = synapse.get(Some(&token), "/_matrix/client/v3/sync?timeout=0");
    assert_eq!(sync["rooms"]["invite"].as_object().map(serde_json::Map::len), Some(1));

    // Consent for a user of another provider, decided from Matrix.
    for (command, answer) in [
        (
            "consent grant mimi://peer.test/u/carol",
            "mimi://peer.test/u/carol may now fetch your key material for any room.",
        ),
        ("consent grant @carol:peer.test", "@carol:peer.test is not a user of another MIMI provider."),
    ] {
        let before = notices().len();
        synapse.send_text(&token, &dm, command);
        wait_for(command, Duration::from_secs(30), || notices().len() > before);
        assert!(notices()[before].starts_with(answer), "{command}: {:?}", notices()[before]);
    }
    let record = store.consent("mimi://peer.test/u/carol", "mimi://mimi.hs.test/u/alice", None).unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&record).unwrap()["state"], "granted");
}

/// `serve` with `mimi.tls` also listens for other providers: its directory comes over mutual TLS
/// to a peer whose certificate the configured CA issued.
#[test]
fn serve_with_mimi_tls_serves_its_directory_over_mutual_tls() {
    let bridge = BridgeDir::new();
    let synapse = Synapse::start(&[&bridge.registration]);
    let ca = crate::pki::TestCa::new(bridge.dir.path(), "test CA");
    let own = ca.issue("mimi.hs.test", "mimi");
    let peer = ca.issue("peer.test", "peer");
    let provider = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    trust_anchors: {}\n  listen: 127.0.0.1:{}\ndatabase:\n",
        own.certificate.display(),
        own.key.display(),
        ca.ca_file().display(),
        crate::ports::consecutive(1)
    );
    let yaml = config_yaml_trusting(bridge.dir.path(), synapse.port, bridge.as_port, &bridge.trusted).replacen(
        "database:\n",
        &provider,
        1,
    );
    let config = Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(daemon::start(&config)).unwrap();
    let address = running.provider_address.expect("the MIMI listener");
    let tls = mimi_bridge::http::tls::TlsMaterial::load(&peer.certificate, &peer.key, Some(&ca.ca_file())).unwrap();
    let overrides = std::collections::BTreeMap::from([("mimi.hs.test".to_owned(), address)]);
    let client = mimi_bridge::provider::client::PeerClient::new(&tls, "peer.test", overrides).unwrap();
    let answer = runtime.block_on(client.get("https://mimi.hs.test/.well-known/mimi-protocol-directory")).unwrap();
    assert_eq!(answer.status.as_u16(), 200);
    let directory: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(directory["keyMaterial"], "https://mimi.hs.test/mimi/v1/keyMaterial/{targetUser}");
    assert!(runtime.block_on(running.stop()), "stops within the grace period");
}
