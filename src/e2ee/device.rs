//! [`Device`]: the bridge's device as matrix-sdk-crypto drives it, its state in the store.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use matrix_sdk_crypto::olm::EncryptionSettings;
use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use matrix_sdk_crypto::{CollectStrategy, DecryptionSettings, EncryptionSyncChanges, OlmMachine, TrustRequirement};
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::{AnyMessageLikeEventContent, AnyTimelineEvent};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::Value;
use tokio::sync::Notify;

use super::recovery::RecoveryKey;
use super::store::DeviceStore;
use super::{E2eeError, machine_error};
use crate::appservice::homeserver::HomeserverClient;
use crate::config::BRIDGE_DEVICE;
use crate::store::Store;

/// The bridge's device (see the module documentation of [`crate::e2ee`]).
pub struct Device {
    pub(super) machine: OlmMachine,
    pub(super) store: Arc<DeviceStore>,
    pub(super) homeserver: Arc<HomeserverClient>,
    owner: String,
    id: String,
    /// Notified whenever room keys arrived: events waiting for one are tried again.
    keys_arrived: Notify,
    /// Whose messages are decrypted (`encryption.require_verification`).
    trust: TrustRequirement,
    /// Users tracked since the device was opened (the library's own list is its store's).
    tracked: Mutex<BTreeSet<String>>,
    /// The key of the owner's secret storage (`encryption.recovery_key_file`), if set.
    pub(super) recovery: Option<Arc<RecoveryKey>>,
    /// One message encrypted at a time: the library shares a room key once per room, not twice
    /// at once, and Megolm indexes follow the order of sending.
    sending: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").field("owner", &self.owner).finish_non_exhaustive()
    }
}

/// Why an event was not decrypted.
#[derive(Debug, thiserror::Error)]
pub enum Undecrypted {
    /// Its room key has not arrived (yet): the event waits.
    #[error("its room key has not arrived")]
    KeyMissing,
    /// It never will be: malformed, or refused by the library.
    #[error("{0}")]
    Never(String),
}

impl Device {
    /// The ID of the bridge's device the store holds, or a new one when it holds none (new keys
    /// go with a new ID: clients ignore changed keys under a device ID they know).
    pub fn id_in(store: &Store) -> Result<String, E2eeError> {
        Self::stored_id(store, None)?.map_or_else(new_id, Ok)
    }

    /// The device ID `ghost`'s records hold (`None`: the bridge's device), if any.
    pub(super) fn stored_id(store: &Store, ghost: Option<&str>) -> Result<Option<String>, E2eeError> {
        // The account record alone, not every record of the device.
        let account = [super::records::namespace(ghost).as_slice(), b"account"].concat();
        let records = store.crypto_records(&account)?;
        let Some((_, bytes)) = records.into_iter().find(|(key, _)| *key == account) else { return Ok(None) };
        let account: Value = serde_json::from_slice(&bytes).map_err(|e| E2eeError::Corrupt(format!("account: {e}")))?;
        let id = account["device_id"].as_str().ok_or(E2eeError::Corrupt("account without a device ID".into()))?;
        Ok(Some(id.to_owned()))
    }

    /// `owner`'s device `device_id`, the bridge's device, as the store holds it (new keys the
    /// first time), its identity and one-time keys uploaded, signed by its owner's cross-signing
    /// keys.
    /// With `recovery`, the owner's cross-signing keys are kept in (and, on a new store, taken
    /// back from) their secret storage.
    pub async fn open(
        store: Arc<Store>,
        homeserver: Arc<HomeserverClient>,
        acting: (&str, &str),
        recovery: Option<Arc<RecoveryKey>>,
    ) -> Result<Self, E2eeError> {
        Self::open_in((store, Vec::new()), homeserver, acting, recovery).await
    }

