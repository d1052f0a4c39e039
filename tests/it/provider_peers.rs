//! Two MIMI providers on loopback, each with its own RocksDB store, talking HTTPS with mutual TLS
//! under a CA made in the test: each serves its directory, each claims the other's users' key
//! material through it, one-time KeyPackages are never handed out twice, consent is enforced,
//! and requests whose names do not match their certificate are refused with nothing stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use mimi_bridge::config::{ConsentPolicy, PeerQuotas};
use mimi_bridge::event::ServerKey;
use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::hub::Hub;
use mimi_bridge::mimi::protocol::{ClientMaterial, ConsentEntry, ConsentOperation, UserStatus, Wire as _};
use mimi_bridge::provider::Provider;
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::peers::{Peers, Requester};
use mimi_bridge::store::Store;

use crate::pki::TestCa;

/// One provider: its store, hub, listener and client.
pub(crate) struct Side {
    pub(crate) domain: &'static str,
    pub(crate) provider: Arc<Provider>,
    pub(crate) peers: Peers,
    pub(crate) address: std::net::SocketAddr,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

pub(crate) fn side(runtime: &tokio::runtime::Runtime, ca: &TestCa, domain: &'static str, seed: u8) -> Side {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let hub = Arc::new(Hub::new(domain, &ServerKey::from_seed("k1", [seed; 32]).unwrap(), Arc::clone(&store)).unwrap());
    let leaf = ca.issue(domain, domain);
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
    let provider = Arc::new(Provider {
        media: mimi_bridge::federation::media::Hosted::new(Arc::clone(hub.store())),
        domain: domain.to_owned(),
        public_url: format!("https://{domain}"),
        homeserver_domain: format!("hs.{domain}"),
        hub,
        store,
        consent: ConsentPolicy::default(),
        quotas: PeerQuotas { consent_requests_per_day: 3, abuse_reports_per_day: 2, rooms_per_day: 100 },
        discovery: true,
        metrics: Arc::default(),
    });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config().unwrap()));
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    runtime.spawn(mimi_bridge::http::serve_with(listener, Some(acceptor), Arc::clone(&provider), 1 << 20, watch));
    let peers = Peers::new(PeerClient::new(&tls, domain, BTreeMap::new()).unwrap());
    Side { domain, provider, peers, address, _shutdown: shutdown, _dir: dir }
}

/// a.test and b.test under one test CA, a.test's client pointed at b.test.
pub(crate) struct Pair {
    pub(crate) a: Side,
    pub(crate) b: Side,
    pub(crate) ca: TestCa,
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) _pki: tempfile::TempDir,
}

pub(crate) fn pair() -> Pair {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "test CA");
    let mut a = side(&runtime, &ca, "a.test", 1);
    let b = side(&runtime, &ca, "b.test", 2);
    connect(&mut a, &b, &ca);
    Pair { a, b, ca, runtime, _pki: pki }
}

/// Points `from`'s client at `to`'s listener.
pub(crate) fn connect(from: &mut Side, to: &Side, ca: &TestCa) {
    let leaf = ca.issue(from.domain, &format!("{}-client", from.domain));
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
    let overrides = BTreeMap::from([(to.domain.to_owned(), to.address)]);
    let client =
        PeerClient::new(&tls, from.domain, overrides).unwrap().with_metrics(Arc::clone(&from.provider.metrics));
    from.peers = Peers::new(client);
}

