//! `cargo bench --bench fanout`: messages per second a MIMI room's hub accepts durably when its
//! rooms hold users of 0 (the baseline, measured in the same run), 1 or 10 other providers.
//!
//! Why: every message accepted in a room with followers owes each follower provider a `notify`,
//! queued in the message's own synced batch (`hub::fanout`), so the fan-out's cost lands on the
//! hub's durable acceptance. This measures that promise — the append and its notify entries
//! synced — through the real code: a RocksDB store on disk, real openmls groups, each follower's
//! user added as the bridge adds one (its own provider's store hands out a KeyPackage, the hub
//! invites, vouches for the join and commits the add), and the provider outbox's queue and
//! `RequestQueue` with only the delivery swapped for one that needs no network (each entry
//! "answered 2xx" at once, then deleted in its own synced batch, as a real answer would be).
//! Delivery runs beside the senders, so its deletions share the store; how far it lagged is
//! printed too. Bounded: a fixed window per case in each of 3 rounds, each case on its own store.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    reason = "a bench: a failed setup is a failed run; rates are printed"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mimi_bridge::event::ServerKey;
use mimi_bridge::event::room_version::MIMI_HUB_1;
use mimi_bridge::hub::{Hub, RoomPreset, member_event};
use mimi_bridge::provider::outbox::{OutboxError, open_delivering};
use mimi_bridge::provider::requests::OutboxRequests;
use mimi_bridge::queue::{Deliver, Queue};
use mimi_bridge::store::{Batch, QueueEntry, Store};

/// The allocator the `mimi-bridge` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HUB: &str = "mimi.hub.test";
const ALICE: &str = "@alice:mimi.hub.test";
const DEVICE: &str = "DEV";
/// Rooms, each with every follower's user; writers are spread over them.
const ROOMS: usize = 8;
/// Concurrent senders, each waiting for its own message to be durable (group commit).
const WRITERS: usize = 32;
/// Follower providers per case; 0 is the baseline.
const FOLLOWERS: [usize; 3] = [0, 1, 10];
/// Rounds over the cases; the median is reported.
const ROUNDS: usize = 3;

/// A peer that takes every request at once: no network, so only the queue's own work remains.
#[derive(Debug)]
struct Answered;

impl Deliver for Answered {
    type Error = OutboxError;

    fn deliver(&self, _: &str, _: &QueueEntry) -> impl Future<Output = Result<Batch, OutboxError>> + Send {
        std::future::ready(Ok(Batch::new()))
    }

    fn undeliverable(&self, _: &str, _: &QueueEntry, _: &OutboxError) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Grouped as the real outbox groups `notify` entries (several messages per request).
    fn together(&self, entries: &[QueueEntry]) -> Vec<usize> {
        mimi_bridge::provider::outbox::notify_group(entries)
    }
}

/// The draft's MIMI content vector (193 bytes), read once.
static VECTOR: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content/original.cbor")).unwrap()
});

/// The vector with a distinct salt, so no two ciphertexts match.
fn content(n: u64) -> Vec<u8> {
    let mut bytes = VECTOR.clone();
    bytes[2..10].copy_from_slice(&n.to_be_bytes());
    bytes
}

