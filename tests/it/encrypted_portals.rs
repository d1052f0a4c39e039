//! Portals in Megolm-encrypted rooms, against a real Synapse and a real end-to-end-encrypting
//! client (matrix-sdk with its own `SQLite` store): the client creates an encrypted room and
//! invites the bot; the bridge's device joins, receives the room keys by `/sync`, and every
//! message, edit, reply, reaction and redaction lands in the MIMI log exactly once, in order,
//! decrypted to what was sent — with the keys taken from `/sync` (the default) or from
//! transactions (push mode).

use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::{Annotation, InReplyTo, Replacement, Reply};
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::room::message::{Relation, RoomMessageEventContent};
use matrix_sdk::ruma::events::{InitialStateEvent, room::message::RoomMessageEventContentWithoutRelation};
use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use mimi_bridge::event::KeyRing;
use mimi_bridge::replay;

use crate::bridge_synapse::{BOT, hex, message_id, mimi_messages, text_of, wait_for};
use crate::synapse::Synapse;

pub(crate) const OWNER: &str = "@mimibot_device:hs.test";

/// A Matrix user's end-to-end-encrypting client, logged in with a device of its own.
pub(crate) struct E2eeClient {
    client: Option<matrix_sdk::Client>,
    pub runtime: tokio::runtime::Runtime,
    _store: tempfile::TempDir,
}

impl Drop for E2eeClient {
    /// The client closes its store on its runtime.
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.client.take());
    }
}

impl E2eeClient {
    pub(crate) fn login(synapse: &Synapse, user: &str, password: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = tempfile::tempdir().unwrap();
        let client = runtime.block_on(async {
            let client = matrix_sdk::Client::builder()
                .homeserver_url(format!("http://127.0.0.1:{}", synapse.port))
                .sqlite_store(store.path(), None)
                .build()
                .await
                .unwrap();
            client
                .matrix_auth()
                .login_username(user, password)
                .initial_device_display_name("test client")
                .await
                .unwrap();
            client.sync_once(SyncSettings::default()).await.unwrap();
            client
        });
        Self { client: Some(client), runtime, _store: store }
    }

    pub(crate) fn client(&self) -> &matrix_sdk::Client {
        self.client.as_ref().expect("dropped only with the client")
    }

    /// Creates an encrypted private room and invites `invitee`.
    pub(crate) fn encrypted_room(&self, invitee: &str) -> matrix_sdk::Room {
        self.runtime.block_on(async {
            let mut request = CreateRoom::new();
            request.preset = Some(RoomPreset::PrivateChat);
            request.initial_state = vec![
                InitialStateEvent::with_empty_state_key(RoomEncryptionEventContent::with_recommended_defaults())
                    .to_raw_any(),
            ];
            let room = self.client().create_room(request).await.unwrap();
            room.invite_user_by_id(&OwnedUserId::try_from(invitee).unwrap()).await.unwrap();
            room
        })
    }

    /// Syncs until `room`'s joined members include `user`.
    pub(crate) fn wait_for_member(&self, room: &matrix_sdk::Room, user: &str) {
        let user = OwnedUserId::try_from(user).unwrap();
        wait_for(&format!("{user} joined"), Duration::from_mins(1), || {
            self.runtime.block_on(async {
                self.client().sync_once(SyncSettings::default().timeout(Duration::from_millis(200))).await.unwrap();
                room.get_member_no_sync(&user).await.unwrap().is_some_and(|m| *m.membership() == MembershipState::Join)
            })
        });
    }

    pub(crate) fn send(&self, room: &matrix_sdk::Room, content: RoomMessageEventContent) -> OwnedEventId {
        self.runtime.block_on(async { room.send(content).await.unwrap().response.event_id })
    }
}

