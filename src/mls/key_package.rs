//! Key packages for the bridge's devices: how another client gets to add one of our devices to
//! a group without the device being online.
//!
//! Linearized Matrix publishes a device's key packages under the algorithm
//! [`KEY_PACKAGE_ALGORITHM`] and hands them out through `/user/keys/claim`. A key package's
//! private init key may decrypt only one Welcome (RFC 9420 §16.8), so every package is one-time:
//! a claim removes it, durably, before it leaves the process — after a crash the same package
//! must not be handed out a second time. The exception is the device's MLS *last-resort*
//! package (RFC 9420 §17.3, openmls `mark_as_last_resort`), handed out only when no one-time
//! package is left, and never removed by a claim, so the device stays reachable until it
//! replenishes.
//!
//! The two halves of a package live in two places and must become durable together: openmls
//! writes the private keys through the provider's storage ([`generate`]; pending in
//! [`RocksStorage`](super::RocksStorage)) and the public package goes into the device's directory
//! ([`publish`]). The caller puts both into one batch: `generate`, `publish`, then
//! [`take_batch`](super::RocksStorage::take_batch) into the same batch, then write it. A package
//! published without its private keys could be claimed but never joined with.
//!
//! What a claim returns comes from another server in general, so [`validate_claimed`] checks
//! everything the adder relies on before the package goes into a commit.

use std::sync::{Arc, Mutex, PoisonError};

use openmls::error::LibraryError;
use openmls::prelude::tls_codec::{self, Deserialize as _, Serialize as _};
use openmls::prelude::{
    Capabilities, Ciphersuite, ExtensionType, KeyPackage, KeyPackageIn, KeyPackageNewError, KeyPackageVerifyError,
    ProtocolVersion,
};
use openmls_traits::crypto::OpenMlsCrypto;

use super::identity::{DeviceCredential, IdentityError, LocalDevice};
use super::{CIPHERSUITE, MlsProvider};
use crate::store::{Batch, Store, StoreError};

/// The algorithm name of the bridge's key packages in `/user/keys/claim` and device keys:
/// `m.mls.v1.key_package.` followed by [`CIPHERSUITE`]'s name.
pub const KEY_PACKAGE_ALGORITHM: &str = "m.mls.v1.key_package.dhkemx25519-aes128gcm-sha256-ed25519";

/// The largest claimed key package [`validate_claimed`] parses. One of ours is about 300 bytes;
/// the limit leaves room for extensions and long identities while keeping a hostile server from
/// making us parse megabytes.
pub const MAX_KEY_PACKAGE_LEN: usize = 16 * 1024;

/// The stored flag byte of a one-time package.
const ONE_TIME: u8 = 0;
/// The stored flag byte of a last-resort package.
const LAST_RESORT: u8 = 1;

