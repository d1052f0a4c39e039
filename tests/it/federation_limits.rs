//! Limits before work on the federation listener (real HTTP on 127.0.0.1): a request without
//! valid X-Matrix credentials is refused on its headers, before its body is read, and the
//! memory held by bodies in flight is bounded across connections, so a flood of large requests
//! leaves the process's RSS bounded.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::event::ServerKey;
use mimi_bridge::federation::{Federation, UNSTABLE_PREFIX, x_matrix};
use mimi_bridge::hub::Hub;
use mimi_bridge::store::Store;

const MAX_BODY: usize = mimi_bridge::daemon::MAX_FEDERATION_BODY;

/// Sends a request head declaring a body of `MAX_BODY` bytes, then (if `send_body`) the body,
/// and returns the status line the server answered with.
fn put_large(address: std::net::SocketAddr, authorization: Option<&str>, send_body: bool) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let head = format!(
        "PUT {UNSTABLE_PREFIX}/send/t1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {MAX_BODY}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    if send_body {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..MAX_BODY / chunk.len() {
            if stream.write_all(&chunk).is_err() {
                break; // refused and closed before the whole body went
            }
        }
    }
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

/// A federation listener on 127.0.0.1 over a fresh store, trusting `peer.test`'s key
/// `ServerKey::from_seed("p", [2; 32])`; it serves while this is kept.
struct Listener {
    address: std::net::SocketAddr,
    federation: Arc<Federation>,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn listener() -> Listener {
    listener_with(100)
}

/// [`listener`], letting a server start at most `rooms_per_day` rooms here.
fn listener_with(rooms_per_day: u64) -> Listener {
    let dir = tempfile::tempdir().unwrap();
    let key = ServerKey::from_seed("a", [1; 32]).unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let hub = Arc::new(Hub::new("mimi.hs.test", &key, Arc::clone(&store)).unwrap());
    let peer = ServerKey::from_seed("p", [2; 32]).unwrap();
    hub.directories().trust_key("peer.test", peer.key_id(), peer.verifying_key()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let federation = Arc::new(Federation::new(hub, store).with_rooms_per_day(rooms_per_day));
    runtime.spawn(mimi_bridge::http::serve(listener, Arc::clone(&federation), MAX_BODY, watch));
    Listener { address, federation, _shutdown: shutdown, _runtime: runtime, _dir: dir }
}

#[test]
fn unauthenticated_requests_are_refused_before_their_bodies_and_memory_stays_bounded() {
    let listener = listener();
    let address = listener.address;
    let peer = ServerKey::from_seed("p", [2; 32]).unwrap();

    // Refused on the headers alone: the body is never sent, yet the answer comes.
    assert!(put_large(address, None, false).contains("401"), "no credentials");
    let stranger = ServerKey::from_seed("s", [3; 32]).unwrap();
    let unknown = x_matrix::sign_request(&stranger, "stranger.test", "mimi.hs.test", "PUT", "/x", None);
    assert!(put_large(address, Some(&unknown), false).contains("401"), "unknown origin key");

    // A flood: 64 clients at a time, 512 requests of 4 MiB each (2 GiB offered). Half carry no
    // credentials; half name a trusted key with a signature that cannot verify, so their
    // bodies are read, within the listener's budget, and then refused.
    let forged = x_matrix::sign_request(&peer, "peer.test", "mimi.hs.test", "PUT", "/elsewhere", None);
    let before = crate::common::rss_kib();
    let mut peak = before;
    for round in 0..8 {
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let auth = (i % 2 == 1).then(|| forged.clone());
                std::thread::spawn(move || put_large(address, auth.as_deref(), true))
            })
            .collect();
        for thread in threads {
            let status = thread.join().unwrap();
            // 401 on the headers; the forged ones are read (within the budget), fail the signature
            // over their bytes, fail to parse, and are refused 401 too. A refused client may also
            // see the connection closed while it still writes.
            assert!(status.contains("401") || status.is_empty(), "round {round}: {status}");
        }
        peak = peak.max(crate::common::rss_kib());
    }
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "federation flood: 512 requests of 4 MiB (2 GiB offered, half unauthenticated): RSS {} MiB before, peak {} MiB (+{growth_mib} MiB; body budget {} MiB)",
        before / 1024,
        peak / 1024,
        mimi_bridge::http::BODY_BUDGET >> 20
    );
    assert!(growth_mib < 256, "RSS grew by {growth_mib} MiB under the flood");
}

