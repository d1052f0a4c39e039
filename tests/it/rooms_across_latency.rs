//! The latency two bridges add to a message between homeservers, beside Synapse's own delivery
//! between two local users measured in the same run. A load tool, not a check of speed: it is
//! `#[ignore]`d, asserts only that every message arrives once, in order, and prints its figures
//! (`cargo test --release --test it rooms_across_latency -- --ignored --nocapture`).
//!
//! Alice (hs.test) sends `MESSAGES` messages one at a time into the MIMI room hubbed by her
//! bridge; Bob's client (hs-b.test) waits for each with a long-polling `/sync` (since the
//! previous `next_batch`). Each message's time from the start of Alice's send request to the
//! answer of Bob's `/sync` that carries it is split at three stamps on the one machine clock:
//! - the event's `origin_server_ts` on hs-a (Synapse stamps it while handling the send);
//! - its arrival at bridge A: the push-delay histogram bridge A keeps (from `origin_server_ts`
//!   to the start of the transaction's handler, the body read), read before and after the
//!   message — it is the only event pushed to bridge A meanwhile;
//! - the ghost's event's `origin_server_ts` on hs-b (Synapse stamps it while handling bridge
//!   B's send, after reading and authenticating the request).
//!
//! So the bridges' part runs from bridge A's transaction handler to hs-b stamping the ghost's
//! event: intake (synced), translation, MLS encryption, the hub's append with its notify
//! (synced), the notify over mutual TLS, bridge B's record (synced), decryption, translation,
//! its homeserver queue (synced) and its send up to Synapse's stamp. The homeservers' part is
//! the rest: hs-a taking the send, hs-a pushing the transaction, and hs-b from its stamp to
//! Bob's `/sync` answer. Server stamps are whole milliseconds, so each part is ±1 ms.
//! Within the bridges' part, the bridges' own figures, read the same way (each saw only this
//! message meanwhile): bridge A's worker (`append_seconds`: translate, encrypt, append with its
//! notify, durable), bridge A's `notify` request to B (`peer_seconds_out`: answered once B's
//! record is durable) and bridge B's hand-off (`handoff_seconds`: its record's event durable →
//! the ghost's send starting); what is left is A's intake and the wake-ups between A's steps,
//! and B's send up to hs-b's stamp (less the moment B's hand-off overlaps A's awaited answer).
//! The baseline, interleaved message by message: Carol sends to Dave on hs-a, Dave's client
//! waits the same way.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::bridge_pair::{Side, side};
use crate::rooms_across::ghost;
use crate::synapse::{Synapse, encode};

const MESSAGES: usize = 200;
const WARM_UP: usize = 10;

/// Milliseconds since the Unix epoch, with the microseconds: the clock Synapse stamps with.
fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// A message as the receiving client saw it: its number, when `/sync` answered with it, and
/// its `origin_server_ts` on the receiver's homeserver.
struct Seen {
    n: usize,
    at: f64,
    stamped: f64,
}

/// `token`'s client long-polls `/sync` for `sender`'s messages in `room` (bodies `m{n}`) and
/// reports each, until the message `stop`.
fn watch(synapse: &Synapse, token: &str, room: &str, sender: &str, seen: &Sender<Seen>) {
    let filter = json!({
        "room": {"rooms": [room], "timeline": {"types": ["m.room.message"], "limit": 50},
                 "state": {"lazy_load_members": true}, "ephemeral": {"not_types": ["*"]},
                 "account_data": {"not_types": ["*"]}},
        "presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}
    });
    let filter = encode(&filter.to_string());
    let first = synapse.get(Some(token), &format!("/_matrix/client/v3/sync?timeout=0&filter={filter}"));
    let mut since = first["next_batch"].as_str().unwrap().to_owned();
    loop {
        let path = format!("/_matrix/client/v3/sync?timeout=30000&filter={filter}&since={}", encode(&since));
        let answer = synapse.get(Some(token), &path);
        let at = now_ms();
        answer["next_batch"].as_str().unwrap().clone_into(&mut since);
        let events = answer["rooms"]["join"][room]["timeline"]["events"].as_array().cloned().unwrap_or_default();
        for event in events.iter().filter(|e| e["sender"] == sender) {
            let body = event["content"]["body"].as_str().unwrap_or_default();
            if body == "stop" {
                return;
            }
            let n = body.strip_prefix('m').and_then(|n| n.parse().ok()).unwrap();
            let stamped = event["origin_server_ts"].as_f64().unwrap();
            seen.send(Seen { n, at, stamped }).unwrap();
        }
    }
}

