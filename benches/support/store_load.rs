//! `cargo bench --bench daemon -- --store`: the store under the intake flood's write pattern,
//! with the configured memory budget beside the options of earlier builds, each in its own
//! process so that RSS is its own: what the bridge writes per Matrix event (the transaction
//! record, the intake entry and its Matrix ID; then, bridged, the intake entry deleted, the log
//! event with its ~700 bytes of ciphertext, the ID mappings both ways, the message record and the
//! plaintext), 100 events per transaction, synced, 8 transactions in flight. Then the process
//! stops as a crash would (the store is not closed), and a new process opens the directory: the
//! restart time, including WAL replay.

use std::path::Path;
use std::time::Instant;

use mimi_bridge::store::batch::EventRecord;
use mimi_bridge::store::{Batch, RoomSeq, ShortRoomId, Store, StoreOptions};

const ROOMS: u64 = 100;
const PER_TXN: u64 = 100;

fn options(profile: &str, memory_mb: u32) -> StoreOptions {
    StoreOptions { memory_mb, baseline: profile == "baseline", ..StoreOptions::default() }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status.lines().find(|l| l.starts_with(field)).expect("field");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("kB")
}

/// Bytes the directory takes on disk (allocated blocks).
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| {
                let meta = e.metadata().expect("metadata");
                if meta.is_dir() { disk_bytes(&e.path()) } else { meta.blocks() * 512 }
            })
            .sum()
    })
}

/// Base64-looking bytes that do not compress, as ciphertext does not.
fn noise(state: &mut u64, len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            char::from(ALPHABET[usize::try_from(*state % 64).expect("small")])
        })
        .collect()
}

/// Child: writes `events` and prints `rss_peak_kib rss_end_kib disk_bytes seconds`, then exits
/// without closing the store.
pub(crate) fn load(dir: &Path, profile: &str, memory_mb: u32, events: u64) -> ! {
    let store = Store::open_with(dir, options(profile, memory_mb)).expect("store");
    let mut batch = Batch::new();
    let rooms: Vec<ShortRoomId> = (0..ROOMS)
        .map(|r| {
            let short = store.allocate_short_room();
            batch.add_room(short, &format!("!room{r}:mimi.hs.test"));
            short
        })
        .collect();
    store.write(batch).expect("rooms");
    let mut seqs = vec![0u64; usize::try_from(ROOMS).expect("small")];
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for txn in 0..events / PER_TXN {
        let mut intake = Batch::new();
        intake.txn_seen(format!("txn-{txn}").as_bytes(), txn);
        let mut bridged = Batch::new();
        for e in 0..PER_TXN {
            let seq = txn * PER_TXN + e;
            let matrix_id = format!("$flood-{seq}-{}", noise(&mut rng, 20));
            let json = format!(
                r#"{{"type":"m.room.message","sender":"@alice:hs.test","room_id":"!portal{}:hs.test","event_id":"{matrix_id}","origin_server_ts":1,"content":{{"msgtype":"m.text","body":"flood {seq}: a message of some sixty bytes, as people write"}}}}"#,
                seq % ROOMS
            );
            intake.intake(seq, Some(json.as_bytes()));
            intake.matrix_taken_in(&matrix_id, seq);
            let room = usize::try_from(seq % ROOMS).expect("small");
            let event_id = format!("${}", noise(&mut rng, 43));
            let pdu = format!(
                r#"{{"auth_events":[],"content":{{"algorithm":"m.mls.v1","ciphertext":"{}"}},"depth":{},"hashes":{{"sha256":"{}"}},"origin_server_ts":1,"prev_events":[],"room_id":"!room{room}:mimi.hs.test","sender":"@alice:mimi.hs.test","signatures":{{"mimi.hs.test":{{"ed25519:a_bench":"{}"}}}},"type":"m.room.encrypted"}}"#,
                noise(&mut rng, 700),
                seqs[room],
                noise(&mut rng, 43),
                noise(&mut rng, 86),
            );
            let pos = RoomSeq { room: rooms[room], seq: seqs[room] };
            seqs[room] += 1;
            bridged.intake(seq, None);
            bridged.append_event(&EventRecord {
                pos,
                event_id: &event_id,
                bytes: pdu.as_bytes(),
                state: None,
                lpdu_id: None,
            });
            bridged.map_event(&matrix_id, &event_id);
            let message_id: [u8; 32] =
                std::array::from_fn(|i| noise(&mut rng, 1).as_bytes()[0] ^ u8::try_from(i).expect("small"));
            bridged.map_message(&matrix_id, &message_id, br#"{"kind":"text","sender":"@alice:hs.test"}"#);
            bridged.put_plaintext(&event_id, noise(&mut rng, 110).as_bytes());
        }
        in_flight.push_back(store.submit(intake));
        in_flight.push_back(store.submit(bridged));
        while in_flight.len() > 16 {
            in_flight.pop_front().expect("ticket").blocking_wait().expect("durable");
        }
    }
    for ticket in in_flight {
        ticket.blocking_wait().expect("durable");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{} {} {} {seconds}", status_kib("VmHWM:"), status_kib("VmRSS:"), disk_bytes(dir));
    // As a crash would: nothing flushed or closed.
    std::process::exit(0);
}

/// Child: opens the directory and prints `seconds rss_kib disk_bytes`.
pub(crate) fn reopen(dir: &Path, profile: &str, memory_mb: u32) {
    let started = Instant::now();
    let store = Store::open_with(dir, options(profile, memory_mb)).expect("reopen");
    let seconds = started.elapsed().as_secs_f64();
    println!("{seconds} {} {}", status_kib("VmRSS:"), disk_bytes(dir));
    drop(store);
}

fn child(args: &[&str]) -> Vec<f64> {
    let exe = std::env::current_exe().expect("exe");
    let out = std::process::Command::new(exe).args(args).output().expect("child");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().expect("figures");
    line.split_whitespace().map(|v| v.parse().expect("number")).collect()
}

/// Parent: both profiles, one after the other, then the table.
pub(crate) fn compare(events: u64, memory_mb: u32) {
    let mut rows = Vec::new();
    for profile in ["baseline", "tuned"] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("data");
        let (p, mb, n) = (path.to_str().expect("utf-8"), memory_mb.to_string(), events.to_string());
        let loaded = child(&["--store-load", p, profile, &mb, &n]);
        let reopened = child(&["--store-reopen", p, profile, &mb]);
        println!(
            "  {profile}: {events} events in {:.0} s ({:.0}/s); RSS peak {} MiB, at the end {} MiB; data {} MiB on disk; \
             restart (open after a crash-like stop) {:.2} s, RSS after it {} MiB, data after it {} MiB",
            loaded[3],
            events as f64 / loaded[3],
            loaded[0] as u64 / 1024,
            loaded[1] as u64 / 1024,
            loaded[2] as u64 >> 20,
            reopened[0],
            reopened[1] as u64 / 1024,
            reopened[2] as u64 >> 20,
        );
        rows.push((loaded, reopened));
    }
    let (old, new) = (&rows[0], &rows[1]);
    println!(
        "store under the flood's writes, {events} events, database.memory_mb {memory_mb} vs the previous options \
         (ratio tuned/previous): peak RSS {:.2}, RSS at the end {:.2}, data on disk {:.2}, restart time {:.2}, rate {:.2}",
        new.0[0] / old.0[0],
        new.0[1] / old.0[1],
        new.0[2] / old.0[2],
        new.1[0] / old.1[0],
        old.0[3] / new.0[3],
    );
}
