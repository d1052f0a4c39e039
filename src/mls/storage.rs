//! [`RocksStorage`]: openmls' storage provider over the store's `mlskey_value` column family.
//!
//! openmls writes through its storage provider in the middle of an operation and reads its own
//! writes back before the operation ends. The bridge, however, must make an MLS state change
//! durable in the same RocksDB batch as the event it produced: an encrypted message together
//! with the ratchet state it consumed, a commit together with the epoch it moved to. So nothing
//! here writes to RocksDB by itself. Reads look at three layers, newest first:
//!
//! 1. **pending**: what openmls wrote since the last [`RocksStorage::take_batch`];
//! 2. **in flight**: what a taken batch carries while it may not be durable yet, so that the
//!    next operation reads it rather than the older value still on disk (reusing a spent ratchet
//!    generation would reuse a key and nonce);
//! 3. the store.
//!
//! A delete is recorded as such in every layer and reaches RocksDB as a real delete: forward
//! secrecy depends on spent keys going away.
//!
//! Keys follow openmls' memory storage: `label ‖ serde_json(key) ‖ u16 big-endian storage
//! version` (the version is [`CURRENT_VERSION`]); compound keys are JSON arrays, e.g.
//! `EpochKeyPairs[group_id,epoch,leaf_index]`. Values are `serde_json`; lists (own leaf nodes,
//! proposal references) are one JSON array of the items, and an emptied list is deleted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider, traits};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::store::{Batch, Store, StoreError};

/// The 56 methods openmls requires (with `extensions-draft`), each a keyed read, write or delete on the overlay.
mod provider_impl;

/// The labels, exactly as openmls' memory storage spells them.
mod label {
    pub(super) const KEY_PACKAGE: &[u8] = b"KeyPackage";
    pub(super) const PSK: &[u8] = b"Psk";
    pub(super) const ENCRYPTION_KEY_PAIR: &[u8] = b"EncryptionKeyPair";
    pub(super) const SIGNATURE_KEY_PAIR: &[u8] = b"SignatureKeyPair";
    pub(super) const EPOCH_KEY_PAIRS: &[u8] = b"EpochKeyPairs";
    pub(super) const TREE: &[u8] = b"Tree";
    pub(super) const GROUP_CONTEXT: &[u8] = b"GroupContext";
    pub(super) const INTERIM_TRANSCRIPT_HASH: &[u8] = b"InterimTranscriptHash";
    pub(super) const CONFIRMATION_TAG: &[u8] = b"ConfirmationTag";
    pub(super) const JOIN_CONFIG: &[u8] = b"MlsGroupJoinConfig";
    pub(super) const OWN_LEAF_NODES: &[u8] = b"OwnLeafNodes";
    pub(super) const GROUP_STATE: &[u8] = b"GroupState";
    pub(super) const QUEUED_PROPOSAL: &[u8] = b"QueuedProposal";
    pub(super) const PROPOSAL_QUEUE_REFS: &[u8] = b"ProposalQueueRefs";
    pub(super) const OWN_LEAF_NODE_INDEX: &[u8] = b"OwnLeafNodeIndex";
    pub(super) const EPOCH_SECRETS: &[u8] = b"EpochSecrets";
    pub(super) const RESUMPTION_PSK_STORE: &[u8] = b"ResumptionPsk";
    pub(super) const MESSAGE_SECRETS: &[u8] = b"MessageSecrets";
    pub(super) const APPLICATION_EXPORT_TREE: &[u8] = b"ApplicationExportTree";
}