/// A local user with a device and `count` one-time KeyPackages (plus the last resort).
pub(crate) fn user_with_packages(side: &Side, local: &str, count: usize) -> String {
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

pub(crate) fn grant(side: &Side, requester: &str, target: &str) {
    let mut batch = mimi_bridge::store::Batch::new();
    batch.consent(requester, target, None, Some(br#"{"state":"granted","at":1700000000000}"#));
    side.provider.store.write(batch).unwrap();
}

#[test]
fn two_providers_claim_each_others_key_material_once_each_with_consent() {
    let Pair { a, mut b, ca, runtime, _pki } = pair();
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

    grant(&b, &alice, &bob);
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
    grant(&a, &bob, &alice);
    let back = runtime.block_on(b.peers.claim(&Requester::ephemeral(&bob).unwrap(), &alice, None)).unwrap();
    assert_eq!(back.response.status, UserStatus::Success);
    assert!(back.checked[0].1.is_ok());

    // Per-peer figures: a's 2 directory fetches and claims out to b, b's answers to a.
    let (out, out_failed, _, _) = a.provider.metrics.counts("b.test");
    let (_, _, served, refused) = b.provider.metrics.counts("a.test");
    assert_eq!((out, out_failed), (7, 0), "a directory and six claims to b.test");
    assert_eq!((served, refused), (6, 0), "the directory GET carries no From: and is not counted");
    let mut text = String::new();
    mimi_bridge::http::metrics::MetricsSource::render(&*b.provider.metrics, &mut text);
    assert!(text.contains("mimi_bridge_peer_requests_in_total{peer=\"a.test\"} 6"), "{text}");
}

/// A device is claimable from its registration on, with nothing else published: its last-resort
/// KeyPackage is published with it (the bridge registers a user's device when they open a portal,
/// and nothing else publishes packages for them). Registering again adds none, and a device
/// without a last resort (registered by an older version) gets one.
#[test]
fn a_registered_device_is_claimable_by_its_last_resort() {
    let Pair { a, b, runtime, .. } = pair();
    let directories = b.provider.hub.directories();
    directories.register_device("@bob:b.test", "D1").unwrap();
    let (bob, alice) = ("mimi://b.test/u/bob", "mimi://a.test/u/alice");
    let stored = || b.provider.store.key_packages("@bob:b.test", "D1").unwrap();
    assert_eq!(stored().len(), 1);
    assert_eq!(stored()[0].1[0], 1, "a last resort");

    grant(&b, alice, bob);
    let as_alice = Requester::ephemeral(alice).unwrap();
    let mut seen = Vec::new();
    for round in 0..2 {
        let claimed = runtime.block_on(a.peers.claim(&as_alice, bob, None)).unwrap();
        assert_eq!(claimed.response.status, UserStatus::Success, "round {round}");
        let (client, checked) = &claimed.checked[0];
        assert_eq!(client, "mimi://b.test/d/bob/D1");
        assert!(checked.as_ref().unwrap().last_resort(), "round {round}");
        seen.push(key_package_of(&claimed.response.clients[0]));
    }
    assert_eq!(seen[0], seen[1], "the last resort stays");

    directories.register_device("@bob:b.test", "D1").unwrap();
    assert_eq!(stored().len(), 1, "registering again publishes nothing");
    let mut batch = mimi_bridge::store::Batch::new();
    batch.key_package("@bob:b.test", "D1", &hex::decode(&stored()[0].0).unwrap(), None);
    b.provider.store.write(batch).unwrap();
    assert!(stored().is_empty());
    directories.register_device("@bob:b.test", "D1").unwrap();
    assert_eq!(stored().iter().map(|(_, value)| value[0]).collect::<Vec<_>>(), [1], "a last resort again");
}

/// Requests whose names do not match their certificate, or whose bodies do not decode, are
/// refused with the right status, and nothing is stored or consumed.
#[test]
fn mismatched_names_and_broken_bodies_are_refused_with_nothing_stored() {
    let Pair { a, b, ca, runtime, _pki } = pair();
    let bob = user_with_packages(&b, "bob", 1);
    let alice = "mimi://a.test/u/alice";
    grant(&b, alice, &bob);
    let url = "https://b.test/mimi/v1/keyMaterial/mimi%3A%2F%2Fb.test%2Fu%2Fbob";
    let request = Requester::ephemeral(alice).unwrap().key_material_request(&bob, None).unwrap().encode();

    // a.test's certificate, but From names another provider: 403 before the body is read.
    let leaf = ca.issue("a.test", "a-liar");
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
    let liar = PeerClient::new(&tls, "c.test", BTreeMap::from([("b.test".to_owned(), b.address)])).unwrap();
    assert_eq!(runtime.block_on(liar.post(url, request.clone())).unwrap().status.as_u16(), 403);
    // Another spelling of the certificate's own domain: refused, so one peer has one name.
    let shouting = PeerClient::new(&tls, "A.TEST", BTreeMap::from([("b.test".to_owned(), b.address)])).unwrap();
    assert_eq!(runtime.block_on(shouting.post(url, request.clone())).unwrap().status.as_u16(), 401);

    let honest = PeerClient::new(&tls, "a.test", BTreeMap::from([("b.test".to_owned(), b.address)])).unwrap();
    let post = |body: Vec<u8>| runtime.block_on(honest.post(url, body)).unwrap();
    // A body naming a user of another provider than the certificate's.
    let foreign = Requester::ephemeral("mimi://c.test/u/mallory").unwrap().key_material_request(&bob, None).unwrap();
    let answer = post(foreign.encode());
    assert_eq!(answer.status.as_u16(), 403, "{:?}", String::from_utf8_lossy(&answer.body));
    // Truncated and padded bodies.
    let answer = post(request[..request.len() - 1].to_vec());
    assert_eq!(answer.status.as_u16(), 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("key_material_request_signature"), "names the field");
    assert_eq!(post([&request[..], &[0]].concat()).status.as_u16(), 400);
    // A signature that does not verify.
    let mut forged = request.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(post(forged).status.as_u16(), 403);
    // A consent entry for a target of another provider.
    let entry = ConsentEntry {
        operation: ConsentOperation::Request,
        requester_uri: alice.into(),
        target_uri: "mimi://c.test/u/carol".into(),
        room_id: None,
        key_packages: Vec::new(),
        extensions: mimi_bridge::mimi::protocol::AppDataDictionary::default(),
    };
    let consent_url = "https://b.test/mimi/v1/requestConsent/b.test";
    let answer = runtime.block_on(honest.post(consent_url, entry.encode())).unwrap();
    assert_eq!(answer.status.as_u16(), 403);
    assert!(b.provider.store.consent(alice, "mimi://c.test/u/carol", None).unwrap().is_none(), "nothing stored");

    assert_eq!(b.provider.metrics.counts("a.test").3, 5, "five refusals counted for a.test");

    // Nothing was consumed: the one one-time package is still the first handed out, then the
    // last resort.
    let first = runtime.block_on(a.peers.claim(&Requester::ephemeral(alice).unwrap(), &bob, None)).unwrap();
    let second = runtime.block_on(a.peers.claim(&Requester::ephemeral(alice).unwrap(), &bob, None)).unwrap();
    let third = runtime.block_on(a.peers.claim(&Requester::ephemeral(alice).unwrap(), &bob, None)).unwrap();
    let packages: Vec<Vec<u8>> =
        [first, second, third].iter().map(|c| key_package_of(&c.response.clients[0])).collect();
    assert!(packages[0] != packages[1] && packages[1] == packages[2]);
}

/// Consent asked over the wire is recorded as requested (granting nothing); the admin's policy
/// can grant a provider's users at once. Discovery answers a handle only for a user with a
/// device, and abuse reports are stored.
#[test]
fn consent_requests_discovery_and_abuse_reports() {
    use mimi_bridge::mimi::protocol::identifier::{QueryCode, QueryElement, SearchType};
    use mimi_bridge::mimi::protocol::{AbuseReport, AppDataDictionary, IdentifierRequest, IdentifierResponse};
    let Pair { a, b, ca, runtime, _pki } = pair();
    let bob = user_with_packages(&b, "bob", 1);
    let alice = "mimi://a.test/u/alice";
    let leaf = ca.issue("a.test", "a-raw");
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
    let client = PeerClient::new(&tls, "a.test", BTreeMap::from([("b.test".to_owned(), b.address)])).unwrap();
    let post =
        |path: &str, body: Vec<u8>| runtime.block_on(client.post(&format!("https://b.test{path}"), body)).unwrap();

    let request = ConsentEntry {
        operation: ConsentOperation::Request,
        requester_uri: alice.into(),
        target_uri: bob.clone(),
        room_id: None,
        key_packages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    assert_eq!(post("/mimi/v1/requestConsent/b.test", request.encode()).status.as_u16(), 201);
    let record: serde_json::Value =
        serde_json::from_slice(&b.provider.store.consent(alice, &bob, None).unwrap().unwrap()).unwrap();
    assert_eq!(record["state"], "requested");
    let claim = runtime.block_on(a.peers.claim(&Requester::ephemeral(alice).unwrap(), &bob, None)).unwrap();
    assert_eq!(claim.response.status, UserStatus::NoConsent, "a request grants nothing");

    let query = |handle: &str| {
        let request = IdentifierRequest {
            elements: vec![QueryElement {
                search_type: SearchType::Handle,
                qualifier: Vec::new(),
                value: handle.into(),
            }],
            extensions: AppDataDictionary::default(),
        };
        let answer = post("/mimi/v1/identifierQuery/b.test", request.encode());
        IdentifierResponse::decode(&answer.body).unwrap()
    };
    let found = query("@bob:hs.b.test");
    assert_eq!((found.code, found.uris.as_slice()), (QueryCode::Success, &[bob.clone()][..]));
    assert_eq!(query("@nobody:hs.b.test").code, QueryCode::NotFound);

    let report = AbuseReport {
        reporting_user: alice.into(),
        alleged_abuser: bob.clone(),
        reason_code: 0,
        note: "spam".into(),
        messages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    let (room_id, _) = b
        .provider
        .hub
        .create_room_blocking("@bob:b.test", &mimi_bridge::hub::RoomPreset::default(), 1_700_000_000_000)
        .unwrap();
    let opaque = room_id.trim_start_matches('!').split(':').next().unwrap();
    let room_uri = format!("mimi://b.test/r/{opaque}");
    let path = format!("/mimi/v1/reportAbuse/mimi%3A%2F%2Fb.test%2Fr%2F{opaque}");
    assert_eq!(post(&path, report.encode()).status.as_u16(), 201);
    let stored: serde_json::Value =
        serde_json::from_slice(&b.provider.store.abuse_report(1).unwrap().unwrap()).unwrap();
    assert_eq!((stored["from"].as_str(), stored["room"].as_str()), (Some("a.test"), Some(room_uri.as_str())));
    assert_eq!(post("/mimi/v1/reportAbuse/mimi%3A%2F%2Fb.test%2Fr%2Fnone", report.encode()).status.as_u16(), 404);
    assert_eq!(post("/mimi/v1/reportAbuse/mimi%3A%2F%2Fc.test%2Fr%2Fx", report.encode()).status.as_u16(), 404);
    assert!(b.provider.store.abuse_report(2).unwrap().is_none(), "refused reports are not stored");
    let mut text = String::new();
    mimi_bridge::http::metrics::MetricsSource::render(&*b.provider.metrics, &mut text);
    assert!(text.contains("mimi_bridge_abuse_reports_total 1"), "{text}");

    // A request for a user who does not exist is answered the same, and stores nothing.
    let nobody = ConsentEntry { target_uri: "mimi://b.test/u/nobody".into(), ..request };
    assert_eq!(post("/mimi/v1/requestConsent/b.test", nobody.encode()).status.as_u16(), 201);
    assert!(b.provider.store.consent(alice, "mimi://b.test/u/nobody", None).unwrap().is_none());
}

/// A peer can make this provider store only so many consent requests and abuse reports a day
/// (3 and 2 here): past that, 429 `M_LIMIT_EXCEEDED` and nothing stored; a request that stores
/// nothing (a repeat) uses nothing up, and another peer has its own quota.
#[test]
fn daily_quotas_bound_what_a_peer_can_make_this_provider_store() {
    use mimi_bridge::mimi::protocol::{AbuseReport, AppDataDictionary};
    let Pair { a, b, ca, runtime, _pki } = pair();
    let bob = user_with_packages(&b, "bob", 1);
    let client_of = |domain: &str| {
        let leaf = ca.issue(domain, &format!("{domain}-raw"));
        let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&ca.ca_file())).unwrap();
        PeerClient::new(&tls, domain, BTreeMap::from([("b.test".to_owned(), b.address)])).unwrap()
    };
    let (from_a, from_c) = (client_of("a.test"), client_of("c.test"));
    let post = |client: &PeerClient, path: &str, body: Vec<u8>| {
        runtime.block_on(client.post(&format!("https://b.test{path}"), body)).unwrap()
    };
    let request = |requester: &str| ConsentEntry {
        operation: ConsentOperation::Request,
        requester_uri: requester.to_owned(),
        target_uri: bob.clone(),
        room_id: None,
        key_packages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    for n in 1..=3 {
        let requester = format!("mimi://a.test/u/user{n}");
        assert_eq!(post(&from_a, "/mimi/v1/requestConsent/b.test", request(&requester).encode()).status.as_u16(), 201);
    }
    let repeat = request("mimi://a.test/u/user1").encode();
    assert_eq!(post(&from_a, "/mimi/v1/requestConsent/b.test", repeat).status.as_u16(), 201, "a repeat is free");
    let over = post(&from_a, "/mimi/v1/requestConsent/b.test", request("mimi://a.test/u/user4").encode());
    assert_eq!(over.status.as_u16(), 429);
    assert!(String::from_utf8_lossy(&over.body).contains("M_LIMIT_EXCEEDED"));
    assert!(b.provider.store.consent("mimi://a.test/u/user4", &bob, None).unwrap().is_none());
    let other = post(&from_c, "/mimi/v1/requestConsent/b.test", request("mimi://c.test/u/carol").encode());
    assert_eq!(other.status.as_u16(), 201);
    assert!(b.provider.store.consent("mimi://c.test/u/carol", &bob, None).unwrap().is_some());

    let (room_id, _) = b
        .provider
        .hub
        .create_room_blocking("@bob:b.test", &mimi_bridge::hub::RoomPreset::default(), 1_700_000_000_000)
        .unwrap();
    let opaque = room_id.trim_start_matches('!').split(':').next().unwrap().to_owned();
    let path = format!("/mimi/v1/reportAbuse/mimi%3A%2F%2Fb.test%2Fr%2F{opaque}");
    let report = AbuseReport {
        reporting_user: "mimi://a.test/u/user1".into(),
        alleged_abuser: bob.clone(),
        reason_code: 0,
        note: "spam".into(),
        messages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    let statuses: Vec<u16> = (0..3).map(|_| post(&from_a, &path, report.encode()).status.as_u16()).collect();
    assert_eq!(statuses, [201, 201, 429]);
    assert!(b.provider.store.abuse_report(2).unwrap().is_some());
    assert!(b.provider.store.abuse_report(3).unwrap().is_none(), "the refused report is not stored");
    drop(a);
}

/// The operator's commands: a peer's directory and a claim, printed with each client's verdict;
/// a configuration without `mimi.tls` is refused naming the file and the field.
#[test]
fn mimi_directory_and_claim_commands_talk_to_a_peer() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path(), "test CA");
    let b = side(&runtime, &ca, "b.test", 2);
    let bob = user_with_packages(&b, "bob", 1);
    grant(&b, "mimi://a.test/u/mimibot", &bob);
    let a = ca.issue("a.test", "a-cli");
    let yaml = |mimi_extra: &str| {
        format!(
            "homeserver:\n  address: http://127.0.0.1:1\n  domain: hs.a.test\nappservice:\n  address: http://127.0.0.1:2\n  \
             as_token: generate\n  hs_token: generate\nmimi:\n  server_name: a.test\n  signing_key: /nonexistent\n\
             {mimi_extra}database:\n  path: /nonexistent\n"
        )
    };
    let with_tls = yaml(&format!(
        "  tls:\n    certificate: {}\n    key: {}\n    trust_anchors: {}\n  peers:\n    b.test: {}\n",
        a.certificate.display(),
        a.key.display(),
        ca.ca_file().display(),
        b.address
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &with_tls).unwrap();
    let config = config.to_str().unwrap();

    let out = crate::common::run(&["mimi", "directory", "-c", config, "b.test"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("keyMaterial\thttps://b.test/mimi/v1/keyMaterial/{targetUser}"), "{stdout}");

    let out = crate::common::run(&["mimi", "claim", "-c", config, &bob], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.starts_with("userStatus Success") && stdout.contains("mimi://b.test/d/bob/D1\tKeyPackage of"),
        "{stdout}"
    );
    assert!(stdout.contains(", valid"), "{stdout}");

    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, yaml("")).unwrap();
    let out = crate::common::run(&["mimi", "directory", "-c", plain.to_str().unwrap(), "b.test"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("plain.yaml") && stderr.contains("mimi.tls"), "{stderr}");
}

/// A room requiring an extension nobody here supports gets `nothingCompatible` (with the
/// clients' capabilities) and consumes nothing; a claimed KeyPackage lacking a required
/// capability is refused by the claimer.
#[test]
fn required_capabilities_are_matched_both_ways() {
    use openmls::prelude::{ExtensionType, RequiredCapabilitiesExtension};
    let Pair { a, b, runtime, _pki, .. } = pair();
    let bob = user_with_packages(&b, "bob", 1);
    let alice = "mimi://a.test/u/alice";
    grant(&b, alice, &bob);
    let exotic = RequiredCapabilitiesExtension::new(&[ExtensionType::Unknown(0xff00)], &[], &[]);
    let requester = Requester::ephemeral(alice).unwrap().requiring(&exotic).unwrap();
    let claimed = runtime.block_on(a.peers.claim(&requester, &bob, None)).unwrap();
    assert_eq!(claimed.response.status, UserStatus::NoCompatibleMaterial);
    assert!(
        matches!(&claimed.response.clients[..], [ClientMaterial::NothingCompatible { capabilities: Some(_), .. }]),
        "{:?}",
        claimed.response.clients
    );
    // Nothing consumed: the one-time package comes next, then the last resort.
    let plain = Requester::ephemeral(alice).unwrap();
    let first = key_package_of(&runtime.block_on(a.peers.claim(&plain, &bob, None)).unwrap().response.clients[0]);
    let second = key_package_of(&runtime.block_on(a.peers.claim(&plain, &bob, None)).unwrap().response.clients[0]);
    assert_ne!(first, second);
    let refusal = mimi_bridge::provider::key_material::check_claimed(&first, &bob, "mimi://b.test/d/bob/D1", &exotic);
    assert!(
        matches!(refusal, Err(mimi_bridge::provider::key_material::ClaimRefusal::Capabilities { .. })),
        "{refusal:?}"
    );
}