    /// A device whose records lie in `namespace` (`records::namespace`).
    pub(super) async fn open_in(
        (store, namespace): (Arc<Store>, Vec<u8>),
        homeserver: Arc<HomeserverClient>,
        (owner, device_id): (&str, &str),
        recovery: Option<Arc<RecoveryKey>>,
    ) -> Result<Self, E2eeError> {
        let user = OwnedUserId::try_from(owner).map_err(|e| E2eeError::Malformed(format!("owner {owner}: {e}")))?;
        let device: &ruma::DeviceId = device_id.into();
        let store = Arc::new(DeviceStore::open(store, namespace).await?);
        let machine = OlmMachine::with_store(&user, device, Arc::clone(&store), None).await.map_err(machine_error)?;
        let (owner, id) = (owner.to_owned(), device_id.to_owned());
        let trust = TrustRequirement::Untrusted;
        let (keys_arrived, tracked) = (Notify::new(), Mutex::new(BTreeSet::new()));
        let sending = tokio::sync::Mutex::new(());
        let device = Self { machine, store, homeserver, owner, id, keys_arrived, trust, tracked, recovery, sending };
        device.flush().await?;
        device.cross_sign().await?;
        Ok(device)
    }

    /// Decrypts only messages from devices their owners cross-signed, if `required`
    /// (`encryption.require_verification`). By default every member's message is decrypted,
    /// whether or not their device is signed: a bridge has no one to verify devices for it, and
    /// refusing unsigned devices would lose the messages of members who never set up
    /// cross-signing.
    #[must_use]
    pub fn requiring_verification(mut self, required: bool) -> Self {
        if required {
            self.trust = TrustRequirement::CrossSignedOrLegacy;
        }
        self
    }

    fn decryption_settings(&self) -> DecryptionSettings {
        DecryptionSettings { sender_device_trust_requirement: self.trust }
    }

    /// Who and what the device's requests act as.
    pub(super) fn acting(&self) -> (&str, &str) {
        (&self.owner, &self.id)
    }

    /// The device's owner.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The device's ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The library, for what this module does not wrap.
    pub fn machine(&self) -> &OlmMachine {
        &self.machine
    }

    /// Takes what the homeserver delivered to the device (to-device messages, device-list
    /// changes, key counts; with `/sync`'s next batch token, stored in the same batch), then
    /// sends what that calls for (key uploads, queries).
    pub async fn receive(&self, changes: EncryptionSyncChanges<'_>) -> Result<(), E2eeError> {
        let settings = self.decryption_settings();
        let (_, keys) = self.machine.receive_sync_changes(changes, &settings).await.map_err(machine_error)?;
        if !keys.is_empty() {
            tracing::debug!(keys = keys.len(), "room keys arrived");
            self.keys_arrived.notify_waiters();
        }
        self.flush().await
    }

    /// Resolves when room keys arrive next.
    pub async fn keys_arrived(&self) {
        self.keys_arrived.notified().await;
    }

    /// Tracks the devices and cross-signing identities of `users` (queried now if new).
    /// Users tracked already cost nothing (this runs for every message): the library keeps
    /// their devices current from device-list changes.
    pub async fn track(&self, users: &[String]) -> Result<(), E2eeError> {
        let new: Vec<OwnedUserId> = {
            let tracked = self.tracked.lock().unwrap_or_else(PoisonError::into_inner);
            let new = users.iter().filter(|u| !tracked.contains(*u));
            new.filter_map(|u| OwnedUserId::try_from(u.as_str()).ok()).collect()
        };
        if new.is_empty() {
            return Ok(());
        }
        self.machine.update_tracked_users(new.iter().map(AsRef::as_ref)).await.map_err(machine_error)?;
        self.flush().await?;
        let mut tracked = self.tracked.lock().unwrap_or_else(PoisonError::into_inner);
        tracked.extend(new.iter().map(ToString::to_string));
        Ok(())
    }

