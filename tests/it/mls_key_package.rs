//! Key packages over real RocksDB stores and real openmls: published with their private keys in
//! one batch, claimed once (the last resort forever), accepted only when they name the claimed
//! device, and good for joining a group from a reopened store.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Barrier};

use mimi_bridge::event::ServerKey;
use mimi_bridge::mls::group::RoomGroup;
use mimi_bridge::mls::identity::{DeviceCredential, DeviceObject, LocalDevice};
use mimi_bridge::mls::key_package::{
    self, KeyPackageDirectory, KeyPackageError, MAX_KEY_PACKAGE_LEN, PackageCount, validate_claimed,
};
use mimi_bridge::mls::{self, MlsProvider};
use mimi_bridge::store::{Batch, Store};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    BasicCredential, Ciphersuite, CredentialWithKey, KeyPackage, MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider as _,
    StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;

use crate::mimi_support::{MESSAGES, cbor_file};

const ALICE: &str = "@alice:hub.example";
const BOB: &str = "@bob:hub.example";
const MALLORY: &str = "@mallory:hub.example";
const PHONE: &str = "PHONE";

fn server_key() -> ServerKey {
    ServerKey::from_seed("hub1", [7; 32]).unwrap()
}

/// A device with its own store: the provider (over the store) and the device's keys, persisted.
struct Owner {
    provider: MlsProvider,
    device: LocalDevice,
}

impl Owner {
    fn new(dir: &Path, user: &str) -> Self {
        let provider = MlsProvider::new(Arc::new(Store::open(dir).unwrap()));
        let device = LocalDevice::generate(&provider, &server_key(), user, PHONE).unwrap();
        provider.storage().persist().unwrap();
        Self { provider, device }
    }

    /// The same device from its reopened store: the signing key comes back from MLS storage.
    fn reopen(dir: &Path, credential: &DeviceCredential) -> Self {
        let provider = MlsProvider::new(Arc::new(Store::open(dir).unwrap()));
        let signer =
            SignatureKeyPair::read(provider.storage(), credential.signature_key(), mls::SIGNATURE_SCHEME).unwrap();
        let credential_with_key =
            CredentialWithKey { credential: credential.to_credential(), signature_key: signer.public().into() };
        let object = DeviceObject::new_signed(credential, &server_key());
        let device = LocalDevice { signer, credential: credential.clone(), credential_with_key, object };
        Self { provider, device }
    }

    fn store(&self) -> Arc<Store> {
        Arc::clone(self.provider.storage().store())
    }

    /// Generates `one_time` one-time packages and, if asked, a last-resort one, and publishes
    /// them with their private keys in one synced batch. Returns their hash references (hex).
    fn publish(&self, one_time: usize, last_resort: bool) -> BTreeSet<String> {
        let mut batch = Batch::new();
        let mut refs = BTreeSet::new();
        let flags = std::iter::repeat_n(false, one_time).chain(last_resort.then_some(true));
        for last_resort in flags {
            let package = key_package::generate(&self.provider, &self.device, last_resort).unwrap();
            assert_eq!(package.last_resort(), last_resort);
            key_package::publish(&mut batch, self.provider.crypto(), &self.device, &package).unwrap();
            refs.insert(reference(&package));
        }
        assert!(self.provider.storage().has_pending(), "the private keys wait for the batch");
        let flush = self.provider.storage().take_batch(&mut batch);
        self.store().write(batch).unwrap();
        self.provider.storage().mark_durable(flush);
        refs
    }
}

fn reference(package: &KeyPackage) -> String {
    hex::encode(package.hash_ref(&crypto()).unwrap().as_slice())
}

fn crypto() -> RustCrypto {
    RustCrypto::default()
}

/// The references stored for Bob's phone.
fn stored(store: &Store) -> BTreeSet<String> {
    store.key_packages(BOB, PHONE).unwrap().into_iter().map(|(r, _)| r).collect()
}

