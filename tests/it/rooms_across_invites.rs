//! A follower's user invites someone into a room hubbed elsewhere: Bob of hs-b.test invites
//! his colleagues into the portal on his homeserver. His client commits the add and sends it to
//! the hub's `update`; the hub appends the newcomer's invite and join ahead of the commit, so
//! that its log's membership and the group's participant list agree; the Welcome comes back to
//! Bob's provider, the newcomer's client joins from it, and messages cross both ways.

use std::time::Duration;

use mimi_bridge::event::UnverifiedPdu;

use crate::bridge_synapse::wait_for;
use crate::rooms_across::{
    Across, bodies, dave_speaks_while_b_is_away, ghost, hub_transcript, messages_from, metric, record_transcript,
    same_transcript, verify,
};

/// The last `n` events of the hub's log: (type, sender, state key, membership).
fn tail(x: &Across, n: usize) -> Vec<(String, String, String, String)> {
    let hub = &x.a.running.hub;
    let short = hub.short_room(&x.mimi_room).unwrap().unwrap();
    let events = hub.log_page(short, 0, 10_000).unwrap();
    let field =
        |pdu: &UnverifiedPdu, key: &str| pdu.content().get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    events[events.len() - n..]
        .iter()
        .map(|(_, bytes)| {
            let pdu = UnverifiedPdu::parse(bytes).unwrap();
            let meta = pdu.meta();
            let state_key = meta.state_key.clone().unwrap_or_default();
            (meta.event_type.clone(), meta.sender.clone(), state_key, field(&pdu, "membership"))
        })
        .collect()
}

/// Bob invites `name` (a user of hs-b.test who never used the bridge) on his homeserver; waits
/// until the hub took the add and the newcomer's client is in the record's group; the newcomer
/// joins the portal (Bob's invite) and returns their token.
fn bob_invites(x: &Across, name: &str) -> String {
    let (hub_a, hub_b) = (&x.a.running.hub, &x.b.running.hub);
    let user = format!("@{name}:mimi.hs-b.test");
    x.b.synapse.register(name, "password");
    let token = x.b.synapse.login(name, "password");
    x.b.synapse.invite(&x.bob, &x.room_b, &format!("@{name}:hs-b.test"));
    wait_for("the newcomer's client at the hub", Duration::from_mins(2), || {
        hub_a.has_clients(&x.mimi_room, &user).unwrap()
    });
    assert_eq!(hub_a.membership(&x.mimi_room, &user).unwrap().as_deref(), Some("join"));
    wait_for("the newcomer's client in the record", Duration::from_mins(1), || {
        hub_b.in_group(&x.mimi_room, &user).unwrap()
    });
    x.b.synapse.join(&token, &x.room_b);
    token
}

