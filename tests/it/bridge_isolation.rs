//! One portal whose Matrix room refuses every send for 60 s while 15 others flow: the refused
//! room waits alone (its queue backs off) and every other portal keeps going; once the room
//! accepts again its messages arrive, in order, exactly once.
//!
//! Synapse is real; the refusal is injected by a loopback proxy in front of it (a fault Synapse
//! cannot be made to produce for one room on demand). A peer server's user writes in all 16
//! rooms through the bridge's hub, as federation would. The test prints its figures (throughput
//! and latency of the 15 flowing rooms with and without the refused one); it asserts outcomes,
//! not speeds.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use mimi_bridge::config::Config;
use mimi_bridge::event::ServerKey;
use mimi_bridge::hub::Hub;
use serde_json::json;

use crate::bridge_peer::{BOB, GHOST, Peer, bob_joins_over_federation, bob_mimi};
use crate::bridge_synapse::{BridgeDir, config_yaml_trusting, wait_for};
use crate::synapse::Synapse;

const ROOMS: usize = 16;
const PER_ROOM: usize = 20;
const REFUSAL: Duration = Duration::from_mins(1);

/// A proxy that answers 503 to sends into one room while `refusing`, and forwards the rest.
struct FaultProxy {
    port: u16,
    refusing: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    room: Arc<std::sync::Mutex<String>>,
}

