//! Two servers, two RocksDB stores, one MLS group through one hub log: the hub's server (Alice)
//! and a participant's (Bob, later Carol) exchange MIMI content as `m.room.encrypted`, add and
//! remove a member by `m.mls.commit`, restart, and every plaintext arrives exactly once, in log
//! order, on both sides.

use std::path::Path;

use mimi_bridge::event::{UnverifiedPdu, room_version::LINEARIZED_02};
use mimi_bridge::hub::{Hub, HubError, LpduRejection, RoomPreset};
use mimi_bridge::mls::events::ENCRYPTED;
use mimi_bridge::mls::public::MlsCheckError;
use mimi_bridge::replay;

use crate::common::*;

pub(crate) const CAROL: &str = "@carol:part.example";
const DAVE: &str = "@dave:part.example";

/// A valid MIMI content message, distinct per `n` (its salt).
pub(crate) fn mimi(n: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content/original.cbor"))
        .expect("vector");
    // [0x87, 0x50, salt(16)…]: the salt is the first item, a 16-byte string.
    assert_eq!(&bytes[..2], [0x87, 0x50]);
    bytes[2..10].copy_from_slice(&n.to_be_bytes());
    bytes
}

/// Copies the hub's events the follower lacks into the follower's log.
pub(crate) fn sync(hub: &Hub, follower: &Hub, room: &str) {
    let from = match follower.store().short_room(room).unwrap() {
        Some(short) => follower.store().tail(short).unwrap().map_or(0, |t| t.seq + 1),
        None => 0,
    };
    let short = hub.store().short_room(room).unwrap().unwrap();
    for item in hub.store().pdus(short, from).unwrap() {
        let (_, bytes) = item.unwrap();
        follower.submit_followed(UnverifiedPdu::parse(&bytes).unwrap()).unwrap().wait().unwrap();
    }
}

/// The plaintexts of a room's `m.room.encrypted` events in log order, as one server stored them.
pub(crate) fn plaintexts(hub: &Hub, room: &str) -> Vec<Option<Vec<u8>>> {
    let short = hub.store().short_room(room).unwrap().unwrap();
    hub.store()
        .pdus(short, 0)
        .unwrap()
        .filter_map(|item| {
            let (_, bytes) = item.unwrap();
            let pdu = UnverifiedPdu::parse(&bytes).unwrap();
            (pdu.meta().event_type == ENCRYPTED).then(|| pdu_event_id(&bytes))
        })
        .map(|event_id| hub.store().plaintext(&event_id).unwrap())
        .collect()
}

fn pdu_event_id(bytes: &[u8]) -> String {
    UnverifiedPdu::parse(bytes).unwrap().event_id(&LINEARIZED_02)
}

pub(crate) fn join(hub: &Hub, room: &str, user: &str) {
    let invite = template(room, ALICE, "m.room.member", Some(user), serde_json::json!({"membership": "invite"}));
    hub.submit_local(invite).unwrap().wait().unwrap();
    let join = template(room, user, "m.room.member", Some(user), serde_json::json!({"membership": "join"}));
    hub.submit_lpdu(part_lpdu(join)).unwrap().wait().unwrap();
}

/// Alice's encrypted room on the hub with Bob's device in its group, the participant following.
pub(crate) struct Pair {
    pub hub: Hub,
    pub part: Hub,
    pub room: String,
}

impl Pair {
    pub(crate) fn new(hub_dir: &Path, part_dir: &Path) -> Self {
        let (hub, part) = (open_hub(hub_dir), open_follower(part_dir));
        hub.directories().register_device(ALICE, "ALICEDEV").unwrap();
        let preset = RoomPreset { encrypted: true, ..RoomPreset::default() };
        let (room, _) = hub.create_room_blocking(ALICE, &preset, TS).unwrap();
        join(&hub, &room, BOB);
        let pair = Self { hub, part, room };
        pair.add(BOB, "BOBDEV");
        pair
    }

    pub(crate) fn reopen(self, hub_dir: &Path, part_dir: &Path) -> Self {
        let room = self.room.clone();
        drop(self);
        Self { hub: open_hub(hub_dir), part: open_follower(part_dir), room }
    }

    /// Registers `user`'s device on the participant, publishes its object to the hub and its
    /// key packages, and has Alice add it; the participant joins from the Welcome.
    pub(crate) fn add(&self, user: &str, device: &str) -> String {
        self.part.directories().register_device(user, device).unwrap();
        self.hub
            .directories()
            .publish_device(&self.part.directories().device_object(user, device).unwrap().unwrap())
            .unwrap();
        self.part.directories().publish_key_packages(user, 2).unwrap();
        let claimed = self.part.directories().claim_key_package(user, device).unwrap().unwrap();
        let package = self.hub.directories().check_key_package(&claimed, user, device).unwrap();
        let commit = self.hub.commit_add(&self.room, ALICE, &[package], TS).unwrap().wait().unwrap();
        let welcome = self.hub.welcome(&commit.event_id).unwrap().unwrap();
        assert_eq!(welcome.targets, [(user.to_owned(), device.to_owned())]);
        self.sync();
        self.part.join_group(&self.room, user, &welcome.message).unwrap();
        commit.event_id
    }

