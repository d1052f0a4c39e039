//! Gaps in a follower's record, with two providers over mutual TLS and the hub's real outbox:
//! a follower that missed messages is healed from the hub's log (its `notify` answer names its
//! epoch; the hub sends what it owed it since, then the refused request again), and a provider
//! whose users all left goes on from a later Welcome for one of them, also when that Welcome is
//! for a user who was removed before. In each, the follower decrypts exactly what it was owed,
//! in the hub's order, and its record verifies.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::event::UnverifiedPdu;
use mimi_bridge::event::room_version::MIMI_HUB_1;
use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::hub::{Admission, Backfill, Hub, RoomPreset, member_event};
use mimi_bridge::mimi::protocol::{FanoutExtra, FanoutMessage};
use mimi_bridge::mls::events::FanoutContent;
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::outbox::Outbox;
use mimi_bridge::provider::peers::{Peers, Requester};
use mimi_bridge::provider::requests::OutboxRequests;

use crate::bridge_synapse::wait_for;
use crate::provider_peers::{Pair, grant, pair, user_with_packages};
use crate::rooms_across_refusals::mimi_text;

const ALICE: &str = "@alice:a.test";
const BOB: &str = "@bob:b.test";
const CAROL: &str = "@carol:b.test";

/// A running outbox, and the sender that stops it when dropped.
pub(crate) type Running = (Arc<Outbox>, tokio::sync::watch::Sender<bool>);

/// a.test's outbox, delivering to b.test.
pub(crate) fn start_outbox(pair: &Pair) -> Running {
    let leaf = pair.ca.issue("a.test", "a.test-outbox");
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&pair.ca.ca_file())).unwrap();
    let client = PeerClient::new(&tls, "a.test", BTreeMap::from([("b.test".to_owned(), pair.b.address)]))
        .unwrap()
        .with_metrics(Arc::clone(&pair.a.provider.metrics));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let hub = &pair.a.provider.hub;
    let outbox = mimi_bridge::provider::outbox::open(
        Arc::clone(hub.store()),
        Arc::new(Peers::new(client)),
        Arc::clone(hub),
        Arc::default(),
        stopped,
    )
    .unwrap();
    hub.set_outbox(Arc::new(OutboxRequests(Arc::clone(&outbox))));
    pair.runtime.block_on(outbox.resume()).unwrap();
    (outbox, stop)
}

/// a.test's outbox running, and a MIMI room at a.test with Alice's client and Bob's, joined at
/// b.test from its Welcome (Bob given `packages` one-time KeyPackages).
pub(crate) fn room_with_bob(pair: &Pair, packages: usize) -> (String, Running) {
    user_with_packages(&pair.a, "alice", 1);
    user_with_packages(&pair.b, "bob", packages);
    let outbox = start_outbox(pair);
    let room = open_room(&pair.a.provider.hub);
    add(pair, &room, BOB, 2);
    let hub_b = &pair.b.provider.hub;
    wait_for("Bob's client joined", Duration::from_mins(1), || hub_b.in_group(&room, BOB).unwrap_or(false));
    (room, outbox)
}

/// Dave of a.test joins the room: a commit of Alice's client adding his.
fn admit_dave(hub: &Hub, room: &str, ts: i64) {
    hub.directories().register_device("@dave:a.test", "D1").unwrap();
    hub.admit_local_user(&Admission { room_id: room, user_id: "@dave:a.test", device_id: "D1", sponsor: ALICE, ts })
        .unwrap();
}

/// A MIMI room at a.test with Alice's client in it.
pub(crate) fn open_room(hub: &Hub) -> String {
    let room = hub.new_room_id().unwrap();
    let preset = RoomPreset { encrypted: true, version: &MIMI_HUB_1, ..RoomPreset::default() };
    hub.open_room_blocking(&room, ALICE, &preset, 1).unwrap();
    room
}

/// Adds a client of `user` (of b.test, whose KeyPackage a.test claims over mutual TLS) to the
/// room, committed by Alice's client.
pub(crate) fn add(pair: &Pair, room: &str, user: &str, ts: i64) {
    let (alice_uri, uri) = ("mimi://a.test/u/alice", mimi_bridge::translate::uri::user_uri(user).unwrap());
    grant(&pair.b, alice_uri, &uri);
    let requester = Requester::ephemeral(alice_uri).unwrap();
    let claimed = pair.runtime.block_on(pair.a.peers.claim(&requester, &uri, None)).unwrap();
    let package = claimed.checked.into_iter().next().unwrap().1.unwrap();
    let hub = &pair.a.provider.hub;
    hub.submit_local(member_event(room, ALICE, user, "invite", ts)).unwrap().wait().unwrap();
    hub.vouch_join(room, user, ts + 1).unwrap().unwrap().wait().unwrap();
    hub.commit_add(room, ALICE, &[package], ts + 2).unwrap().wait().unwrap();
}

