//! The bridge device's Olm and Megolm state, durable in the bridge's one RocksDB.
//!
//! matrix-sdk-crypto keeps its state behind the `CryptoStore` trait. Here every change reaches
//! RocksDB first, in one synced batch (`cryptokey_value`, see `records`), and only then the
//! in-memory copy that answers the library's reads. A kill -9 at any moment leaves the state
//! before a change or after it, never between and never ahead of the disk: a one-time key is
//! never handed out twice, a Megolm message index never reused, an Olm session never rolled
//! back behind a message the bridge acknowledged. The in-memory copy is the library's own
//! `MemoryStore`, filled from the records at start: one device's state fits in memory, and its
//! reads keep the semantics the library itself tests.

use std::sync::Arc;

use async_trait::async_trait;
use matrix_sdk_common::cross_process_lock::CrossProcessLockGeneration;
use matrix_sdk_crypto::olm::{
    InboundGroupSession, OlmMessageHash, OutboundGroupSession, PrivateCrossSigningIdentity, SenderDataType, Session,
};
use matrix_sdk_crypto::store::types::{
    BackupKeys, Changes, DehydratedDeviceKey, PendingChanges, RoomKeyCounts, RoomKeyWithheldEntry,
    RoomPendingKeyBundleDetails, RoomSettings, StoredRoomKeyBundleData, TrackedUser,
};
use matrix_sdk_crypto::store::{CryptoStore, MemoryStore};
use matrix_sdk_crypto::vodozemac::Curve25519PublicKey;
use matrix_sdk_crypto::{Account, DeviceData, GossipRequest, SecretInfo, UserIdentityData};
use ruma::events::secret::request::SecretName;
use ruma::{DeviceId, OwnedDeviceId, RoomId, TransactionId, UserId};
use zeroize::Zeroizing;

use super::E2eeError;
use super::records::{self, Write, key};
use crate::store::{Batch, Store};

/// The `CryptoStore` of the bridge's device (see the module documentation).
pub struct DeviceStore {
    memory: MemoryStore,
    store: Arc<Store>,
    /// Whose records these are (`records::namespace`).
    namespace: Vec<u8>,
    /// One change at a time, so the disk and the copy take changes in the same order.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore").field("path", &self.store.path()).finish_non_exhaustive()
    }
}

impl DeviceStore {
    /// The state of the device whose records lie in `namespace` (see `records::namespace`), as
    /// the store holds it (nothing, the first time).
    pub(super) async fn open(store: Arc<Store>, namespace: Vec<u8>) -> Result<Self, E2eeError> {
        let loaded = records::load(&records::of_device(&store, &namespace)?)?;
        let memory = MemoryStore::new();
        if loaded.account.is_some() {
            memory.save_pending_changes(PendingChanges { account: loaded.account }).await?;
        }
        memory.save_changes(loaded.changes).await?;
        for (version, sessions) in loaded.backed_up {
            memory.save_inbound_group_sessions(sessions, Some(&version)).await?;
        }
        let tracked: Vec<(&UserId, bool)> = loaded.tracked.iter().map(|(u, d)| (u.as_ref(), *d)).collect();
        memory.save_tracked_users(&tracked).await?;
        for (name, value) in loaded.custom {
            memory.set_custom_value(&name, value).await?;
        }
        Ok(Self { memory, store, namespace, writing: tokio::sync::Mutex::new(()) })
    }

    /// The bridge's store the records lie in.
    pub(super) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    async fn write(&self, writes: Vec<Write>) -> Result<(), E2eeError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for (key, value) in writes {
            batch.crypto([self.namespace.as_slice(), &key].concat(), value);
        }
        Ok(self.store.submit(batch).wait().await?)
    }

    /// Deletes of every record whose key starts with `prefix`.
    fn deletes(&self, prefix: &[u8]) -> Result<Vec<Write>, E2eeError> {
        let records = records::of_device(&self.store, &[self.namespace.as_slice(), prefix].concat())?;
        Ok(records.into_iter().map(|(k, _)| ([prefix, &k].concat(), None)).collect())
    }

    /// Rewrites the records of the inbound group sessions the copy holds for `ids`.
    async fn rewrite_inbound(&self, ids: &[(&RoomId, &str)]) -> Result<Vec<Write>, E2eeError> {
        let mut writes = Vec::new();
        for (room, session) in ids {
            if let Some(session) = self.memory.get_inbound_group_session(room, session).await? {
                writes.push(records::inbound(&session).await?);
            }
        }
        Ok(writes)
    }
}

#[async_trait]
impl CryptoStore for DeviceStore {
    type Error = E2eeError;

    async fn load_account(&self) -> Result<Option<Account>, E2eeError> {
        Ok(self.memory.load_account().await?)
    }

    async fn load_identity(&self) -> Result<Option<PrivateCrossSigningIdentity>, E2eeError> {
        Ok(self.memory.load_identity().await?)
    }