/// A real Synapse with `bridge`'s registration, the bridge started in process in sync mode (on
/// the runtime returned beside it), and Alice logged in with her end-to-end-encrypting client.
pub(crate) fn started(
    bridge: &crate::bridge_synapse::BridgeDir,
) -> (Synapse, tokio::runtime::Runtime, mimi_bridge::daemon::Running, E2eeClient) {
    let synapse = Synapse::start(&[&bridge.registration]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = crate::encryption_device::config(bridge, synapse.port, false);
    let running = runtime.block_on(mimi_bridge::daemon::start(&config)).unwrap();
    synapse.register("alice", "alice-password");
    let alice = E2eeClient::login(&synapse, "alice", "alice-password");
    (synapse, runtime, running, alice)
}

#[test]
fn an_encrypted_portal_carries_decrypted_messages_edits_replies_reactions_and_redactions_once() {
    carries_decrypted_messages_once(false);
}

/// The same with the keys taken from transactions (push mode).
#[test]
fn in_push_mode_an_encrypted_portal_carries_decrypted_messages_edits_replies_reactions_and_redactions_once() {
    carries_decrypted_messages_once(true);
}

fn carries_decrypted_messages_once(push: bool) {
    let bridge = crate::encryption_device::bridge_with_registration(push);
    let mut synapse = Synapse::start(&[&bridge.registration]);
    if push {
        synapse.enable_push_extensions();
    }
    let bridge_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = bridge_runtime
        .block_on(mimi_bridge::daemon::start(&crate::encryption_device::config(&bridge, synapse.port, push)))
        .unwrap();
    synapse.register("alice", "alice-password");
    let alice = E2eeClient::login(&synapse, "alice", "alice-password");
    let room = alice.encrypted_room(BOT);
    let store = Arc::clone(running.hub.store());
    let matrix_room = room.room_id().to_string();
    wait_for("the portal", Duration::from_secs(30), || store.portal_of(&matrix_room).unwrap().is_some());
    let mimi_room = store.portal_of(&matrix_room).unwrap().unwrap();
    alice.wait_for_member(&room, OWNER);

    let mut sent = Vec::new();
    for i in 0..200 {
        sent.push(alice.send(&room, RoomMessageEventContent::text_plain(format!("message {i}"))));
    }
    let mut edit = RoomMessageEventContent::text_plain("* message 0, edited");
    edit.relates_to = Some(Relation::Replacement(Replacement::new(
        sent[0].clone(),
        RoomMessageEventContentWithoutRelation::text_plain("message 0, edited"),
    )));
    alice.send(&room, edit);
    let mut reply = RoomMessageEventContent::text_plain("a reply to 1");
    reply.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(sent[1].clone()))));
    alice.send(&room, reply);
    alice.runtime.block_on(async {
        room.send(ReactionEventContent::new(Annotation::new(sent[2].clone(), "👍".to_owned()))).await.unwrap();
        room.redact(&sent[3], None, None).await.unwrap();
    });

    wait_for("204 messages in the MIMI log", Duration::from_mins(2), || {
        store.short_room(&mimi_room).unwrap().is_some() && mimi_messages(&store, &mimi_room).len() >= 204
    });
    std::thread::sleep(Duration::from_millis(500));
    let messages = mimi_messages(&store, &mimi_room);
    assert_eq!(messages.len(), 204, "each Matrix event exactly once");
    for (i, (_, content)) in messages.iter().take(200).enumerate() {
        assert_eq!(text_of(content).as_deref(), Some(format!("message {i}").as_str()), "decrypted, in order");
    }
    let id = |n: usize| Some(message_id(&store, sent[n].as_str()));
    let (edit, reply, reaction, deletion) = (&messages[200].1, &messages[201].1, &messages[202].1, &messages[203].1);
    assert_eq!((hex(edit.replaces), text_of(edit).as_deref()), (id(0), Some("message 0, edited")));
    assert_eq!((hex(reply.in_reply_to), text_of(reply).as_deref()), (id(1), Some("a reply to 1")));
    assert_eq!(hex(reaction.in_reply_to), id(2));
    assert_eq!(hex(deletion.replaces), id(3));
    assert_eq!(store.intake_len().unwrap(), 0);
    let decrypted = running.appservice.metrics.decrypted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(decrypted, 202, "the 200 messages, the edit and the reply were Megolm-encrypted");
    assert_eq!(running.appservice.metrics.refused_count("undecryptable"), 0);
    let summary = replay::verify_store(&store, None, &KeyRing::new(), false).unwrap();
    assert_eq!(summary.rooms, 1);
    assert!(bridge_runtime.block_on(running.stop()));
}

/// A portal opened in a clear room whose members turn encryption on later: the device's owner
/// joined with the bridge, so their keys reach it. One not in the room then (a portal opened
/// before the bridge had a device, here: the owner kicked) joins when encryption is turned on.
#[test]
fn a_portal_whose_members_turn_encryption_on_later_carries_their_encrypted_messages() {
    let bridge = crate::encryption_device::bridge_with_registration(false);
    let (_synapse, bridge_runtime, running, alice) = started(&bridge);
    let room = alice.runtime.block_on(async {
        let mut request = CreateRoom::new();
        request.preset = Some(RoomPreset::PrivateChat);
        let room = alice.client().create_room(request).await.unwrap();
        room.invite_user_by_id(&OwnedUserId::try_from(BOT).unwrap()).await.unwrap();
        room
    });
    let store = Arc::clone(running.hub.store());
    let matrix_room = room.room_id().to_string();
    wait_for("the portal", Duration::from_secs(30), || store.portal_of(&matrix_room).unwrap().is_some());
    let mimi_room = store.portal_of(&matrix_room).unwrap().unwrap();
    alice.wait_for_member(&room, OWNER);
    alice.send(&room, RoomMessageEventContent::text_plain("in the clear"));
    alice.runtime.block_on(async {
        room.kick_user(&OwnedUserId::try_from(OWNER).unwrap(), None).await.unwrap();
        room.enable_encryption().await.unwrap();
        let settings = SyncSettings::default().timeout(Duration::from_millis(200));
        alice.client().sync_once(settings).await.unwrap();
        assert!(room.latest_encryption_state().await.unwrap().is_encrypted());
    });
    alice.wait_for_member(&room, OWNER);
    for i in 0..3 {
        alice.send(&room, RoomMessageEventContent::text_plain(format!("encrypted {i}")));
    }

    wait_for("4 messages in the MIMI log", Duration::from_mins(1), || {
        store.short_room(&mimi_room).unwrap().is_some() && mimi_messages(&store, &mimi_room).len() >= 4
    });
    let texts: Vec<Option<String>> = mimi_messages(&store, &mimi_room).iter().map(|(_, c)| text_of(c)).collect();
    let expected = ["in the clear", "encrypted 0", "encrypted 1", "encrypted 2"].map(|t| Some(t.to_owned()));
    assert_eq!(texts, expected);
    assert_eq!(running.appservice.metrics.decrypted.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(running.appservice.metrics.refused_count("undecryptable"), 0);
    assert!(bridge_runtime.block_on(running.stop()));
}
