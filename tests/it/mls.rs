//! MLS state in the store: real openmls groups over real RocksDB stores, one per side.

use std::path::Path;
use std::sync::Arc;

use mimi_bridge::mls::{self, MlsProvider};
use mimi_bridge::store::{Batch, Store};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, CredentialWithKey, GroupId, KeyPackage, MlsGroup, MlsMessageBodyIn, MlsMessageIn,
    OpenMlsProvider as _, ProcessedMessageContent, StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;

const ROOM: &str = "!clubhouse:hub.example";
const ALICE: &str = "@alice:hub.example";
const BOB: &str = "@bob:part.example";

/// One side: its provider over its own store, and its credential's key.
struct Client {
    provider: MlsProvider,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

impl Client {
    /// A new client with a fresh signature key, stored (and persisted) through the provider.
    fn new(dir: &Path, identity: &str) -> Self {
        let provider = MlsProvider::new(Arc::new(Store::open(dir).unwrap()));
        let signer = SignatureKeyPair::new(mls::SIGNATURE_SCHEME).unwrap();
        signer.store(provider.storage()).unwrap();
        provider.storage().persist().unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self { provider, signer, credential }
    }

    /// The same client after a restart: a new store handle, the signature key read back.
    fn reopen(dir: &Path, public_key: &[u8], identity: &str) -> Self {
        let provider = MlsProvider::new(Arc::new(Store::open(dir).unwrap()));
        let signer = SignatureKeyPair::read(provider.storage(), public_key, mls::SIGNATURE_SCHEME)
            .expect("the signature key survives a restart");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self { provider, signer, credential }
    }

    fn load(&self) -> Option<MlsGroup> {
        MlsGroup::load(self.provider.storage(), &GroupId::from_slice(ROOM.as_bytes())).unwrap()
    }
}

/// Alice creates the room's group and adds Bob; both persist after every step.
fn pair(alice_dir: &Path, bob_dir: &Path) -> (Client, MlsGroup, Client, MlsGroup) {
    let alice = Client::new(alice_dir, ALICE);
    let bob = Client::new(bob_dir, BOB);
    let mut alice_group = MlsGroup::new_with_group_id(
        &alice.provider,
        &alice.signer,
        &mls::group_create_config(),
        GroupId::from_slice(ROOM.as_bytes()),
        alice.credential.clone(),
    )
    .unwrap();
    alice.provider.storage().persist().unwrap();

    let bundle =
        KeyPackage::builder().build(mls::CIPHERSUITE, &bob.provider, &bob.signer, bob.credential.clone()).unwrap();
    bob.provider.storage().persist().unwrap();
    // The layout in schemas/storage.md: label, JSON key, u16 big-endian storage version.
    let mut key_package_key = b"KeyPackage".to_vec();
    key_package_key.extend(serde_json::to_vec(&bundle.key_package().hash_ref(bob.provider.crypto()).unwrap()).unwrap());
    key_package_key.extend(1u16.to_be_bytes());
    assert!(bob.provider.storage().store().mls_get(&key_package_key).unwrap().is_some());

    let (commit, welcome, _group_info) =
        alice_group.add_members(&alice.provider, &alice.signer, &[bundle.key_package().clone()]).unwrap();
    let commit = MlsMessageIn::tls_deserialize_exact(commit.to_bytes().unwrap()).unwrap();
    assert!(
        matches!(commit.extract(), MlsMessageBodyIn::PublicMessage(_)),
        "commits go out as PublicMessage for the hub to check"
    );
    alice_group.merge_pending_commit(&alice.provider).unwrap();
    alice.provider.storage().persist().unwrap();

    let MlsMessageBodyIn::Welcome(welcome) =
        MlsMessageIn::tls_deserialize_exact(welcome.to_bytes().unwrap()).unwrap().extract()
    else {
        panic!("expected a Welcome");
    };
    let bob_group = StagedWelcome::new_from_welcome(&bob.provider, &mls::group_join_config(), welcome, None)
        .unwrap()
        .into_group(&bob.provider)
        .unwrap();
    bob.provider.storage().persist().unwrap();
    assert!(
        bob.provider.storage().store().mls_get(&key_package_key).unwrap().is_none(),
        "the used key package's private keys are deleted from disk"
    );
    assert_eq!(bob_group.group_id().as_slice(), ROOM.as_bytes());
    assert_eq!(alice_group.epoch(), bob_group.epoch());
    (alice, alice_group, bob, bob_group)
}

/// `from` encrypts each text in turn, then `to` decrypts them in order; each side persists after
/// every message.
fn exchange(from: &Client, from_group: &mut MlsGroup, to: &Client, to_group: &mut MlsGroup, texts: &[String]) {
    let mut wire = Vec::new();
    for text in texts {
        let out = from_group.create_message(&from.provider, &from.signer, text.as_bytes()).unwrap();
        from.provider.storage().persist().unwrap();
        wire.push(out.to_bytes().unwrap());
    }
    for (bytes, text) in wire.iter().zip(texts) {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).unwrap().try_into_protocol_message().unwrap();
        let processed = to_group.process_message(&to.provider, message).unwrap();
        to.provider.storage().persist().unwrap();
        let ProcessedMessageContent::ApplicationMessage(plain) = processed.into_content() else {
            panic!("expected an application message");
        };
        assert_eq!(plain.into_bytes(), text.as_bytes());
    }
}

