//! Who a leaf in a room's MLS group is, and whether the hub should let it in.
//!
//! MIMI (draft-ietf-mimi-protocol-06 §MLS) names every MLS client by a `BasicCredential` whose
//! identity is its client URI, `mimi://<provider>/d/<user>/<device>`; the leaf's own signature key
//! is the client's key. Linearized Matrix (draft -03/-04, §MLS) named it by the TLS-style triple
//! (user ID, device ID, signature key) instead, and leaves written before schema 5 still carry
//! that triple, so both are read; only the URI is written. What binds a device to its key is the
//! *device object* the user's server signs (the LM shape, which keeps the triple), and a commit
//! may add a device only for a user whose membership is `join`. Those pieces live here, so that
//! the hub, a follower and an offline replay police commits with one implementation:
//!
//! - [`DeviceCredential`]: a device and its key, whatever the credential's spelling.
//! - [`NamedClient`]: what a credential's identity bytes name, strictly parsed.
//! - [`DeviceObject`]: the signed JSON the user's server publishes for a device.
//! - [`validate_new_member`] / [`validate_new_leaf`]: the rule a commit's new leaves must pass.
//! - [`LocalDevice`]: a fresh device for one of the bridge's own users.
//!
//! The draft wants the device object signed by each listed key *and* by the user. The bridge holds
//! its users' devices itself, so the user's server signature (made with the bridge's server key)
//! is the signature that carries authority: a user signature would be made by the same party with
//! another key and adds nothing. Device objects are therefore signed, and verified, by the user's
//! server only.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use openmls::prelude::{Credential, CredentialWithKey, OpenMlsProvider};
use openmls_basic_credential::SignatureKeyPair;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::SIGNATURE_SCHEME;
use crate::event::keys::{B64_ANY_PAD, KeyRing, ServerKey};
use crate::event::meta::server_of;
use crate::event::sign::{SigStatus, check_server_signatures, sign_json, signing_bytes};
use crate::event::state::RoomState;

/// The algorithm every device object lists: the MLS suite of [`super::CIPHERSUITE`].
pub const ALGORITHM: &str = "m.mls.v1.dhkemx25519-aes128gcm-sha256-ed25519";

/// The prefix of the `keys` entry holding a device's credential; the device ID follows.
pub const CREDENTIAL_KEY_PREFIX: &str = "m.mls.v1.credential.ed25519:";

mod credential;

pub use credential::{DeviceCredential, NamedClient, is_device_id};

/// Why a device object's server signature did not hold.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureFault {
    /// The user's server did not sign the object at all.
    #[error("not signed by the user's server {server}")]
    Unsigned {
        /// The user's server.
        server: String,
    },
    /// The server signed only with keys the key ring does not know.
    #[error("signed by {server} only with unknown key(s) {key_ids}")]
    UnknownKey {
        /// The user's server.
        server: String,
        /// The unknown key IDs, comma-separated.
        key_ids: String,
    },
    /// A signature by a known key does not verify.
    #[error("signature by {server} key {key_id} does not verify")]
    Bad {
        /// The user's server.
        server: String,
        /// The key whose signature failed.
        key_id: String,
    },
}

/// Why a credential, device object or new member is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Bytes or JSON that do not have the required shape.
    #[error("malformed: {what}")]
    Malformed {
        /// What is wrong, and where.
        what: String,
    },
    /// The credential's user is not joined to the room.
    #[error("{user} is not joined to the room (membership: {})", membership.as_deref().unwrap_or("none"))]
    NotJoined {
        /// The credential's user.
        user: String,
        /// Their current membership; `None` when they have no member event.
        membership: Option<String>,
    },
    /// No device object is known for the credential's (user, device).
    #[error("no device object for {user} device {device}")]
    UnknownDevice {
        /// The credential's user.
        user: String,
        /// The credential's device.
        device: String,
    },
    /// The device object is not signed by the user's server.
    #[error("device object of {user} device {device}: {fault}")]
    DeviceSignature {
        /// The device object's user.
        user: String,
        /// The device object's device.
        device: String,
        /// What is wrong with the signature.
        fault: SignatureFault,
    },
    /// Two things that must name the same credential do not.
    #[error("credential mismatch for {user} device {device}: {reason}")]
    CredentialMismatch {
        /// The user named by the side being checked.
        user: String,
        /// The device named by the side being checked.
        device: String,
        /// Which two things disagree.
        reason: &'static str,
    },
    /// The leaf signs with another key than its credential names.
    #[error("the leaf of {user} device {device} signs with a key its credential does not name")]
    SignatureKeyMismatch {
        /// The credential's user.
        user: String,
        /// The credential's device.
        device: String,
    },
    /// openmls could not generate a key pair.
    #[error("key generation failed: {0}")]
    Crypto(String),
    /// The MLS storage refused the new key pair.
    #[error("MLS storage: {0}")]
    Storage(String),
}

fn malformed(what: impl Into<String>) -> IdentityError {
    IdentityError::Malformed { what: what.into() }
}

