//! `cargo bench --bench append`: durable hub appends per second with group commit, and
//! `log verify` events per second, each beside baselines measured in the same run.
//!
//! Baselines: a raw RocksDB synced `WriteBatch` of the same number of records per sync as the
//! hub achieved, and raw ed25519 `sign` / `verify_strict` on one core. Bounded: every scenario
//! appends a fixed number of events on a store in a temporary directory.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rates are printed, not computed on"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{EventTemplate, KeyRing, ServerKey, build_lpdu};
use mimi_bridge::hub::{Hub, RoomPreset};
use mimi_bridge::replay;
use mimi_bridge::store::{Store, SyncPolicy};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

/// The allocator the `mimi-bridge` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HUB: &str = "hub.example";
const PART: &str = "part.example";
const ALICE: &str = "@alice:hub.example";
const BOB: &str = "@bob:part.example";
const WRITERS: usize = 64;

fn body(text: &str) -> CanonicalJsonObject {
    let mut c = CanonicalJsonObject::new();
    c.insert("msgtype".into(), CanonicalJsonValue::String("m.text".into()));
    c.insert("body".into(), CanonicalJsonValue::String(text.into()));
    c
}

fn template(room: &str, sender: &str, i: usize, w: usize) -> EventTemplate {
    EventTemplate {
        room_id: room.into(),
        event_type: "m.room.message".into(),
        sender: sender.into(),
        state_key: None,
        content: body(&format!("writer {w} message {i}: a typical short chat line of some sixty bytes")),
        origin_server_ts: 1_700_000_000_000 + i64::try_from(i).unwrap_or(0),
    }
}

fn open(dir: &std::path::Path, sync: SyncPolicy) -> (Arc<Hub>, ServerKey) {
    let store = Arc::new(Store::open_with(dir, sync).expect("store"));
    let hub = Hub::new(HUB, &ServerKey::from_seed("hub1", [7; 32]).expect("key"), store).expect("hub");
    let part = ServerKey::from_seed("part1", [9; 32]).expect("key");
    hub.directories().trust_key(PART, part.key_id(), part.verifying_key()).expect("trust");
    (Arc::new(hub), part)
}

/// A room with Bob (a participant) joined, so LPDUs from part.example are accepted.
fn room(hub: &Hub, part: &ServerKey) -> String {
    let (room, _) = hub.create_room_blocking(ALICE, &RoomPreset::default(), 1).expect("room");
    let member = |sender: &str, membership: &str| {
        let mut c = CanonicalJsonObject::new();
        c.insert("membership".into(), CanonicalJsonValue::String(membership.into()));
        EventTemplate {
            room_id: room.clone(),
            event_type: "m.room.member".into(),
            sender: sender.into(),
            state_key: Some(BOB.into()),
            content: c,
            origin_server_ts: 2,
        }
    };
    hub.submit_local(member(ALICE, "invite")).expect("invite").wait().expect("invite");
    let join = build_lpdu(&LINEARIZED_02, member(BOB, "join"), HUB, part, PART).expect("lpdu");
    hub.submit_lpdu(join).expect("join").wait().expect("join");
    room
}

