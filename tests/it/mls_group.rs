//! `RoomGroup`: a room's MLS group over real RocksDB stores, one per client, carrying framed
//! MIMI content.

use std::path::Path;
use std::sync::Arc;

use mimi_bridge::mls::group::{GroupError, RoomGroup};
use mimi_bridge::mls::{self, MlsProvider, framing};
use mimi_bridge::store::Store;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, CredentialWithKey, GroupId, KeyPackage, MlsGroup, MlsMessageBodyIn, MlsMessageIn,
    OpenMlsProvider as _, StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;

use crate::mimi_support::{MESSAGES, cbor_file};

const ROOM: &str = "!clubhouse:hub.example";
const ALICE: &str = "@alice:hub.example";
const BOB: &str = "@bob:part.example";
const CAROL: &str = "@carol:part.example";

/// One client: its provider over its own store, and its credential's key.
struct Client {
    identity: &'static str,
    provider: MlsProvider,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

impl Client {
    fn new(dir: &Path, identity: &'static str) -> Self {
        let provider = MlsProvider::new(Arc::new(Store::open(dir).unwrap()));
        let signer = SignatureKeyPair::new(mls::SIGNATURE_SCHEME).unwrap();
        signer.store(provider.storage()).unwrap();
        provider.storage().persist().unwrap();
        Self::with(provider, signer, identity)
    }

    fn reopen(dir: &Path, public_key: &[u8], identity: &'static str) -> Self {
        let provider = MlsProvider::new(Arc::new(Store::open(dir).unwrap()));
        let signer = SignatureKeyPair::read(provider.storage(), public_key, mls::SIGNATURE_SCHEME).unwrap();
        Self::with(provider, signer, identity)
    }

    fn with(provider: MlsProvider, signer: SignatureKeyPair, identity: &'static str) -> Self {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self { identity, provider, signer, credential }
    }

    fn persist(&self) {
        self.provider.storage().persist().unwrap();
    }

    fn key_package(&self) -> KeyPackage {
        let bundle = KeyPackage::builder()
            .build(mls::CIPHERSUITE, &self.provider, &self.signer, self.credential.clone())
            .unwrap();
        self.persist();
        bundle.key_package().clone()
    }

    fn join(&self, welcome: &[u8]) -> RoomGroup {
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(welcome).unwrap().extract() else {
            panic!("expected a Welcome");
        };
        let group = StagedWelcome::new_from_welcome(&self.provider, &mls::group_join_config(), welcome, None)
            .unwrap()
            .into_group(&self.provider)
            .unwrap();
        self.persist();
        RoomGroup::from_group(group)
    }
}

/// Every checked-in MIMI content message vector (draft-ietf-mimi-content examples).
fn mimi_vectors() -> Vec<Vec<u8>> {
    MESSAGES.iter().map(|name| cbor_file(name)).collect()
}

/// `count` real MIMI contents, cycling through the vectors.
fn contents(count: usize) -> Vec<Vec<u8>> {
    mimi_vectors().into_iter().cycle().take(count).collect()
}

/// Alice creates the room and adds Bob; the commit is merged only after the "hub" accepts it.
fn pair(alice_dir: &Path, bob_dir: &Path) -> (Client, RoomGroup, Client, RoomGroup) {
    let alice = Client::new(alice_dir, ALICE);
    let bob = Client::new(bob_dir, BOB);
    let mut alice_group =
        RoomGroup::create(&alice.provider, &alice.signer, alice.credential.clone(), ROOM, None).unwrap();
    alice.persist();
    assert_eq!(alice_group.epoch(), 0);
    assert_eq!(alice_group.mls_group().group_id().as_slice(), ROOM.as_bytes());

    let (commit, welcome) = alice_group.add_members(&alice.provider, &alice.signer, &[bob.key_package()]).unwrap();
    alice.persist();
    assert!(
        matches!(MlsMessageIn::tls_deserialize_exact(&commit).unwrap().extract(), MlsMessageBodyIn::PublicMessage(_)),
        "the add's commit is a PublicMessage for the hub"
    );
    assert_eq!(alice_group.epoch(), 0, "not merged before the hub accepts it");
    assert!(alice_group.has_pending_commit());
    assert!(matches!(alice_group.encrypt(&alice.provider, &alice.signer, b"\x80"), Err(GroupError::PendingCommit)));
    alice_group.merge_pending_commit(&alice.provider).unwrap();
    alice.persist();
    assert_eq!(alice_group.epoch(), 1);

    let bob_group = bob.join(&welcome);
    assert_eq!(bob_group.epoch(), 1);
    assert_eq!(bob_group.mls_group().group_id().as_slice(), ROOM.as_bytes());
    (alice, alice_group, bob, bob_group)
}

/// `from` encrypts each content (persisting before the ciphertext "leaves"), then `to` decrypts
/// them in order.
fn exchange(from: &Client, from_group: &mut RoomGroup, to: &Client, to_group: &mut RoomGroup, contents: &[Vec<u8>]) {
    let mut wire = Vec::new();
    for content in contents {
        let ciphertext = from_group.encrypt(&from.provider, &from.signer, content).unwrap();
        from.persist();
        wire.push(ciphertext);
    }
    for (ciphertext, content) in wire.iter().zip(contents) {
        let decrypted = to_group.decrypt(&to.provider, ciphertext).unwrap();
        to.persist();
        assert_eq!(&decrypted.mimi_cbor, content);
        assert_eq!(decrypted.sender_identity, from.identity.as_bytes());
        assert_eq!(decrypted.epoch, to_group.epoch());
    }
}

#[test]
fn fifty_mimi_messages_each_way_arrive_identical_and_in_order() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    let messages = contents(50);
    exchange(&alice, &mut alice_group, &bob, &mut bob_group, &messages);
    exchange(&bob, &mut bob_group, &alice, &mut alice_group, &messages);
    assert!(!alice.provider.storage().has_pending() && !bob.provider.storage().has_pending());
}

