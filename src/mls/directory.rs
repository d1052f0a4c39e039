//! [`StoreDirectory`]: the device objects this server knows, kept in the store.
//!
//! The hub admits a device to a room's group only if the device's server vouches for it. Our
//! own users' device objects are written here when their devices are registered; other
//! servers' arrive with federation (`/user/keys/query`) and are written here as they come.

use std::sync::Arc;

use super::identity::{DeviceDirectory, DeviceObject};
use crate::event::canonical::parse_object;
use crate::store::{Batch, Store};

/// A [`DeviceDirectory`] over the store's `userdevice_deviceobject` family.
#[derive(Debug, Clone)]
pub struct StoreDirectory {
    store: Arc<Store>,
}

impl StoreDirectory {
    /// The directory in `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

impl DeviceDirectory for StoreDirectory {
    fn device(&self, user_id: &str, device_id: &str) -> Option<DeviceObject> {
        let bytes = self.store.device_object(user_id, device_id).ok()??;
        parse_object(&bytes).ok().map(DeviceObject::from_json)
    }
}

/// Adds a device object to `batch` under its (user, device). The object is stored as given;
/// the hub verifies its signature whenever it relies on it.
pub fn publish(batch: &mut Batch, user_id: &str, device_id: &str, object: &DeviceObject) {
    let json = crate::event::canonical::object_to_bytes(object.as_json());
    batch.put_device_object(user_id, device_id, &json);
}
