//! Rooms across providers: two whole bridges (each the appservice of its own real Synapse and a
//! MIMI provider under one test CA), the hub of a room and a follower of it, talking through the
//! MIMI protocol over mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::bridge_pair::{Side, side};
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
    let record: serde_json::Value = serde_json::from_slice(&record().unwrap()).unwrap();
    record["matrix_room"].as_str().unwrap().to_owned()
}

#[test]
fn a_user_invites_a_user_of_another_provider_and_they_talk() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let pki = tempfile::tempdir().unwrap();
    let ca = crate::pki::TestCa::new(pki.path(), "test CA");
    let ports = crate::ports::consecutive(2);
    let a = side("hs.test", &ca, ports, ("mimi.hs-b.test", ports + 1));
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

    a.synapse.send_text(&alice_token, &room_a, "hello Bob, from hs.test");
    let alice_ghost = ghost("alice", "mimi.hs.test", "hs-b.test");
    let texts = || b.synapse.texts(&bob_token, &room_b);
    wait_for("Alice's message at Bob's", Duration::from_mins(1), || {
        texts().iter().any(|(sender, body)| *sender == alice_ghost && body == "hello Bob, from hs.test")
    });

    // Bob answers: his provider submits it to the hub, which fans it out to everyone.
    b.synapse.send_text(&bob_token, &room_b, "hello Alice, from hs-b.test");
    let bob_ghost = ghost("bob", "mimi.hs-b.test", "hs.test");
    let texts = || a.synapse.texts(&alice_token, &room_a);
    wait_for("Bob's message at Alice's", Duration::from_mins(1), || {
        texts().iter().any(|(sender, body)| *sender == bob_ghost && body == "hello Alice, from hs-b.test")
    });
}
