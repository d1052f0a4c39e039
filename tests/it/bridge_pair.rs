//! Two whole bridges, each the appservice of its own real Synapse (`hs.test` behind
//! `mimi.hs.test`, `hs-b.test` behind `mimi.hs-b.test`), each a MIMI provider with a certificate
//! from a CA the test makes: each claims a user of the other over mutual TLS with the operator's
//! `mimi claim`, reaching the other through its directory, and gets a KeyPackage whose
//! credential is the user's client URI; a user's consent decision, typed in the management room,
//! reaches the other provider from the outbox.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::config::Config;
use serde_json::json;

use crate::bridge_synapse::{BOT, BridgeDir, config_yaml, wait_for};
use crate::synapse::Synapse;

/// One side: its Synapse, its running bridge and its config file.
pub(crate) struct Side {
    pub(crate) synapse: Synapse,
    pub(crate) running: mimi_bridge::daemon::Running,
    pub(crate) config: std::path::PathBuf,
    _runtime: tokio::runtime::Runtime,
    _bridge: BridgeDir,
}

/// The YAML of a bridge for `homeserver` (provider `mimi.<homeserver>`), with `mimi.tls` from
/// `ca`, listening on `listen` and reaching `peer` at `peer_port`, granting its users consent.
fn yaml(
    bridge: &BridgeDir,
    hs_port: u16,
    homeserver: &str,
    ca: &crate::pki::TestCa,
    listen: u16,
    peer: (&str, u16),
) -> String {
    let provider = format!("mimi.{homeserver}");
    let leaf = ca.issue(&provider, homeserver);
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n    trust_anchors: {}\n  listen: 127.0.0.1:{listen}\n  \
         peers:\n    {}: 127.0.0.1:{}\n  consent:\n    auto_grant: ['{}']\ndatabase:\n",
        leaf.certificate.display(),
        leaf.key.display(),
        ca.ca_file().display(),
        peer.0,
        peer.1,
        peer.0,
    );
    config_yaml(bridge.dir.path(), hs_port, bridge.as_port)
        .replace("domain: hs.test", &format!("domain: {homeserver}"))
        .replace("server_name: mimi.hs.test", &format!("server_name: {provider}"))
        .replacen("database:\n", &tls, 1)
}

pub(crate) fn side(homeserver: &str, ca: &crate::pki::TestCa, listen: u16, peer: (&str, u16)) -> Side {
    let (synapse, bridge, config) = configured(homeserver, ca, listen, peer);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let parsed = Config::from_yaml(&std::fs::read_to_string(&config).unwrap(), &config).unwrap();
    let running = runtime.block_on(mimi_bridge::daemon::start(&parsed)).unwrap();
    Side { synapse, running, config, _runtime: runtime, _bridge: bridge }
}

/// A side's Synapse, started with the bridge's registration, and the bridge's directory and
/// config file (see [`side`]); the bridge itself not started.
pub(crate) fn configured(
    homeserver: &str,
    ca: &crate::pki::TestCa,
    listen: u16,
    peer: (&str, u16),
) -> (Synapse, BridgeDir, std::path::PathBuf) {
    configured_with(homeserver, ca, (listen, peer), "")
}

/// [`configured`], with `extra` YAML (whole sections) at the end of the config (Synapse's
/// push extensions on for `encryption.push`).
pub(crate) fn configured_with(
    homeserver: &str,
    ca: &crate::pki::TestCa,
    (listen, peer): (u16, (&str, u16)),
    extra: &str,
) -> (Synapse, BridgeDir, std::path::PathBuf) {
    let bridge = BridgeDir::new();
    let registration_yaml = yaml(&bridge, 1, homeserver, ca, listen, peer) + extra;
    let parsed = Config::from_yaml(&registration_yaml, Path::new("test.yaml")).unwrap();
    std::fs::write(&bridge.registration, parsed.registration().to_yaml()).unwrap();
    let mut synapse = Synapse::start_named(homeserver, &[&bridge.registration]);
    if parsed.encryption.push {
        synapse.enable_push_extensions();
    }
    let config = bridge.dir.path().join("config.yaml");
    std::fs::write(&config, yaml(&bridge, synapse.port, homeserver, ca, listen, peer) + extra).unwrap();
    (synapse, bridge, config)
}

impl Side {
    /// Registers `user` on the homeserver and has them open a portal, which gives them their
    /// MLS device (with its last-resort KeyPackage); publishes two one-time KeyPackages for it.
    /// Returns the user's access token.
    pub(crate) fn user_with_a_portal(&self, user: &str, provider: &str) -> String {
        self.synapse.register(user, "password");
        let token = self.synapse.login(user, "password");
        let room = self.synapse.create_room(&token, &json!({"preset": "private_chat"}));
        let bot = BOT.replace("hs.test", &self.synapse.server_name);
        self.synapse.invite(&token, &room, &bot);
        let store = Arc::clone(self.running.hub.store());
        wait_for("the portal", Duration::from_secs(30), || store.portal_of(&room).unwrap().is_some());
        self.running.hub.directories().publish_key_packages(&format!("@{user}:{provider}"), 2).unwrap();
        token
    }