pub(crate) fn send(hub: &Hub, room: &str, text: &str, ts: i64) {
    hub.send_encrypted(room, ALICE, &mimi_text(room, text), ts).unwrap().wait().unwrap();
}

/// The plaintexts b.test's clients decrypted from its record of `room`, in record order.
fn decrypted(hub: &Hub, room: &str) -> Vec<Vec<u8>> {
    let Some(short) = hub.short_room(room).unwrap() else { return Vec::new() };
    let mut out = Vec::new();
    for (_, bytes) in hub.log_page(short, 0, 10_000).unwrap() {
        let pdu = UnverifiedPdu::parse(&bytes).unwrap();
        out.extend(hub.plaintext(&pdu.event_id(&mimi_bridge::event::room_version::MIMI_RECORD_1)).unwrap());
    }
    out
}

fn texts(room: &str, texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| mimi_text(room, t)).collect()
}

fn healed(pair: &Pair) -> String {
    let mut out = String::new();
    mimi_bridge::http::metrics::MetricsSource::render(&*pair.a.provider.metrics, &mut out);
    out.lines().find(|l| l.starts_with("mimi_bridge_peer_healed_total{peer=\"b.test\"}")).unwrap_or("").to_owned()
}

pub(crate) fn verify(hub: &Hub) {
    let keys = mimi_bridge::event::KeyRing::new();
    mimi_bridge::replay::verify_store(hub.store(), None, &keys, false).unwrap();
}

/// b.test's record misses three messages the hub appended while it owed nobody (its outbox
/// not running yet: an offline tool's appends): Alice's message, Dave's add (a commit) and her
/// message in the new epoch. The next `notify` meets the gap; the hub heals it from its log
/// and Bob's client decrypts everything, in order, once. What the hub owes b.test from before
/// Bob's client was added (a message of epoch 0, the commit adding him) never leaves.
#[test]
fn a_follower_that_missed_messages_is_healed_from_the_hubs_log() {
    let pair = pair();
    let _runtime = pair.runtime.enter();
    let (hub_a, hub_b) = (&pair.a.provider.hub, &pair.b.provider.hub);
    user_with_packages(&pair.a, "alice", 1);
    user_with_packages(&pair.b, "bob", 1);
    let room = open_room(hub_a);
    send(hub_a, &room, "before Bob", 2);
    add(&pair, &room, BOB, 3);

    // Owed to b.test from epoch 0: the Welcome alone. Recorded by hand, Bob's client joins.
    let mut at = Backfill::from_epoch(0);
    let owed = hub_a.backfill(&room, "b.test", &mut at, 64, 1 << 20).unwrap();
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert!(matches!(owed[0].extra, FanoutExtra::Welcome(_)));
    hub_b.record_fanout(&room, "a.test", &owed[0]).unwrap();
    assert!(hub_b.in_group(&room, BOB).unwrap());
    let epoch = hub_b.mls_epoch(&room).unwrap().unwrap();

    send(hub_a, &room, "missed 1", 10);
    admit_dave(hub_a, &room, 11);
    send(hub_a, &room, "missed 2", 12);

    // A message of an epoch the record has not reached is refused, and nothing recorded.
    let length = || hub_b.log_page(hub_b.short_room(&room).unwrap().unwrap(), 0, 10_000).unwrap().len();
    let before = length();
    let mut at = Backfill::from_epoch(epoch + 1);
    let ahead = hub_a.backfill(&room, "b.test", &mut at, 64, 1 << 20).unwrap();
    assert_eq!(ahead.len(), 1, "from the new epoch: the second missed message");
    let refused = hub_b.record_fanout(&room, "a.test", &ahead[0]).unwrap_err();
    assert!(refused.to_string().contains(&format!("only at epoch {epoch}")), "{refused}");
    assert_eq!(length(), before);

    // The outbox starts: Alice's next message goes out, meets the gap, and the hub heals it.
    let (_outbox, _stop) = start_outbox(&pair);
    send(hub_a, &room, "after", 13);
    let expected = texts(&room, &["missed 1", "missed 2", "after"]);
    wait_for("b.test healed", Duration::from_mins(1), || decrypted(hub_b, &room) == expected);
    // The backfill: both missed messages, the commit and Alice's last; the last again as the
    // refused request, a repeat.
    wait_for("the heal counted", Duration::from_secs(10), || healed(&pair).ends_with(" 4"));
    assert_eq!(hub_b.mls_epoch(&room).unwrap(), hub_a.mls_epoch(&room).unwrap());
    assert_eq!(length(), before + 4, "each message recorded once");
    verify(hub_b);
}

