//! The hub's directories: the servers' keys it trusts, device objects (this server's devices,
//! with their signing keys, and other servers'), and the key packages of this server's devices.
//!
//! They are apart from the linearizer: nothing here takes a room's lock, and the linearizer
//! consults them (keys to verify what it appends, devices to admit into groups) without owning
//! them. One device per local user: its signing key lives in the store (in the device's MLS
//! namespace) and its device object, signed with this server's key, in the device directory.
//! Key packages are published here and claimed by whoever adds the device (the `keyMaterial`
//! half of the MIMI protocol). Every method writes synced: call them from blocking threads.

use std::sync::{Arc, RwLock};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _, VLBytes};
use openmls::prelude::{KeyPackage, KeyPackageRef, OpenMlsProvider as _};
use openmls_traits::storage::StorageProvider as _;

use crate::event::meta::server_of;
use crate::event::{KeyRing, ServerKey};
use crate::mls::directory::{self, StoreDirectory};
use crate::mls::identity::{DeviceCredential, DeviceObject, LocalDevice};
use crate::mls::key_package::{self, KeyPackageDirectory};
use crate::mls::member::Member;
use crate::store::{Batch, Store, StoreError};

use super::HubError;
use super::mls::client_error;

/// See the module documentation.
pub struct Directories {
    server_name: String,
    key: ServerKey,
    store: Arc<Store>,
    keys: RwLock<KeyRing>,
    /// Device objects, for admitting devices to rooms' groups.
    devices: StoreDirectory,
    /// Key packages of this server's devices, for claims.
    key_packages: KeyPackageDirectory,
}

