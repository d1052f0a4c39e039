//! `cargo bench --bench appservice`: the appservice transaction endpoint under load over loopback
//! HTTP — events per second and time-to-200 per transaction with durable (synced) intake, at 1, 10
//! and 100 events per transaction — beside a real Synapse's own client event-send rate measured
//! in the same run on the same machine.
//!
//! Bridge side: the appservice as the daemon builds it (synced RocksDB store in a temporary
//! directory, `Intake`, `Appservice`, `mimi_bridge::http::serve` with `daemon::MAX_BODY`), on a
//! two-worker tokio runtime, bound to 127.0.0.1. A background task drains the intake channel and
//! counts. Clients are blocking `ureq` agents (HTTP/1.1 keep-alive), one thread per connection;
//! each PUTs `/_matrix/app/v1/transactions/{txnId}` with distinct transaction IDs, every
//! transaction carrying N `m.room.message` events (unique event IDs, ~200-byte bodies, spread over
//! 16 rooms). Bodies are serialized before the clock starts. Time-to-200 runs from the start of the
//! request to the end of the response body; a 200 means the events and the transaction ID are
//! synced. Each scenario gets a fresh store. With 8 connections the store's group commit shares
//! syncs between concurrent transactions; with 1 connection (Synapse pushes one transaction at a
//! time per appservice) every transaction waits for its own sync.
//!
//! Baseline: a real Synapse (`scripts/synapse`, `SQLite`, rate limits off) in a temporary
//! directory on a free loopback port: one user PUTs
//! `/_matrix/client/v3/rooms/{room}/send/m.room.message/{txnId}` sequentially into one room, then
//! 8 senders into 8 rooms concurrently. Stopped at the end, also on panic (a guard's `Drop`, and
//! the script's watcher if this process is killed). `MIMI_BENCH_NO_BASELINE=1` skips it.
//!
//! Bounded: fixed transaction and send counts; `--quick` (or `MIMI_BENCH_QUICK=1`) uses fewer.

#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rates and times are printed, not computed on"
)]

#[path = "../tests/it/ports.rs"]
mod ports;
#[path = "support/mod.rs"]
mod support;
#[path = "support/synapse.rs"]
mod synapse;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mimi_bridge::appservice::ghost::GhostTemplate;
use mimi_bridge::appservice::homeserver::HomeserverClient;
use mimi_bridge::appservice::intake::Intake;
use mimi_bridge::appservice::service::{Appservice, Settings};
use mimi_bridge::http::metrics::Metrics;
use mimi_bridge::store::Store;
use serde_json::{Value, json};
use sha2::Digest as _;
use support::rate;
use synapse::{Synapse, agent};

/// The allocator the `mimi-bridge` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HS_TOKEN: &str = "hs-token-0123456789";
const AS_TOKEN: &str = "as-token-9876543210";
/// Rooms the pushed events are spread over.
const ROOMS: u64 = 16;
/// Concurrent client connections (and Synapse senders) in the concurrent scenarios.
const CONNECTIONS: usize = 8;
/// Events per transaction.
const SIZES: [usize; 3] = [1, 10, 100];
/// Unmeasured transactions (or sends) per connection before the clock starts.
const WARMUP: usize = 5;

/// Every event ID in the run is distinct.
static NEXT_EVENT: AtomicU64 = AtomicU64::new(0);

/// CPU seconds (user + system) of a process (`self` or a pid), from /proc (Linux).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The 1, 5 and 15 minute load averages, from /proc (Linux).
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Percent-encodes one path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").expect("write to a String");
        }
    }
    out
}

/// A ~200-byte chat line.
fn text(i: u64) -> String {
    let mut line = format!("message {i}: ");
    let filler = "the quick brown fox jumps over the lazy dog while the bridge keeps every event durable; ";
    while line.len() < 200 {
        line.push_str(filler);
    }
    line.truncate(200);
    line
}