/// A device object as the LM draft publishes it (its `keys` entry is the device's LM triple,
/// which binds its key):
///
/// ```json
/// {"device_id": "DEV", "user_id": "@u:server",
///  "algorithms": ["m.mls.v1.dhkemx25519-aes128gcm-sha256-ed25519"],
///  "keys": {"m.mls.v1.credential.ed25519:DEV": "<base64 credential identity>"},
///  "signatures": {"server": {"ed25519:KEY": "<signature>"}}}
/// ```
///
/// Held as canonical JSON; nothing in it is trusted before [`verify`](Self::verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceObject {
    json: CanonicalJsonObject,
}

impl DeviceObject {
    /// The device object of `credential`, signed with `server_key` as the user's server.
    pub fn new_signed(credential: &DeviceCredential, server_key: &ServerKey) -> Self {
        let string = |s: &str| CanonicalJsonValue::String(s.to_owned());
        let mut keys = CanonicalJsonObject::new();
        keys.insert(credential.key_name(), string(&STANDARD_NO_PAD.encode(credential.to_triple())));
        let mut json = CanonicalJsonObject::new();
        json.insert("device_id".to_owned(), string(credential.device_id()));
        json.insert("user_id".to_owned(), string(credential.user_id()));
        json.insert("algorithms".to_owned(), CanonicalJsonValue::Array(vec![string(ALGORITHM)]));
        json.insert("keys".to_owned(), CanonicalJsonValue::Object(keys));
        sign_json(server_key, server_of(credential.user_id()), &mut json);
        Self { json }
    }

    /// Wraps JSON received from elsewhere (unchecked until [`verify`](Self::verify)).
    pub fn from_json(json: CanonicalJsonObject) -> Self {
        Self { json }
    }

    /// The JSON object.
    pub fn as_json(&self) -> &CanonicalJsonObject {
        &self.json
    }

    /// The JSON object, mutably (for callers that add signatures or tests that tamper).
    pub fn json_mut(&mut self) -> &mut CanonicalJsonObject {
        &mut self.json
    }

    fn string_field(&self, field: &str) -> Result<&str, IdentityError> {
        match self.json.get(field) {
            Some(CanonicalJsonValue::String(s)) => Ok(s),
            _ => Err(malformed(format!("device object field `{field}` must be a string"))),
        }
    }

    /// Checks the object: its fields have the draft's shape, it lists [`ALGORITHM`], its credential
    /// parses and names the object's user and device, and the user's server signed it (every
    /// signature of that server by a known key verifies, and there is at least one). Returns the
    /// credential it vouches for.
    pub fn verify(&self, keys: &KeyRing) -> Result<DeviceCredential, IdentityError> {
        let user = self.string_field("user_id")?;
        let device = self.string_field("device_id")?;
        match self.json.get("algorithms") {
            Some(CanonicalJsonValue::Array(items))
                if items.iter().any(|a| a == &CanonicalJsonValue::String(ALGORITHM.to_owned())) => {}
            _ => return Err(malformed(format!("device object `algorithms` must list {ALGORITHM}"))),
        }
        let key_name = format!("{CREDENTIAL_KEY_PREFIX}{device}");
        let encoded = match self.json.get("keys") {
            Some(CanonicalJsonValue::Object(entries)) => match entries.get(&key_name) {
                Some(CanonicalJsonValue::String(encoded)) => encoded,
                _ => return Err(malformed(format!("device object `keys` has no string `{key_name}`"))),
            },
            _ => return Err(malformed("device object `keys` must be an object")),
        };
        let identity =
            B64_ANY_PAD.decode(encoded).map_err(|_| malformed(format!("`keys.{key_name}` is not base64")))?;
        let credential = DeviceCredential::from_triple(&identity)?;
        if credential.user_id() != user || credential.device_id() != device {
            return Err(IdentityError::CredentialMismatch {
                user: user.to_owned(),
                device: device.to_owned(),
                reason: "the device object's credential names another user or device",
            });
        }
        let server = server_of(user);
        let fault = |fault| IdentityError::DeviceSignature { user: user.to_owned(), device: device.to_owned(), fault };
        let verdicts = check_server_signatures(&self.json, server, &signing_bytes(&self.json), keys);
        if verdicts.is_empty() {
            return Err(fault(SignatureFault::Unsigned { server: server.to_owned() }));
        }
        if let Some((key_id, _)) = verdicts.iter().find(|(_, status)| *status == SigStatus::Bad) {
            return Err(fault(SignatureFault::Bad { server: server.to_owned(), key_id: key_id.clone() }));
        }
        if !verdicts.iter().any(|(_, status)| *status == SigStatus::Ok) {
            let key_ids = verdicts.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(",");
            return Err(fault(SignatureFault::UnknownKey { server: server.to_owned(), key_ids }));
        }
        Ok(credential)
    }
}

/// Where the hub looks up the device objects users' servers have published.
pub trait DeviceDirectory {
    /// The device object of (`user_id`, `device_id`), if one is known.
    fn device(&self, user_id: &str, device_id: &str) -> Option<DeviceObject>;