#[test]
fn a_followers_user_invites_colleagues_through_the_rooms_hub() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let x = Across::open();
    let (a, b) = (&x.a, &x.b);
    let (alice_at_b, frank_at_a) =
        (ghost("alice", "mimi.hs.test", "hs-b.test"), ghost("frank", "mimi.hs-b.test", "hs.test"));
    let epoch = a.running.hub.mls_epoch(&x.mimi_room).unwrap().unwrap();

    // Frank: Bob's add is one commit of Bob's, after Frank's invite (by Bob) and join.
    let frank = bob_invites(&x, "frank");
    assert_eq!(a.running.hub.mls_epoch(&x.mimi_room).unwrap(), Some(epoch + 1), "one commit");
    let member = |sender: &str, target: &str, membership: &str| {
        ("m.room.member".to_owned(), sender.to_owned(), target.to_owned(), membership.to_owned())
    };
    let (bob, frank_id) = ("@bob:mimi.hs-b.test", "@frank:mimi.hs-b.test");
    let logged = tail(&x, 3);
    assert_eq!(logged[..2], [member(bob, frank_id, "invite"), member(frank_id, frank_id, "join")]);
    assert_eq!((logged[2].0.as_str(), logged[2].1.as_str()), ("m.mls.commit", bob), "{logged:?}");

    a.synapse.send_text(&x.alice, &x.room_a, "hello Frank");
    let at_frank = || bodies(messages_from(b, &frank, &x.room_b, &alice_at_b));
    wait_for("Alice's message at Frank's", Duration::from_mins(1), || !at_frank().is_empty());
    assert_eq!(at_frank(), ["hello Frank"], "nothing from before his Welcome");
    b.synapse.send_text(&frank, &x.room_b, "hi from Frank");
    let at_alice = || bodies(messages_from(a, &x.alice, &x.room_a, &frank_at_a));
    wait_for("Frank's message at Alice's", Duration::from_mins(1), || !at_alice().is_empty());
    assert_eq!(at_alice(), ["hi from Frank"]);

    // Grace: while Bob's provider misses a commit (Dave of hs.test joins Alice's portal and
    // speaks), Bob's add is of an old epoch; the hub answers wrongEpoch and Bob's provider
    // commits the same add again once its record caught up.
    dave_speaks_while_b_is_away(&x);
    let refusals = || metric(b, "mimi_bridge_queue_failures_total{queue=\"provider\"}");
    let before = refusals();
    b.synapse.register("grace", "password");
    let grace = b.synapse.login("grace", "password");
    b.synapse.invite(&x.bob, &x.room_b, "@grace:hs-b.test");
    wait_for("the hub's wrongEpoch", Duration::from_mins(1), || refusals() > before);
    assert!(!a.running.hub.has_clients(&x.mimi_room, "@grace:mimi.hs-b.test").unwrap());
    x.to_b.set_up(true);
    wait_for("Grace's client at the hub", Duration::from_mins(2), || {
        a.running.hub.has_clients(&x.mimi_room, "@grace:mimi.hs-b.test").unwrap()
    });
    assert_eq!(metric(b, "mimi_bridge_peer_reencrypted_total{peer=\"mimi.hs.test\"}"), 1, "committed again once");
    wait_for("Grace's client in the record", Duration::from_mins(1), || {
        b.running.hub.in_group(&x.mimi_room, "@grace:mimi.hs-b.test").unwrap()
    });
    b.synapse.join(&grace, &x.room_b);
    a.synapse.send_text(&x.alice, &x.room_a, "hello Grace");
    let at_grace = || bodies(messages_from(b, &grace, &x.room_b, &alice_at_b));
    wait_for("Alice's message at Grace's", Duration::from_mins(1), || !at_grace().is_empty());
    assert_eq!(at_grace(), ["hello Grace"]);

    bob_invites_a_user_of_the_hubs_provider(&x);

    // Both logs verify, and hold the same MLS messages in the same order.
    let (hub, follower) = (a.running.hub.store(), b.running.hub.store());
    verify(hub, &x.mimi_room);
    verify(follower, &x.mimi_room);
    same_transcript(&hub_transcript(hub, &x.mimi_room), &record_transcript(follower, &x.mimi_room));
}

/// Heidi of hs.test, the hub's provider, invited by Bob through her ghost on his homeserver:
/// Bob's provider claims her key material from hers (through its directory) and commits the add;
/// the hub joins her client from the Welcome and invites her to Alice's portal.
fn bob_invites_a_user_of_the_hubs_provider(x: &Across) {
    let (a, b) = (&x.a, &x.b);
    let heidi = a.user_with_a_portal("heidi", "mimi.hs.test");
    b.synapse.invite(&x.bob, &x.room_b, &ghost("heidi", "mimi.hs.test", "hs-b.test"));
    wait_for("Heidi's client at the hub", Duration::from_mins(2), || {
        a.running.hub.in_group(&x.mimi_room, "@heidi:mimi.hs.test").unwrap()
    });
    let join = format!("/_matrix/client/v3/join/{}", crate::synapse::encode(&x.room_a));
    let joined = || a.synapse.call(crate::synapse::Method::Post, Some(&heidi), &join, Some(&serde_json::json!({}))).0;
    wait_for("Heidi's invite to Alice's portal", Duration::from_mins(1), || joined() == 200);
    b.synapse.send_text(&x.bob, &x.room_b, "hello Heidi");
    let bob_at_a = ghost("bob", "mimi.hs-b.test", "hs.test");
    let at_heidi = || bodies(messages_from(a, &heidi, &x.room_a, &bob_at_a));
    wait_for("Bob's message at Heidi's", Duration::from_mins(1), || at_heidi().contains(&"hello Heidi".to_owned()));
    a.synapse.send_text(&heidi, &x.room_a, "hi from Heidi");
    let at_bob = || bodies(messages_from(b, &x.bob, &x.room_b, &ghost("heidi", "mimi.hs.test", "hs-b.test")));
    wait_for("Heidi's message at Bob's", Duration::from_mins(1), || !at_bob().is_empty());
    assert_eq!(at_bob(), ["hi from Heidi"]);
}