#[test]
fn a_replayed_ciphertext_is_rejected() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    let content = &contents(1)[0];
    let ciphertext = alice_group.encrypt(&alice.provider, &alice.signer, content).unwrap();
    alice.persist();
    assert_eq!(&bob_group.decrypt(&bob.provider, &ciphertext).unwrap().mimi_cbor, content);
    bob.persist();
    let replay = bob_group.decrypt(&bob.provider, &ciphertext);
    assert!(matches!(replay, Err(GroupError::Replay)), "{replay:?}");
    bob.provider.storage().discard_pending();
    // The group carries on.
    exchange(&alice, &mut alice_group, &bob, &mut bob_group, &contents(3));
}

#[test]
fn a_message_from_a_past_epoch_is_rejected_as_stale() {
    let (alice_dir, bob_dir, carol_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    let carol = Client::new(carol_dir.path(), CAROL);
    let old = alice_group.encrypt(&alice.provider, &alice.signer, &contents(1)[0]).unwrap();
    alice.persist();

    let (commit, welcome) = alice_group.add_members(&alice.provider, &alice.signer, &[carol.key_package()]).unwrap();
    alice.persist();
    // Bob raced Alice with a commit of his own: while it is pending, hers is refused.
    let (bob_commit, _) = bob_group.add_members(&bob.provider, &bob.signer, &[carol.key_package()]).unwrap();
    assert!(matches!(bob_group.apply_commit(&bob.provider, &commit), Err(GroupError::PendingCommit)));
    // The hub appended Alice's commit, not Bob's: Bob discards his and applies hers.
    bob_group.discard_pending_commit(&bob.provider).unwrap();
    bob_group.apply_commit(&bob.provider, &commit).unwrap();
    bob.persist();
    alice_group.merge_pending_commit(&alice.provider).unwrap();
    alice.persist();
    assert_eq!((alice_group.epoch(), bob_group.epoch()), (2, 2));
    let mut carol_group = carol.join(&welcome);
    assert_eq!(carol_group.epoch(), 2);

    let stale = bob_group.decrypt(&bob.provider, &old);
    assert!(matches!(stale, Err(GroupError::StaleEpoch { message: 1, group: 2 })), "{stale:?}");
    // The losing commit, and Alice's commit delivered twice, are stale too.
    let stale = alice_group.apply_commit(&alice.provider, &bob_commit);
    assert!(matches!(stale, Err(GroupError::StaleEpoch { message: 1, group: 2 })), "{stale:?}");
    let stale = bob_group.apply_commit(&bob.provider, &commit);
    assert!(matches!(stale, Err(GroupError::StaleEpoch { .. })), "{stale:?}");

    // A decrypt of a commit, or a commit given as a message, is refused for what it is.
    let message = alice_group.encrypt(&alice.provider, &alice.signer, &contents(2)[1]).unwrap();
    alice.persist();
    assert!(matches!(bob_group.apply_commit(&bob.provider, &message), Err(GroupError::NotCommit)));
    bob.provider.storage().discard_pending();
    assert!(matches!(carol_group.decrypt(&carol.provider, b"\x00\x01garbage"), Err(GroupError::Malformed(_))));
    let too_big = vec![0; framing::MAX_INNER_LEN + 1];
    assert!(matches!(
        carol_group.encrypt(&carol.provider, &carol.signer, &too_big),
        Err(GroupError::Framing(framing::FramingError::TooLong { .. }))
    ));

    exchange(&alice, &mut alice_group, &carol, &mut carol_group, &contents(3));
    exchange(&carol, &mut carol_group, &bob, &mut bob_group, &contents(3));
}

#[test]
fn a_discarded_commit_leaves_the_epoch_alone() {
    let (alice_dir, bob_dir, carol_dir) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    let carol = Client::new(carol_dir.path(), CAROL);
    alice_group.add_members(&alice.provider, &alice.signer, &[carol.key_package()]).unwrap();
    alice_group.discard_pending_commit(&alice.provider).unwrap();
    alice.persist();
    assert!(!alice_group.has_pending_commit());
    assert_eq!(alice_group.epoch(), 1);
    assert!(matches!(alice_group.merge_pending_commit(&alice.provider), Err(GroupError::NoPendingCommit)));
    exchange(&alice, &mut alice_group, &bob, &mut bob_group, &contents(3));
}

#[test]
fn a_wrong_media_type_is_rejected() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    drop(alice_group);
    // Send with openmls directly: a text/plain framing, then unframed bytes.
    let mut raw = MlsGroup::load(alice.provider.storage(), &GroupId::from_slice(ROOM.as_bytes())).unwrap().unwrap();
    let mut text_plain = vec![0x0a];
    text_plain.extend_from_slice(b"text/plain\x00\x02hi");
    for (payload, wrong_type) in [(text_plain, true), (b"\x82\x01\x02".to_vec(), false)] {
        let out = raw.create_message(&alice.provider, &alice.signer, &payload).unwrap();
        alice.persist();
        let result = bob_group.decrypt(&bob.provider, &out.to_bytes().unwrap());
        bob.persist();
        if wrong_type {
            assert!(matches!(&result, Err(GroupError::WrongMediaType(t)) if t == "text/plain"), "{result:?}");
        } else {
            assert!(matches!(result, Err(GroupError::Framing(_))), "{result:?}");
        }
    }
    let content = contents(1).remove(0);
    let framed = framing::frame_mimi(&content);
    let out = raw.create_message(&alice.provider, &alice.signer, &framed).unwrap();
    alice.persist();
    assert_eq!(bob_group.decrypt(&bob.provider, &out.to_bytes().unwrap()).unwrap().mimi_cbor, content);
}