/// `WRITERS` threads append `per_writer` events each, spread over `rooms` rooms; every append
/// waits for its own durability. With `mixed`, half the writers submit participants' LPDUs
/// (verify + complete + sign); otherwise all author locally (sign only).
fn append_run(hub: &Arc<Hub>, part: &ServerKey, rooms: &[String], per_writer: usize, mixed: bool) -> (f64, f64, f64) {
    // The participant's signing happens on its own server: build the LPDUs before the clock starts.
    let lpdus: Vec<Vec<_>> = (0..WRITERS)
        .map(|w| {
            let room = &rooms[w % rooms.len()];
            (0..per_writer)
                .filter(|_| mixed && w % 2 == 1)
                .map(|i| build_lpdu(&LINEARIZED_02, template(room, BOB, i, w), HUB, part, PART).expect("lpdu"))
                .collect()
        })
        .collect();
    let before = hub.store().commit_stats();
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let threads: Vec<_> = lpdus
        .into_iter()
        .enumerate()
        .map(|(w, lpdus)| {
            let (hub, room) = (Arc::clone(hub), rooms[w % rooms.len()].clone());
            std::thread::spawn(move || {
                if lpdus.is_empty() {
                    for i in 0..per_writer {
                        hub.submit_local(template(&room, ALICE, i, w)).expect("local").wait().expect("durable");
                    }
                }
                for lpdu in lpdus {
                    hub.submit_lpdu(lpdu).expect("lpdu").wait().expect("durable");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cores_busy = (cpu_seconds() - cpu_before) / elapsed;
    let after = hub.store().commit_stats();
    let events = (WRITERS * per_writer) as f64;
    let per_sync = (after.batches - before.batches) as f64 / (after.writes - before.writes).max(1) as f64;
    (events / elapsed, per_sync, cores_busy)
}

/// Raw RocksDB: synced batches of `records` ~700-byte records, for `duration`.
fn raw_rocksdb(records: usize, duration: Duration) -> f64 {
    let dir = tempfile::tempdir().expect("dir");
    let db = rocksdb::DB::open_default(dir.path()).expect("rocksdb");
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    let value = vec![b'x'; 700];
    let (mut written, mut key) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < duration {
        let mut batch = rocksdb::WriteBatch::default();
        for _ in 0..records {
            key += 1;
            batch.put(key.to_be_bytes(), &value);
        }
        db.write_opt(batch, &options).expect("write");
        written += records as u64;
    }
    written as f64 / start.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) this process has used, from /proc (Linux), to show how many
/// cores a phase kept busy.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn per_second(duration: Duration, mut op: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for _ in 0..256 {
            op(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("MIMI_BENCH_QUICK").is_some();
    let (per_writer, verify_events, mut window) =
        if quick { (50, 10_000, Duration::from_millis(300)) } else { (300, 100_000, Duration::from_secs(2)) };
    if std::env::var_os("MIMI_BENCH_NO_BASELINE").is_some() {
        window = Duration::from_millis(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!("mimi-bridge append/verify benchmark — {cores} cores, {WRITERS} concurrent writers, synced group commit");

    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let message = [0u8; 600];
    let sign_rate = per_second(window, |_| {
        std::hint::black_box(ed25519_dalek::Signer::sign(&key, &message));
    });
    let signature = ed25519_dalek::Signer::sign(&key, &message);
    let verifying = key.verifying_key();
    let verify_rate = per_second(window, |_| {
        assert!(verifying.verify_strict(std::hint::black_box(&message), &signature).is_ok());
    });
    let all_cores_verify: f64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    per_second(window, |_| {
                        assert!(verifying.verify_strict(std::hint::black_box(&message), &signature).is_ok());
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0.0)).sum()
    });
    println!("baseline  ed25519 sign           {sign_rate:>10.0} /s (1 core)");
    println!(
        "baseline  ed25519 verify_strict  {verify_rate:>10.0} /s (1 core), {all_cores_verify:.0} /s on all {cores} cores"
    );

    println!();
    println!(
        "{:<8} {:<16} {:>10} {:>12} {:>11} {:>22} {:>7}",
        "rooms", "events", "appends/s", "events/sync", "cores busy", "raw RocksDB records/s", "ratio"
    );
    let only: Option<usize> = std::env::var("MIMI_BENCH_ROOMS").ok().and_then(|v| v.parse().ok());
    for rooms in [1usize, 4, 64].into_iter().filter(|r| only.is_none_or(|o| o == *r)) {
        for (mixed, label) in [(false, "local"), (true, "half LPDUs")] {
            let dir = tempfile::tempdir().expect("dir");
            let (hub, part) = open(dir.path(), SyncPolicy::Sync);
            let ids: Vec<String> = (0..rooms).map(|_| room(&hub, &part)).collect();
            let (rate, per_sync, busy) = append_run(&hub, &part, &ids, per_writer, mixed);
            let raw = raw_rocksdb(per_sync.round().max(1.0) as usize, window);
            println!(
                "{rooms:<8} {label:<16} {rate:>10.0} {per_sync:>12.1} {busy:>11.2} {raw:>22.0} {:>7.2}",
                rate / raw
            );
        }
    }

    if std::env::var_os("MIMI_BENCH_NO_VERIFY").is_some() {
        return;
    }
    println!();
    for (mixed, label) in
        [(false, "hub-authored events (one signature each)"), (true, "half LPDU-completed events (two signatures)")]
    {
        let (events, seconds, busy) = verify_run(verify_events, mixed);
        let rate = events as f64 / seconds;
        println!(
            "log verify: {events} {label} in {seconds:.2}s = {rate:.0} events/s ({busy:.2} cores busy); \
             ratio to verify_strict on all cores: {:.2}",
            rate / all_cores_verify
        );
    }
}

/// Builds a log of about `events` events in 4 rooms (without syncs: the build is not what is
/// measured), then times `log verify` over it.
fn verify_run(events: usize, mixed: bool) -> (u64, f64, f64) {
    let dir = tempfile::tempdir().expect("dir");
    let (hub, part) = open(dir.path(), SyncPolicy::NoSync);
    let rooms: Vec<String> = (0..4).map(|_| room(&hub, &part)).collect();
    append_run(&hub, &part, &rooms, events / WRITERS, mixed);
    let store = Arc::clone(hub.store());
    drop(hub);
    let (cpu, start) = (cpu_seconds(), Instant::now());
    let summary = replay::verify_store(&store, None, &KeyRing::new(), false).expect("verify");
    let elapsed = start.elapsed().as_secs_f64();
    (summary.events, elapsed, (cpu_seconds() - cpu) / elapsed)
}
