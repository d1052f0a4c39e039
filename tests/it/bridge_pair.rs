//! Two whole bridges, each the appservice of its own real Synapse (`hs.test` behind
//! `mimi.hs.test`, `hs-b.test` behind `mimi.hs-b.test`), each a MIMI provider with a certificate
//! from a CA the test makes: each claims a user of the other over mutual TLS with the operator's
//! `mimi claim`, reaching the other through its directory, and gets a KeyPackage whose
//! credential is the user's client URI.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::config::Config;
use serde_json::json;

use crate::bridge_synapse::{BOT, BridgeDir, config_yaml, wait_for};
use crate::synapse::Synapse;

/// One side: its Synapse, its running bridge and its config file.
struct Side {
    synapse: Synapse,
    running: mimi_bridge::daemon::Running,
    config: std::path::PathBuf,
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

fn side(homeserver: &str, ca: &crate::pki::TestCa, listen: u16, peer: (&str, u16)) -> Side {
    let bridge = BridgeDir::new();
    let registration_yaml = yaml(&bridge, 1, homeserver, ca, listen, peer);
    let registration = Config::from_yaml(&registration_yaml, Path::new("test.yaml")).unwrap().registration();
    std::fs::write(&bridge.registration, registration.to_yaml()).unwrap();
    let synapse = Synapse::start_named(homeserver, &[&bridge.registration]);
    let text = yaml(&bridge, synapse.port, homeserver, ca, listen, peer);
    let config = bridge.dir.path().join("config.yaml");
    std::fs::write(&config, &text).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let parsed = Config::from_yaml(&text, &config).unwrap();
    let running = runtime.block_on(mimi_bridge::daemon::start(&parsed)).unwrap();
    Side { synapse, running, config, _runtime: runtime, _bridge: bridge }
}

impl Side {
    /// Registers `user` on the homeserver and has them open a portal, which gives them their
    /// MLS device; publishes two one-time KeyPackages and a last resort for it.
    fn user_with_a_portal(&self, user: &str, provider: &str) {
        self.synapse.register(user, "password");
        let token = self.synapse.login(user, "password");
        let room = self.synapse.create_room(&token, &json!({"preset": "private_chat"}));
        let bot = BOT.replace("hs.test", &self.synapse.server_name);
        self.synapse.invite(&token, &room, &bot);
        let store = Arc::clone(self.running.hub.store());
        wait_for("the portal", Duration::from_secs(30), || store.portal_of(&room).unwrap().is_some());
        self.running.hub.directories().publish_key_packages(&format!("@{user}:{provider}"), 2).unwrap();
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
    let ports = crate::ports::consecutive(2);
    let a = side("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 1));
    let b = side("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports));
    a.user_with_a_portal("alice", "mimi.hs.test");
    b.user_with_a_portal("bob", "mimi.hs-b.test");

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
}