    pub(crate) fn sync(&self) {
        sync(&self.hub, &self.part, &self.room);
    }

    pub(crate) fn alice_sends(&self, n: u64) {
        self.hub.send_encrypted(&self.room, ALICE, &mimi(n), TS).unwrap().wait().unwrap();
    }

    pub(crate) fn part_sends(&self, user: &str, n: u64) -> Result<(), Box<HubError>> {
        let lpdu = self.part.encrypt_lpdu(&self.room, user, &mimi(n), TS).unwrap();
        let pending = self.hub.submit_lpdu(lpdu).map_err(|rejection| Box::new(rejection.error))?;
        pending.wait().map(|_| ()).map_err(Box::new)
    }

    /// Both stores hold `expected` as the plaintexts of the room's messages, in log order.
    pub(crate) fn assert_plaintexts(&self, expected: &[u64]) {
        self.sync();
        let expected: Vec<_> = expected.iter().map(|n| Some(mimi(*n))).collect();
        assert_eq!(plaintexts(&self.hub, &self.room), expected, "hub's plaintexts");
        assert_eq!(plaintexts(&self.part, &self.room), expected, "participant's plaintexts");
    }
}

fn mls_error(result: Result<(), LpduRejection>) -> MlsCheckError {
    match result {
        Err(LpduRejection { error: HubError::Mls(e), .. }) => e,
        other => panic!("expected an MLS rejection, got {other:?}"),
    }
}

