//! What an encrypted portal costs beside an unencrypted one, in the same run: a load tool, not a
//! check of speed. It is `#[ignore]`d, asserts only that every message arrives once, and prints
//! its figures (`cargo test --release --test it encrypted_throughput -- --ignored --nocapture`).
//!
//! One real Synapse, one bridge in process (sync mode), Alice's real end-to-end-encrypting client
//! with two portals: an encrypted room and an unencrypted one.
//! - Latency: `LATENCY` messages one at a time, alternating between the rooms (after `WARM` not
//!   counted), each from the start of the client's send (Megolm encryption included for the
//!   encrypted room) to its MIMI message being durable in the bridge's store (the store's
//!   Matrix → log map, written in the append's batch, polled every 0.2 ms).
//! - Throughput: `BURST` messages sent at once (`IN_FLIGHT` concurrent sends) into one room, then
//!   the other; from the first send's start to the last message durable in the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::InitialStateEvent;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use mimi_bridge::store::Store;

use crate::bridge_synapse::{BOT, wait_for};
use crate::encrypted_portals::{E2eeClient, OWNER};

const WARM: usize = 10;
const LATENCY: usize = 200;
const BURST: usize = 300;
const IN_FLIGHT: usize = 8;

/// A private room inviting `invitee`; encrypted with `encryption` if given.
pub(crate) fn room(
    client: &E2eeClient,
    invitee: &str,
    encryption: Option<RoomEncryptionEventContent>,
) -> matrix_sdk::Room {
    client.runtime.block_on(async {
        let mut request = CreateRoom::new();
        request.preset = Some(RoomPreset::PrivateChat);
        request.initial_state =
            encryption.into_iter().map(|e| InitialStateEvent::with_empty_state_key(e).to_raw_any()).collect();
        let room = client.client().create_room(request).await.unwrap();
        room.invite_user_by_id(&OwnedUserId::try_from(invitee).unwrap()).await.unwrap();
        room
    })
}

/// Milliseconds from the start of a send until the message is durable in the MIMI log.
fn one(client: &E2eeClient, store: &Store, room: &matrix_sdk::Room, body: &str) -> f64 {
    let started = Instant::now();
    let event = client.send(room, RoomMessageEventContent::text_plain(body));
    while store.mapped(event.as_str()).unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(30), "{body} never reached the log");
        std::thread::sleep(Duration::from_micros(200));
    }
    started.elapsed().as_secs_f64() * 1000.0
}

/// Messages per second from the first send's start to the last message durable in the log.
fn burst(client: &E2eeClient, store: &Store, room: &matrix_sdk::Room, label: &str) -> f64 {
    let started = Instant::now();
    let events: Vec<OwnedEventId> = client.runtime.block_on(async {
        let mut events = Vec::new();
        let mut sending = tokio::task::JoinSet::new();
        for i in 0..BURST {
            if sending.len() >= IN_FLIGHT {
                events.push(sending.join_next().await.unwrap().unwrap());
            }
            let (room, body) = (room.clone(), format!("{label} burst {i}"));
            sending.spawn(async move {
                room.send(RoomMessageEventContent::text_plain(body)).await.unwrap().response.event_id
            });
        }
        while let Some(event) = sending.join_next().await {
            events.push(event.unwrap());
        }
        events
    });
    for event in &events {
        wait_for("the burst in the log", Duration::from_mins(2), || store.mapped(event.as_str()).unwrap().is_some());
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = BURST as f64 / started.elapsed().as_secs_f64();
    rate
}

pub(crate) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index]
}

#[test]
#[ignore = "a load tool: prints figures"]
fn encrypted_throughput_beside_an_unencrypted_portal() {
    let bridge = crate::encryption_device::bridge_with_registration(false);
    let (_synapse, bridge_runtime, running, alice) = crate::encrypted_portals::started(&bridge);
    let store = Arc::clone(running.hub.store());
    // The client's concurrent sends must not cross a room-key rotation (matrix-sdk 0.18 panics
    // when a session expires under one of them): a rotation every 10,000 messages.
    let mut encryption = RoomEncryptionEventContent::with_recommended_defaults();
    encryption.rotation_period_msgs = Some(10_000u32.into());
    let encrypted = room(&alice, BOT, Some(encryption));
    let clear = room(&alice, BOT, None);
    for room in [&encrypted, &clear] {
        let id = room.room_id().to_string();
        wait_for("the portal", Duration::from_secs(30), || store.portal_of(&id).unwrap().is_some());
    }
    alice.wait_for_member(&encrypted, OWNER);

    let (mut sealed, mut plain) = (Vec::new(), Vec::new());
    for i in 0..WARM + LATENCY {
        let e = one(&alice, &store, &encrypted, &format!("encrypted {i}"));
        let p = one(&alice, &store, &clear, &format!("clear {i}"));
        if i >= WARM {
            sealed.push(e);
            plain.push(p);
        }
    }
    let clear_rate = burst(&alice, &store, &clear, "clear");
    let encrypted_rate = burst(&alice, &store, &encrypted, "encrypted");
    report(
        (
            &format!("client send → durable MIMI append, {LATENCY} messages one at a time, interleaved"),
            &mut plain,
            &mut sealed,
        ),
        (
            &format!("burst of {BURST}, {IN_FLIGHT} sends in flight, first send → last durable"),
            clear_rate,
            encrypted_rate,
        ),
    );
    assert_eq!(running.appservice.metrics.refused_count("undecryptable"), 0);
    assert!(bridge_runtime.block_on(running.stop()));
}

/// Prints the latencies (ms) of the unencrypted portal (the baseline) and the encrypted one,
/// then their bursts (messages/s) with the ratio.
pub(crate) fn report(
    (latency, plain, sealed): (&str, &mut [f64], &mut [f64]),
    (burst, clear_rate, encrypted_rate): (&str, f64, f64),
) {
    println!("{latency} (ms):");
    for (label, samples) in [("unencrypted portal (baseline)", plain), ("encrypted portal", sealed)] {
        println!("  {label:32} p50 {:7.1}  p99 {:7.1}", percentile(samples, 0.5), percentile(samples, 0.99));
    }
    println!("{burst} (messages/s):");
    println!("  unencrypted portal (baseline)    {clear_rate:7.1}");
    println!("  encrypted portal                 {encrypted_rate:7.1}  ({:.2}×)", encrypted_rate / clear_rate);
}