    async fn save_changes(&self, changes: Changes) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.write(records::of_changes(&changes).await?).await?;
        Ok(self.memory.save_changes(changes).await?)
    }

    async fn save_pending_changes(&self, changes: PendingChanges) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        if let Some(account) = &changes.account {
            self.write(vec![(key("account", &[]), Some(records::value(&account.pickle())?))]).await?;
        }
        Ok(self.memory.save_pending_changes(changes).await?)
    }

    async fn save_inbound_group_sessions(
        &self,
        sessions: Vec<InboundGroupSession>,
        backed_up_to_version: Option<&str>,
    ) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        let mut writes = Vec::new();
        for session in &sessions {
            writes.push(records::inbound(session).await?);
            if let Some(version) = backed_up_to_version {
                let ids = [session.room_id().as_str(), session.session_id()];
                writes.push((key("backedup", &ids), Some(records::value(&version)?)));
            }
        }
        self.write(writes).await?;
        Ok(self.memory.save_inbound_group_sessions(sessions, backed_up_to_version).await?)
    }

    async fn mark_inbound_group_sessions_as_backed_up(
        &self,
        backup_version: &str,
        room_and_session_ids: &[(&RoomId, &str)],
    ) -> Result<(), E2eeError> {
        // The copy first, then its result: losing a "backed up" mark to a crash only means a
        // second upload to the backup.
        let _one = self.writing.lock().await;
        self.memory.mark_inbound_group_sessions_as_backed_up(backup_version, room_and_session_ids).await?;
        let mut writes = self.rewrite_inbound(room_and_session_ids).await?;
        for (room, session) in room_and_session_ids {
            writes.push((key("backedup", &[room.as_str(), session]), Some(records::value(&backup_version)?)));
        }
        self.write(writes).await
    }

    async fn reset_backup_state(&self) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.memory.reset_backup_state().await?;
        let sessions = self.memory.get_inbound_group_sessions().await?;
        let ids: Vec<(&RoomId, &str)> = sessions.iter().map(|s| (s.room_id(), s.session_id())).collect();
        let mut writes = self.deletes(&key("backedup", &[""]))?;
        writes.extend(self.rewrite_inbound(&ids).await?);
        self.write(writes).await
    }

    async fn get_sessions(&self, sender_key: &str) -> Result<Option<Vec<Session>>, E2eeError> {
        Ok(self.memory.get_sessions(sender_key).await?)
    }

    async fn get_inbound_group_session(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<InboundGroupSession>, E2eeError> {
        Ok(self.memory.get_inbound_group_session(room_id, session_id).await?)
    }

    async fn get_withheld_info(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<RoomKeyWithheldEntry>, E2eeError> {
        Ok(self.memory.get_withheld_info(room_id, session_id).await?)
    }

    async fn get_withheld_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<RoomKeyWithheldEntry>, E2eeError> {
        Ok(self.memory.get_withheld_sessions_by_room_id(room_id).await?)
    }

    async fn get_inbound_group_sessions(&self) -> Result<Vec<InboundGroupSession>, E2eeError> {
        Ok(self.memory.get_inbound_group_sessions().await?)
    }

    async fn inbound_group_session_counts(&self, backup_version: Option<&str>) -> Result<RoomKeyCounts, E2eeError> {
        Ok(self.memory.inbound_group_session_counts(backup_version).await?)
    }

    async fn get_inbound_group_sessions_by_room_id(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<InboundGroupSession>, E2eeError> {
        Ok(self.memory.get_inbound_group_sessions_by_room_id(room_id).await?)
    }

    async fn get_inbound_group_sessions_for_device_batch(
        &self,
        curve_key: Curve25519PublicKey,
        sender_data_type: SenderDataType,
        after_session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>, E2eeError> {
        let memory = &self.memory;
        Ok(memory
            .get_inbound_group_sessions_for_device_batch(curve_key, sender_data_type, after_session_id, limit)
            .await?)
    }

    async fn inbound_group_sessions_for_backup(
        &self,
        backup_version: &str,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>, E2eeError> {
        Ok(self.memory.inbound_group_sessions_for_backup(backup_version, limit).await?)
    }

    async fn load_backup_keys(&self) -> Result<BackupKeys, E2eeError> {
        Ok(self.memory.load_backup_keys().await?)
    }

    async fn load_dehydrated_device_pickle_key(&self) -> Result<Option<DehydratedDeviceKey>, E2eeError> {
        Ok(self.memory.load_dehydrated_device_pickle_key().await?)
    }

    async fn delete_dehydrated_device_pickle_key(&self) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.write(vec![(key("dehydratedkey", &[]), None)]).await?;
        Ok(self.memory.delete_dehydrated_device_pickle_key().await?)
    }

    async fn get_outbound_group_session(&self, room_id: &RoomId) -> Result<Option<OutboundGroupSession>, E2eeError> {
        Ok(self.memory.get_outbound_group_session(room_id).await?)
    }

    async fn load_tracked_users(&self) -> Result<Vec<TrackedUser>, E2eeError> {
        Ok(self.memory.load_tracked_users().await?)
    }

    async fn save_tracked_users(&self, users: &[(&UserId, bool)]) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        let writes: Result<Vec<Write>, E2eeError> = users
            .iter()
            .map(|(user, dirty)| Ok((key("tracked", &[user.as_str()]), Some(records::value(dirty)?))))
            .collect();
        self.write(writes?).await?;
        Ok(self.memory.save_tracked_users(users).await?)
    }

    async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceData>, E2eeError> {
        Ok(self.memory.get_device(user_id, device_id).await?)
    }

    // The trait's own signature: the library's map of a user's devices.
    #[allow(clippy::disallowed_types)]
    async fn get_user_devices(
        &self,
        user_id: &UserId,
    ) -> Result<std::collections::HashMap<OwnedDeviceId, DeviceData>, E2eeError> {
        Ok(self.memory.get_user_devices(user_id).await?)
    }

    async fn get_own_device(&self) -> Result<DeviceData, E2eeError> {
        Ok(self.memory.get_own_device().await?)
    }

    async fn get_user_identity(&self, user_id: &UserId) -> Result<Option<UserIdentityData>, E2eeError> {
        Ok(self.memory.get_user_identity(user_id).await?)
    }

    async fn is_message_known(&self, message_hash: &OlmMessageHash) -> Result<bool, E2eeError> {
        Ok(self.memory.is_message_known(message_hash).await?)
    }

    async fn get_outgoing_secret_requests(
        &self,
        request_id: &TransactionId,
    ) -> Result<Option<GossipRequest>, E2eeError> {
        Ok(self.memory.get_outgoing_secret_requests(request_id).await?)
    }

    async fn get_secret_request_by_info(&self, secret_info: &SecretInfo) -> Result<Option<GossipRequest>, E2eeError> {
        Ok(self.memory.get_secret_request_by_info(secret_info).await?)
    }

    async fn get_unsent_secret_requests(&self) -> Result<Vec<GossipRequest>, E2eeError> {
        Ok(self.memory.get_unsent_secret_requests().await?)
    }

    async fn delete_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.write(vec![(key("keyrequest", &[request_id.as_str()]), None)]).await?;
        Ok(self.memory.delete_outgoing_secret_requests(request_id).await?)
    }

    async fn get_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<Vec<Zeroizing<String>>, E2eeError> {
        Ok(self.memory.get_secrets_from_inbox(secret_name).await?)
    }

    async fn delete_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.write(self.deletes(&key("secret", &[secret_name.as_str(), ""]))?).await?;
        Ok(self.memory.delete_secrets_from_inbox(secret_name).await?)
    }

    async fn get_room_settings(&self, room_id: &RoomId) -> Result<Option<RoomSettings>, E2eeError> {
        Ok(self.memory.get_room_settings(room_id).await?)
    }

    async fn get_received_room_key_bundle_data(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<StoredRoomKeyBundleData>, E2eeError> {
        Ok(self.memory.get_received_room_key_bundle_data(room_id, user_id).await?)
    }

    async fn get_pending_key_bundle_details_for_room(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomPendingKeyBundleDetails>, E2eeError> {
        Ok(self.memory.get_pending_key_bundle_details_for_room(room_id).await?)
    }

    async fn get_all_rooms_pending_key_bundles(&self) -> Result<Vec<RoomPendingKeyBundleDetails>, E2eeError> {
        Ok(self.memory.get_all_rooms_pending_key_bundles().await?)
    }

    async fn has_downloaded_all_room_keys(&self, room_id: &RoomId) -> Result<bool, E2eeError> {
        Ok(self.memory.has_downloaded_all_room_keys(room_id).await?)
    }

    async fn get_custom_value(&self, key: &str) -> Result<Option<Vec<u8>>, E2eeError> {
        Ok(self.memory.get_custom_value(key).await?)
    }

    async fn set_custom_value(&self, name: &str, value: Vec<u8>) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.write(vec![(key("custom", &[name]), Some(value.clone()))]).await?;
        Ok(self.memory.set_custom_value(name, value).await?)
    }

    async fn remove_custom_value(&self, name: &str) -> Result<(), E2eeError> {
        let _one = self.writing.lock().await;
        self.write(vec![(key("custom", &[name]), None)]).await?;
        Ok(self.memory.remove_custom_value(name).await?)
    }

    /// In memory only: a lease orders work within this process, and RocksDB's own lock keeps
    /// any other process off the store.
    async fn try_take_leased_lock(
        &self,
        lease_duration_ms: u32,
        key: &str,
        holder: &str,
    ) -> Result<Option<CrossProcessLockGeneration>, E2eeError> {
        Ok(self.memory.try_take_leased_lock(lease_duration_ms, key, holder).await?)
    }

    async fn next_batch_token(&self) -> Result<Option<String>, E2eeError> {
        Ok(self.memory.next_batch_token().await?)
    }

    async fn close(&self) -> Result<(), E2eeError> {
        Ok(())
    }

    async fn reopen(&self) -> Result<(), E2eeError> {
        Ok(())
    }

    async fn get_size(&self) -> Result<Option<usize>, E2eeError> {
        Ok(None)
    }
}