#[test]
fn one_time_packages_are_claimed_once_then_the_last_resort_stays() {
    let dir = tempfile::tempdir().unwrap();
    let bob = Owner::new(dir.path(), BOB);
    let published = bob.publish(3, true);
    let directory = KeyPackageDirectory::new(bob.store());
    assert_eq!(directory.count(BOB, PHONE).unwrap(), PackageCount { one_time: 3, last_resort: true });
    assert_eq!(stored(&bob.store()), published);

    let mut claimed = BTreeSet::new();
    for left in (0..3).rev() {
        let bytes = directory.claim(BOB, PHONE).unwrap().expect("a one-time package is left");
        let package = validate_claimed(&bytes, &crypto(), BOB, PHONE).unwrap();
        assert!(!package.last_resort());
        let reference = reference(&package);
        assert!(published.contains(&reference));
        assert!(!stored(&bob.store()).contains(&reference), "a claimed package leaves the store");
        assert!(claimed.insert(reference), "claimed twice");
        assert_eq!(directory.count(BOB, PHONE).unwrap(), PackageCount { one_time: left, last_resort: true });
    }

    let last_resort = directory.claim(BOB, PHONE).unwrap().unwrap();
    let package = validate_claimed(&last_resort, &crypto(), BOB, PHONE).unwrap();
    assert!(package.last_resort());
    assert_eq!(published.difference(&claimed).cloned().collect::<Vec<_>>(), [reference(&package)]);
    for _ in 0..3 {
        assert_eq!(directory.claim(BOB, PHONE).unwrap().as_deref(), Some(&last_resort[..]), "the last resort stays");
    }
    assert_eq!(directory.count(BOB, PHONE).unwrap(), PackageCount { one_time: 0, last_resort: true });
    assert_eq!(directory.claim(BOB, "TABLET").unwrap(), None, "nothing published");
    assert_eq!(directory.claim(ALICE, PHONE).unwrap(), None);
    assert_eq!(directory.count(ALICE, PHONE).unwrap(), PackageCount::default());

    let credential = bob.device.credential.clone();
    drop((directory, bob));
    let bob = Owner::reopen(dir.path(), &credential);
    let directory = KeyPackageDirectory::new(bob.store());
    assert_eq!(directory.count(BOB, PHONE).unwrap(), PackageCount { one_time: 0, last_resort: true });
    assert_eq!(directory.claim(BOB, PHONE).unwrap().as_deref(), Some(&last_resort[..]));
    assert_eq!(stored(&bob.store()).len(), 1);
}

/// A MIMI content vector.
fn content(i: usize) -> Vec<u8> {
    cbor_file(MESSAGES[i % MESSAGES.len()])
}

fn join(owner: &Owner, welcome: &[u8]) -> RoomGroup {
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(welcome).unwrap().extract() else {
        panic!("expected a Welcome");
    };
    let group = StagedWelcome::new_from_welcome(&owner.provider, &mls::group_join_config(), welcome, None)
        .unwrap()
        .into_group(&owner.provider)
        .unwrap();
    owner.provider.storage().persist().unwrap();
    RoomGroup::from_group(group)
}

/// Alice claims a package of Bob's, adds him to `room`; Bob joins and they exchange a message
/// each way.
fn add_and_talk(alice: &Owner, bob: &Owner, directory: &KeyPackageDirectory, room: &str) -> KeyPackage {
    let bytes = directory.claim(BOB, PHONE).unwrap().unwrap();
    let package = validate_claimed(&bytes, alice.provider.crypto(), BOB, PHONE).unwrap();
    let (signer, credential) = (&alice.device.signer, alice.device.credential_with_key.clone());
    let mut alice_group = RoomGroup::create(&alice.provider, signer, credential, room, None).unwrap();
    let (_commit, welcome) = alice_group.add_members(&alice.provider, signer, std::slice::from_ref(&package)).unwrap();
    alice_group.merge_pending_commit(&alice.provider).unwrap();
    alice.provider.storage().persist().unwrap();

    let mut bob_group = join(bob, &welcome);
    assert_eq!((alice_group.epoch(), bob_group.epoch()), (1, 1));
    let ciphertext = alice_group.encrypt(&alice.provider, signer, &content(0)).unwrap();
    alice.provider.storage().persist().unwrap();
    assert_eq!(bob_group.decrypt(&bob.provider, &ciphertext).unwrap().mimi_cbor, content(0));
    let ciphertext = bob_group.encrypt(&bob.provider, &bob.device.signer, &content(1)).unwrap();
    bob.provider.storage().persist().unwrap();
    let decrypted = alice_group.decrypt(&alice.provider, &ciphertext).unwrap();
    alice.provider.storage().persist().unwrap();
    assert_eq!(decrypted.mimi_cbor, content(1));
    assert_eq!(decrypted.sender_identity, bob.device.credential.client_uri().into_bytes());
    package
}

#[test]
fn a_claimed_package_joins_a_group_from_the_owners_reopened_store() {
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alice = Owner::new(alice_dir.path(), ALICE);
    let bob = Owner::new(bob_dir.path(), BOB);
    bob.publish(1, true);
    let credential = bob.device.credential.clone();
    drop(bob);

    // Only what the batch made durable is left: the private keys must have been in it.
    let bob = Owner::reopen(bob_dir.path(), &credential);
    let directory = KeyPackageDirectory::new(bob.store());
    let one_time = add_and_talk(&alice, &bob, &directory, "!one:hub.example");
    assert!(!one_time.last_resort());
    // The last-resort package serves one join after another.
    let first = add_and_talk(&alice, &bob, &directory, "!two:hub.example");
    let second = add_and_talk(&alice, &bob, &directory, "!three:hub.example");
    assert!(first.last_resort());
    assert_eq!(reference(&first), reference(&second));
    assert_eq!(directory.count(BOB, PHONE).unwrap(), PackageCount { one_time: 0, last_resort: true });
}

