//! `cargo bench --bench daemon`: the whole bridge (`daemon::start`, as `serve` runs it) attached
//! to a real Synapse, measured three ways in one run:
//!
//! 1. **Idle CPU with 1,000 portals**: the bridge's process CPU time (user + system, /proc) over
//!    a quiet window after startup settled, as a share of one core.
//! 2. **Hand-off latency**: a peer server's user writes 200 messages, one at a time, into a real
//!    portal; for each, the time from its append being durable (the hub's answer) to the bridge
//!    having sent it to Synapse as the ghost (its Matrix event ID recorded), p50/p99. Synapse's
//!    own send time is inside both figures; what differs between builds is the hand-off.
//! 3. **A flood of intake**: 1,000,000 Matrix events (`MIMI_BENCH_EVENTS`) over 100 portals,
//!    PUT as transactions of 100 by 4 connections as fast as the bridge answers; the process's
//!    RSS while and after it bridges them, and the rate.
//!
//! 4. **The store after the flood**: its data directory's size on disk, and the time a new
//!    process takes to open it after the bridge stopped as a crash would (WAL replay included).
//!
//! `-- --store` runs only the store's part, without Synapse (`support/store_load.rs`): the
//! flood's writes with `database.memory_mb` (`MIMI_BENCH_MEMORY_MB`, default 128) beside the
//! options of earlier builds, each in its own process.
//!
//! The 1,000 portals are made before the bridge starts, straight in its store (rooms created by
//! the hub with their MLS groups, portal records for Matrix rooms that exist only by name): the
//! portals' Matrix side is never written to in this bench. Bounded: fixed counts;
//! `MIMI_BENCH_QUICK=1` uses 100,000 events.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rates and times are printed, not computed on"
)]

#[path = "../tests/it/ports.rs"]
mod ports;
#[path = "support/store_load.rs"]
mod store_load;
#[path = "support/synapse.rs"]
mod synapse;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mimi_bridge::config::Config;
use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{EventTemplate, ServerKey, UnverifiedPdu, build_lpdu};
use mimi_bridge::hub::{Hub, RoomPreset};
use mimi_bridge::store::{Batch, Store};
use serde_json::{Value, json};
use synapse::Synapse;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PORTALS: usize = 1000;
const FLOOD_PORTALS: usize = 100;
const ALICE: &str = "@alice:mimi.hs.test";
const PEER: &str = "part.test";
const BOB: &str = "@bob:part.test";
const GHOST: &str = "@mimi_part.test_bob:hs.test";