#[test]
fn groups_reload_from_reopened_stores_and_carry_on() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (alice, mut alice_group, bob, mut bob_group) = pair(alice_dir.path(), bob_dir.path());
    exchange(&alice, &mut alice_group, &bob, &mut bob_group, &contents(5));
    exchange(&bob, &mut bob_group, &alice, &mut alice_group, &contents(5));
    let epoch = alice_group.epoch();
    let (alice_key, bob_key) = (alice.signer.to_public_vec(), bob.signer.to_public_vec());
    drop((alice, alice_group, bob, bob_group));

    let alice = Client::reopen(alice_dir.path(), &alice_key, ALICE);
    let bob = Client::reopen(bob_dir.path(), &bob_key, BOB);
    let mut alice_group = RoomGroup::load(&alice.provider, ROOM).unwrap().expect("Alice's group is in her store");
    let mut bob_group = RoomGroup::load(&bob.provider, ROOM).unwrap().expect("Bob's group is in his store");
    assert!(RoomGroup::load(&bob.provider, "!elsewhere:hub.example").unwrap().is_none());
    assert_eq!((alice_group.epoch(), bob_group.epoch()), (epoch, epoch));
    exchange(&alice, &mut alice_group, &bob, &mut bob_group, &contents(10));
    exchange(&bob, &mut bob_group, &alice, &mut alice_group, &contents(10));
}