    /// Whether this directory speaks for `user_id`'s devices. For users it does not (those of
    /// other MIMI providers, which publish no device objects), an added device is checked as
    /// replay checks it: its user must be joined.
    fn vouches_for(&self, _user_id: &str) -> bool {
        true
    }
}

/// A [`DeviceDirectory`] in memory, keyed by (user, device).
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    devices: BTreeMap<(String, String), DeviceObject>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the object of (`user_id`, `device_id`), stored as given.
    pub fn insert(&mut self, user_id: &str, device_id: &str, object: DeviceObject) {
        self.devices.insert((user_id.to_owned(), device_id.to_owned()), object);
    }
}

impl DeviceDirectory for MemoryDirectory {
    fn device(&self, user_id: &str, device_id: &str) -> Option<DeviceObject> {
        self.devices.get(&(user_id.to_owned(), device_id.to_owned())).cloned()
    }
}

/// The LM rule for a leaf a commit adds: its credential parses, its user's membership in `state`
/// is `join`, a device object for (user, device) is known to `devices` and verifies against
/// `keys`, and, if the credential is an LM triple, the triple is exactly the published one.
/// Returns the device as published.
///
/// A client URI names no key, so this checks the name only; the hub calls [`validate_new_leaf`],
/// which also checks that the leaf signs with the published key.
pub fn validate_new_member(
    credential: &Credential,
    state: &RoomState,
    devices: &(impl DeviceDirectory + ?Sized),
    keys: &KeyRing,
) -> Result<DeviceCredential, IdentityError> {
    let named = NamedClient::from_credential(credential)?;
    let (user, device) = (named.user_id.as_str(), named.device_id.as_str());
    match state.membership(user) {
        Some("join") => {}
        other => return Err(IdentityError::NotJoined { user: user.to_owned(), membership: other.map(str::to_owned) }),
    }
    let object = devices
        .device(user, device)
        .ok_or_else(|| IdentityError::UnknownDevice { user: user.to_owned(), device: device.to_owned() })?;
    let published = object.verify(keys)?;
    if (published.user_id(), published.device_id()) != (user, device) {
        return Err(IdentityError::CredentialMismatch {
            user: user.to_owned(),
            device: device.to_owned(),
            reason: "the device object found for the leaf publishes another device",
        });
    }
    if named.signature_key.as_deref().is_some_and(|key| key != published.signature_key()) {
        return Err(IdentityError::CredentialMismatch {
            user: user.to_owned(),
            device: device.to_owned(),
            reason: "the leaf's credential differs from the one the device object publishes",
        });
    }
    Ok(published)
}

/// [`validate_new_member`], and the leaf's own signature key (`leaf_signature_key`, the leaf
/// node's `signature_key`) must be the published key. Without this a leaf could take a published
/// device's name and sign with a key of its own.
pub fn validate_new_leaf(
    credential: &Credential,
    leaf_signature_key: &[u8],
    state: &RoomState,
    devices: &(impl DeviceDirectory + ?Sized),
    keys: &KeyRing,
) -> Result<DeviceCredential, IdentityError> {
    let published = validate_new_member(credential, state, devices, keys)?;
    if published.signature_key() != leaf_signature_key {
        return Err(IdentityError::SignatureKeyMismatch {
            user: published.user_id().to_owned(),
            device: published.device_id().to_owned(),
        });
    }
    Ok(published)
}

/// A device of one of the bridge's own users: its signing key (also written to MLS storage), its
/// credential and its signed device object.
pub struct LocalDevice {
    /// The device's MLS signing key; it is also in the provider's storage.
    pub signer: SignatureKeyPair,
    /// The device's identity.
    pub credential: DeviceCredential,
    /// The openmls credential and public key, for key packages and groups.
    pub credential_with_key: CredentialWithKey,
    /// The device object, signed by the user's server.
    pub object: DeviceObject,
}

impl std::fmt::Debug for LocalDevice {
    /// Without the signing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDevice")
            .field("signer", &"<redacted>")
            .field("credential", &self.credential)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl LocalDevice {
    /// Generates a device for `user_id`: a fresh Ed25519 key pair stored through
    /// `provider.storage()` (for the bridge's provider, pending until the next batch), and its
    /// device object signed with `server_key` (the key of the user's server, i.e. the bridge's).
    pub fn generate<P: OpenMlsProvider>(
        provider: &P,
        server_key: &ServerKey,
        user_id: &str,
        device_id: &str,
    ) -> Result<Self, IdentityError> {
        let signer = SignatureKeyPair::new(SIGNATURE_SCHEME).map_err(|e| IdentityError::Crypto(format!("{e:?}")))?;
        let credential = DeviceCredential::new(user_id, device_id, signer.public())?;
        signer.store(provider.storage()).map_err(|e| IdentityError::Storage(e.to_string()))?;
        let credential_with_key =
            CredentialWithKey { credential: credential.to_credential(), signature_key: signer.public().into() };
        let object = DeviceObject::new_signed(&credential, server_key);
        Ok(Self { signer, credential, credential_with_key, object })
    }
}
