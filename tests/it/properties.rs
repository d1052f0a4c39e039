//! Random sequences of valid and invalid events: what the hub accepts is exactly the log, in
//! order; what it rejects leaves no trace; the log verifies, survives export → import, and a
//! follower replaying it reaches the same tail.

use mimi_bridge::event::{KeyRing, UnverifiedPdu};
use mimi_bridge::hub::{Appended, Hub, RoomPreset};
use mimi_bridge::replay;
use mimi_bridge::store::Store;
use proptest::prelude::*;
use serde_json::json;

use crate::common::*;

const USERS: [&str; 4] = ["@alice:hub.example", "@dave:hub.example", "@bob:part.example", "@carol:part.example"];

#[derive(Debug, Clone)]
enum Op {
    Message(usize),
    Join(usize),
    Invite(usize, usize),
    Leave(usize),
    Kick(usize, usize),
    Ban(usize, usize),
    Power(usize, usize, i64),
    Topic(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS.len();
    prop_oneof![
        4 => u.clone().prop_map(Op::Message),
        2 => u.clone().prop_map(Op::Join),
        2 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Invite(a, b)),
        1 => u.clone().prop_map(Op::Leave),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Kick(a, b)),
        1 => (u.clone(), u.clone()).prop_map(|(a, b)| Op::Ban(a, b)),
        1 => (u.clone(), u.clone(), prop_oneof![Just(0i64), Just(50), Just(100)]).prop_map(|(a, b, l)| Op::Power(a, b, l)),
        1 => u.prop_map(Op::Topic),
    ]
}

fn member(room: &str, sender: usize, target: usize, membership: &str) -> mimi_bridge::event::EventTemplate {
    template(room, USERS[sender], "m.room.member", Some(USERS[target]), json!({"membership": membership}))
}

/// Applies one op; returns what the hub appended, if it accepted it.
fn apply(hub: &Hub, room: &str, op: &Op, i: usize) -> Option<Appended> {
    let t = match *op {
        Op::Message(s) => message(room, USERS[s], &format!("message {i}")),
        Op::Join(s) => member(room, s, s, "join"),
        Op::Invite(s, t) => member(room, s, t, "invite"),
        Op::Leave(s) => member(room, s, s, "leave"),
        Op::Kick(s, t) => member(room, s, t, "leave"),
        Op::Ban(s, t) => member(room, s, t, "ban"),
        Op::Power(s, t, level) => template(
            room,
            USERS[s],
            "m.room.power_levels",
            Some(""),
            json!({"users": {USERS[0]: 100, USERS[t]: level}, "state_default": 50}),
        ),
        Op::Topic(s) => template(room, USERS[s], "m.room.topic", Some(""), json!({"topic": format!("topic {i}")})),
    };
    let local = USERS.iter().position(|u| *u == t.sender).is_some_and(|p| p < 2);
    if local { hub.submit_local(t).ok()?.wait().ok() } else { hub.submit_lpdu(part_lpdu(t)).ok()?.wait().ok() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn accepted_events_are_exactly_the_log(ops in prop::collection::vec(op(), 1..40)) {
        let (hub_dir, copy_dir, follow_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let hub = open_hub(hub_dir.path());
        let (room, opening) = hub.create_room_blocking(ALICE, &RoomPreset::default(), TS).unwrap();
        let mut accepted: Vec<String> = opening.into_iter().map(|a| a.event_id).collect();
        for (i, op) in ops.iter().enumerate() {
            let before = replay::list_rooms(hub.store()).unwrap()[0].events;
            if let Some(appended) = apply(&hub, &room, op, i) {
                // An identical LPDU (same content and timestamp) is a retry: it maps to the first copy.
                if appended.duplicate {
                    prop_assert!(accepted.contains(&appended.event_id));
                } else {
                    accepted.push(appended.event_id);
                }
            } else {
                prop_assert_eq!(replay::list_rooms(hub.store()).unwrap()[0].events, before, "a rejected {:?} left a trace", op);
            }
        }
        let log: Vec<String> = replay::timeline(hub.store(), &room, 0, None).unwrap().into_iter().map(|e| e.event_id).collect();
        prop_assert_eq!(&log, &accepted);
        prop_assert_eq!(replay::verify_store(hub.store(), None, &KeyRing::new(), false).unwrap().events, log.len() as u64);

        let mut exported = Vec::new();
        replay::export_room(hub.store(), &room, &mut exported, false).unwrap();
        let copy = Store::open(copy_dir.path()).unwrap();
        replay::import_log(&copy, &mut &exported[..], &KeyRing::new(), false).unwrap();
        prop_assert!(replay::verify_store(&copy, None, &KeyRing::new(), false).is_ok());

        let follower = open_follower(follow_dir.path());
        for e in replay::timeline(hub.store(), &room, 0, None).unwrap() {
            follower.submit_followed(UnverifiedPdu::parse(&e.bytes).unwrap()).unwrap().wait().unwrap();
        }
        prop_assert_eq!(&replay::list_rooms(follower.store()).unwrap()[0].tail_event_id, accepted.last().unwrap());
    }
}