/// Requests without a body take nothing from the body budget: with the whole budget held by
/// uploads still arriving, a download is answered at once.
#[test]
fn body_less_requests_are_served_while_uploads_hold_the_body_budget() {
    let listener = listener();
    let address = listener.address;
    let peer = ServerKey::from_seed("p", [2; 32]).unwrap();
    let forged = x_matrix::sign_request(&peer, "peer.test", "mimi.hs.test", "PUT", "/elsewhere", None);
    let holders = mimi_bridge::http::BODY_BUDGET / MAX_BODY + 1;
    let uploads: Vec<TcpStream> = (0..holders)
        .map(|_| {
            let mut stream = TcpStream::connect(address).unwrap();
            let head = format!(
                "PUT {UNSTABLE_PREFIX}/send/t1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: {forged}\r\nContent-Length: {MAX_BODY}\r\n\r\n{{"
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // the uploads' heads are admitted and their shares taken

    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let path = mimi_bridge::federation::media::PATH;
    stream.write_all(format!("GET {path}no-such-id HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    let status = String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned();
    assert!(status.contains("404"), "the download waited behind the uploads: {status:?}");
    drop(uploads);
}

/// The signature is checked over the body's bytes as sent before anything parses them: a
/// canonical body signed by a trusted peer is accepted unparsed, a forged one refused unparsed;
/// a non-canonical body is parsed (one at a time), then accepted if its signature holds.
#[test]
fn signatures_are_checked_over_the_bytes_before_the_body_is_parsed() {
    use mimi_bridge::event::canonical::{object_to_bytes, parse_object};
    use std::sync::atomic::Ordering;
    let listener = listener();
    let peer = ServerKey::from_seed("p", [2; 32]).unwrap();
    let path = format!("{UNSTABLE_PREFIX}/send/t2");
    let content = parse_object(br#"{"pdus":[],"edus":[]}"#).unwrap();
    let signed = x_matrix::sign_request(&peer, "peer.test", "mimi.hs.test", "PUT", &path, Some(&content));
    let put = |body: &[u8], authorization: &str| {
        let mut stream = TcpStream::connect(listener.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: {authorization}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.lines().next().unwrap_or_default().to_owned()
    };
    let parses = || {
        let metrics = &listener.federation.metrics;
        (metrics.unverified_parses.load(Ordering::Relaxed), metrics.parsed_and_verified.load(Ordering::Relaxed))
    };

    assert!(put(&object_to_bytes(&content), &signed).contains("200"), "canonical and signed");
    assert_eq!(parses(), (0, 0), "verified over the bytes as sent, nothing parsed first");

    let other = parse_object(br#"{"pdus":[],"edus":[{"x":1}]}"#).unwrap();
    let forged = x_matrix::sign_request(&peer, "peer.test", "mimi.hs.test", "PUT", &path, Some(&other));
    let big = format!(r#"{{"edus":[],"pdus":[],"pad":"{}"}}"#, "x".repeat(1 << 20));
    assert!(put(big.as_bytes(), &forged).contains("401"), "forged");
    assert_eq!(parses(), (1, 0), "a forged body is parsed only after its bytes failed, and refused");

    assert!(put(br#"{ "edus": [], "pdus": [] }"#, &signed).contains("200"), "non-canonical, signed");
    assert_eq!(parses(), (2, 1), "a non-canonical body is parsed, then verified");
    let mut text = String::new();
    mimi_bridge::http::metrics::MetricsSource::render(&*listener.federation.metrics, &mut text);
    assert!(text.contains("mimi_bridge_federation_unverified_parses_total 2"), "{text}");
}

/// A trusted peer may start a room in this server's store only if one of this server's users is
/// invited or joined in it (in the same transaction), and only so many a day: a room that is
/// nobody's here is refused whole; past the quota, its create event is refused.
#[test]
fn a_peer_starts_rooms_here_only_for_this_servers_users_and_within_its_quota() {
    use mimi_bridge::hub::RoomPreset;
    let listener = listener_with(1);
    let dir = tempfile::tempdir().unwrap();
    let peer_key = ServerKey::from_seed("p", [2; 32]).unwrap();
    let peer = Hub::new("peer.test", &peer_key, Arc::new(Store::open(dir.path()).unwrap())).unwrap();
    let carol = "@carol:peer.test";
    let room = |invite: Option<&str>| {
        let (room, _) = peer.create_room_blocking(carol, &RoomPreset::default(), 1_700_000_000_000).unwrap();
        if let Some(user) = invite {
            let content = crate::common::content(serde_json::json!({"membership": "invite"}));
            let template = mimi_bridge::event::EventTemplate {
                room_id: room.clone(),
                event_type: "m.room.member".into(),
                sender: carol.into(),
                state_key: Some(user.into()),
                content,
                origin_server_ts: 1_700_000_000_001,
            };
            peer.submit_local(template).unwrap().wait().unwrap();
        }
        room
    };
    let send = |room: &str, txn: &str| -> serde_json::Value {
        let short = peer.store().short_room(room).unwrap().unwrap();
        let pdus: Vec<serde_json::Value> = peer
            .store()
            .pdus(short, 0)
            .unwrap()
            .map(|item| serde_json::from_slice(&item.unwrap().1).unwrap())
            .collect();
        let body = serde_json::json!({"pdus": pdus, "edus": []});
        let object = mimi_bridge::event::canonical::parse_object(body.to_string().as_bytes()).unwrap();
        let uri = format!("{UNSTABLE_PREFIX}/send/{txn}");
        let auth = x_matrix::sign_request(&peer_key, "peer.test", "mimi.hs.test", "PUT", &uri, Some(&object));
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent
            .put(format!("http://{}{uri}", listener.address))
            .header("Authorization", &auth)
            .send(body.to_string().as_bytes())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.body_mut().read_json::<serde_json::Value>().unwrap()["failed_pdus"].clone()
    };
    let ours = listener.federation.hub.store();

    let nobodys = room(None);
    let failed = send(&nobodys, "t1");
    assert!(failed.to_string().contains("no user of mimi.hs.test is invited"), "{failed}");
    assert!(ours.short_room(&nobodys).unwrap().is_none(), "a room that is nobody's here is not stored");

    let bobs = room(Some("@bob:mimi.hs.test"));
    assert_eq!(send(&bobs, "t2"), serde_json::json!({}), "a room one of our users is invited to is kept");
    assert!(ours.short_room(&bobs).unwrap().is_some());

    let another = room(Some("@dave:mimi.hs.test"));
    let failed = send(&another, "t3");
    assert!(failed.to_string().contains("new rooms for today"), "past the quota: {failed}");
    assert!(ours.short_room(&another).unwrap().is_none());
}
