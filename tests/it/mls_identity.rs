//! MLS identities: the credential byte layout, signed device objects, and the rule the hub applies
//! to a commit's new leaves — with real Ed25519 keys, real openmls credentials and a real store.

use std::sync::Arc;

use mimi_bridge::event::KeyRing;
use mimi_bridge::event::ServerKey;
use mimi_bridge::event::state::{RoomState, StateEvent};
use mimi_bridge::mls::MlsProvider;
use mimi_bridge::mls::identity::{
    DeviceCredential, DeviceDirectory as _, DeviceObject, IdentityError, LocalDevice, MemoryDirectory, NamedClient,
    SignatureFault, validate_new_leaf, validate_new_member,
};
use mimi_bridge::store::Store;
use openmls::prelude::{BasicCredential, Credential, CredentialType, OpenMlsProvider as _};
use openmls_basic_credential::SignatureKeyPair;
use ruma::CanonicalJsonValue;

const ALICE: &str = "@alice:hub.example";
const BOB: &str = "@bob:hub.example";
const MALLORY: &str = "@mallory:hub.example";
const SERVER: &str = "hub.example";

fn fresh_key() -> Vec<u8> {
    SignatureKeyPair::new(mimi_bridge::mls::SIGNATURE_SCHEME).unwrap().to_public_vec()
}

fn server_key() -> ServerKey {
    ServerKey::from_seed("hub1", [7; 32]).unwrap()
}

fn ring(key: &ServerKey) -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert(SERVER, key.key_id(), key.verifying_key());
    ring
}