impl FaultProxy {
    fn start(runtime: &tokio::runtime::Runtime, upstream: u16) -> Self {
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (refusing, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let room = Arc::new(std::sync::Mutex::new(String::new()));
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<Full<Bytes>>();
        let state = (Arc::clone(&refusing), Arc::clone(&refused), Arc::clone(&room));
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (client, (refusing, refused, room)) = (client.clone(), state.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (client, refusing, refused, room) =
                            (client.clone(), Arc::clone(&refusing), Arc::clone(&refused), Arc::clone(&room));
                        async move {
                            let path = request.uri().path().to_owned();
                            let decoded = percent_encoding::percent_decode_str(&path).decode_utf8_lossy().into_owned();
                            let target = format!("/rooms/{}/send/", room.lock().unwrap());
                            if refusing.load(Ordering::SeqCst) && decoded.contains(&target) {
                                refused.fetch_add(1, Ordering::SeqCst);
                                let body = Full::new(Bytes::from(r#"{"errcode":"M_UNKNOWN","error":"injected"}"#));
                                let mut response = hyper::Response::new(body);
                                *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                                return Ok::<_, Infallible>(response);
                            }
                            let (mut parts, body) = request.into_parts();
                            let body =
                                body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
                            let query = parts.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
                            parts.uri = format!("http://127.0.0.1:{upstream}{path}{query}").parse().unwrap();
                            let response = client.request(hyper::Request::from_parts(parts, Full::new(body))).await;
                            let Ok(response) = response else {
                                let mut response = hyper::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                                return Ok(response);
                            };
                            let (parts, body) = response.into_parts();
                            let body =
                                body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
                            Ok(hyper::Response::from_parts(parts, Full::new(body)))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { port, refusing, refused, room }
    }
}

/// Throughput (messages/s) and p50/p99 latency (ms) of the given rooms' messages.
struct Figures {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Bob sends `PER_ROOM` messages into every room, interleaved; returns each room's log event
/// IDs (in order) and when each was durable.
fn burst(peer: &Peer, hub: &Hub, rooms: &[String], label: &str) -> Vec<Vec<(String, Instant)>> {
    let store = hub.store();
    let mut sent = vec![Vec::new(); rooms.len()];
    for i in 0..PER_ROOM {
        for (index, room) in rooms.iter().enumerate() {
            let text = json!({"content": {"msgtype": "m.text", "body": format!("{label} {i}")}});
            let lpdu = peer.hub.encrypt_lpdu(room, BOB, &bob_mimi(store, room, &text), 1).unwrap();
            let appended = hub.submit_lpdu(lpdu).unwrap().wait().unwrap();
            sent[index].push((appended.event_id, Instant::now()));
        }
    }
    sent
}

/// Waits until every message of `rooms` reached Synapse (the bridge recorded its Matrix event).
fn delivered(hub: &Hub, sent: &[Vec<(String, Instant)>], rooms: impl Iterator<Item = usize> + Clone) -> Figures {
    let store = hub.store();
    let start = rooms.clone().flat_map(|r| sent[r].iter().map(|(_, t)| *t)).min().unwrap();
    let mut latencies = Vec::new();
    let mut pending: Vec<&(String, Instant)> = rooms.flat_map(|r| sent[r].iter()).collect();
    let deadline = Instant::now() + Duration::from_mins(2);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} messages never reached Synapse", pending.len());
        pending.retain(|(event_id, at)| {
            if store.matrix_event_of(event_id).unwrap().is_some() {
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                false
            } else {
                true
            }
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |percent: usize| latencies[(latencies.len() - 1) * percent / 100];
    let count = f64::from(u32::try_from(latencies.len()).unwrap());
    Figures { rate: count / elapsed, p50: at(50), p99: at(99) }
}

#[test]
fn a_refusing_room_waits_alone_while_fifteen_portals_flow() {
    let mut bridge = BridgeDir::new();
    let peer_key = ServerKey::from_seed("peer1", [5; 32]).unwrap();
    bridge.trusted.push(format!("{}={}={}", crate::bridge_peer::PEER, peer_key.key_id(), peer_key.public_b64()));
    let synapse = Synapse::start(&[&bridge.registration]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let proxy = FaultProxy::start(&runtime, synapse.port);
    let yaml = config_yaml_trusting(bridge.dir.path(), proxy.port, bridge.as_port, &bridge.trusted);
    let config = Config::from_yaml(&yaml, std::path::Path::new("test.yaml")).unwrap();
    let running = runtime.block_on(mimi_bridge::daemon::start(&config)).unwrap();
    let hub = Arc::clone(&running.hub);
    synapse.register("alice", "alice-password");
    let token = synapse.login("alice", "alice-password");
    let bridge_key =
        ServerKey::parse_synapse(&std::fs::read_to_string(bridge.dir.path().join("signing.key")).unwrap()).unwrap();
    let peer = Peer::new(&bridge_key);

    let (mut matrix_rooms, mut rooms) = (Vec::new(), Vec::new());
    for i in 0..ROOMS {
        let matrix_room =
            synapse.create_room(&token, &json!({"preset": "private_chat", "name": format!("portal {i}")}));
        synapse.invite(&token, &matrix_room, GHOST);
        let store = hub.store();
        wait_for("the portal", Duration::from_secs(30), || store.portal_of(&matrix_room).unwrap().is_some());
        let room = store.portal_of(&matrix_room).unwrap().unwrap();
        bob_joins_over_federation(&peer, &hub, &room, running.federation_address);
        matrix_rooms.push(matrix_room);
        rooms.push(room);
    }
    *proxy.room.lock().unwrap() = matrix_rooms[0].clone();
    let flowing = 1..ROOMS;

    // Baseline: all 16 accept.
    let sent = burst(&peer, &hub, &rooms, "baseline");
    let baseline = delivered(&hub, &sent, flowing.clone());
    delivered(&hub, &sent, 0..1);

    // Room 0 refuses every send for 60 s.
    proxy.refusing.store(true, Ordering::SeqCst);
    let refusal_started = Instant::now();
    let sent = burst(&peer, &hub, &rooms, "refused");
    let during = delivered(&hub, &sent, flowing.clone());
    let refused_meanwhile = sent[0].iter().filter(|(id, _)| hub.store().matrix_event_of(id).unwrap().is_some()).count();
    assert!(refusal_started.elapsed() < REFUSAL, "the 15 flowing rooms took the whole refusal window");
    assert_eq!(refused_meanwhile, 0, "nothing reached the refusing room while it refused");
    assert!(proxy.refused.load(Ordering::SeqCst) > 0, "the refusing room was tried");
    let depth = mimi_bridge::http::metrics::QueueStats::counts(&*running.queue)[0];
    assert_eq!(depth, PER_ROOM as u64, "only the refusing room's messages wait");
    std::thread::sleep(REFUSAL.saturating_sub(refusal_started.elapsed()));
    let attempts = proxy.refused.load(Ordering::SeqCst);
    proxy.refusing.store(false, Ordering::SeqCst);
    delivered(&hub, &sent, 0..1);

    // Every message of the refusing room arrived once, in order, after the refusal.
    let texts: Vec<String> = synapse
        .texts(&token, &matrix_rooms[0])
        .into_iter()
        .filter(|(sender, _)| sender == GHOST)
        .map(|(_, body)| body)
        .collect();
    let expected: Vec<String> =
        ["baseline", "refused"].iter().flat_map(|label| (0..PER_ROOM).map(move |i| format!("{label} {i}"))).collect();
    assert_eq!(texts, expected);
    println!(
        "isolation: 15 flowing portals, {PER_ROOM} messages each: all accepting {:.1} msgs/s (p50 {:.0} ms, p99 {:.0} ms); \
         one room refusing {:.1} msgs/s (p50 {:.0} ms, p99 {:.0} ms): throughput ratio {:.2}, p50 ratio {:.2}; \
         the refusing room was tried {attempts} times in {}s",
        baseline.rate,
        baseline.p50,
        baseline.p99,
        during.rate,
        during.p50,
        during.p99,
        during.rate / baseline.rate,
        during.p50 / baseline.p50,
        REFUSAL.as_secs(),
    );
    drop(running);
    drop(runtime);
}