/// Why the MLS state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlsStorageError {
    /// A key or value did not (de)serialize as JSON.
    #[error("MLS state is not the JSON openmls expects: {0}")]
    Serde(#[from] serde_json::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored MLS state contradicts itself (e.g. a queued proposal reference without its proposal).
    #[error("inconsistent MLS state: {0}")]
    Inconsistent(&'static str),
}

/// One [`RocksStorage::take_batch`]: hand it back to [`RocksStorage::mark_durable`] once the
/// batch it filled is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flush(u64);

#[derive(Default)]
struct Overlay {
    /// Written since the last take: `Some` = put, `None` = delete.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Taken into a batch that may not be durable yet: the take's number and the value.
    in_flight: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    /// Takes so far.
    takes: u64,
}

/// openmls' [`StorageProvider`] over the store, with writes held in memory until the caller
/// puts them into a [`Batch`] (see the module documentation).
///
/// One operation at a time: [`take_batch`](Self::take_batch) takes everything written since the
/// last take, so an MLS operation and the take of its writes must not interleave with another
/// operation on the same `RocksStorage` (hold one lock across operation, take and submit, e.g.
/// the room's lock with one provider per room). Batches must be submitted in the order they
/// were taken.
pub struct RocksStorage {
    store: Arc<Store>,
    /// Prefix of every key: one client's state apart from another's (openmls keys groups by
    /// group ID, and two local users' clients share a room's group ID). Empty for the default.
    namespace: Vec<u8>,
    overlay: Mutex<Overlay>,
}

impl std::fmt::Debug for RocksStorage {
    /// Counts only: the values are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let overlay = self.lock();
        f.debug_struct("RocksStorage")
            .field("store", &self.store)
            .field("pending", &overlay.pending.len())
            .field("in_flight", &overlay.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// `label ‖ serde_json(key) ‖ u16 BE version`.
fn storage_key<K: Serialize + ?Sized>(label: &[u8], key: &K) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = label.to_vec();
    serde_json::to_writer(&mut out, key)?;
    out.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    Ok(out)
}

impl RocksStorage {
    /// MLS state over `store`, with nothing pending.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, namespace: Vec::new(), overlay: Mutex::new(Overlay::default()) }
    }

    /// MLS state of one client (e.g. a user's device) over `store`, kept apart from every other
    /// client's: its keys are `0x00 ‖ u16 BE length ‖ client ‖ …`. Labels start with a letter, so
    /// these never collide with the default namespace.
    pub fn for_client(store: Arc<Store>, client: &str) -> Self {
        let length = u16::try_from(client.len()).unwrap_or(u16::MAX);
        let mut namespace = vec![0];
        namespace.extend_from_slice(&length.to_be_bytes());
        namespace.extend_from_slice(&client.as_bytes()[..usize::from(length)]);
        Self { store, namespace, overlay: Mutex::new(Overlay::default()) }
    }

    /// `namespace ‖ label ‖ serde_json(key) ‖ u16 BE version`.
    fn key<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<Vec<u8>, serde_json::Error> {
        if self.namespace.is_empty() {
            return storage_key(label, key);
        }
        let mut out = self.namespace.clone();
        out.extend_from_slice(&storage_key(label, key)?);
        Ok(out)
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The overlay holds plain maps, each change one insert: a panic elsewhere cannot tear it.
    fn lock(&self) -> MutexGuard<'_, Overlay> {
        self.overlay.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves every write since the last take into `batch` (puts and real deletes) and keeps
    /// them readable as in flight. Submit `batch` (with the event these writes belong to), wait
    /// until it is durable, then call [`mark_durable`](Self::mark_durable) with the result.
    pub fn take_batch(&self, batch: &mut Batch) -> Flush {
        let mut overlay = self.lock();
        overlay.takes += 1;
        let take = overlay.takes;
        let pending = std::mem::take(&mut overlay.pending);
        for (key, value) in pending {
            batch.mls_write(key.clone(), value.clone());
            overlay.in_flight.insert(key, (take, value));
        }
        Flush(take)
    }

    /// The batch of `flush` is durable: its values are on disk, so memory can let go of those
    /// not overwritten by a later take. Skipping this is safe; it only costs memory.
    pub fn mark_durable(&self, flush: Flush) {
        self.lock().in_flight.retain(|_, (take, _)| *take != flush.0);
    }

    /// Takes a batch, writes it on its own and waits until it is durable (for state that is no
    /// event's: signature keys, key packages, tests).
    pub fn persist(&self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        let flush = self.take_batch(&mut batch);
        if !batch.is_empty() {
            self.store.write(batch)?;
        }
        self.mark_durable(flush);
        Ok(())
    }

    /// Whether openmls wrote anything since the last take.
    pub fn has_pending(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    /// Forgets every write since the last take (an operation whose result is not kept). An
    /// `MlsGroup` that made those writes is ahead of its storage now: reload it with
    /// `MlsGroup::load`.
    pub fn discard_pending(&self) {
        self.lock().pending.clear();
    }

    /// The newest bytes under `key`: pending, then in flight, then the store.
    fn raw(&self, overlay: &Overlay, key: &[u8]) -> Result<Option<Vec<u8>>, MlsStorageError> {
        if let Some(value) = overlay.pending.get(key) {
            return Ok(value.clone());
        }
        if let Some((_, value)) = overlay.in_flight.get(key) {
            return Ok(value.clone());
        }
        Ok(self.store.mls_get(key)?)
    }

    fn write<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        value: &V,
    ) -> Result<(), MlsStorageError> {
        let key = self.key(label, key)?;
        let value = serde_json::to_vec(value)?;
        self.lock().pending.insert(key, Some(value));
        Ok(())
    }

    fn read<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        label: &[u8],
        key: &K,
    ) -> Result<Option<V>, MlsStorageError> {
        let key = self.key(label, key)?;
        let bytes = self.raw(&self.lock(), &key)?;
        Ok(bytes.map(|b| serde_json::from_slice(&b)).transpose()?)
    }

    fn delete<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<(), MlsStorageError> {
        let key = self.key(label, key)?;
        self.lock().pending.insert(key, None);
        Ok(())
    }

    fn read_list<K: Serialize + ?Sized, V: DeserializeOwned>(
        &self,
        label: &[u8],
        key: &K,
    ) -> Result<Vec<V>, MlsStorageError> {
        Ok(self.read::<K, Vec<V>>(label, key)?.unwrap_or_default())
    }

    /// Read-modify-write of a list under one lock.
    fn edit_list<K: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        edit: impl FnOnce(&mut Vec<Box<RawValue>>),
    ) -> Result<(), MlsStorageError> {
        let key = self.key(label, key)?;
        let mut overlay = self.lock();
        let mut list: Vec<Box<RawValue>> = match self.raw(&overlay, &key)? {
            Some(bytes) => serde_json::from_slice(&bytes)?,
            None => Vec::new(),
        };
        edit(&mut list);
        let value = if list.is_empty() { None } else { Some(serde_json::to_vec(&list)?) };
        overlay.pending.insert(key, value);
        Ok(())
    }

    fn append<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        item: &V,
    ) -> Result<(), MlsStorageError> {
        let item = RawValue::from_string(serde_json::to_string(item)?)?;
        self.edit_list(label, key, |list| list.push(item))
    }

    fn remove_from_list<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        item: &V,
    ) -> Result<(), MlsStorageError> {
        let item = serde_json::to_string(item)?;
        self.edit_list(label, key, |list| {
            if let Some(at) = list.iter().position(|stored| stored.get() == item) {
                list.remove(at);
            }
        })
    }
}