    /// Decrypts an `m.room.encrypted` event of `room`: the event as its sender wrote it (their
    /// type and content, the homeserver's envelope).
    pub async fn decrypt(&self, room: &str, event: &Value) -> Result<Value, Undecrypted> {
        let room_id = OwnedRoomId::try_from(room).map_err(|e| Undecrypted::Never(format!("room ID: {e}")))?;
        let raw: Raw<EncryptedEvent> = Raw::new(event).map_err(|e| Undecrypted::Never(e.to_string()))?.cast_unchecked();
        let decrypted = match self.machine.decrypt_room_event(&raw, &room_id, &self.decryption_settings()).await {
            Ok(decrypted) => decrypted,
            Err(matrix_sdk_crypto::MegolmError::MissingRoomKey(_)) => return Err(Undecrypted::KeyMissing),
            Err(e) => return Err(Undecrypted::Never(e.to_string())),
        };
        let clear: Raw<AnyTimelineEvent> = decrypted.event;
        let clear: Value = clear.deserialize_as_unchecked().map_err(|e| Undecrypted::Never(e.to_string()))?;
        let mut event = event.clone();
        event["type"] = clear.get("type").cloned().unwrap_or(Value::Null);
        event["content"] = clear.get("content").cloned().unwrap_or(Value::Null);
        Ok(event)
    }

    /// Sends `(event_type, content)` into `room` under `txn_id`, Megolm-encrypted, once the room
    /// key is shared with the devices of its `readers`. Returns the event's ID.
    ///
    /// Encrypting advances the Megolm index durably before the ciphertext is returned (`store`):
    /// an index is never used twice, and a send retried after a crash encrypts again under the
    /// same transaction ID, which the homeserver recognises.
    pub async fn send_encrypted(
        &self,
        (room, txn_id): (&str, &str),
        readers: &Readers,
        (event_type, content): (&str, &Value),
    ) -> Result<String, E2eeError> {
        let room_id = OwnedRoomId::try_from(room).map_err(|e| E2eeError::Malformed(format!("room {room}: {e}")))?;
        let settings = readers.settings()?;
        let _one_at_a_time = self.sending.lock().await;
        self.track(&readers.users).await?;
        let users = readers.users.iter();
        let members: Vec<OwnedUserId> = users.filter_map(|m| OwnedUserId::try_from(m.as_str()).ok()).collect();
        let machine = &self.machine;
        if let Some((id, claim)) =
            machine.get_missing_sessions(members.iter().map(AsRef::as_ref)).await.map_err(machine_error)?
        {
            self.claim(&id, &claim).await?;
        }
        let to_share = machine.share_room_key(&room_id, members.iter().map(AsRef::as_ref), settings).await;
        for request in to_share.map_err(machine_error)? {
            self.to_device(&request).await?;
        }
        let content: Raw<AnyMessageLikeEventContent> = Raw::new(content).map_err(E2eeError::Json)?.cast_unchecked();
        let encrypted = machine.encrypt_room_event_raw(&room_id, event_type, &content).await.map_err(machine_error)?;
        let body: Value = encrypted.content.deserialize_as_unchecked().map_err(E2eeError::Json)?;
        let event = (room, "m.room.encrypted", txn_id);
        Ok(self.homeserver.send_event_as_device(self.acting(), event, &body).await?)
    }
}

/// Who reads what a device encrypts into a room, and on the room's terms.
#[derive(Debug, Clone)]
pub struct Readers {
    /// The users the room key is shared with (each of their devices).
    pub users: Vec<String>,
    /// The room's `m.room.encryption` content (its rotation periods).
    pub encryption: Value,
    /// The room's `history_visibility` (`None`: the default, `shared`); a change rotates the key.
    pub history: Option<String>,
}

impl Readers {
    /// The library's settings for these readers; keys go to every device of theirs, as
    /// Element does by default.
    fn settings(&self) -> Result<EncryptionSettings, E2eeError> {
        let content: RoomEncryptionEventContent = serde_json::from_value(self.encryption.clone())
            .map_err(|e| E2eeError::Malformed(format!("m.room.encryption: {e}")))?;
        let history = HistoryVisibility::from(self.history.as_deref().unwrap_or("shared"));
        Ok(EncryptionSettings::new(content, history, CollectStrategy::default()))
    }
}

/// A new device ID: [`BRIDGE_DEVICE`] and eight random letters.
pub(super) fn new_id() -> Result<String, E2eeError> {
    let suffix = crate::event::keys::random_letters(8).ok_or(E2eeError::Machine("no randomness".into()))?;
    Ok(format!("{BRIDGE_DEVICE}{}", suffix.to_uppercase()))
}