    /// `user` (with `token`) types `command` in a direct chat with the bot and waits for its answer.
    pub(crate) fn command(&self, token: &str, command: &str) -> String {
        let bot = BOT.replace("hs.test", &self.synapse.server_name);
        let dm = self
            .synapse
            .create_room(token, &json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bot]}));
        let notices = || -> Vec<String> {
            self.synapse
                .messages(token, &dm)
                .iter()
                .filter(|e| e["sender"] == bot.as_str() && e["content"]["msgtype"] == "m.notice")
                .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
                .collect()
        };
        wait_for("the bot's greeting", Duration::from_secs(30), || !notices().is_empty());
        self.synapse.send_text(token, &dm, command);
        wait_for(command, Duration::from_secs(30), || notices().len() > 1);
        notices().remove(1)
    }

    fn claim(&self, user_uri: &str) -> String {
        let out = crate::common::run(&["mimi", "claim", "-c", self.config.to_str().unwrap(), user_uri], b"");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }
}

#[test]
fn two_bridges_each_claim_the_others_users_over_mutual_tls() {
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(3);
    let a = side("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 1));
    // B reaches A through a loopback proxy that can play A being down.
    let to_a = Switch::start(ports + 2, ports);
    let b = side("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports + 2));
    a.user_with_a_portal("alice", "mimi.hs.test");
    let bob_token = b.user_with_a_portal("bob", "mimi.hs-b.test");

    let bob = b.running.hub.directories().local_device_ids("@bob:mimi.hs-b.test").unwrap().remove(0);
    let claimed = a.claim("mimi://mimi.hs-b.test/u/bob");
    assert!(claimed.starts_with("userStatus Success"), "{claimed}");
    assert!(claimed.contains(&format!("mimi://mimi.hs-b.test/d/bob/{bob}\tKeyPackage of")), "{claimed}");
    assert!(claimed.contains(", valid"), "{claimed}");

    let alice = a.running.hub.directories().local_device_ids("@alice:mimi.hs.test").unwrap().remove(0);
    let claimed = b.claim("mimi://mimi.hs.test/u/alice");
    assert!(claimed.starts_with("userStatus Success"), "{claimed}");
    assert!(claimed.contains(&format!("mimi://mimi.hs.test/d/alice/{alice}\tKeyPackage of")), "{claimed}");

    // Each claim takes one of Bob's one-time packages away for good; then his last resort,
    // which stays.
    let store = Arc::clone(b.running.hub.store());
    let one_time =
        || store.key_packages("@bob:mimi.hs-b.test", &bob).unwrap().iter().filter(|(_, value)| value[0] == 0).count();
    let left = one_time();
    assert!(left >= 1, "one of the two published is left after the first claim: {left}");
    for taken in 1..=left {
        assert!(a.claim("mimi://mimi.hs-b.test/u/bob").starts_with("userStatus Success"));
        assert_eq!(one_time(), left - taken);
    }
    assert!(a.claim("mimi://mimi.hs-b.test/u/bob").starts_with("userStatus Success"), "the last resort");
    assert_eq!(store.key_packages("@bob:mimi.hs-b.test", &bob).unwrap().len(), 1, "the last resort stays");

    // Bob decides in his management room; his bridge tells Alice's provider (updateConsent, from
    // its outbox, through Alice's provider's directory), which records the grant.
    let (alice_uri, bob_uri) = ("mimi://mimi.hs.test/u/alice", "mimi://mimi.hs-b.test/u/bob");
    let answer = b.command(&bob_token, &format!("consent grant {alice_uri}"));
    assert!(answer.starts_with(&format!("{alice_uri} may now fetch your key material")), "{answer}");
    let told = || a.running.hub.store().consent(alice_uri, bob_uri, None).unwrap();
    let state = || serde_json::from_slice::<serde_json::Value>(&told().unwrap()).unwrap()["state"].clone();
    wait_for("Alice's provider to learn of the grant", Duration::from_secs(30), || told().is_some());
    let record: serde_json::Value = serde_json::from_slice(&told().unwrap()).unwrap();
    assert_eq!(record["state"], "granted");

    // Alice's provider is unreachable when Bob revokes: Bob's outbox keeps the request and sends
    // the same bytes again (with backoff) until it is reachable and takes it.
    to_a.set_up(false);
    let answer = b.command(&bob_token, &format!("consent revoke {alice_uri}"));
    assert!(answer.starts_with(&format!("{alice_uri} may no longer")), "{answer}");
    wait_for("a refused attempt", Duration::from_secs(30), || to_a.refused() > 0);
    assert_eq!(state(), "granted", "not told yet");
    to_a.set_up(true);
    wait_for("the revocation once reachable", Duration::from_mins(1), || state() == "revoked");
}

/// A loopback TCP proxy to `target` that, while down, closes every connection at once (a
/// provider that cannot be reached: the one fault two real bridges cannot otherwise show).
pub(crate) struct Switch {
    up: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    /// Connections forwarded so far, cut when the switch goes down (pooled ones included).
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Switch {
    pub(crate) fn start(port: u16, target: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let open = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (is_up, count, forwarded) = (Arc::clone(&up), Arc::clone(&refused), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !is_up.load(Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else { continue };
                forwarded.lock().unwrap().push(client.try_clone().unwrap());
                let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c2, mut s2) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c1, &mut s1);
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { up, refused, open }
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for stream in self.open.lock().unwrap().drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}
