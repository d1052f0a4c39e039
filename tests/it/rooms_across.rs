//! Rooms across providers: two whole bridges (each the appservice of its own real Synapse and a
//! MIMI provider under one test CA), the hub of a room and a follower of it, talking through the
//! MIMI protocol over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::event::UnverifiedPdu;
use mimi_bridge::mimi::protocol::{FanoutExtra, FanoutMessage, Wire as _};
use mimi_bridge::mls::events::{COMMIT, CommitContent, ENCRYPTED, EncryptedContent, FANOUT, FanoutContent};
use serde_json::{Value, json};

use crate::bridge_pair::{Side, Switch, side};
use crate::bridge_synapse::wait_for;

/// The ghost on `homeserver` of the MIMI user `@name:provider` (the tests' template).
fn ghost(name: &str, provider: &str, homeserver: &str) -> String {
    format!("@mimi_{provider}_{name}:{homeserver}")
}

/// The Matrix room on `side` that is the portal of `mimi_room`, once there is one.
fn portal_on(side: &Side, mimi_room: &str) -> String {
    let store = Arc::clone(side.running.hub.store());
    let record = || store.portal_record(mimi_room).unwrap();
    wait_for("the portal on the follower", Duration::from_mins(1), || record().is_some());
    let record: Value = serde_json::from_slice(&record().unwrap()).unwrap();
    record["matrix_room"].as_str().unwrap().to_owned()
}

/// The messages `sender` sent into `room` as `reader` sees them: (event ID, body), edits and
/// reactions left out.
fn messages_from(side: &Side, token: &str, room: &str, sender: &str) -> Vec<(String, String)> {
    side.synapse
        .messages(token, room)
        .into_iter()
        .filter(|e| e["sender"] == sender && e["type"] == "m.room.message")
        .filter(|e| e["content"]["m.relates_to"]["rel_type"] != "m.replace")
        .map(|e| (e["event_id"].as_str().unwrap().to_owned(), e["content"]["body"].as_str().unwrap().to_owned()))
        .collect()
}

/// The MLS messages (commits and application messages) of a room's log at the hub, in order.
fn hub_transcript(side: &Side, room: &str) -> Vec<Vec<u8>> {
    log(side, room)
        .into_iter()
        .filter_map(|pdu| match pdu.meta().event_type.as_str() {
            COMMIT => Some(CommitContent::parse(pdu.content()).unwrap().message),
            ENCRYPTED => Some(EncryptedContent::parse(pdu.content()).unwrap().ciphertext),
            _ => None,
        })
        .collect()
}

/// The MLS messages of a follower's record of a room, in order (Welcomes left out).
fn record_transcript(side: &Side, room: &str) -> Vec<Vec<u8>> {
    log(side, room)
        .into_iter()
        .filter(|pdu| pdu.meta().event_type == FANOUT)
        .map(|pdu| FanoutMessage::decode(&FanoutContent::parse(pdu.content()).unwrap().fanout).unwrap())
        .filter(|fanout| !matches!(fanout.extra, FanoutExtra::Welcome(_)))
        .map(|fanout| fanout.message)
        .collect()
}

fn log(side: &Side, room: &str) -> Vec<UnverifiedPdu> {
    let hub = &side.running.hub;
    let short = hub.short_room(room).unwrap().unwrap();
    hub.log_page(short, 0, 100_000).unwrap().iter().map(|(_, bytes)| UnverifiedPdu::parse(bytes).unwrap()).collect()
}

/// A counter of the bridge's metrics (0 when absent).
fn metric(side: &Side, series: &str) -> u64 {
    let text = side.running.appservice.metrics.render();
    text.lines().find_map(|line| line.strip_prefix(series).map(|v| v.trim().parse().unwrap())).unwrap_or(0)
}

/// Checks the texts `mimi-bridge log show --decrypt --json` prints for the `event_type` events of
/// a side's log of `room`: Alice's first to her welcome of Carol, Bob's reply and Dave's message.
fn shows_decrypted(side: &Side, room: &str, event_type: &str) {
    let data = side.config.parent().unwrap().join("data");
    let args = ["log", "show", "--data-dir", data.to_str().unwrap(), "--room", room, "--decrypt", "--json"];
    let out = crate::common::run(&args, b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let texts: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["pdu"]["type"] == event_type)
        .filter_map(|e| e["decrypted"]["body"]["text"].as_str().map(str::to_owned))
        .collect();
    let (first, last) = (texts.iter().position(|t| t == "a0"), texts.iter().position(|t| t == "welcome, Carol"));
    assert!(first.is_some_and(|first| last > Some(first)), "{event_type}: {texts:?}");
    assert!(texts.contains(&"re a0".to_owned()) && texts.contains(&"Dave here".to_owned()), "{texts:?}");
}