/// One direction of sending: `token` sends into `room`; `seen` reports what the watcher saw.
struct Sending<'a> {
    synapse: &'a Synapse,
    token: String,
    room: String,
    seen: Receiver<Seen>,
}

/// One message's stamps (ms since the epoch).
struct Trip {
    sent: f64,
    stamped_here: f64,
    stamped_there: f64,
    seen: f64,
}

impl Sending<'_> {
    /// Sends message `n` and waits until the watcher saw it.
    fn trip(&self, n: usize) -> Trip {
        let sent = now_ms();
        let event_id = self.synapse.send_text(&self.token, &self.room, &format!("m{n}"));
        let seen = self.seen.recv_timeout(Duration::from_mins(1)).expect("the message arrives");
        assert_eq!(seen.n, n, "messages arrive once, in order");
        let path = format!("/_matrix/client/v3/rooms/{}/event/{}", encode(&self.room), encode(&event_id));
        let stamped_here = self.synapse.get(Some(&self.token), &path)["origin_server_ts"].as_f64().unwrap();
        Trip { sent, stamped_here, stamped_there: seen.stamped, seen: seen.at }
    }

    fn stop(&self) {
        self.synapse.send_text(&self.token, &self.room, "stop");
    }
}

/// Figures from a bridge's metrics, each (total in ms, count): `(sum series, count series)`.
#[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a count")]
fn figures<const N: usize>(side: &Side, series: [(&str, &str); N]) -> [(f64, u64); N] {
    let text = side.running.appservice.metrics.render();
    let value = |name: &str| -> f64 {
        let line = text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')));
        line.map_or(0.0, |v| v.trim().parse().unwrap())
    };
    series.map(|(sum, count)| (value(sum) * 1000.0, value(count) as u64))
}

/// What splits the bridges' part, in order: bridge A's push delay, bridge A's worker (translate,
/// encrypt, append with its notify, durable), bridge A's notify to B (answered once B's record
/// is durable), bridge B's hand-off (its record's event durable → the ghost's send starting).
fn bridge_figures(a: &Side, b: &Side) -> [(f64, u64); 4] {
    let [push, append, notify] = figures(
        a,
        [
            ("mimi_bridge_push_delay_seconds_sum", "mimi_bridge_push_delay_seconds_count"),
            ("mimi_bridge_append_seconds_sum", "mimi_bridge_append_seconds_count"),
            (
                "mimi_bridge_peer_seconds_out_sum{peer=\"mimi.hs-b.test\"}",
                "mimi_bridge_peer_requests_out_total{peer=\"mimi.hs-b.test\"}",
            ),
        ],
    );
    let [handoff] = figures(b, [("mimi_bridge_handoff_seconds_sum", "mimi_bridge_handoff_seconds_count")]);
    [push, append, notify, handoff]
}

/// p50 and p99 of `values` (ms).
fn percentiles(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: usize| sorted[(sorted.len() - 1) * p / 100];
    (at(50), at(99))
}

