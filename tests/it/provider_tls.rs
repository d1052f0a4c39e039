//! Mutual TLS on real sockets with certificates a CA made in the test: a listener that requires
//! a client certificate, and the peer client that presents one and verifies the server's.

use std::collections::BTreeMap;
use std::sync::Arc;

use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::http::{Handler, Request, Response, text};
use mimi_bridge::provider::client::PeerClient;

use crate::pki::TestCa;

/// Answers which of two domains the client certificate authenticates, and the `From:` header.
struct WhoAmI;

impl Handler for WhoAmI {
    async fn handle(&self, request: Request) -> Response {
        let peer = request.peer.as_ref();
        let who = ["a.test", "evil.test"].iter().find(|d| peer.is_some_and(|p| p.authenticates(d))).copied();
        let from = request.headers.get("from").and_then(|v| v.to_str().ok()).unwrap_or("-");
        text(hyper::StatusCode::OK, format!("{} {from}", who.unwrap_or("nobody")), "text/plain")
    }
}

struct Served {
    runtime: tokio::runtime::Runtime,
    address: std::net::SocketAddr,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn serve(tls: &TlsMaterial) -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls.server_config().unwrap()));
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    runtime.spawn(mimi_bridge::http::serve_with(listener, Some(acceptor), Arc::new(WhoAmI), 1024, watch));
    Served { runtime, address, _shutdown: shutdown }
}

#[test]
fn the_client_certificate_names_the_peer_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "test CA");
    let b_leaf = ca.issue("b.test", "b");
    let client = ca.issue("a.test", "a");
    let served = serve(&TlsMaterial::load(&b_leaf.certificate, &b_leaf.key, Some(&ca.ca_file())).unwrap());
    let overrides = BTreeMap::from([("b.test".to_owned(), served.address)]);

    let a = TlsMaterial::load(&client.certificate, &client.key, Some(&ca.ca_file())).unwrap();
    let peer = PeerClient::new(&a, "a.test", overrides.clone()).unwrap();
    let answer = served.runtime.block_on(peer.get("https://b.test/who")).unwrap();
    assert_eq!((answer.status.as_u16(), &answer.body[..]), (200, &b"a.test mimi@a.test"[..]));

    // Another CA's client certificate: the handshake fails.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestCa::new(other_dir.path(), "other CA");
    let stranger = other.issue("a.test", "stranger");
    let stranger = TlsMaterial::load(&stranger.certificate, &stranger.key, Some(&ca.ca_file())).unwrap();
    let refused = served
        .runtime
        .block_on(PeerClient::new(&stranger, "a.test", overrides.clone()).unwrap().get("https://b.test/who"));
    assert!(refused.is_err(), "{refused:?}");

    // A server certificate for another name than the one asked for: the client refuses it.
    let wrong = BTreeMap::from([("c.test".to_owned(), served.address)]);
    let refused = served.runtime.block_on(peer_for(&a, wrong).get("https://c.test/who"));
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("certificate"), "{err}");
}

fn peer_for(tls: &TlsMaterial, overrides: BTreeMap<String, std::net::SocketAddr>) -> PeerClient {
    PeerClient::new(tls, "a.test", overrides).unwrap()
}
