//! Leaving a MIMI room across providers, phases of `rooms_across`' test: a user of the follower
//! kicked at the hub, and one who leaves on their own homeserver.

use std::time::Duration;

use crate::bridge_synapse::wait_for;
use crate::rooms_across::{Across, bodies, ghost, hub_transcript, messages_from, metric};
use crate::synapse::{Method, encode};

/// `user`'s membership in `room` as `token`'s holder reads it on Bob's homeserver.
fn membership(x: &Across, token: &str, room: &str, user: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(room), encode(user));
    let (_, state) = x.b.synapse.call(Method::Get, Some(token), &path, None);
    state["membership"].as_str().unwrap_or_default().to_owned()
}

/// Alice kicks Carol's ghost from her portal: the hub removes Carol's client (a commit of
/// Alice's), Bob's provider records it and kicks Carol from the portal on her homeserver; she
/// reads nothing after.
pub(crate) fn kicked_at_the_hub(x: &Across) {
    let hub_a = &x.a.running.hub;
    let carol = "@carol:mimi.hs-b.test";
    let epoch = hub_a.mls_epoch(&x.mimi_room).unwrap().unwrap();
    let path = format!("/_matrix/client/v3/rooms/{}/kick", encode(&x.room_a));
    let kick = serde_json::json!({"user_id": ghost("carol", "mimi.hs-b.test", "hs.test"), "reason": "test"});
    x.a.synapse.post(Some(&x.alice), &path, &kick);
    wait_for("Carol's client removed at the hub", Duration::from_mins(1), || {
        !hub_a.has_clients(&x.mimi_room, carol).unwrap()
    });
    assert_eq!(hub_a.membership(&x.mimi_room, carol).unwrap().as_deref(), Some("leave"));
    assert_eq!(hub_a.mls_epoch(&x.mimi_room).unwrap(), Some(epoch + 1), "removed in the next epoch");
    let hub_b = &x.b.running.hub;
    wait_for("Carol's client gone at her provider", Duration::from_mins(1), || {
        !hub_b.in_group(&x.mimi_room, carol).unwrap()
    });
    wait_for("Carol kicked from her portal", Duration::from_mins(1), || {
        membership(x, &x.bob, &x.room_b, "@carol:hs-b.test") == "leave"
    });
    x.a.synapse.send_text(&x.alice, &x.room_a, "after Carol was removed");
    wait_for("Alice's message at Bob's", Duration::from_mins(1), || {
        x.at_b().last().is_some_and(|m| m == "after Carol was removed")
    });
    let carol_token = x.b.synapse.login("carol", "password");
    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    let at_carol = bodies(messages_from(&x.b, &carol_token, &x.room_b, &alice_at_b));
    assert!(!at_carol.contains(&"after Carol was removed".to_owned()), "{at_carol:?}");
}

/// Erin of hs-b.test is invited (her ghost, by Alice) and declines the portal's invite on her
/// homeserver: her client, added by the hub, proposes its removal, and the hub removes it.
pub(crate) fn declined(x: &Across) {
    let hub_a = &x.a.running.hub;
    let erin = "@erin:mimi.hs-b.test";
    let erin_token = x.b.user_with_a_portal("erin", "mimi.hs-b.test");
    x.a.synapse.invite(&x.alice, &x.room_a, &ghost("erin", "mimi.hs-b.test", "hs.test"));
    wait_for("Erin's client added", Duration::from_mins(1), || hub_a.has_clients(&x.mimi_room, erin).unwrap());
    let path = format!("/_matrix/client/v3/rooms/{}/leave", encode(&x.room_b));
    let decline = || x.b.synapse.call(Method::Post, Some(&erin_token), &path, Some(&serde_json::json!({}))).0;
    wait_for("Erin's invite, declined", Duration::from_mins(1), || decline() == 200);
    wait_for("Erin's client removed", Duration::from_mins(1), || !hub_a.has_clients(&x.mimi_room, erin).unwrap());
    assert_eq!(hub_a.membership(&x.mimi_room, erin).unwrap().as_deref(), Some("leave"));
}

/// Bob leaves the portal on his homeserver: his client proposes its removal to the hub, which
/// has Alice's client commit it in the next epoch; Bob's ghost leaves Alice's portal. With no
/// client of Bob's provider left, the hub sends it nothing more. Returns the hub's epoch after.
pub(crate) fn bob_leaves(x: &Across) -> u64 {
    let (hub_a, hub_b) = (&x.a.running.hub, &x.b.running.hub);
    let bob = "@bob:mimi.hs-b.test";
    let epoch = hub_a.mls_epoch(&x.mimi_room).unwrap().unwrap();
    x.b.synapse.post(
        Some(&x.bob),
        &format!("/_matrix/client/v3/rooms/{}/leave", encode(&x.room_b)),
        &serde_json::json!({}),
    );
    wait_for("Bob's client removed at the hub", Duration::from_mins(1), || {
        !hub_a.has_clients(&x.mimi_room, bob).unwrap()
    });
    assert_eq!(hub_a.membership(&x.mimi_room, bob).unwrap().as_deref(), Some("leave"));
    assert_eq!(hub_a.mls_epoch(&x.mimi_room).unwrap(), Some(epoch + 1), "removed in the next epoch");
    wait_for("the removal in Bob's provider's record", Duration::from_mins(1), || {
        !hub_b.in_group(&x.mimi_room, bob).unwrap()
    });
    assert_eq!(hub_b.mls_epoch(&x.mimi_room).unwrap(), Some(epoch + 1));
    let bob_at_a = ghost("bob", "mimi.hs-b.test", "hs.test");
    wait_for("Bob's ghost gone from Alice's portal", Duration::from_mins(1), || {
        let path = format!("/_matrix/client/v3/rooms/{}/state/m.room.member/{}", encode(&x.room_a), encode(&bob_at_a));
        x.a.synapse.call(Method::Get, Some(&x.alice), &path, None).1["membership"] == "leave"
    });
    // The hub queues its fan-out in the batch that appends a message: once Alice's next
    // message is in its log, anything owed to Bob's provider would be queued or delivered.
    let depth = r#"mimi_bridge_queue_depth{queue="provider"}"#;
    wait_for("the hub's outbox drained", Duration::from_mins(1), || metric(&x.a, depth) == 0);
    let delivered = r#"mimi_bridge_queue_delivered_total{queue="provider"}"#;
    let (before, logged) = (metric(&x.a, delivered), hub_transcript(x.a.running.hub.store(), &x.mimi_room).len());
    x.a.synapse.send_text(&x.alice, &x.room_a, "after Bob left");
    wait_for("Alice's message in the hub's log", Duration::from_mins(1), || {
        hub_transcript(x.a.running.hub.store(), &x.mimi_room).len() > logged
    });
    assert_eq!((metric(&x.a, depth), metric(&x.a, delivered)), (0, before), "nothing owed to Bob's provider");
    epoch + 1
}