#[test]
fn concurrent_claims_never_hand_out_a_package_twice() {
    let dir = tempfile::tempdir().unwrap();
    let bob = Owner::new(dir.path(), BOB);
    let published = bob.publish(20, false);
    let directory = Arc::new(KeyPackageDirectory::new(bob.store()));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (directory, barrier) = (Arc::clone(&directory), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut mine = Vec::new();
                while let Some(bytes) = directory.claim(BOB, PHONE).unwrap() {
                    mine.push(reference(&validate_claimed(&bytes, &crypto(), BOB, PHONE).unwrap()));
                }
                mine
            })
        })
        .collect();
    let claimed: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(claimed.len(), 20, "every package claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<BTreeSet<_>>(), published);
    assert_eq!(directory.count(BOB, PHONE).unwrap(), PackageCount::default());
    assert!(stored(&bob.store()).is_empty());
}

/// The TLS bytes of a package Bob's device would build, with `credential_with_key` and `suite`.
fn build(
    owner: &Owner,
    suite: Ciphersuite,
    credential_with_key: CredentialWithKey,
    signer: &SignatureKeyPair,
) -> Vec<u8> {
    let bundle = KeyPackage::builder().build(suite, &owner.provider, signer, credential_with_key).unwrap();
    bundle.key_package().tls_serialize_detached().unwrap()
}

#[test]
fn claimed_packages_that_do_not_hold_are_refused_each_for_its_reason() {
    let (bob_dir, mallory_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bob = Owner::new(bob_dir.path(), BOB);
    let mallory = Owner::new(mallory_dir.path(), MALLORY);
    let check = |bytes: &[u8]| validate_claimed(bytes, &crypto(), BOB, PHONE);
    let good = key_package::generate(&bob.provider, &bob.device, false).unwrap().tls_serialize_detached().unwrap();
    check(&good).unwrap();

    let result = check(&good[..good.len() - 1]);
    assert!(matches!(result, Err(KeyPackageError::Malformed(_))), "truncated: {result:?}");
    let result = check(&[good.as_slice(), &[0]].concat());
    assert!(matches!(result, Err(KeyPackageError::Malformed(_))), "trailing byte: {result:?}");
    let result = check(&[good.as_slice(), &vec![0; MAX_KEY_PACKAGE_LEN]].concat());
    assert!(matches!(result, Err(KeyPackageError::TooLarge { .. })), "oversized: {result:?}");
    let mut tampered = good.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let result = check(&tampered);
    assert!(matches!(result, Err(KeyPackageError::Invalid(_))), "bad signature: {result:?}");

    let mallorys = key_package::generate(&mallory.provider, &mallory.device, false).unwrap();
    let result = check(&mallorys.tls_serialize_detached().unwrap());
    assert!(
        matches!(&result, Err(KeyPackageError::WrongDevice { user, .. }) if user == MALLORY),
        "another user's package: {result:?}"
    );
    let result = validate_claimed(&good, &crypto(), BOB, "TABLET");
    assert!(matches!(result, Err(KeyPackageError::WrongDevice { .. })), "another device's package: {result:?}");

    let (signer, credential) = (&bob.device.signer, bob.device.credential_with_key.clone());
    let chacha = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
    let result = check(&build(&bob, chacha, credential.clone(), signer));
    assert!(matches!(result, Err(KeyPackageError::WrongCiphersuite { found }) if found == chacha), "{result:?}");

    // Bob's LM triple (which names his key), but the leaf signs with another key of Mallory's
    // choosing. (A client URI names no key: the hub's device-object check catches that one.)
    let other = SignatureKeyPair::new(mls::SIGNATURE_SCHEME).unwrap();
    let swapped = CredentialWithKey {
        credential: bob.device.credential.to_triple_credential(),
        signature_key: other.public().into(),
    };
    let result = check(&build(&bob, mls::CIPHERSUITE, swapped, &other));
    assert!(matches!(result, Err(KeyPackageError::SignatureKeyMismatch)), "{result:?}");

    let plain =
        CredentialWithKey { credential: BasicCredential::new(BOB.into()).into(), signature_key: other.public().into() };
    let result = check(&build(&bob, mls::CIPHERSUITE, plain, &other));
    assert!(matches!(result, Err(KeyPackageError::Credential(_))), "not a device credential: {result:?}");
}

#[test]
fn publishing_or_storing_a_wrong_package_is_refused() {
    let (bob_dir, mallory_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bob = Owner::new(bob_dir.path(), BOB);
    let mallory = Owner::new(mallory_dir.path(), MALLORY);
    let mallorys = key_package::generate(&mallory.provider, &mallory.device, false).unwrap();
    let mut batch = Batch::new();
    let result = key_package::publish(&mut batch, bob.provider.crypto(), &bob.device, &mallorys);
    assert!(matches!(result, Err(KeyPackageError::NotOwnPackage { .. })), "{result:?}");
    assert!(batch.is_empty());

    let mut batch = Batch::new();
    batch.key_package(BOB, PHONE, &[0xab; 32], Some(vec![7, 1, 2, 3]));
    bob.store().write(batch).unwrap();
    let directory = KeyPackageDirectory::new(bob.store());
    let result = directory.claim(BOB, PHONE);
    assert!(matches!(result, Err(KeyPackageError::Corrupt { .. })), "{result:?}");
}