impl std::fmt::Debug for Directories {
    /// Without the signing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directories").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Directories {
    /// The directories of `server_name` over `store`: its own key and every key already in the
    /// store are trusted.
    pub(super) fn open(server_name: &str, key: &ServerKey, store: Arc<Store>) -> Result<Self, HubError> {
        let mut ring = KeyRing::new();
        for (server, key_id, public) in store.server_keys()? {
            if let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) {
                ring.insert(&server, &key_id, key);
            }
        }
        let directories = Self {
            server_name: server_name.to_owned(),
            key: key.clone(),
            keys: RwLock::new(ring),
            devices: StoreDirectory::new(Arc::clone(&store)),
            key_packages: KeyPackageDirectory::new(Arc::clone(&store)),
            store,
        };
        directories.trust_key(server_name, key.key_id(), key.verifying_key())?;
        directories.reissue_retired()?;
        Ok(directories)
    }

    /// Replaces the packages the schema-5 upgrade retired (their leaves name the device by the
    /// LM triple): per device, in one batch, the one-time packages' private keys are forgotten
    /// and as many new packages (client URI credentials, a last resort for a last resort) are
    /// published. A crash part-way leaves the remaining devices for the next start.
    fn reissue_retired(&self) -> Result<(), HubError> {
        let mut by_device = std::collections::BTreeMap::<(String, String), Vec<(Vec<u8>, bool)>>::new();
        for retired in self.store.retired_key_packages()? {
            let device = (retired.user_id, retired.device_id);
            by_device.entry(device).or_default().push((retired.reference, retired.last_resort));
        }
        for ((user, device_id), packages) in by_device {
            let provider = Member::provider_for(&self.store, &user, &device_id);
            let mut batch = Batch::new();
            for (reference, last_resort) in &packages {
                // A one-time package still published was never handed out; a last resort may
                // have been, and a Welcome made with it must still open.
                if !last_resort {
                    provider.storage().delete_key_package(&package_ref(reference)?).map_err(client_error)?;
                }
                batch.forget_retired_key_package(&user, &device_id, reference);
            }
            let device = self.local_device(&user).ok().filter(|d| d.credential.device_id() == device_id);
            if let Some(device) = device {
                for (_, last_resort) in &packages {
                    let package = key_package::generate(&provider, &device, *last_resort).map_err(client_error)?;
                    key_package::publish(&mut batch, provider.crypto(), &device, &package).map_err(client_error)?;
                }
            }
            let _flush = provider.storage().take_batch(&mut batch);
            self.store.write(batch)?;
        }
        Ok(())
    }

    /// Trusts (and persists) a server's public key; logs keep the keys their signatures need.
    pub fn trust_key(&self, server: &str, key_id: &str, key: ed25519_dalek::VerifyingKey) -> Result<(), HubError> {
        match self.keys.read().ok().and_then(|ring| ring.get(server, key_id).copied()) {
            Some(known) if known == key => return Ok(()),
            // A key ID names one key forever: replacing it would orphan every signature made with it.
            Some(_) => return Err(HubError::KeyConflict { server: server.to_owned(), key_id: key_id.to_owned() }),
            None => {}
        }
        let mut batch = Batch::new();
        batch.add_server_key(server, key_id, key.as_bytes());
        self.store.write(batch)?;
        if let Ok(mut ring) = self.keys.write() {
            ring.insert(server, key_id, key);
        }
        Ok(())
    }

    /// The keys this server trusts (its own, pinned peers', and those its logs carry).
    pub fn trusted_keys(&self) -> KeyRing {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// The device directory, for the hub's checks of commits.
    pub(super) fn devices(&self) -> &StoreDirectory {
        &self.devices
    }

    /// This server's registered devices, with their signing keys.
    /// Only users `wanted` says yes to are loaded (each costs a signature check and a read).
    pub(super) fn local_devices(&self, wanted: impl Fn(&str) -> bool) -> Result<Vec<(String, LocalDevice)>, HubError> {
        let keys = self.trusted_keys();
        let mut out = Vec::new();
        for (user_id, _device_id, bytes) in self.store.device_objects()? {
            if server_of(&user_id) != self.server_name || !wanted(&user_id) {
                continue;
            }
            let object = crate::event::canonical::parse_object(&bytes)
                .map(DeviceObject::from_json)
                .map_err(|_| StoreError::corrupt("stored device object is not canonical JSON"))?;
            let credential = object.verify(&keys).map_err(client_error)?;
            let provider = Member::provider_for(&self.store, credential.user_id(), credential.device_id());
            out.push((user_id, Member::load_device(&provider, object, credential).map_err(client_error)?));
        }
        Ok(out)
    }

    pub(super) fn local_device(&self, user_id: &str) -> Result<LocalDevice, HubError> {
        self.local_devices(|user| user == user_id)?
            .into_iter()
            .find(|(user, _)| user == user_id)
            .map(|(_, device)| device)
            .ok_or_else(|| HubError::NoMlsDevice { user: user_id.to_owned() })
    }

    /// Registers the MLS device of a user of this server: a new signing key, kept in the store,
    /// and its device object signed with this server's key, with a last-resort key package
    /// published in the same batch, so that another provider can claim the device (add it to a
    /// room) from the start. One device per user; a device registered without a last resort (by
    /// an older version) gets one here.
    pub fn register_device(&self, user_id: &str, device_id: &str) -> Result<DeviceCredential, HubError> {
        if server_of(user_id) != self.server_name {
            return Err(HubError::NotLocalSender { sender: user_id.to_owned(), server: self.server_name.clone() });
        }
        if let Ok(device) = self.local_device(user_id) {
            let (user, device_id) = (device.credential.user_id(), device.credential.device_id());
            if !self.key_packages.count(user, device_id).map_err(client_error)?.last_resort {
                self.publish_key_packages(user_id, 0)?;
            }
            return Ok(device.credential);
        }
        let provider = Member::provider_for(&self.store, user_id, device_id);
        let device = LocalDevice::generate(&provider, &self.key, user_id, device_id).map_err(client_error)?;
        let last_resort = key_package::generate(&provider, &device, true).map_err(client_error)?;
        let mut batch = Batch::new();
        key_package::publish(&mut batch, provider.crypto(), &device, &last_resort).map_err(client_error)?;
        let _flush = provider.storage().take_batch(&mut batch);
        directory::publish(&mut batch, user_id, device_id, &device.object);
        self.store.write(batch)?;
        Ok(device.credential)
    }

    /// Records another server's device object (until federation fetches them): it must verify
    /// against that server's trusted key.
    pub fn publish_device(&self, object: &DeviceObject) -> Result<DeviceCredential, HubError> {
        let credential = object.verify(&self.trusted_keys()).map_err(client_error)?;
        let mut batch = Batch::new();
        directory::publish(&mut batch, credential.user_id(), credential.device_id(), object);
        self.store.write(batch)?;
        Ok(credential)
    }

    /// The device object of a user's device, as stored here.
    pub fn device_object(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceObject>, HubError> {
        let Some(bytes) = self.store.device_object(user_id, device_id)? else { return Ok(None) };
        let object = crate::event::canonical::parse_object(&bytes)
            .map_err(|_| StoreError::corrupt("stored device object is not canonical JSON"))?;
        Ok(Some(DeviceObject::from_json(object)))
    }

    /// Publishes `count` one-time key packages of `user_id`'s device and, if it has none yet, a
    /// last-resort one; their private keys are durable in the same batch.
    pub fn publish_key_packages(&self, user_id: &str, count: usize) -> Result<(), HubError> {
        let device = self.local_device(user_id)?;
        let (user, device_id) = (device.credential.user_id(), device.credential.device_id());
        let provider = Member::provider_for(&self.store, user, device_id);
        let has_last_resort = self.key_packages.count(user, device_id).map_err(client_error)?.last_resort;
        let mut batch = Batch::new();
        let last_resort = (!has_last_resort).then_some(true);
        for last_resort in std::iter::repeat_n(false, count).chain(last_resort) {
            let package = key_package::generate(&provider, &device, last_resort).map_err(client_error)?;
            key_package::publish(&mut batch, provider.crypto(), &device, &package).map_err(client_error)?;
        }
        let _flush = provider.storage().take_batch(&mut batch);
        self.store.write(batch)?;
        Ok(())
    }

    /// Claims a key package of a device of this server (one-time first, then the last resort).
    pub fn claim_key_package(&self, user_id: &str, device_id: &str) -> Result<Option<Vec<u8>>, HubError> {
        self.key_packages.claim(user_id, device_id).map_err(client_error)
    }

    /// Claims a key package of a device of this server for another provider, recording in the
    /// same durable batch which provider got it (`record`, keyed by the package's reference).
    pub fn claim_key_package_for(
        &self,
        user_id: &str,
        device_id: &str,
        provider: &str,
        record: &[u8],
    ) -> Result<Option<Vec<u8>>, HubError> {
        self.key_packages
            .claim_noting(user_id, device_id, |batch, reference| batch.key_package_claim(reference, provider, record))
            .map_err(client_error)
    }

    /// A fresh key package of a device of this server's `user_id` to add it to a group with:
    /// the device registered if it is not yet, one key package published and claimed (noting
    /// `(provider, record)` with the claim when given: the provider whose Welcome will use it).
    pub fn fresh_key_package(
        &self,
        user_id: &str,
        device_id: &str,
        noting: Option<(&str, &[u8])>,
    ) -> Result<KeyPackage, HubError> {
        self.register_device(user_id, device_id)?;
        self.publish_key_packages(user_id, 1)?;
        let claimed = match noting {
            Some((provider, record)) => self.claim_key_package_for(user_id, device_id, provider, record)?,
            None => self.claim_key_package(user_id, device_id)?,
        };
        let claimed = claimed.ok_or_else(|| HubError::MlsClient(format!("{user_id} has no key package to claim")))?;
        self.check_key_package(&claimed, user_id, device_id)
    }

    /// The devices of a user of this server (one today).
    pub fn local_device_ids(&self, user_id: &str) -> Result<Vec<String>, HubError> {
        match self.local_device(user_id) {
            Ok(device) => Ok(vec![device.credential.device_id().to_owned()]),
            Err(HubError::NoMlsDevice { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Validates a claimed key package of (`user_id`, `device_id`) for adding it to a group.
    pub fn check_key_package(&self, bytes: &[u8], user_id: &str, device_id: &str) -> Result<KeyPackage, HubError> {
        let crypto = openmls_rust_crypto::RustCrypto::default();
        key_package::validate_claimed(bytes, &crypto, user_id, device_id).map_err(client_error)
    }
}

/// A KeyPackageRef from its bytes (openmls builds them only by hashing, or from TLS).
fn package_ref(reference: &[u8]) -> Result<KeyPackageRef, HubError> {
    let tls = VLBytes::new(reference.to_vec()).tls_serialize_detached().map_err(client_error)?;
    KeyPackageRef::tls_deserialize_exact(&tls[..]).map_err(client_error)
}
