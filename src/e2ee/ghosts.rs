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
//! so one who left reads nothing sent after ([`Device::send_encrypted`], which the device of
//! the bridge's own user uses for its notices too).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

use super::recovery::RecoveryKey;
use super::{Device, E2eeError, records};
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

    /// `ghost`'s device, ready to send ([`Device::send_encrypted`]): what the homeserver holds
    /// for it taken in. It is the caller's alone until dropped.
    pub async fn ready(&self, ghost: &str) -> Result<OwnedMutexGuard<Device>, E2eeError> {
        let device = self.device_of(ghost).await?.lock_owned().await;
        super::sync::poll(&device, Duration::ZERO).await?;
        Ok(device)
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