/// An `m.room.message` as Synapse pushes it to an appservice, with a fresh room-version-4-style
/// event ID.
fn event() -> Value {
    let i = NEXT_EVENT.fetch_add(1, Ordering::Relaxed);
    let hash = sha2::Sha256::digest(i.to_be_bytes());
    let event_id = format!("${}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash));
    json!({
        "type": "m.room.message",
        "room_id": format!("!room{:02}qwertyuiopas:hs.test", i % ROOMS),
        "sender": format!("@user{}:hs.test", i % 37),
        "content": {"msgtype": "m.text", "body": text(i)},
        "origin_server_ts": 1_700_000_000_000u64 + i,
        "unsigned": {"age": 42},
        "event_id": event_id,
    })
}

/// What one measured scenario gave.
struct Run {
    requests: usize,
    events: usize,
    seconds: f64,
    /// Per-request time-to-200, sorted.
    latencies: Vec<Duration>,
    /// Cores the measured process kept busy on average.
    cores_busy: f64,
}

impl Run {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The `q` quantile (nearest rank) in milliseconds.
    fn ms(&self, q: f64) -> f64 {
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1e3
    }

    fn max_ms(&self) -> f64 {
        self.latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// Runs `connections` client threads, each doing `warmup` unmeasured then `per_connection`
/// measured requests with `send(connection, agent, i)` (which returns once it has a 200); `cpu`
/// names the process whose CPU is measured.
fn drive(
    connections: usize,
    per_connection: usize,
    events_per_request: usize,
    cpu: &str,
    send: impl Fn(usize, &ureq::Agent, usize) + Sync,
) -> Run {
    let barrier = Barrier::new(connections + 1);
    let (latencies, cpu_used, seconds) = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..connections)
            .map(|c| {
                let (barrier, send) = (&barrier, &send);
                scope.spawn(move || {
                    let agent = agent();
                    for i in 0..WARMUP {
                        send(c, &agent, per_connection + i);
                    }
                    barrier.wait();
                    let mut latencies = Vec::with_capacity(per_connection);
                    for i in 0..per_connection {
                        let start = Instant::now();
                        send(c, &agent, i);
                        latencies.push(start.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        barrier.wait();
        let (cpu_before, start) = (cpu_seconds(cpu), Instant::now());
        let latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().expect("client thread")).collect();
        let seconds = start.elapsed().as_secs_f64();
        (latencies, cpu_seconds(cpu) - cpu_before, seconds)
    });
    let mut latencies = latencies;
    latencies.sort_unstable();
    let requests = connections * per_connection;
    Run { requests, events: requests * events_per_request, seconds, latencies, cores_busy: cpu_used / seconds }
}

/// The appservice on 127.0.0.1, as the daemon serves it.
struct Bridge {
    base: String,
    metrics: Arc<Metrics>,
    /// Intake entries the drain task received.
    drained: Arc<AtomicU64>,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn bridge() -> Bridge {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // Unbounded for this measurement of intake alone: nothing bridges (and deletes) the entries.
    let (intake, mut reader) = Intake::open(store, 1 << 40).expect("intake");
    let settings = Settings {
        hs_token: HS_TOKEN.into(),
        legacy_access_token_query: false,
        domain: "hs.test".into(),
        bot_localpart: "mimibot".into(),
        ghosts: GhostTemplate::parse("mimi_{server}_{localpart}", "hs.test").expect("ghosts"),
        more_content_extensions: false,
        device_owner: None,
    };
    // Nothing listens there: the transaction endpoint never calls the homeserver.
    let homeserver = Arc::new(HomeserverClient::new("http://127.0.0.1:9", AS_TOKEN, "mimi").expect("client"));
    let metrics = Arc::new(Metrics::default());
    let app = Arc::new(Appservice::new(settings, intake, Arc::clone(&metrics), homeserver));
    let drained = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&drained);
    runtime.spawn(async move {
        while let Ok(page) = reader.next_page(1024).await {
            counter.fetch_add(page.len() as u64, Ordering::Relaxed);
        }
    });
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    runtime.spawn(mimi_bridge::http::serve(listener, app, mimi_bridge::daemon::MAX_BODY, watch));
    Bridge { base, metrics, drained, _shutdown: shutdown, _runtime: runtime, _dir: dir }
}

/// `connections` clients each PUT `per_connection` transactions of `n` events to a fresh bridge.
fn bridge_run(connections: usize, per_connection: usize, n: usize) -> Run {
    let bridge = bridge();
    // Serialized before the clock starts: per connection, the measured then the warm-up bodies.
    let bodies: Vec<Vec<Vec<u8>>> = (0..connections)
        .map(|_| {
            (0..per_connection + WARMUP)
                .map(|_| json!({"events": (0..n).map(|_| event()).collect::<Vec<_>>()}).to_string().into_bytes())
                .collect()
        })
        .collect();
    let auth = format!("Bearer {HS_TOKEN}");
    let run = drive(connections, per_connection, n, "self", |c, agent, i| {
        let url = format!("{}/_matrix/app/v1/transactions/bench-{c}-{i}", bridge.base);
        let mut response = agent
            .put(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(bodies[c][i].as_slice())
            .expect("PUT transaction");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("response body");
        assert_eq!(status, 200, "PUT {url}: {body}");
    });
    // Every event was new and reached the bridge's queue.
    let expected = (connections * (per_connection + WARMUP) * n) as u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while bridge.drained.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(bridge.metrics.events_in.load(Ordering::Relaxed), expected, "events taken in");
    assert_eq!(bridge.drained.load(Ordering::Relaxed), expected, "events drained");
    run
}

/// Context for the bridge rows: one keep-alive connection's `GET /_matrix/mau/live` rate (the
/// HTTP floor, nothing stored) and a raw RocksDB synced one-record write rate (the sync floor).
fn floors(window: Duration) -> (f64, f64) {
    let bridge = bridge();
    let agent = agent();
    let url = format!("{}/_matrix/mau/live", bridge.base);
    let http = rate(window, || {
        let mut response = agent.get(&url).call().expect("GET live");
        assert_eq!(response.status().as_u16(), 200);
        response.body_mut().read_to_string().expect("body");
    });
    let dir = tempfile::tempdir().expect("dir");
    let db = rocksdb::DB::open_default(dir.path()).expect("rocksdb");
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    let value = vec![b'x'; 500];
    let mut key = 0u64;
    let sync = rate(window, || {
        key += 1;
        db.put_opt(key.to_be_bytes(), &value, &options).expect("put");
    });
    (http, sync)
}

/// The Synapse baseline: (sequential sends, 8 concurrent senders).
fn synapse_runs(sequential: usize, per_sender: usize) -> (Run, Run) {
    let started = Instant::now();
    let synapse = Synapse::start(&[]);
    synapse.register("bench", "bench-password");
    let token = synapse.login("bench", "bench-password");
    let rooms: Vec<String> = (0..CONNECTIONS).map(|r| synapse.create_room(&token, &format!("bench {r}"))).collect();
    eprintln!("synapse: started, user and {} rooms made in {:.1}s", rooms.len(), started.elapsed().as_secs_f64());
    let one = send_run(&synapse, &token, &rooms[..1], sequential);
    let many = send_run(&synapse, &token, &rooms, per_sender);
    drop(synapse);
    (one, many)
}

fn row(side: &str, n: usize, connections: usize, run: &Run) {
    println!(
        "{side:<8} {n:>10} {connections:>6} {:>7} {:>8} {:>10.0} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>6.2}",
        run.requests,
        run.events,
        run.events_per_second(),
        run.requests_per_second(),
        run.ms(0.50),
        run.ms(0.99),
        run.max_ms(),
        run.cores_busy,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("MIMI_BENCH_QUICK").is_some();
    let baseline = std::env::var_os("MIMI_BENCH_NO_BASELINE").is_none();
    // (transactions per connection with 8 connections, with 1 connection) for 1, 10, 100 events
    // per transaction; Synapse sequential sends and sends per concurrent sender; floor window.
    let (concurrent, single, sequential, per_sender, window): ([usize; 3], [usize; 3], usize, usize, Duration) =
        if quick {
            ([250, 50, 10], [200, 50, 10], 50, 10, Duration::from_millis(300))
        } else {
            ([5000, 1000, 200], [5000, 2000, 300], 500, 100, Duration::from_secs(1))
        };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let command = if args.is_empty() {
        "cargo bench --bench appservice".to_owned()
    } else {
        format!("cargo bench --bench appservice -- {}", args.join(" "))
    };
    println!("mimi-bridge appservice load — {cores} cores; command: {command}");
    println!(
        "bridge: PUT /_matrix/app/v1/transactions over loopback HTTP/1.1 keep-alive (ureq, one thread per \
         connection), 200 only once synced in RocksDB (SyncPolicy::Sync, fresh store per row, tokio 2 workers); \
         events ~{} bytes of JSON with 200-byte bodies over {ROOMS} rooms",
        event().to_string().len()
    );
    let load_before = load_average();
    let (http, sync) = floors(window);
    println!(
        "floors: GET /_matrix/mau/live on one connection {http:.0} req/s; raw RocksDB synced 1-record put {sync:.0} /s"
    );

    let mut results = Vec::new();
    for (connections, counts) in [(CONNECTIONS, concurrent), (1, single)] {
        for (n, per_connection) in SIZES.into_iter().zip(counts) {
            results.push((n, connections, bridge_run(connections, per_connection, n)));
        }
    }
    let synapse = baseline.then(|| synapse_runs(sequential, per_sender));
    let load_after = load_average();

    println!();
    println!(
        "{:<8} {:>10} {:>6} {:>7} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "side", "events/txn", "conns", "reqs", "events", "events/s", "reqs/s", "p50 ms", "p99 ms", "max ms", "cores"
    );
    for (n, connections, run) in &results {
        row("bridge", *n, *connections, run);
    }
    if let Some((one, many)) = &synapse {
        row("synapse", 1, 1, one);
        row("synapse", 1, CONNECTIONS, many);
    }
    println!(
        "(reqs: measured requests, after {WARMUP} unmeasured per connection; time-to-200 per request; cores: CPU \
         of this process — clients and server — for bridge rows, of the Synapse process for synapse rows)"
    );
    println!(
        "machine load average (1, 5, 15 min; other work shares these cores): before {load_before}, after {load_after}"
    );

    let Some((one, many)) = &synapse else {
        println!("\nSynapse baseline skipped (MIMI_BENCH_NO_BASELINE)");
        return;
    };
    println!();
    println!("ratios: bridge intake events/s ÷ Synapse client sends/s at the same concurrency");
    for (n, connections, run) in &results {
        let (base, label) = if *connections == 1 { (one, "sequential") } else { (many, "8 concurrent") };
        println!(
            "  {n:>3} events/txn, {connections} conn: {:>9.0} ÷ {:>6.1} ({label}) = {:>7.1}×",
            run.events_per_second(),
            base.events_per_second(),
            run.events_per_second() / base.events_per_second()
        );
    }
}

/// `senders` threads, each with its own connection and room, send `per_sender` messages
/// sequentially (after a warm-up).
fn send_run(synapse: &Synapse, token: &str, rooms: &[String], per_sender: usize) -> Run {
    let pid = synapse.pid();
    drive(rooms.len(), per_sender, 1, &pid, |c, agent, i| {
        let url = format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/bench-{}-{c}-{i}",
            synapse.base,
            encode(&rooms[c]),
            rooms.len()
        );
        let body = json!({"msgtype": "m.text", "body": text(i as u64)});
        let response = Synapse::call(agent, true, &url, Some(token), &body);
        assert!(response["event_id"].as_str().is_some_and(|e| e.starts_with('$')), "{response}");
    })
}