fn proc_self(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// CPU seconds (user + system) of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("stat").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

fn config_yaml(dir: &Path, hs_port: u16, as_port: u16, trusted: &str) -> String {
    format!(
        "homeserver:\n  address: http://127.0.0.1:{hs_port}\n  domain: hs.test\n\
         appservice:\n  address: http://127.0.0.1:{as_port}\n  hostname: 127.0.0.1\n  port: {as_port}\n  id: mimi\n  \
         bot:\n    username: mimibot\n  as_token: as_0123456789abcdef0123456789abcdef\n  \
         hs_token: hs_0123456789abcdef0123456789abcdef\n  username_template: mimi_{{server}}_{{localpart}}\n\
         mimi:\n  server_name: mimi.hs.test\n  signing_key: {key}\n  federation_listen: 127.0.0.1:{fed}\n  trusted_keys: [\"{trusted}\"]\n\
         database:\n  path: {data}\n  sync: sync\n  memory_mb: {memory_mb}\n",
        key = dir.join("signing.key").display(),
        data = dir.join("data").display(),
        fed = as_port.wrapping_add(1).max(1),
        memory_mb = std::env::var("MIMI_BENCH_MEMORY_MB").unwrap_or_else(|_| "128".into()),
    )
}

/// Creates `PORTALS` MIMI rooms (Alice's, encrypted) and records each as the portal of a Matrix
/// room `!portal<i>:hs.test`.
fn make_portals(dir: &Path, key: &ServerKey) {
    let store = Arc::new(Store::open(&dir.join("data")).expect("store"));
    let hub = Hub::new("mimi.hs.test", key, Arc::clone(&store)).expect("hub");
    hub.directories().register_device(ALICE, "MIMIBRIDGE").expect("device");
    let preset = RoomPreset { encrypted: true, ..RoomPreset::default() };
    for i in 0..PORTALS {
        let (room, _) = hub.create_room_blocking(ALICE, &preset, 1).expect("room");
        let matrix_room = format!("!portal{i}:hs.test");
        let record = json!({"matrix_room": matrix_room, "mimi_room": room, "creator": ALICE, "cursor": 0});
        let mut batch = Batch::new();
        batch.portal(&matrix_room, &room, record.to_string().as_bytes());
        store.write(batch).expect("portal");
    }
}

fn percentile(sorted: &[f64], percent: usize) -> f64 {
    sorted[(sorted.len() - 1) * percent / 100]
}

/// Bob (a peer server, in-process) joins the MIMI room of a real portal; returns his hub.
fn bob_joins(hub: &Hub, room: &str, peer_key: &ServerKey, peer_dir: &Path, bridge_key: &ServerKey) -> Hub {
    let peer = Hub::new(PEER, peer_key, Arc::new(Store::open(peer_dir).expect("peer store"))).expect("peer");
    peer.directories().trust_key("mimi.hs.test", bridge_key.key_id(), bridge_key.verifying_key()).expect("trust");
    let Ok(ruma::CanonicalJsonValue::Object(content)) =
        ruma::CanonicalJsonValue::try_from(json!({"membership": "join"}))
    else {
        unreachable!("an object")
    };
    let template = EventTemplate {
        room_id: room.to_owned(),
        event_type: "m.room.member".into(),
        sender: BOB.into(),
        state_key: Some(BOB.into()),
        content,
        origin_server_ts: 1,
    };
    let join = build_lpdu(&LINEARIZED_02, template, "mimi.hs.test", peer_key, PEER).expect("lpdu");
    hub.submit_lpdu(join).expect("join").wait().expect("durable");
    let follow = |peer: &Hub| {
        let short = hub.store().short_room(room).expect("read").expect("room");
        let from = peer
            .store()
            .short_room(room)
            .expect("read")
            .map_or(0, |s| peer.store().tail(s).expect("tail").map_or(0, |t| t.seq + 1));
        for item in hub.store().pdus(short, from).expect("pdus") {
            let (_, bytes) = item.expect("pdu");
            peer.submit_followed(UnverifiedPdu::parse(&bytes).expect("parse"))
                .expect("follow")
                .wait()
                .expect("durable");
        }
    };
    follow(&peer);
    peer.directories().register_device(BOB, "BOBDEV").expect("device");
    hub.directories()
        .publish_device(&peer.directories().device_object(BOB, "BOBDEV").expect("read").expect("object"))
        .expect("publish");
    peer.directories().publish_key_packages(BOB, 1).expect("key packages");
    let claimed = peer.directories().claim_key_package(BOB, "BOBDEV").expect("claim").expect("package");
    let package = hub.directories().check_key_package(&claimed, BOB, "BOBDEV").expect("valid");
    let commit = hub.commit_add(room, ALICE, &[package], 1).expect("commit").wait().expect("durable");
    follow(&peer);
    peer.join_group(room, BOB, &hub.welcome(&commit.event_id).expect("read").expect("welcome").message).expect("join");
    peer
}

/// Bob's MIMI content for a plain text message.
fn text(hub: &Hub, body: &str) -> Vec<u8> {
    let event = json!({"type": "m.room.message", "sender": BOB, "room_id": "!x:part.test", "event_id": "$x",
        "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body}});
    let ctx = mimi_bridge::translate::OutboundContext {
        room_uri: "mimi://mimi.hs.test/r/x".into(),
        salt: mimi_bridge::translate::Salt::Random,
        matrix_origin: None,
    };
    let ids = mimi_bridge::appservice::ids::StoreIds(Arc::clone(hub.store()));
    match mimi_bridge::translate::to_mimi(&event, &ctx, &ids).expect("translate").pop() {
        Some(mimi_bridge::translate::Outcome::Message(content)) => content.encode(),
        _ => unreachable!("a text message"),
    }
}

fn handoff(synapse: &Synapse, hub: &Hub, peer_dir: &Path, peer_key: &ServerKey, bridge_key: &ServerKey) {
    synapse.register("alice", "alice-password");
    let token = synapse.login("alice", "alice-password");
    let matrix_room = synapse.create_room(&token, "portal");
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/invite",
        synapse.base,
        matrix_room.replace('!', "%21").replace(':', "%3A")
    );
    Synapse::call(&synapse::agent(), false, &url, Some(&token), &json!({"user_id": GHOST}));
    let started = Instant::now();
    let room = loop {
        if let Some(room) = hub.store().portal_of(&matrix_room).expect("read") {
            break room;
        }
        assert!(started.elapsed() < Duration::from_mins(1), "no portal");
        std::thread::sleep(Duration::from_millis(20));
    };
    let peer = bob_joins(hub, &room, peer_key, peer_dir, bridge_key);
    let mut latencies = Vec::new();
    for i in 0..200 {
        let lpdu = peer.encrypt_lpdu(&room, BOB, &text(hub, &format!("message {i}")), 1).expect("encrypt");
        let appended = hub.submit_lpdu(lpdu).expect("append").wait().expect("durable");
        let durable = Instant::now();
        while hub.store().matrix_event_of(&appended.event_id).expect("read").is_none() {
            assert!(durable.elapsed() < Duration::from_secs(30), "message {i} never reached Synapse");
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(durable.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "hand-off: durable append -> sent to Synapse as the ghost, 200 messages one at a time: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1]
    );
}

fn flood(address: std::net::SocketAddr, depth: &std::sync::atomic::AtomicU64, events: usize) {
    let per_txn = 100;
    let connections = 4;
    let txns = events / per_txn / connections;
    let rss_before = proc_self("VmRSS:");
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            std::thread::spawn(move || {
                let agent = synapse::agent();
                for t in 0..txns {
                    let events: Vec<Value> = (0..per_txn)
                        .map(|e| {
                            let room = (t * per_txn + e) % FLOOD_PORTALS;
                            json!({"type": "m.room.message", "sender": "@alice:hs.test", "room_id": format!("!portal{room}:hs.test"),
                                   "event_id": format!("$flood-{c}-{t}-{e}"), "origin_server_ts": 1,
                                   "content": {"msgtype": "m.text", "body": format!("flood {c} {t} {e}: a message of some sixty bytes, as people write")}})
                        })
                        .collect();
                    let url = format!("http://{address}/_matrix/app/v1/transactions/flood-{c}-{t}");
                    let response = agent
                        .put(&url)
                        .header("Authorization", "Bearer hs_0123456789abcdef0123456789abcdef")
                        .send_json(json!({"events": events}))
                        .expect("PUT");
                    assert_eq!(response.status().as_u16(), 200);
                }
            })
        })
        .collect();
    let mut peak = rss_before;
    let mut sampled = Instant::now();
    while !threads.iter().all(std::thread::JoinHandle::is_finished) {
        peak = peak.max(proc_self("VmRSS:"));
        if sampled.elapsed() > Duration::from_secs(10) {
            println!(
                "  flood: {:.0} s, intake depth {}, RSS {} MiB",
                started.elapsed().as_secs_f64(),
                depth.load(Ordering::Relaxed),
                proc_self("VmRSS:") / 1024
            );
            sampled = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let acknowledged = started.elapsed().as_secs_f64();
    for thread in threads {
        thread.join().expect("client");
    }
    while depth.load(Ordering::Relaxed) > 0 {
        peak = peak.max(proc_self("VmRSS:"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let bridged = started.elapsed().as_secs_f64();
    let total = txns * per_txn * connections;
    println!(
        "flood: {total} events over {FLOOD_PORTALS} portals: acknowledged in {acknowledged:.0} s, bridged (MLS-encrypted, appended) in {bridged:.0} s ({:.0} events/s); RSS {} MiB before, peak {} MiB, after {} MiB",
        total as f64 / bridged,
        rss_before / 1024,
        peak / 1024,
        proc_self("VmRSS:") / 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map_or("", String::as_str);
    let memory_mb = std::env::var("MIMI_BENCH_MEMORY_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    match arg(1) {
        "--store-load" => {
            store_load::load(Path::new(arg(2)), arg(3), arg(4).parse().expect("MiB"), arg(5).parse().expect("n"))
        }
        "--store-reopen" => return store_load::reopen(Path::new(arg(2)), arg(3), arg(4).parse().expect("MiB")),
        _ => {}
    }
    let quick = std::env::var_os("MIMI_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick");
    let events = std::env::var("MIMI_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick {
        100_000
    } else {
        1_000_000
    });
    if args.iter().any(|a| a == "--store") {
        return store_load::compare(u64::try_from(events).expect("count"), memory_mb);
    }
    let dir = tempfile::tempdir().expect("dir");
    let peer_dir = tempfile::tempdir().expect("dir");
    let key = ServerKey::generate(Some("bench")).expect("key");
    std::fs::write(dir.path().join("signing.key"), key.to_synapse_line()).expect("key file");
    let peer_key = ServerKey::from_seed("peer1", [5; 32]).expect("peer key");
    let trusted = format!("{PEER}={}={}", peer_key.key_id(), peer_key.public_b64());
    // The appservice listens on `as_port`, the federation listener on the next one.
    let as_port = ports::consecutive(2);
    let registration = dir.path().join("registration.yaml");
    let config =
        Config::from_yaml(&config_yaml(dir.path(), 1, as_port, &trusted), Path::new("bench.yaml")).expect("config");
    std::fs::write(&registration, config.registration().to_yaml()).expect("registration");
    let started = Instant::now();
    make_portals(dir.path(), &key);
    println!("setup: {PORTALS} portals made in {:.1} s", started.elapsed().as_secs_f64());

    let synapse = Synapse::start(&[&registration]);
    let config = Config::from_yaml(&config_yaml(dir.path(), synapse.port, as_port, &trusted), Path::new("bench.yaml"))
        .expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let running = runtime.block_on(mimi_bridge::daemon::start(&config)).expect("start");

    std::thread::sleep(Duration::from_secs(5));
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    std::thread::sleep(Duration::from_secs(30));
    let idle = (cpu_seconds() - cpu) / wall.elapsed().as_secs_f64();
    println!(
        "idle: {PORTALS} portals, 30 s after a 5 s settle: {:.2}% of one core (RSS {} MiB)",
        idle * 100.0,
        proc_self("VmRSS:") / 1024
    );

    handoff(&synapse, &running.hub, peer_dir.path(), &peer_key, &key);
    flood(running.address, &running.appservice.metrics.intake_depth, events);
    drop(running);
    drop(runtime);
    let data = dir.path().join("data");
    println!("store after the flood: data {} MiB on disk", store_load::disk_bytes(&data) >> 20);
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe)
        .args(["--store-reopen", data.to_str().expect("utf-8"), "tuned", &memory_mb.to_string()])
        .output()
        .expect("child");
    let figures: Vec<f64> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|v| v.parse().ok()).collect();
    match figures[..] {
        [seconds, rss_kib, _] => {
            println!(
                "restart: the store opened in {seconds:.2} s in a new process (RSS {} MiB)",
                rss_kib as u64 / 1024
            );
        }
        _ => println!("restart: not measured: {}", String::from_utf8_lossy(&out.stderr).trim()),
    }
}
