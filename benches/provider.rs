//! `cargo bench --bench provider`: the MIMI provider over real mutual TLS on 127.0.0.1.
//!
//! Key-material claims per second (each signed, verified, consent-checked, and a one-time
//! KeyPackage deleted durably before the answer) with one connection and with 8; TLS handshakes
//! measured apart from requests on reused connections; beside, in the same run, the directory
//! fetched over plain HTTP from the same handler (the baseline without TLS) and over mutual TLS.
//! Then the protocol codec's decode and encode rates per body.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "a bench: a failed setup is a failed run; rates are printed"
)]

#[path = "../tests/it/pki.rs"]
mod pki;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_bridge::config::{ConsentPolicy, PeerQuotas};
use mimi_bridge::event::ServerKey;
use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::hub::Hub;
use mimi_bridge::mimi::protocol::{
    ClientMaterial, ConsentEntry, ConsentOperation, KeyMaterialRequest, KeyMaterialResponse, SubmitMessageResponse,
    UserStatus, Wire,
};
use mimi_bridge::provider::Provider;
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::peers::{Peers, Requester};
use mimi_bridge::store::Store;

const CLAIMS: usize = 1000;
const CONNECTIONS: usize = 8;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::TestCa::new(dir.path(), "bench CA");
    let b_leaf = ca.issue("b.test", "b");
    let a_leaf = ca.issue("a.test", "a");
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let hub = Arc::new(Hub::new("b.test", &ServerKey::from_seed("k1", [2; 32]).unwrap(), Arc::clone(&store)).unwrap());
    hub.directories().register_device("@bob:b.test", "D1").unwrap();
    let started = Instant::now();
    hub.directories().publish_key_packages("@bob:b.test", 2 * CLAIMS).unwrap();
    println!("setup: {} one-time KeyPackages published in {:.1} s", 2 * CLAIMS, started.elapsed().as_secs_f64());
    let provider = Arc::new(Provider {
        media: mimi_bridge::federation::media::Hosted::new(Arc::clone(hub.store())),
        domain: "b.test".into(),
        public_url: "https://b.test".into(),
        homeserver_domain: "hs.b.test".into(),
        hub,
        store,
        consent: ConsentPolicy { accept_from: vec!["*".into()], auto_grant: vec!["a.test".into()] },
        quotas: PeerQuotas::default(),
        discovery: false,
        metrics: Arc::default(),
    });
    let (_shutdown, watch) = tokio::sync::watch::channel(false);
    let server = TlsMaterial::load(&b_leaf.certificate, &b_leaf.key, Some(&ca.ca_file())).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server.server_config().unwrap()));
    let tls_listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let tls_address = tls_listener.local_addr().unwrap();
    runtime.spawn(mimi_bridge::http::serve_with(
        tls_listener,
        Some(acceptor),
        Arc::clone(&provider),
        1 << 20,
        watch.clone(),
    ));
    let plain_listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let plain_address = plain_listener.local_addr().unwrap();
    runtime.spawn(mimi_bridge::http::serve(plain_listener, Arc::clone(&provider), 1 << 20, watch));

    let client_tls = TlsMaterial::load(&a_leaf.certificate, &a_leaf.key, Some(&ca.ca_file())).unwrap();
    let overrides = BTreeMap::from([("b.test".to_owned(), tls_address)]);
    let client = PeerClient::new(&client_tls, "a.test", overrides.clone()).unwrap();
    let directory = "https://b.test/.well-known/mimi-protocol-directory";

    // Baseline: the same handler over plain HTTP, one kept-alive connection.
    let plain = ureq::Agent::config_builder().build().new_agent();
    let plain_url = format!("http://{plain_address}/.well-known/mimi-protocol-directory");
    let plain_rate = support::rate(Duration::from_secs(2), || {
        assert_eq!(plain.get(&plain_url).call().unwrap().status().as_u16(), 200);
    });
    let reused =
        rate_async(&runtime, 2000, |_| async { assert!(client.get(directory).await.unwrap().status.is_success()) });
    let handshakes = rate_async(&runtime, 300, |_| {
        // A new client has no connection to reuse: every request makes a handshake.
        let fresh = PeerClient::new(&client_tls, "a.test", overrides.clone()).unwrap();
        async move { assert!(fresh.get(directory).await.unwrap().status.is_success()) }
    });
    println!("directory GET, plain HTTP (baseline):          {plain_rate:>8.0} req/s");
    println!(
        "directory GET, mutual TLS, reused connection:  {reused:>8.0} req/s ({:.2}× baseline)",
        reused / plain_rate
    );
    println!(
        "directory GET, mutual TLS, new handshake each: {handshakes:>8.0} req/s ({:.2}× baseline)",
        handshakes / plain_rate
    );

    let requester = Arc::new(Requester::ephemeral("mimi://a.test/u/alice").unwrap());
    let peers = Arc::new(Peers::new(client.clone()));
    let claim = |peers: Arc<Peers>, requester: Arc<Requester>| async move {
        let claimed = peers.claim(&requester, "mimi://b.test/u/bob", None).await.unwrap();
        assert_eq!(claimed.response.status, UserStatus::Success);
    };
    let one = rate_async(&runtime, CLAIMS, |_| claim(Arc::clone(&peers), Arc::clone(&requester)));
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let (peers, requester) = (Arc::clone(&peers), Arc::clone(&requester));
                tokio::spawn(async move {
                    for _ in 0..CLAIMS / CONNECTIONS {
                        claim(Arc::clone(&peers), Arc::clone(&requester)).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let eight = CLAIMS as f64 / started.elapsed().as_secs_f64();
    println!(
        "keyMaterial claims, mutual TLS, 1 connection:  {one:>8.0} claims/s ({:.2}× the plain directory GET)",
        one / plain_rate
    );
    println!(
        "keyMaterial claims, mutual TLS, {CONNECTIONS} connections: {eight:>8.0} claims/s ({:.2}× one connection)",
        eight / one
    );
    codec(&runtime, &peers, &requester);
}

/// Runs `n` requests one after the other; returns requests per second.
fn rate_async<F: Future<Output = ()>>(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    mut make: impl FnMut(usize) -> F,
) -> f64 {
    let started = Instant::now();
    runtime.block_on(async {
        for i in 0..n {
            make(i).await;
        }
    });
    n as f64 / started.elapsed().as_secs_f64()
}

/// A body's name, bytes, and its decode-then-encode.
type Body = (&'static str, Vec<u8>, fn(&[u8]) -> usize);

/// Decode and encode rates of a few bodies, real MLS objects inside.
fn codec(runtime: &tokio::runtime::Runtime, peers: &Peers, requester: &Requester) {
    let claimed = runtime.block_on(peers.claim(requester, "mimi://b.test/u/bob", None)).unwrap();
    let ClientMaterial::Success { key_package, .. } = &claimed.response.clients[0] else { unreachable!() };
    let request = requester.key_material_request("mimi://b.test/u/bob", Some("mimi://a.test/r/x")).unwrap();
    let consent = ConsentEntry {
        operation: ConsentOperation::Grant,
        requester_uri: "mimi://a.test/u/alice".into(),
        target_uri: "mimi://b.test/u/bob".into(),
        room_id: None,
        key_packages: vec![key_package.clone()],
        extensions: mimi_bridge::mimi::protocol::AppDataDictionary::default(),
    };
    let bodies: [Body; 4] = [
        ("KeyMaterialRequest", request.encode(), |b| KeyMaterialRequest::decode(b).unwrap().encode().len()),
        ("KeyMaterialResponse (1 KeyPackage)", claimed.response.encode(), |b| {
            KeyMaterialResponse::decode(b).unwrap().encode().len()
        }),
        ("ConsentEntry (grant, 1 KeyPackage)", consent.encode(), |b| ConsentEntry::decode(b).unwrap().encode().len()),
        ("SubmitMessageResponse", SubmitMessageResponse::Accepted { timestamp: 1, frank: None }.encode(), |b| {
            SubmitMessageResponse::decode(b).unwrap().encode().len()
        }),
    ];
    for (name, bytes, decode_encode) in bodies {
        let rate = support::rate(Duration::from_millis(500), || {
            std::hint::black_box(decode_encode(std::hint::black_box(&bytes)));
        });
        let copy = support::rate(Duration::from_millis(500), || {
            std::hint::black_box(std::hint::black_box(&bytes).clone());
        });
        println!(
            "codec {name:<36} {:>5} bytes: decode+encode {rate:>10.0}/s ({:.1} MB/s; copying the bytes: {copy:.0}/s)",
            bytes.len(),
            rate * bytes.len() as f64 / 1e6
        );
    }
}