/// The hub with its outbox and `ROOMS` portal rooms, each holding Alice's client and one client
/// of each of `followers` providers. `shutdown` must stay open (a closed channel reads as shutting down).
fn setup(
    dir: &Path,
    followers: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> (Arc<Hub>, Vec<String>, Arc<Queue<Answered>>) {
    let store = Arc::new(Store::open(&dir.join("hub")).unwrap());
    let hub = Arc::new(Hub::new(HUB, &ServerKey::from_seed("hub1", [7; 32]).unwrap(), Arc::clone(&store)).unwrap());
    let outbox = open_delivering(store, Answered, Arc::default(), shutdown).unwrap();
    hub.set_outbox(Arc::new(OutboxRequests(Arc::clone(&outbox))));
    hub.directories().register_device(ALICE, DEVICE).unwrap();
    let preset = RoomPreset { encrypted: true, version: &MIMI_HUB_1, ..RoomPreset::default() };
    let rooms: Vec<String> = (0..ROOMS).map(|_| hub.create_room_blocking(ALICE, &preset, 1).unwrap().0).collect();
    for f in 1..=followers {
        let server = format!("mimi.f{f}.test");
        let seed = [u8::try_from(f).unwrap(); 32];
        let peer_store = Arc::new(Store::open(&dir.join(&server)).unwrap());
        let peer = Hub::new(&server, &ServerKey::from_seed("f1", seed).unwrap(), peer_store).unwrap();
        let bob = format!("@bob:{server}");
        peer.directories().register_device(&bob, DEVICE).unwrap();
        peer.directories().publish_key_packages(&bob, ROOMS).unwrap();
        for room in &rooms {
            let claimed = peer.directories().claim_key_package_for(&bob, DEVICE, HUB, b"{}").unwrap().unwrap();
            let package = hub.directories().check_key_package(&claimed, &bob, DEVICE).unwrap();
            hub.submit_local(member_event(room, ALICE, &bob, "invite", 2)).unwrap().wait().unwrap();
            hub.vouch_join(room, &bob, 3).unwrap().unwrap().wait().unwrap();
            hub.commit_add(room, ALICE, &[package], 4).unwrap().wait().unwrap();
        }
    }
    (hub, rooms, outbox)
}

/// What one case measured.
struct Run {
    messages: u64,
    seconds: f64,
    cores_busy: f64,
    delivered: u64,
    /// Synced RocksDB writes, and the batches they carried (appends and delivered entries' deletions).
    syncs: u64,
    batches: u64,
}

/// `WRITERS` threads send encrypted messages as Alice for `window`, each waiting for its own to be
/// durable (its notify entries with it).
fn run(hub: &Arc<Hub>, rooms: &[String], outbox: &Queue<Answered>, window: Duration) -> Run {
    let runtime = tokio::runtime::Handle::current();
    let delivered_before = outbox.metrics().delivered.load(Ordering::Relaxed);
    let commits = hub.store().commit_stats();
    let (cpu, start) = (cpu_seconds(), Instant::now());
    let deadline = start + window;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (hub, room, runtime) = (Arc::clone(hub), rooms[w % rooms.len()].clone(), runtime.clone());
            std::thread::spawn(move || {
                // Durable notify entries wake the outbox's workers, which are tokio tasks.
                let _runtime = runtime.enter();
                let mut sent = 0u64;
                while Instant::now() < deadline {
                    let n = (w as u64) << 32 | sent;
                    hub.send_encrypted(&room, ALICE, &content(n), 5).unwrap().wait().unwrap();
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let messages = writers.into_iter().map(|w| w.join().unwrap()).sum();
    let seconds = start.elapsed().as_secs_f64();
    let after = hub.store().commit_stats();
    Run {
        syncs: after.writes - commits.writes,
        batches: after.batches - commits.batches,
        messages,
        seconds,
        cores_busy: (cpu_seconds() - cpu) / seconds,
        delivered: outbox.metrics().delivered.load(Ordering::Relaxed) - delivered_before,
    }
}

/// CPU seconds (user + system) this process has used, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("MIMI_BENCH_QUICK").is_some();
    let window = if quick { Duration::from_millis(500) } else { Duration::from_secs(2) };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _runtime = runtime.enter();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "mimi-bridge hub fan-out benchmark — {cores} cores, {WRITERS} concurrent senders over {ROOMS} rooms, \
         {window:?} per case and round, each message durable with its notify entries (synced group commit)"
    );
    let (_shutdown, open) = tokio::sync::watch::channel(false);
    let cases: Vec<_> = FOLLOWERS
        .iter()
        .map(|&followers| {
            let dir = tempfile::tempdir().unwrap();
            let (hub, rooms, outbox) = setup(dir.path(), followers, open.clone());
            // Setup's Welcomes are delivered before the clock starts.
            wait_drained(&outbox, Duration::from_secs(30));
            (dir, hub, rooms, outbox)
        })
        .collect();
    println!(
        "{:>5} {:>9} {:>8} {:>6} {:>5} {:>9} {:>9} {:>8} {:>13} {:>11} {:>8}",
        "round",
        "followers",
        "msgs/s",
        "ratio",
        "busy",
        "notify/s",
        "deliv./s",
        "syncs/s",
        "batches/sync",
        "left queued",
        "drained"
    );
    // Rounds alternate the cases, so that a neighbour's load on the shared cores falls on all.
    let mut ratios = vec![Vec::new(); FOLLOWERS.len()];
    let mut rates = ratios.clone();
    for round in 1..=ROUNDS {
        let mut baseline = None;
        for (k, (followers, (_, hub, rooms, outbox))) in FOLLOWERS.iter().zip(&cases).enumerate() {
            let run = run(hub, rooms, outbox, window);
            let left = outbox.metrics().depth.load(Ordering::Relaxed);
            // The next case starts with nothing left to deliver.
            let drained = wait_drained(outbox, Duration::from_mins(2));
            let rate = run.messages as f64 / run.seconds;
            let ratio = rate / *baseline.get_or_insert(rate);
            rates[k].push(rate);
            ratios[k].push(ratio);
            println!(
                "{round:>5} {followers:>9} {rate:>8.0} {ratio:>6.2} {:>5.2} {:>9.0} {:>9.0} {:>8.0} {:>13.1} {left:>11} \
                 {:>7.1}s",
                run.cores_busy,
                (run.messages * *followers as u64) as f64 / run.seconds,
                run.delivered as f64 / run.seconds,
                run.syncs as f64 / run.seconds,
                run.batches as f64 / run.syncs.max(1) as f64,
                drained.as_secs_f64(),
            );
        }
    }
    println!("\nmedian of {ROUNDS} rounds:");
    for (k, followers) in FOLLOWERS.iter().enumerate() {
        println!(
            "{followers:>3} followers: {:>6.0} msgs/s accepted, ratio to 0 followers {:.2}",
            median(&mut rates[k]),
            median(&mut ratios[k])
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Waits (up to `limit`) for the outbox to have delivered everything; how long it took.
fn wait_drained(outbox: &Queue<Answered>, limit: Duration) -> Duration {
    let start = Instant::now();
    while outbox.metrics().depth.load(Ordering::Relaxed) > 0 && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}