/// The bridge's [`OpenMlsProvider`]: `RustCrypto` for crypto and randomness, [`RocksStorage`] for
/// state. Reach the storage (to take batches) through [`OpenMlsProvider::storage`].
#[derive(Debug)]
pub struct MlsProvider {
    crypto: RustCrypto,
    storage: RocksStorage,
}

impl MlsProvider {
    /// A provider whose MLS state lives in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { crypto: RustCrypto::default(), storage: RocksStorage::new(store) }
    }

    /// A provider for one client, its state in its own namespace ([`RocksStorage::for_client`]).
    pub fn for_client(store: Arc<Store>, client: &str) -> Self {
        Self { crypto: RustCrypto::default(), storage: RocksStorage::for_client(store, client) }
    }
}

impl OpenMlsProvider for MlsProvider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = RocksStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        (dir, store)
    }

    #[test]
    fn keys_are_label_json_key_and_big_endian_version() {
        let key = storage_key(label::EPOCH_KEY_PAIRS, &("g", 3u64, 1u32)).unwrap();
        assert_eq!(key, b"EpochKeyPairs[\"g\",3,1]\x00\x01");
    }

    #[test]
    fn a_delete_in_the_overlay_hides_a_stored_value_and_is_written_as_a_delete() {
        let (_dir, store) = open();
        let storage = RocksStorage::new(Arc::clone(&store));
        storage.write(label::TREE, "room", &[1u8, 2, 3]).unwrap();
        storage.persist().unwrap();
        let key = storage_key(label::TREE, "room").unwrap();
        assert_eq!(store.mls_get(&key).unwrap().as_deref(), Some(&b"[1,2,3]"[..]));

        storage.delete(label::TREE, "room").unwrap();
        assert_eq!(storage.read::<_, Vec<u8>>(label::TREE, "room").unwrap(), None, "the overlay's delete wins");
        assert!(store.mls_get(&key).unwrap().is_some(), "nothing reached the store yet");

        let mut batch = Batch::new();
        let flush = storage.take_batch(&mut batch);
        assert!(!storage.has_pending());
        assert_eq!(storage.read::<_, Vec<u8>>(label::TREE, "room").unwrap(), None, "in flight, still deleted");
        store.write(batch).unwrap();
        storage.mark_durable(flush);
        assert_eq!(store.mls_get(&key).unwrap(), None, "a real delete");
        assert_eq!(storage.read::<_, Vec<u8>>(label::TREE, "room").unwrap(), None);
    }

    #[test]
    fn in_flight_values_are_read_until_durable_and_later_takes_survive_earlier_ones() {
        let (_dir, store) = open();
        let storage = RocksStorage::new(Arc::clone(&store));
        storage.write(label::GROUP_STATE, "g", &1).unwrap();
        let mut first = Batch::new();
        let first_flush = storage.take_batch(&mut first);
        assert_eq!(storage.read::<_, u32>(label::GROUP_STATE, "g").unwrap(), Some(1), "not on disk, still seen");

        storage.write(label::GROUP_STATE, "g", &2).unwrap();
        let mut second = Batch::new();
        let second_flush = storage.take_batch(&mut second);
        store.write(first).unwrap();
        storage.mark_durable(first_flush);
        assert_eq!(storage.read::<_, u32>(label::GROUP_STATE, "g").unwrap(), Some(2), "the newer take stays");

        store.write(second).unwrap();
        storage.mark_durable(second_flush);
        assert_eq!(storage.read::<_, u32>(label::GROUP_STATE, "g").unwrap(), Some(2));
        assert!(storage.lock().in_flight.is_empty());
    }

    #[test]
    fn lists_append_remove_and_vanish_when_empty() {
        let (_dir, store) = open();
        let storage = RocksStorage::new(Arc::clone(&store));
        for item in ["a", "b", "a"] {
            storage.append(label::PROPOSAL_QUEUE_REFS, "g", item).unwrap();
        }
        storage.persist().unwrap();
        storage.remove_from_list(label::PROPOSAL_QUEUE_REFS, "g", "a").unwrap();
        assert_eq!(storage.read_list::<_, String>(label::PROPOSAL_QUEUE_REFS, "g").unwrap(), ["b", "a"]);
        storage.remove_from_list(label::PROPOSAL_QUEUE_REFS, "g", "b").unwrap();
        storage.remove_from_list(label::PROPOSAL_QUEUE_REFS, "g", "a").unwrap();
        storage.persist().unwrap();
        let key = storage_key(label::PROPOSAL_QUEUE_REFS, "g").unwrap();
        assert_eq!(store.mls_get(&key).unwrap(), None);
        assert!(storage.read_list::<_, String>(label::PROPOSAL_QUEUE_REFS, "g").unwrap().is_empty());
    }

    #[test]
    fn discarding_forgets_pending_writes_only() {
        let (_dir, store) = open();
        let storage = RocksStorage::new(store);
        storage.write(label::PSK, "kept", &1).unwrap();
        storage.persist().unwrap();
        storage.write(label::PSK, "dropped", &2).unwrap();
        storage.delete(label::PSK, "kept").unwrap();
        storage.discard_pending();
        assert_eq!(storage.read::<_, u32>(label::PSK, "kept").unwrap(), Some(1));
        assert_eq!(storage.read::<_, u32>(label::PSK, "dropped").unwrap(), None);
    }

    #[test]
    fn debug_output_shows_no_values() {
        let (_dir, store) = open();
        let storage = RocksStorage::new(store);
        storage.write(label::SIGNATURE_KEY_PAIR, "pk", "very secret").unwrap();
        let shown = format!("{storage:?}");
        assert!(shown.contains("pending: 1") && !shown.contains("very secret"), "{shown}");
    }
}