fn malformed(result: Result<DeviceCredential, IdentityError>) -> String {
    match result {
        Err(IdentityError::Malformed { what }) => what,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// Builds identity bytes field by field (u16-BE length prefixes).
fn layout(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields {
        out.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

#[test]
fn credentials_are_client_uris_and_triples_are_still_read() {
    let key = fresh_key();
    let credential = DeviceCredential::new(ALICE, "PHONE_1", &key).unwrap();
    assert_eq!(credential.client_uri(), "mimi://hub.example/d/alice/PHONE_1");
    let openmls = credential.to_credential();
    assert_eq!(openmls.credential_type(), CredentialType::Basic);
    assert_eq!(BasicCredential::try_from(openmls.clone()).unwrap().identity(), b"mimi://hub.example/d/alice/PHONE_1");
    assert_eq!(DeviceCredential::from_leaf(&openmls, &key).unwrap(), credential);
    let named = NamedClient::from_credential(&openmls).unwrap();
    assert_eq!((named.user_id.as_str(), named.device_id.as_str(), named.signature_key), (ALICE, "PHONE_1", None));

    // The LM triple: its layout, and a leaf that carries it is the same device.
    let triple = credential.to_triple();
    assert_eq!(triple, layout(&[ALICE.as_bytes(), b"PHONE_1", &key]));
    assert_eq!(&triple[..2], &[0, 18]);
    assert_eq!(DeviceCredential::from_triple(&triple).unwrap(), credential);
    let legacy = credential.to_triple_credential();
    assert_eq!(BasicCredential::try_from(legacy.clone()).unwrap().identity(), triple.as_slice());
    assert_eq!(DeviceCredential::from_leaf(&legacy, &key).unwrap(), credential);
    // … but only if the leaf signs with the key the triple names.
    assert_eq!(
        DeviceCredential::from_leaf(&legacy, &fresh_key()),
        Err(IdentityError::SignatureKeyMismatch { user: ALICE.to_owned(), device: "PHONE_1".to_owned() })
    );
    assert_eq!(credential.key_name(), "m.mls.v1.credential.ed25519:PHONE_1");

    // Odd localparts are percent-encoded, and come back.
    let odd = DeviceCredential::new("@a/b?c:hub.example", "D", &key).unwrap();
    assert_eq!(odd.client_uri(), "mimi://hub.example/d/a%2Fb%3Fc/D");
    assert_eq!(DeviceCredential::from_leaf(&odd.to_credential(), &key).unwrap(), odd);
}

#[test]
fn client_uris_are_parsed_strictly() {
    let named = |uri: &str| NamedClient::from_identity(uri.as_bytes());
    assert!(named("mimi://hub.example/d/alice/DEV").is_ok());
    for uri in [
        "mimi://hub.example/u/alice",
        "mimi://hub.example/d/alice",
        "mimi://hub.example/d/alice/",
        "mimi://hub.example/d//DEV",
        "mimi://hub.example/d/alice/DEV-1",
        "mimi://hub.example/d/alice/DE%20V",
        "mimi://hub.example/d/al%69ce/DEV",
        "mimi://hub example/d/alice/DEV",
        "mimi://hub.example/d/alice/DEV/more",
    ] {
        assert!(matches!(named(uri), Err(IdentityError::Malformed { .. })), "{uri}");
    }
    assert!(matches!(NamedClient::from_identity(b"mimi://\xff"), Err(IdentityError::Malformed { .. })));
}

#[test]
fn identity_parsing_is_strict() {
    let key = fresh_key();
    let good = layout(&[ALICE.as_bytes(), b"DEV", &key]);

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(malformed(DeviceCredential::from_triple(&trailing)).contains("trailing"));
    for cut in [0, 1, 5, good.len() - 1] {
        malformed(DeviceCredential::from_triple(&good[..cut]));
    }
    assert!(malformed(DeviceCredential::from_triple(&layout(&[b"alice", b"DEV", &key]))).contains("user ID"));
    assert!(malformed(DeviceCredential::from_triple(&layout(&[b"@alice", b"DEV", &key]))).contains("user ID"));
    assert!(malformed(DeviceCredential::from_triple(&layout(&[&[0xff, 0xfe], b"DEV", &key]))).contains("UTF-8"));
    for device in [&b""[..], b"DE V", b"DEV-1", b"D\xc3\xa9"] {
        malformed(DeviceCredential::from_triple(&layout(&[ALICE.as_bytes(), device, &key])));
    }
    assert!(malformed(DeviceCredential::from_triple(&layout(&[ALICE.as_bytes(), b"DEV", &key[..31]]))).contains("31"));
    let mut long = key.clone();
    long.push(1);
    malformed(DeviceCredential::from_triple(&layout(&[ALICE.as_bytes(), b"DEV", &long])));

    let x509 = Credential::new(CredentialType::X509, good);
    assert!(
        matches!(NamedClient::from_credential(&x509), Err(IdentityError::Malformed { what }) if what.contains("not basic"))
    );
    assert!(DeviceCredential::new(ALICE, "DEV", &key[..16]).is_err());
}

#[test]
fn device_object_signs_and_verifies() {
    let key = server_key();
    let credential = DeviceCredential::new(ALICE, "LAPTOP", &fresh_key()).unwrap();
    let object = DeviceObject::new_signed(&credential, &key);
    let json = serde_json::to_value(object.as_json()).unwrap();
    assert_eq!(json["device_id"], "LAPTOP");
    assert_eq!(json["user_id"], ALICE);
    assert_eq!(json["algorithms"], serde_json::json!(["m.mls.v1.dhkemx25519-aes128gcm-sha256-ed25519"]));
    assert!(json["keys"]["m.mls.v1.credential.ed25519:LAPTOP"].is_string());
    assert!(json["signatures"][SERVER]["ed25519:hub1"].is_string());
    assert_eq!(object.verify(&ring(&key)).unwrap(), credential);

    // A round trip through JSON text keeps it verifiable.
    let reparsed = DeviceObject::from_json(
        mimi_bridge::event::canonical::parse_object(serde_json::to_string(&json).unwrap().as_bytes()).unwrap(),
    );
    assert_eq!(reparsed.verify(&ring(&key)).unwrap(), credential);
}

#[test]
fn device_object_tampering_is_detected() {
    let key = server_key();
    let credential = DeviceCredential::new(ALICE, "LAPTOP", &fresh_key()).unwrap();
    let object = DeviceObject::new_signed(&credential, &key);

    // Changed user: the credential inside still names Alice.
    let mut changed_user = object.clone();
    changed_user.json_mut().insert("user_id".to_owned(), CanonicalJsonValue::String(MALLORY.to_owned()));
    assert!(matches!(
        changed_user.verify(&ring(&key)),
        Err(IdentityError::CredentialMismatch { ref user, .. }) if user == MALLORY
    ));

    // Changed key: a different (well-formed) credential for the same device.
    let mut changed_key = object.clone();
    let other = DeviceCredential::new(ALICE, "LAPTOP", &fresh_key()).unwrap();
    let signed_other = DeviceObject::new_signed(&other, &key);
    changed_key.json_mut().insert("keys".to_owned(), signed_other.as_json()["keys"].clone());
    assert_eq!(
        changed_key.verify(&ring(&key)),
        Err(IdentityError::DeviceSignature {
            user: ALICE.to_owned(),
            device: "LAPTOP".to_owned(),
            fault: SignatureFault::Bad { server: SERVER.to_owned(), key_id: "ed25519:hub1".to_owned() },
        })
    );

    // Wrong server key: the ring holds another key under the same ID …
    let impostor = ServerKey::from_seed("hub1", [8; 32]).unwrap();
    assert!(matches!(
        object.verify(&ring(&impostor)),
        Err(IdentityError::DeviceSignature { fault: SignatureFault::Bad { .. }, .. })
    ));
    // … or the object is signed by a key the ring does not know …
    let unknown = DeviceObject::new_signed(&credential, &ServerKey::from_seed("other", [9; 32]).unwrap());
    assert!(matches!(
        unknown.verify(&ring(&key)),
        Err(IdentityError::DeviceSignature { fault: SignatureFault::UnknownKey { .. }, .. })
    ));
    // … or not by the user's server at all.
    let mut unsigned = object.clone();
    unsigned.json_mut().remove("signatures");
    assert!(matches!(
        unsigned.verify(&ring(&key)),
        Err(IdentityError::DeviceSignature { fault: SignatureFault::Unsigned { .. }, .. })
    ));

    // Shape errors.
    let mut no_algorithm = object.clone();
    no_algorithm.json_mut().insert("algorithms".to_owned(), CanonicalJsonValue::Array(Vec::new()));
    assert!(matches!(no_algorithm.verify(&ring(&key)), Err(IdentityError::Malformed { .. })));
    let mut bad_b64 = object.clone();
    let mut keys = ruma::CanonicalJsonObject::new();
    keys.insert(credential.key_name(), CanonicalJsonValue::String("!!".to_owned()));
    bad_b64.json_mut().insert("keys".to_owned(), CanonicalJsonValue::Object(keys));
    assert!(matches!(bad_b64.verify(&ring(&key)), Err(IdentityError::Malformed { .. })));
}

fn member(membership: &str) -> StateEvent {
    let CanonicalJsonValue::Object(content) =
        CanonicalJsonValue::try_from(serde_json::json!({ "membership": membership })).unwrap()
    else {
        panic!("an object");
    };
    StateEvent { event_id: format!("${membership}"), sender: ALICE.to_owned(), content }
}

/// A room where Alice is joined, Bob invited and Mallory left; all three have published devices.
struct Room {
    state: RoomState,
    directory: MemoryDirectory,
    keys: KeyRing,
    server_key: ServerKey,
    alice: DeviceCredential,
}

fn room() -> Room {
    let server_key = server_key();
    let mut state = RoomState::new();
    let mut directory = MemoryDirectory::new();
    for (user, membership) in [(ALICE, "join"), (BOB, "invite"), (MALLORY, "leave")] {
        state.insert("m.room.member".to_owned(), user.to_owned(), member(membership));
        let credential = DeviceCredential::new(user, "DEV", &fresh_key()).unwrap();
        directory.insert(user, "DEV", DeviceObject::new_signed(&credential, &server_key));
    }
    let alice = directory.device(ALICE, "DEV").unwrap().verify(&ring(&server_key)).unwrap();
    Room { state, directory, keys: ring(&server_key), server_key, alice }
}

#[test]
fn a_joined_users_published_device_is_accepted() {
    let r = room();
    let leaf = r.alice.to_credential();
    assert_eq!(validate_new_member(&leaf, &r.state, &r.directory, &r.keys).unwrap(), r.alice);
    assert_eq!(validate_new_leaf(&leaf, r.alice.signature_key(), &r.state, &r.directory, &r.keys).unwrap(), r.alice);
    // A leaf written before schema 5 names the same device by its LM triple.
    let legacy = r.alice.to_triple_credential();
    assert_eq!(validate_new_leaf(&legacy, r.alice.signature_key(), &r.state, &r.directory, &r.keys).unwrap(), r.alice);
}

#[test]
fn users_not_joined_are_refused() {
    let r = room();
    for (user, membership) in [(BOB, Some("invite")), (MALLORY, Some("leave")), ("@carol:hub.example", None)] {
        let credential = match r.directory.device(user, "DEV") {
            Some(object) => object.verify(&r.keys).unwrap(),
            None => DeviceCredential::new(user, "DEV", &fresh_key()).unwrap(),
        };
        let err = validate_new_member(&credential.to_credential(), &r.state, &r.directory, &r.keys).unwrap_err();
        assert_eq!(
            err,
            IdentityError::NotJoined { user: user.to_owned(), membership: membership.map(str::to_owned) },
            "{user}"
        );
        assert!(err.to_string().contains(membership.unwrap_or("none")));
    }
}

#[test]
fn unknown_devices_are_refused() {
    let r = room();
    let tablet = DeviceCredential::new(ALICE, "TABLET", &fresh_key()).unwrap();
    assert_eq!(
        validate_new_member(&tablet.to_credential(), &r.state, &r.directory, &r.keys),
        Err(IdentityError::UnknownDevice { user: ALICE.to_owned(), device: "TABLET".to_owned() })
    );
}

#[test]
fn credentials_that_differ_from_the_published_one_are_refused() {
    let r = room();
    // Mallory's key under Alice's name and device.
    let mallory_key = r.directory.device(MALLORY, "DEV").unwrap().verify(&r.keys).unwrap();
    // As an LM triple the credential itself differs; a client URI names no key, so the leaf's
    // key is what differs.
    let forged = DeviceCredential::new(ALICE, "DEV", mallory_key.signature_key()).unwrap();
    assert!(matches!(
        validate_new_member(&forged.to_triple_credential(), &r.state, &r.directory, &r.keys),
        Err(IdentityError::CredentialMismatch { ref user, .. }) if user == ALICE
    ));
    assert_eq!(
        validate_new_leaf(&forged.to_credential(), forged.signature_key(), &r.state, &r.directory, &r.keys),
        Err(IdentityError::SignatureKeyMismatch { user: ALICE.to_owned(), device: "DEV".to_owned() })
    );

    // A directory entry for Alice's device that is really Bob's device object.
    let mut directory = r.directory.clone();
    directory.insert(ALICE, "DEV", r.directory.device(BOB, "DEV").unwrap());
    assert!(matches!(
        validate_new_member(&r.alice.to_credential(), &r.state, &directory, &r.keys),
        Err(IdentityError::CredentialMismatch { .. })
    ));

    // The published credential, but a leaf that signs with another key.
    assert_eq!(
        validate_new_leaf(&r.alice.to_credential(), &fresh_key(), &r.state, &r.directory, &r.keys),
        Err(IdentityError::SignatureKeyMismatch { user: ALICE.to_owned(), device: "DEV".to_owned() })
    );

    // Garbage in the leaf.
    let garbage: Credential = BasicCredential::new(b"alice".to_vec()).into();
    assert!(matches!(
        validate_new_member(&garbage, &r.state, &r.directory, &r.keys),
        Err(IdentityError::Malformed { .. })
    ));
}

#[test]
fn forged_device_object_signatures_are_refused() {
    let r = room();
    let forger = ServerKey::from_seed("hub1", [42; 32]).unwrap();
    let attacker = DeviceCredential::new(ALICE, "EVIL", &fresh_key()).unwrap();
    let mut directory = r.directory.clone();
    directory.insert(ALICE, "EVIL", DeviceObject::new_signed(&attacker, &forger));
    assert!(matches!(
        validate_new_member(&attacker.to_credential(), &r.state, &directory, &r.keys),
        Err(IdentityError::DeviceSignature { fault: SignatureFault::Bad { .. }, .. })
    ));
    // The same device signed with the real key passes.
    directory.insert(ALICE, "EVIL", DeviceObject::new_signed(&attacker, &r.server_key));
    assert!(validate_new_member(&attacker.to_credential(), &r.state, &directory, &r.keys).is_ok());
}

#[test]
fn local_devices_are_stored_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let provider = MlsProvider::new(Arc::new(Store::open(dir.path()).unwrap()));
    let key = server_key();
    let device = LocalDevice::generate(&provider, &key, ALICE, "BRIDGE_1").unwrap();
    provider.storage().persist().unwrap();

    assert_eq!(device.credential.user_id(), ALICE);
    assert_eq!(device.credential.signature_key(), device.signer.public());
    assert_eq!(device.credential_with_key.credential, device.credential.to_credential());
    assert_eq!(device.credential_with_key.signature_key.as_slice(), device.signer.public());
    assert_eq!(device.object.verify(&ring(&key)).unwrap(), device.credential);
    let read = SignatureKeyPair::read(provider.storage(), device.signer.public(), mimi_bridge::mls::SIGNATURE_SCHEME)
        .expect("the key pair is in the provider's storage");
    assert_eq!(read.public(), device.signer.public());

    assert!(matches!(
        LocalDevice::generate(&provider, &key, "alice", "BRIDGE_1"),
        Err(IdentityError::Malformed { .. })
    ));
}