fn texts(who: &str, round: usize, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{who} round {round} message {i}")).collect()
}

#[test]
fn a_hundred_messages_each_way_arrive_in_order() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    for round in 0..10 {
        exchange(&alice, &mut alice_group, &bob, &mut bob_group, &texts("alice", round, 10));
        exchange(&bob, &mut bob_group, &alice, &mut alice_group, &texts("bob", round, 10));
    }
    assert!(!alice.provider.storage().has_pending() && !bob.provider.storage().has_pending());
}

#[test]
fn groups_reload_from_reopened_stores_and_carry_on() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    for round in 0..3 {
        exchange(&alice, &mut alice_group, &bob, &mut bob_group, &texts("alice", round, 5));
        exchange(&bob, &mut bob_group, &alice, &mut alice_group, &texts("bob", round, 5));
    }
    let epoch = alice_group.epoch();
    let (alice_key, bob_key) = (alice.signer.to_public_vec(), bob.signer.to_public_vec());
    drop((alice, alice_group, bob, bob_group));

    let alice = Client::reopen(alice_dir.path(), &alice_key, ALICE);
    let bob = Client::reopen(bob_dir.path(), &bob_key, BOB);
    let mut alice_group = alice.load().expect("Alice's group is in her store");
    let mut bob_group = bob.load().expect("Bob's group is in his store");
    assert_eq!(alice_group.epoch(), epoch);
    assert_eq!(bob_group.epoch(), epoch);
    assert_eq!(alice_group.members().count(), 2);
    for round in 3..5 {
        exchange(&alice, &mut alice_group, &bob, &mut bob_group, &texts("alice", round, 10));
        exchange(&bob, &mut bob_group, &alice, &mut alice_group, &texts("bob", round, 10));
    }
    assert_eq!(alice_group.epoch(), bob_group.epoch());
}

#[test]
fn batches_submitted_without_waiting_leave_the_newest_state_on_disk() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    // As the hub's group commit does: each message's state goes into a batch that is queued,
    // and the next message is encrypted before that batch is durable.
    let storage = alice.provider.storage();
    let mut queued = Vec::new();
    for i in 0..20 {
        let text = format!("queued {i}");
        let out = alice_group.create_message(&alice.provider, &alice.signer, text.as_bytes()).unwrap();
        let mut batch = Batch::new();
        let flush = storage.take_batch(&mut batch);
        assert!(!batch.is_empty());
        queued.push((storage.store().submit(batch), flush));
        let message =
            MlsMessageIn::tls_deserialize_exact(out.to_bytes().unwrap()).unwrap().try_into_protocol_message().unwrap();
        let processed = bob_group.process_message(&bob.provider, message).unwrap();
        bob.provider.storage().persist().unwrap();
        let ProcessedMessageContent::ApplicationMessage(plain) = processed.into_content() else {
            panic!("expected an application message");
        };
        assert_eq!(plain.into_bytes(), text.as_bytes());
    }
    for (ticket, flush) in queued {
        ticket.blocking_wait().unwrap();
        storage.mark_durable(flush);
    }
    let key = alice.signer.to_public_vec();
    drop((alice, alice_group));
    let alice = Client::reopen(alice_dir.path(), &key, ALICE);
    let mut alice_group = alice.load().unwrap();
    exchange(&alice, &mut alice_group, &bob, &mut bob_group, &texts("alice", 0, 5));
    exchange(&bob, &mut bob_group, &alice, &mut alice_group, &texts("bob", 0, 5));
}

#[test]
fn without_persist_nothing_reaches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Client::new(dir.path(), ALICE);
    let group = MlsGroup::new_with_group_id(
        &alice.provider,
        &alice.signer,
        &mls::group_create_config(),
        GroupId::from_slice(ROOM.as_bytes()),
        alice.credential.clone(),
    )
    .unwrap();
    assert!(alice.provider.storage().has_pending());
    assert!(alice.load().is_some(), "openmls reads its own writes from the overlay");
    let key = alice.signer.to_public_vec();
    drop((alice, group));

    let alice = Client::reopen(dir.path(), &key, ALICE);
    assert!(alice.load().is_none(), "the group was never persisted");
}
