//! Kill -9 of a provider between its answer and the next request never hands a one-time
//! KeyPackage out twice: each claim is durable before its answer leaves. The server is this same
//! test binary running the ignored `provider_crash_child` test over a store the parent prepared.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::config::{ConsentPolicy, PeerQuotas};
use mimi_bridge::event::ServerKey;
use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::hub::Hub;
use mimi_bridge::mimi::protocol::{ClientMaterial, UserStatus};
use mimi_bridge::provider::Provider;
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::peers::{Peers, Requester};
use mimi_bridge::store::Store;

use crate::pki::TestCa;

const CHILD_DIR: &str = "MIMI_BRIDGE_PROVIDER_CRASH_DIR";
const ONE_TIME: usize = 4;
/// A child the parent failed to kill stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

fn hub(dir: &std::path::Path) -> Arc<Hub> {
    let store = Arc::new(Store::open(&dir.join("db")).unwrap());
    Arc::new(Hub::new("b.test", &ServerKey::from_seed("k1", [2; 32]).unwrap(), store).unwrap())
}

/// The server: b.test's provider over the prepared store, on a free port it prints.
#[test]
#[ignore = "child process of kill_9_between_claims_never_hands_a_package_out_twice; runs only when that test spawns it"]
fn provider_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let dir = std::path::PathBuf::from(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let hub = hub(&dir);
    let tls = TlsMaterial::load(&dir.join("b.test.pem"), &dir.join("b.test.key"), Some(&dir.join("ca.pem"))).unwrap();
    let provider = Arc::new(Provider {
        media: mimi_bridge::federation::media::Hosted::new(Arc::clone(hub.store())),
        domain: "b.test".into(),
        public_url: "https://b.test".into(),
        homeserver_domain: "hs.b.test".into(),
        store: Arc::clone(hub.store()),
        hub,
        consent: ConsentPolicy { accept_from: vec!["*".into()], auto_grant: vec!["a.test".into()] },
        quotas: PeerQuotas::default(),
        discovery: false,
        metrics: Arc::default(),
    });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config().unwrap()));
    let (_shutdown, watch) = tokio::sync::watch::channel(false);
    runtime.spawn(mimi_bridge::http::serve_with(listener, Some(acceptor), provider, 1 << 20, watch));
    std::thread::sleep(CHILD_LIFETIME);
}

#[test]
fn kill_9_between_claims_never_hands_a_package_out_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test CA");
    ca.issue("b.test", "b.test");
    let a = ca.issue("a.test", "a.test");
    {
        let hub = hub(dir.path());
        hub.directories().register_device("@bob:b.test", "D1").unwrap();
        hub.directories().publish_key_packages("@bob:b.test", ONE_TIME).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let tls = TlsMaterial::load(&a.certificate, &a.key, Some(&ca.ca_file())).unwrap();
    let requester = Requester::ephemeral("mimi://a.test/u/alice").unwrap();
    let mut handed_out = Vec::new();
    for round in 0..=ONE_TIME {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "provider_crash::provider_crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = lines
            // libtest may have printed the test's name on the same line first.
            .find_map(|l| l.ok()?.split_once("listening ").map(|(_, address)| address.trim().to_owned()))
            .unwrap_or_else(|| panic!("round {round}: the child did not start"));
        let overrides = BTreeMap::from([("b.test".to_owned(), address.parse().unwrap())]);
        // A fresh client each round: no connection survives the kill.
        let peers = Peers::new(PeerClient::new(&tls, "a.test", overrides).unwrap());
        let claimed = runtime.block_on(peers.claim(&requester, "mimi://b.test/u/bob", None)).unwrap();
        child.kill().unwrap(); // SIGKILL, right after the answer
        child.wait().unwrap();
        assert_eq!(claimed.response.status, UserStatus::Success, "round {round}");
        let ClientMaterial::Success { key_package, .. } = &claimed.response.clients[0] else { panic!("round {round}") };
        handed_out.push(key_package.clone());
    }
    let one_time = &handed_out[..ONE_TIME];
    for (i, package) in one_time.iter().enumerate() {
        assert!(!one_time[..i].contains(package), "package {i} was handed out before a kill -9 already");
    }
    assert!(!one_time.contains(&handed_out[ONE_TIME]), "then the last resort, never a one-time one again");
}
