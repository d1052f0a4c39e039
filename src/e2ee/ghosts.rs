//! Ghosts' devices: what arrives from MIMI enters an encrypted portal Megolm-encrypted by a
//! device of the ghost that speaks.
//!
//! Why a device per ghost, not the bridge's one device for every ghost (as mautrix does): a
//! Megolm session belongs to the device that made it, and clients hold that device's owner
//! against each event's sender. matrix-sdk-crypto (Element X, Element Web) marks an event whose
//! sender does not own the sending device `MismatchedSender`, a red shield, and drops it
//! outright when "exclude insecure devices" is on; impersonation (MSC4350) is a draft no
//! client implements. So each ghost gets a device of its own, made through the appservice API
//! (MSC4190) the first time it speaks in an encrypted portal; its state lies in the bridge's
//! RocksDB beside the bridge device's, under the ghost's user ID (`records::namespace`).
//!
//! A ghost's device only sends. Before each message it takes what the homeserver holds for it
//! in one `/sync` that does not wait (device-list changes, so a member's new device gets the
//! room key; the to-device messages clients send it, which the homeserver would otherwise keep
//! for good), tracks the room's members, opens Olm sessions with their new devices and shares
//! the room key with each device that lacks it. The library rotates the key when a member left,
//! so one who left reads nothing sent after. Encrypting advances the Megolm index durably
//! before the ciphertext is returned (`store`): an index is never used twice, and a send
//! retried after a crash encrypts again under the same transaction ID, which the homeserver
//! recognises.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use matrix_sdk_crypto::CollectStrategy;
use matrix_sdk_crypto::olm::EncryptionSettings;
use ruma::events::AnyMessageLikeEventContent;
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::Value;
use tokio::sync::Mutex;

use super::recovery::RecoveryKey;
use super::{Device, E2eeError, machine_error, records};
use crate::appservice::homeserver::HomeserverClient;
use crate::store::Store;

/// The name ghosts' devices show in clients' device lists.
const DISPLAY_NAME: &str = "MIMI bridge";

/// Ghosts' devices kept open at most; beyond, those not in use are closed (and opened again
/// from the store when needed).
const MAX_OPEN: usize = 10_000;

/// The ghosts' devices (see the module documentation), opened as ghosts speak.
pub struct GhostDevices {
    store: Arc<Store>,
    homeserver: Arc<HomeserverClient>,
    /// The key of every ghost's secret storage, as of the bridge's device.
    recovery: Option<Arc<RecoveryKey>>,
    /// One device's work at a time: the library shares a room key once per room, not twice at once.
    open: Mutex<BTreeMap<String, Arc<Mutex<Device>>>>,
}

impl std::fmt::Debug for GhostDevices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GhostDevices").finish_non_exhaustive()
    }
}

impl GhostDevices {
    /// Ghosts' devices kept in the store the bridge's `device` is kept in.
    pub fn beside(device: &Device) -> Self {
        let store = Arc::clone(device.store.store());
        let (homeserver, recovery) = (Arc::clone(&device.homeserver), device.recovery.clone());
        Self { store, homeserver, recovery, open: Mutex::new(BTreeMap::new()) }
    }

    /// Sends `(event_type, content)` into `room` as `ghost`'s device, Megolm-encrypted, once the
    /// room key is shared with the devices of `members` (the users the key is for); `encryption`
    /// is the room's `m.room.encryption` content. Returns the event's ID. One device sends one
    /// message at a time, so Megolm indexes follow the order of sending.
    pub async fn send(
        &self,
        (ghost, room, txn_id): (&str, &str, &str),
        members: &[String],
        encryption: &Value,
        (event_type, content): (&str, &Value),
    ) -> Result<String, E2eeError> {
        let room_id = OwnedRoomId::try_from(room).map_err(|e| E2eeError::Malformed(format!("room {room}: {e}")))?;
        let settings = settings_of(encryption)?;
        let device = self.device_of(ghost).await?;
        let device = device.lock().await;
        super::sync::poll(&device, Duration::ZERO).await?;
        device.track(members).await?;
        let members: Vec<OwnedUserId> = members.iter().filter_map(|m| OwnedUserId::try_from(m.as_str()).ok()).collect();
        let machine = &device.machine;
        if let Some((id, claim)) =
            machine.get_missing_sessions(members.iter().map(AsRef::as_ref)).await.map_err(machine_error)?
        {
            device.claim(&id, &claim).await?;
        }
        let to_share = machine.share_room_key(&room_id, members.iter().map(AsRef::as_ref), settings).await;
        for request in to_share.map_err(machine_error)? {
            device.to_device(&request).await?;
        }
        let content: Raw<AnyMessageLikeEventContent> = Raw::new(content).map_err(E2eeError::Json)?.cast_unchecked();
        let encrypted = machine.encrypt_room_event_raw(&room_id, event_type, &content).await.map_err(machine_error)?;
        let body: Value = encrypted.content.deserialize_as_unchecked().map_err(E2eeError::Json)?;
        let event = (room, "m.room.encrypted", txn_id);
        Ok(self.homeserver.send_event_as_device(device.acting(), event, &body).await?)
    }

    /// `ghost`'s device; made (on the homeserver first) when the store holds none.
    async fn device_of(&self, ghost: &str) -> Result<Arc<Mutex<Device>>, E2eeError> {
        let mut open = self.open.lock().await;
        if let Some(device) = open.get(ghost) {
            return Ok(Arc::clone(device));
        }
        let id = if let Some(id) = Device::stored_id(&self.store, Some(ghost))? {
            id
        } else {
            let id = super::device::new_id()?;
            // Devices of the ghost the store does not know (a store lost or replaced) would go
            // on receiving room keys nobody reads.
            for old in self.homeserver.devices_of(ghost).await? {
                self.homeserver.delete_device(ghost, &old).await?;
            }
            self.homeserver.put_device(ghost, &id, DISPLAY_NAME).await?;
            id
        };
        let namespace = records::namespace(Some(ghost));
        let store = (Arc::clone(&self.store), namespace);
        let recovery = self.recovery.clone();
        let device = Device::open_in(store, Arc::clone(&self.homeserver), (ghost, &id), recovery).await?;
        tracing::info!(ghost, device = id, "a ghost's device is ready");
        if open.len() >= MAX_OPEN {
            // Only this map holds a device not in use, and no one can take it without the map's
            // lock: closing it cannot leave two copies of one device's state.
            open.retain(|_, device| Arc::strong_count(device) > 1);
        }
        let device = Arc::new(Mutex::new(device));
        open.insert(ghost.to_owned(), Arc::clone(&device));
        Ok(device)
    }
}

/// The library's settings for a room whose `m.room.encryption` content is `encryption` (its
/// rotation periods); keys are shared with every device of the members, as Element does by
/// default.
fn settings_of(encryption: &Value) -> Result<EncryptionSettings, E2eeError> {
    let content: RoomEncryptionEventContent = serde_json::from_value(encryption.clone())
        .map_err(|e| E2eeError::Malformed(format!("m.room.encryption: {e}")))?;
    Ok(EncryptionSettings::new(content, HistoryVisibility::Shared, CollectStrategy::default()))
}