#[test]
#[ignore = "a load tool that prints figures: two Synapses and two bridges, about a minute"]
fn rooms_across_latency() {
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(2);
    let a = side("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 1));
    let b = side("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports));
    let ([alice_token, bob_token], [room_a, room_b], _) = crate::rooms_across::alice_invites_bob(&a, &b);
    // The baseline: two users of hs-a in a room the bridge has no part in.
    for user in ["carol", "dave"] {
        a.synapse.register(user, "password");
    }
    let (carol_token, dave_token) = (a.synapse.login("carol", "password"), a.synapse.login("dave", "password"));
    let local_room =
        a.synapse.create_room(&carol_token, &json!({"preset": "private_chat", "invite": ["@dave:hs.test"]}));
    a.synapse.join(&dave_token, &local_room);

    let (across_seen, across_rx) = channel();
    let (local_seen, local_rx) = channel();
    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    let (mut local, mut across, mut splits) = (Vec::new(), Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        scope.spawn(|| watch(&b.synapse, &bob_token, &room_b, &alice_at_b, &across_seen));
        scope.spawn(|| watch(&a.synapse, &dave_token, &local_room, "@carol:hs.test", &local_seen));
        let across_sending =
            Sending { synapse: &a.synapse, token: alice_token.clone(), room: room_a.clone(), seen: across_rx };
        let local_sending =
            Sending { synapse: &a.synapse, token: carol_token.clone(), room: local_room.clone(), seen: local_rx };
        for n in 0..WARM_UP + MESSAGES {
            let baseline = local_sending.trip(n);
            let before = bridge_figures(&a, &b);
            let trip = across_sending.trip(n);
            let after = bridge_figures(&a, &b);
            if n >= WARM_UP {
                // Each histogram saw exactly this message meanwhile, or its row goes without it.
                let delta = |k: usize| (after[k].1 - before[k].1 == 1).then(|| after[k].0 - before[k].0);
                assert!(delta(0).is_some(), "one event pushed to bridge A per message");
                local.push(baseline);
                across.push(trip);
                splits.push([0, 1, 2, 3].map(|k| delta(k).unwrap_or(f64::NAN)));
            }
        }
        across_sending.stop();
        local_sending.stop();
    });

    let column =
        |f: &dyn Fn(usize) -> f64| percentiles(&(0..MESSAGES).map(f).filter(|v| !v.is_nan()).collect::<Vec<_>>());
    let bridges_part = |i: usize| across[i].stamped_there - across[i].stamped_here - splits[i][0];
    let baseline = column(&|i| local[i].seen - local[i].sent);
    let total = column(&|i| across[i].seen - across[i].sent);
    let bridges = column(&bridges_part);
    let rows = [
        ("Synapse alone: Carol's send → Dave's /sync (hs-a)", baseline),
        ("across: Alice's send → Bob's /sync (total)", total),
        ("  hs-a: send request → event stamped", column(&|i| across[i].stamped_here - across[i].sent)),
        ("  hs-a: stamped → transaction at bridge A (push delay)", column(&|i| splits[i][0])),
        ("  bridges: transaction at A → ghost's event stamped on hs-b", bridges),
        ("    bridge A's worker: translate, encrypt, append + notify", column(&|i| splits[i][1])),
        ("    A's notify to B over mutual TLS, answered once B recorded it", column(&|i| splits[i][2])),
        ("    bridge B: its record's event durable → ghost's send", column(&|i| splits[i][3])),
        (
            "    the rest (A's intake and outbox wake-ups, B's send to hs-b)",
            column(&|i| bridges_part(i) - splits[i][1] - splits[i][2] - splits[i][3]),
        ),
        ("  hs-b: stamped → Bob's /sync answers", column(&|i| across[i].seen - across[i].stamped_there)),
        (
            "  homeservers' part (the three hs-a/hs-b rows)",
            column(&|i| {
                let t = &across[i];
                (t.stamped_here - t.sent) + splits[i][0] + (t.seen - t.stamped_there)
            }),
        ),
    ];
    println!("\n{MESSAGES} messages one at a time ({WARM_UP} before them not counted), loopback, ms:");
    println!("{:<66} {:>8} {:>8}", "", "p50", "p99");
    for (label, (p50, p99)) in rows {
        println!("{label:<66} {p50:>8.2} {p99:>8.2}");
    }
    println!(
        "ratios to Synapse alone (p50, p99): total {:.2}, {:.2}; bridges' part {:.2}, {:.2}",
        total.0 / baseline.0,
        total.1 / baseline.1,
        bridges.0 / baseline.0,
        bridges.1 / baseline.1
    );
}