/// Why a key package could not be generated, published, claimed or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyPackageError {
    /// openmls could not build the package.
    #[error("cannot build a key package: {0}")]
    Build(#[from] KeyPackageNewError),
    /// openmls failed to hash a package.
    #[error("openmls: {0}")]
    Library(#[from] LibraryError),
    /// A package did not TLS-encode.
    #[error("cannot encode a key package: {0}")]
    Encode(#[source] tls_codec::Error),
    /// [`publish`] got a package whose leaf credential is not the device's.
    #[error("the key package's credential is not the one of {user} device {device}")]
    NotOwnPackage {
        /// The device's user.
        user: String,
        /// The device.
        device: String,
    },
    /// The claimed bytes exceed [`MAX_KEY_PACKAGE_LEN`].
    #[error("key package of {len} bytes exceeds the limit of {MAX_KEY_PACKAGE_LEN}")]
    TooLarge {
        /// The length received.
        len: usize,
    },
    /// The bytes are not exactly one TLS-encoded `KeyPackage`.
    #[error("malformed key package: {0}")]
    Malformed(String),
    /// The package's signatures, lifetime, version or extensions do not hold.
    #[error("key package does not verify: {0}")]
    Invalid(#[source] KeyPackageVerifyError),
    /// The package is for another ciphersuite than [`CIPHERSUITE`].
    #[error("key package ciphersuite {found:?} is not {CIPHERSUITE:?}")]
    WrongCiphersuite {
        /// The package's ciphersuite.
        found: Ciphersuite,
    },
    /// The leaf's credential names no device (neither a client URI nor an LM triple).
    #[error("key package credential: {0}")]
    Credential(#[source] IdentityError),
    /// The leaf's credential names another user or device than the one claimed for.
    #[error("key package is for {user} device {device}, but {expected_user} device {expected_device} was claimed")]
    WrongDevice {
        /// The user claimed for.
        expected_user: String,
        /// The device claimed for.
        expected_device: String,
        /// The user the credential names.
        user: String,
        /// The device the credential names.
        device: String,
    },
    /// The leaf signs with another key than the one its credential names.
    #[error("key package leaf signature key differs from the key its credential names")]
    SignatureKeyMismatch,
    /// A stored package value is not `flag ‖ package` with a flag of 0 or 1.
    #[error("stored key package {reference} is corrupt: {reason}")]
    Corrupt {
        /// The package's reference (hex).
        reference: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds a key package of `device` (one-time, or last resort if `last_resort`) with
/// [`CIPHERSUITE`] and openmls' default lifetime.
///
/// openmls writes the private init and encryption keys through `provider.storage()`, where they
/// stay pending: put them into the batch that [`publish`]es the package (see the module
/// documentation), or `persist()` them before the package is published.
///
/// The leaf's capabilities are [`capabilities`].
pub fn generate(
    provider: &MlsProvider,
    device: &LocalDevice,
    last_resort: bool,
) -> Result<KeyPackage, KeyPackageError> {
    let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
    if last_resort {
        builder = builder.mark_as_last_resort();
    }
    let bundle = builder.build(CIPHERSUITE, provider, &device.signer, device.credential_with_key.clone())?;
    Ok(bundle.into_key_package())
}

/// The capabilities this server's devices advertise. RFC 9420 §12.1: every extension of a key
/// package must be in its leaf's capabilities, and openmls' defaults list none, so without
/// `last_resort` a last-resort package does not validate. One-time packages list it too: the
/// device's leaves look the same whichever it joined with. The room state of MIMI rooms
/// ([`super::room_data`]) needs the `app_data_dictionary` extension and `AppDataUpdate` proposals.
pub fn capabilities() -> Capabilities {
    let extensions = [ExtensionType::LastResort, ExtensionType::AppDataDictionary];
    let proposals = [openmls::prelude::ProposalType::AppDataUpdate];
    Capabilities::new(None, Some(&[CIPHERSUITE]), Some(&extensions), Some(&proposals), None)
}

/// Adds `package`, a package of `device` made by [`generate`], to `batch` under its hash
/// reference; whether it is one-time or last resort is the package's own last-resort extension.
/// Put the provider's pending writes (the private keys) into the same batch.
pub fn publish(
    batch: &mut Batch,
    crypto: &impl OpenMlsCrypto,
    device: &LocalDevice,
    package: &KeyPackage,
) -> Result<(), KeyPackageError> {
    let (user, device_id) = (device.credential.user_id(), device.credential.device_id());
    if package.leaf_node().credential() != &device.credential_with_key.credential {
        return Err(KeyPackageError::NotOwnPackage { user: user.to_owned(), device: device_id.to_owned() });
    }
    let reference = package.hash_ref(crypto)?;
    let mut value = vec![if package.last_resort() { LAST_RESORT } else { ONE_TIME }];
    package.tls_serialize(&mut value).map_err(KeyPackageError::Encode)?;
    batch.key_package(user, device_id, reference.as_slice(), Some(value));
    Ok(())
}

/// How many packages a device has published, so its owner knows when to replenish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackageCount {
    /// One-time packages left.
    pub one_time: usize,
    /// Whether a last-resort package is published.
    pub last_resort: bool,
}

/// One stored package: reference, flag, TLS bytes.
struct Stored {
    reference: String,
    last_resort: bool,
    package: Vec<u8>,
}

/// The published key packages of the store's devices, handing out each one-time package once.
///
/// Claims hold one lock across finding a package and deleting it, so concurrent claims never
/// hand out the same one-time package. That lock is this value's: keep **one** directory per
/// store (share it in an `Arc`). Claims block on a synced write; from async code call them in
/// `spawn_blocking`.
#[derive(Debug)]
pub struct KeyPackageDirectory {
    store: Arc<Store>,
    claims: Mutex<()>,
}

impl KeyPackageDirectory {
    /// The directory of the packages in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, claims: Mutex::new(()) }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn stored(&self, user_id: &str, device_id: &str) -> Result<Vec<Stored>, KeyPackageError> {
        let mut out = Vec::new();
        for (reference, mut value) in self.store.key_packages(user_id, device_id)? {
            let corrupt = |reason| KeyPackageError::Corrupt { reference: reference.clone(), reason };
            let last_resort = match value.first() {
                Some(&ONE_TIME) => false,
                Some(&LAST_RESORT) => true,
                Some(_) => return Err(corrupt("the last-resort flag is neither 0 nor 1")),
                None => return Err(corrupt("empty value")),
            };
            value.remove(0);
            out.push(Stored { reference, last_resort, package: value });
        }
        Ok(out)
    }

    /// Claims a package of (`user_id`, `device_id`): a one-time package, deleted durably before
    /// it is returned; when none is left, the last-resort package, which stays; `None` when the
    /// device published nothing. Returns the TLS-encoded `KeyPackage`.
    pub fn claim(&self, user_id: &str, device_id: &str) -> Result<Option<Vec<u8>>, KeyPackageError> {
        self.claim_noting(user_id, device_id, |_, _| {})
    }

    /// [`claim`](Self::claim), writing what `note` adds (given the package's reference) in the
    /// same durable batch.
    pub fn claim_noting(
        &self,
        user_id: &str,
        device_id: &str,
        note: impl FnOnce(&mut Batch, &[u8]),
    ) -> Result<Option<Vec<u8>>, KeyPackageError> {
        // The guarded data is `()`: a panic while holding it cannot leave it torn.
        let _guard = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = self.stored(user_id, device_id)?;
        let Some(chosen) = stored.iter().find(|s| !s.last_resort).or_else(|| stored.iter().find(|s| s.last_resort))
        else {
            return Ok(None);
        };
        let reference = hex::decode(&chosen.reference)
            .map_err(|_| KeyPackageError::Corrupt { reference: chosen.reference.clone(), reason: "not hex" })?;
        let mut batch = Batch::new();
        if !chosen.last_resort {
            batch.key_package(user_id, device_id, &reference, None);
        }
        note(&mut batch, &reference);
        if !batch.is_empty() {
            self.store.write(batch)?;
        }
        Ok(Some(chosen.package.clone()))
    }

    /// How many one-time packages (`user_id`, `device_id`) has left and whether it has a
    /// last-resort package.
    pub fn count(&self, user_id: &str, device_id: &str) -> Result<PackageCount, KeyPackageError> {
        let mut count = PackageCount::default();
        for stored in self.stored(user_id, device_id)? {
            if stored.last_resort {
                count.last_resort = true;
            } else {
                count.one_time += 1;
            }
        }
        Ok(count)
    }
}

/// Checks a key package claimed for (`expected_user`, `expected_device`) before adding it to a
/// group: at most [`MAX_KEY_PACKAGE_LEN`] bytes, exactly one TLS `KeyPackage`, valid by openmls
/// (signatures, version, lifetime, extensions), of [`CIPHERSUITE`], its leaf credential a
/// client URI (or, from an older build, LM triple) naming exactly that user and device, and, for
/// a triple, the leaf signing with the key it names.
pub fn validate_claimed(
    bytes: &[u8],
    crypto: &impl OpenMlsCrypto,
    expected_user: &str,
    expected_device: &str,
) -> Result<KeyPackage, KeyPackageError> {
    if bytes.len() > MAX_KEY_PACKAGE_LEN {
        return Err(KeyPackageError::TooLarge { len: bytes.len() });
    }
    let package = KeyPackageIn::tls_deserialize_exact(bytes).map_err(|e| KeyPackageError::Malformed(e.to_string()))?;
    let package = package.validate(crypto, ProtocolVersion::Mls10).map_err(KeyPackageError::Invalid)?;
    if package.ciphersuite() != CIPHERSUITE {
        return Err(KeyPackageError::WrongCiphersuite { found: package.ciphersuite() });
    }
    let leaf = package.leaf_node();
    let credential =
        DeviceCredential::from_leaf(leaf.credential(), leaf.signature_key().as_slice()).map_err(|e| match e {
            IdentityError::SignatureKeyMismatch { .. } => KeyPackageError::SignatureKeyMismatch,
            e => KeyPackageError::Credential(e),
        })?;
    if credential.user_id() != expected_user || credential.device_id() != expected_device {
        return Err(KeyPackageError::WrongDevice {
            expected_user: expected_user.to_owned(),
            expected_device: expected_device.to_owned(),
            user: credential.user_id().to_owned(),
            device: credential.device_id().to_owned(),
        });
    }
    Ok(package)
}