/// Bob, b.test's only user in the room, is removed: b.test records the removal and is sent
/// nothing more (Alice's message, Dave's add). Carol of b.test is added later: her Welcome
/// brings b.test back at the hub's epoch, its record goes on from the group as she joined it,
/// and she decrypts what comes next — nothing from the epochs b.test was not in.
#[test]
fn a_provider_whose_users_all_left_goes_on_from_a_later_welcome() {
    let pair = pair();
    let _runtime = pair.runtime.enter();
    let (hub_a, hub_b) = (&pair.a.provider.hub, &pair.b.provider.hub);
    user_with_packages(&pair.b, "carol", 1);
    let (room, _outbox) = room_with_bob(&pair, 1);
    send(hub_a, &room, "one", 10);
    wait_for("one", Duration::from_mins(1), || decrypted(hub_b, &room).len() == 1);

    assert!(hub_a.leave(&room, ALICE, BOB, "leave", 11).unwrap());
    wait_for("Bob's client removed at b.test", Duration::from_mins(1), || !hub_b.in_group(&room, BOB).unwrap());
    let left_at = hub_b.mls_epoch(&room).unwrap().unwrap();
    send(hub_a, &room, "unseen", 12);
    admit_dave(hub_a, &room, 13);

    add(&pair, &room, CAROL, 20);
    wait_for("Carol's client joined", Duration::from_mins(1), || hub_b.in_group(&room, CAROL).unwrap_or(false));
    assert_eq!(hub_b.mls_epoch(&room).unwrap(), hub_a.mls_epoch(&room).unwrap());
    assert!(hub_a.mls_epoch(&room).unwrap().unwrap() > left_at + 1, "epochs passed without b.test");
    send(hub_a, &room, "two", 30);
    let expected = texts(&room, &["one", "two"]);
    wait_for("two", Duration::from_mins(1), || decrypted(hub_b, &room) == expected);

    // The record says where it started again: the Welcome's entry carries the group.
    let short = hub_b.short_room(&room).unwrap().unwrap();
    let rejoined = hub_b
        .log_page(short, 0, 1000)
        .unwrap()
        .into_iter()
        .filter_map(|(_, bytes)| FanoutContent::parse(UnverifiedPdu::parse(&bytes).unwrap().content()).ok())
        .filter(|content| content.rejoined.is_some())
        .map(|content| FanoutMessage::decode_all(&content.fanout).unwrap().remove(0).extra)
        .collect::<Vec<_>>();
    assert_eq!(rejoined.len(), 1);
    assert!(matches!(rejoined[0], FanoutExtra::Welcome(_)));
    verify(hub_b);
}

/// Bob is removed and, some epochs later, added again: his provider's client rejoins the group
/// it once left (its old state for the group replaced), and he reads from his new Welcome on.
#[test]
fn a_user_removed_and_added_again_reads_from_the_new_welcome() {
    let pair = pair();
    let _runtime = pair.runtime.enter();
    let (hub_a, hub_b) = (&pair.a.provider.hub, &pair.b.provider.hub);
    let (room, _outbox) = room_with_bob(&pair, 2);
    send(hub_a, &room, "before", 10);
    assert!(hub_a.leave(&room, ALICE, BOB, "leave", 11).unwrap());
    wait_for("Bob's client removed at b.test", Duration::from_mins(1), || !hub_b.in_group(&room, BOB).unwrap());
    send(hub_a, &room, "while Bob was away", 12);
    add(&pair, &room, BOB, 20);
    wait_for("Bob's client back", Duration::from_mins(1), || hub_b.in_group(&room, BOB).unwrap_or(false));
    send(hub_a, &room, "after", 30);
    let expected = texts(&room, &["before", "after"]);
    wait_for("after", Duration::from_mins(1), || decrypted(hub_b, &room) == expected);
    verify(hub_b);
}