#[test]
fn a_thousand_messages_each_way_a_member_added_and_removed_and_a_restart() {
    let (hub_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut pair = Pair::new(hub_dir.path(), part_dir.path());
    let mut expected = Vec::new();
    for i in 0..1000 {
        pair.alice_sends(2 * i);
        pair.part_sends(BOB, 2 * i + 1).unwrap();
        expected.extend([2 * i, 2 * i + 1]);
        if i % 100 == 99 {
            pair.sync();
        }
    }
    pair.assert_plaintexts(&expected);

    // Carol, a second user of the participant's server, joins and is added: two clients there.
    join(&pair.hub, &pair.room, CAROL);
    pair.add(CAROL, "CAROLDEV");
    for n in 5000..5010 {
        pair.alice_sends(n);
        pair.part_sends(CAROL, n + 100).unwrap();
        pair.part_sends(BOB, n + 200).unwrap();
        expected.extend([n, n + 100, n + 200]);
    }
    pair.assert_plaintexts(&expected);

    // Nobody may remove a joined user's device but its sibling; once Carol left, anyone may.
    let refused = pair.hub.commit_remove(&pair.room, ALICE, CAROL, TS).unwrap_err();
    assert!(matches!(refused, HubError::Mls(MlsCheckError::RemovalNotAllowed { .. })), "{refused}");
    let leave = template(&pair.room, CAROL, "m.room.member", Some(CAROL), serde_json::json!({"membership": "leave"}));
    pair.hub.submit_lpdu(part_lpdu(leave)).unwrap().wait().unwrap();
    pair.hub.commit_remove(&pair.room, ALICE, CAROL, TS).unwrap().wait().unwrap();
    pair.sync();
    assert!(pair.part.encrypt_lpdu(&pair.room, CAROL, &mimi(1), TS).is_err(), "Carol's client left the group");
    pair.alice_sends(6000);
    pair.part_sends(BOB, 6001).unwrap();
    expected.extend([6000, 6001]);
    pair.assert_plaintexts(&expected);

    // Both servers restart: groups reload from RocksDB and carry on.
    let epoch = pair.hub.mls_epoch(&pair.room).unwrap();
    pair = pair.reopen(hub_dir.path(), part_dir.path());
    assert_eq!(pair.hub.mls_epoch(&pair.room).unwrap(), epoch);
    for n in 7000..7020 {
        pair.alice_sends(n);
        pair.part_sends(BOB, n + 100).unwrap();
        expected.extend([n, n + 100]);
    }
    pair.assert_plaintexts(&expected);
    for hub in [&pair.hub, &pair.part] {
        let summary = replay::verify_store(hub.store(), None, &mimi_bridge::event::KeyRing::new(), false).unwrap();
        assert_eq!(summary.rooms, 1);
    }
}

#[test]
fn replays_stale_epochs_non_members_and_foreign_credentials_are_refused() {
    let (hub_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pair = Pair::new(hub_dir.path(), part_dir.path());

    // A replayed ciphertext, even in a fresh LPDU, is refused.
    let lpdu = pair.part.encrypt_lpdu(&pair.room, BOB, &mimi(1), TS).unwrap();
    let Some(ruma::CanonicalJsonValue::Object(content)) = lpdu.object().get("content").cloned() else { panic!() };
    pair.hub.submit_lpdu(lpdu).unwrap().wait().unwrap();
    let mut replay = template(&pair.room, BOB, ENCRYPTED, None, serde_json::json!({}));
    replay.content = content;
    replay.origin_server_ts += 1;
    assert_eq!(mls_error(pair.hub.submit_lpdu(part_lpdu(replay)).map(|_| ())), MlsCheckError::Replay);

    // A message from a past epoch is refused; the sender re-encrypts it in the new epoch.
    let stale = pair.part.encrypt_lpdu(&pair.room, BOB, &mimi(2), TS).unwrap();
    join(&pair.hub, &pair.room, CAROL);
    pair.add(CAROL, "CAROLDEV");
    assert!(matches!(
        mls_error(pair.hub.submit_lpdu(stale).map(|_| ())),
        MlsCheckError::StaleEpoch { message: 1, group: 2 }
    ));
    pair.part_sends(BOB, 2).unwrap();
    pair.assert_plaintexts(&[1, 2]);

    // A commit adding a user who is not joined.
    pair.part.directories().register_device(DAVE, "DAVEDEV").unwrap();
    pair.hub
        .directories()
        .publish_device(&pair.part.directories().device_object(DAVE, "DAVEDEV").unwrap().unwrap())
        .unwrap();
    pair.part.directories().publish_key_packages(DAVE, 1).unwrap();
    let claimed = pair.part.directories().claim_key_package(DAVE, "DAVEDEV").unwrap().unwrap();
    let package = pair.hub.directories().check_key_package(&claimed, DAVE, "DAVEDEV").unwrap();
    let refused = pair.hub.commit_add(&pair.room, ALICE, &[package], TS).unwrap_err();
    assert!(
        matches!(&refused, HubError::Mls(MlsCheckError::Identity(mimi_bridge::mls::identity::IdentityError::NotJoined { user, .. })) if user == DAVE),
        "{refused}"
    );

    // A key package whose credential names Dave's device but whose key is not the published one.
    join(&pair.hub, &pair.room, DAVE);
    let impostor = impostor_package(DAVE, "DAVEDEV");
    let refused = pair.hub.commit_add(&pair.room, ALICE, &[impostor], TS).unwrap_err();
    assert!(
        matches!(
            &refused,
            HubError::Mls(MlsCheckError::Identity(
                mimi_bridge::mls::identity::IdentityError::SignatureKeyMismatch { .. }
            ))
        ),
        "{refused}"
    );

    // Every refusal left Alice's client able to carry on.
    pair.alice_sends(3);
    pair.assert_plaintexts(&[1, 2, 3]);

    // Bob's server restarts between sending and seeing its message in the hub's log: the
    // plaintext it made durable before the LPDU left is what it stores for the event.
    let lpdu = pair.part.encrypt_lpdu(&pair.room, BOB, &mimi(4), TS).unwrap();
    pair.hub.submit_lpdu(lpdu).unwrap().wait().unwrap();
    let pair = pair.reopen(hub_dir.path(), part_dir.path());
    pair.assert_plaintexts(&[1, 2, 3, 4]);
}

/// A key package for (`user`, `device`) signed with a fresh key the user's server never vouched for.
fn impostor_package(user: &str, device: &str) -> openmls::prelude::KeyPackage {
    use openmls::prelude::{CredentialWithKey, KeyPackage};
    use openmls_basic_credential::SignatureKeyPair;
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(mimi_bridge::mls::SIGNATURE_SCHEME).unwrap();
    let credential = mimi_bridge::mls::identity::DeviceCredential::new(user, device, signer.public()).unwrap();
    let credential_with_key =
        CredentialWithKey { credential: credential.to_credential(), signature_key: signer.public().into() };
    KeyPackage::builder()
        .leaf_node_capabilities(mimi_bridge::mls::key_package::capabilities())
        .build(mimi_bridge::mls::CIPHERSUITE, &provider, &signer, credential_with_key)
        .unwrap()
        .key_package()
        .clone()
}

/// An encrypted room holds only ciphertext: a plaintext message, whether a participant's LPDU or
/// a local user's event, is refused and nothing is appended; state events still pass.
#[test]
fn plaintext_messages_are_refused_in_an_encrypted_room() {
    let (hub_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pair = Pair::new(hub_dir.path(), part_dir.path());
    let short = pair.hub.store().short_room(&pair.room).unwrap().unwrap();
    let tail = || pair.hub.store().tail(short).unwrap().unwrap().seq;
    let before = tail();
    let refused = pair.hub.submit_lpdu(part_lpdu(message(&pair.room, BOB, &"x".repeat(60_000)))).unwrap_err();
    assert!(
        matches!(&refused.error, HubError::Mls(MlsCheckError::PlaintextInEncryptedRoom { event_type }) if event_type == "m.room.message"),
        "{}",
        refused.error
    );
    let local = pair.hub.submit_local(message(&pair.room, ALICE, "plain")).map(|_| ()).unwrap_err();
    assert!(matches!(local, HubError::Mls(MlsCheckError::PlaintextInEncryptedRoom { .. })), "{local}");
    assert_eq!(tail(), before, "nothing appended");
    let topic = template(&pair.room, ALICE, "m.room.topic", Some(""), serde_json::json!({"topic": "state is fine"}));
    pair.hub.submit_local(topic).unwrap().wait().unwrap();
    assert_eq!(tail(), before + 1);
    pair.alice_sends(1);
}