/// Verifies a side's store, and checks what `log show --decrypt` prints for `room`'s
/// `event_type` events there.
fn verify(side: &Side, room: &str, event_type: &str) {
    let summary =
        mimi_bridge::replay::verify_store(side.running.hub.store(), None, &mimi_bridge::event::KeyRing::new(), false);
    assert!(summary.is_ok(), "{summary:?}");
    shows_decrypted(side, room, event_type);
}

#[test]
fn two_homeservers_talk_through_a_mimi_room_hubbed_by_one_bridge() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(3);
    // The hub reaches the follower through a loopback switch that can play it being down.
    let a = side("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 2));
    let to_b = Switch::start(ports + 2, ports + 1);
    let b = side("hs-b.test", &ca, ports + 1, ("mimi.hs.test", ports));
    let bob_token = b.user_with_a_portal("bob", "mimi.hs-b.test");
    a.synapse.register("alice", "password");
    let alice_token = a.synapse.login("alice", "password");

    // Alice invites Bob's ghost: her bridge claims Bob's key material from his provider, adds
    // his client, and the Welcome reaches his provider, which opens a portal and invites him.
    let room_a = a.synapse.create_room(&alice_token, &json!({"preset": "private_chat"}));
    a.synapse.invite(&alice_token, &room_a, &ghost("bob", "mimi.hs-b.test", "hs.test"));
    let store_a = Arc::clone(a.running.hub.store());
    wait_for("Alice's portal", Duration::from_mins(1), || store_a.portal_of(&room_a).unwrap().is_some());
    let mimi_room = store_a.portal_of(&room_a).unwrap().unwrap();
    let room_b = portal_on(&b, &mimi_room);
    b.synapse.join(&bob_token, &room_b);
    let (alice_at_b, bob_at_a) =
        (ghost("alice", "mimi.hs.test", "hs-b.test"), ghost("bob", "mimi.hs-b.test", "hs.test"));

    // Both talk at once; each sees the other's messages once, in order.
    for i in 0..20 {
        a.synapse.send_text(&alice_token, &room_a, &format!("a{i}"));
        b.synapse.send_text(&bob_token, &room_b, &format!("b{i}"));
    }
    let expected = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let bodies = |m: Vec<(String, String)>| m.into_iter().map(|(_, body)| body).collect::<Vec<_>>();
    let at_b = || bodies(messages_from(&b, &bob_token, &room_b, &alice_at_b));
    let at_a = || bodies(messages_from(&a, &alice_token, &room_a, &bob_at_a));
    wait_for("Alice's 20 at Bob's", Duration::from_mins(1), || at_b().len() >= 20);
    wait_for("Bob's 20 at Alice's", Duration::from_mins(1), || at_a().len() >= 20);
    assert_eq!(at_b(), expected("a", 20));
    assert_eq!(at_a(), expected("b", 20));

    // Relations cross both ways and point at the right events on each side.
    let a0_at_b = messages_from(&b, &bob_token, &room_b, &alice_at_b)[0].0.clone();
    let reply = json!({"msgtype": "m.text", "body": "re a0", "m.relates_to": {"m.in_reply_to": {"event_id": a0_at_b}}});
    b.synapse.send(&bob_token, &room_b, "m.room.message", &reply);
    let b1_at_a = messages_from(&a, &alice_token, &room_a, &bob_at_a)[1].0.clone();
    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": b1_at_a, "key": "👍"}});
    a.synapse.send(&alice_token, &room_a, "m.reaction", &reaction);
    wait_for("Bob's reply at Alice's", Duration::from_mins(1), || at_a().contains(&"re a0".to_owned()));
    let a0_at_a = messages_from(&a, &alice_token, &room_a, "@alice:hs.test")[0].0.clone();
    let reply_at_a =
        a.synapse.messages(&alice_token, &room_a).into_iter().find(|e| e["content"]["body"] == "re a0").unwrap();
    assert_eq!(reply_at_a["content"]["m.relates_to"]["m.in_reply_to"]["event_id"], a0_at_a.as_str());
    let b1_at_b = messages_from(&b, &bob_token, &room_b, "@bob:hs-b.test")[1].0.clone();
    let reacted = || {
        b.synapse
            .messages(&bob_token, &room_b)
            .into_iter()
            .find(|e| e["type"] == "m.reaction" && e["sender"] == alice_at_b)
    };
    wait_for("Alice's reaction at Bob's", Duration::from_mins(1), || reacted().is_some());
    assert_eq!(reacted().unwrap()["content"]["m.relates_to"]["event_id"], b1_at_b.as_str());

    // Bob's provider is unreachable for a while: the hub keeps fanning out to its queue and
    // delivers, in order, once it is back.
    to_b.set_up(false);
    for i in 0..10 {
        a.synapse.send_text(&alice_token, &room_a, &format!("while away {i}"));
    }
    wait_for("a refused delivery", Duration::from_mins(1), || to_b.refused() > 0);
    to_b.set_up(true);
    let all = [expected("a", 20), expected("while away ", 10)].concat();
    wait_for("the queued messages at Bob's", Duration::from_mins(2), || at_b().len() >= 30);
    assert_eq!(at_b(), all);

    // A commit Bob's provider has not seen: while it is unreachable, Dave of hs.test joins
    // Alice's portal and speaks (his client is added: a new epoch). Bob's next message is
    // encrypted in the old epoch; the hub answers epochTooOld, and Bob's provider sends the
    // same plaintext again, re-encrypted, once its record has caught up: it arrives once.
    to_b.set_up(false);
    a.synapse.register("dave", "password");
    let dave_token = a.synapse.login("dave", "password");
    a.synapse.invite(&alice_token, &room_a, "@dave:hs.test");
    a.synapse.join(&dave_token, &room_a);
    a.synapse.send_text(&dave_token, &room_a, "Dave here");
    let hub_a = Arc::clone(&a.running.hub);
    wait_for("Dave's client", Duration::from_mins(1), || hub_a.in_group(&mimi_room, "@dave:mimi.hs.test").unwrap());
    b.synapse.send_text(&bob_token, &room_b, "sent in an old epoch");
    let reencrypted = || metric(&b, "mimi_bridge_peer_reencrypted_total{peer=\"mimi.hs.test\"}");
    wait_for("the hub's refusal of a too old epoch", Duration::from_mins(1), || {
        metric(&b, "mimi_bridge_queue_failures_total{queue=\"provider\"}") > 0
    });
    assert_eq!(reencrypted(), 0, "not before the record caught up");
    to_b.set_up(true);
    let stale = || at_a().iter().filter(|body| *body == "sent in an old epoch").count();
    wait_for("the re-encrypted message at Alice's", Duration::from_mins(1), || stale() > 0);
    assert_eq!(reencrypted(), 1);
    let dave_at_b = ghost("dave", "mimi.hs.test", "hs-b.test");
    wait_for("Dave's message at Bob's", Duration::from_mins(1), || {
        bodies(messages_from(&b, &bob_token, &room_b, &dave_at_b)) == ["Dave here"]
    });

    // Carol of hs-b.test is invited later: her client reads from its Welcome on, and she is
    // invited to the portal on her homeserver when the record reaches it.
    let carol_token = b.user_with_a_portal("carol", "mimi.hs-b.test");
    a.synapse.invite(&alice_token, &room_a, &ghost("carol", "mimi.hs-b.test", "hs.test"));
    let join_path = format!("/_matrix/client/v3/join/{}", crate::synapse::encode(&room_b));
    let join = || b.synapse.call(crate::synapse::Method::Post, Some(&carol_token), &join_path, Some(&json!({}))).0;
    wait_for("Carol's invite", Duration::from_mins(1), || join() == 200);
    a.synapse.send_text(&alice_token, &room_a, "welcome, Carol");
    let at_carol = || bodies(messages_from(&b, &carol_token, &room_b, &alice_at_b));
    wait_for("Alice's welcome at Carol's", Duration::from_mins(1), || !at_carol().is_empty());
    assert_eq!(at_carol(), ["welcome, Carol"], "nothing from before her Welcome");
    assert_eq!(stale(), 1, "the message sent in an old epoch arrived once");

    // Both logs verify, and `log show --decrypt` beside the running bridges prints the MIMI
    // content of the hub's `m.room.encrypted` and of the follower's application `m.mimi.fanout`s
    // alike; the hub's log and the follower's record hold the same MLS messages in the same
    // order (the record from the commit that added Bob's client on).
    verify(&a, &mimi_room, ENCRYPTED);
    verify(&b, &mimi_room, FANOUT);
    let (hub, record) = (hub_transcript(&a, &mimi_room), record_transcript(&b, &mimi_room));
    assert!(record.len() >= 20 + 20 + 10 + 2 + 3, "{} messages recorded", record.len());
    let start = hub.iter().position(|m| *m == record[0]).expect("the record's first message is in the hub's log");
    assert_eq!(hub[start..], record[..], "the same MLS messages in the same order");
}
