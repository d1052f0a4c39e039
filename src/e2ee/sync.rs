//! Sync mode, the default: the device's owner long-polls `/sync` as the device, for what a stock
//! homeserver gives a device only there — to-device messages (the room keys), device-list
//! changes, one-time key counts.
//!
//! The filter leaves rooms out (the appservice's transactions carry them). Each batch is taken by
//! the library and stored, with its next batch token, in one synced batch: a crash before it
//! asks for the same batch again, after it for the next; the homeserver deletes to-device
//! messages only once a later `since` shows they were received, so none is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use matrix_sdk_crypto::EncryptionSyncChanges;
use matrix_sdk_crypto::store::CryptoStore;
use ruma::OneTimeKeyAlgorithm;
use ruma::UInt;
use ruma::api::client::sync::sync_events::DeviceLists;
use ruma::events::AnyToDeviceEvent;
use ruma::serde::Raw;
use serde_json::Value;

use super::{Device, E2eeError};
use crate::queue::{Backoff, RetryPolicy};

/// Everything but the device's own data.
const FILTER: &str = r#"{"room":{"rooms":[]},"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]}}"#;

/// How long the homeserver holds a `/sync` open when nothing is new.
const POLL: Duration = Duration::from_secs(30);

/// What a `/sync` answer (or a transaction, in push mode) carries for the device.
pub struct Delivered {
    /// To-device messages.
    pub to_device: Vec<Raw<AnyToDeviceEvent>>,
    /// Users whose devices changed or who no longer share a room.
    pub device_lists: DeviceLists,
    /// One-time keys the homeserver still holds, by algorithm.
    pub key_counts: BTreeMap<OneTimeKeyAlgorithm, UInt>,
    /// Fallback-key algorithms not used yet (`None`: not said).
    pub unused_fallback: Option<Vec<OneTimeKeyAlgorithm>>,
}

fn field<T: serde::de::DeserializeOwned + Default>(value: Option<&Value>, what: &str) -> Result<T, E2eeError> {
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => T::deserialize(v).map_err(|e| E2eeError::Malformed(format!("{what}: {e}"))),
    }
}

impl Delivered {
    /// What a `/sync` answer carries.
    pub fn of_sync(body: &Value) -> Result<Self, E2eeError> {
        Ok(Self {
            to_device: field(body.pointer("/to_device/events"), "to_device")?,
            device_lists: field(body.get("device_lists"), "device_lists")?,
            key_counts: field(body.get("device_one_time_keys_count"), "device_one_time_keys_count")?,
            unused_fallback: field(body.get("device_unused_fallback_key_types"), "device_unused_fallback_key_types")?,
        })
    }

    /// The library's view, with the token to store in the same batch.
    pub fn changes(&self, next_batch: Option<String>) -> EncryptionSyncChanges<'_> {
        EncryptionSyncChanges {
            to_device_events: self.to_device.clone(),
            changed_devices: &self.device_lists,
            one_time_keys_counts: &self.key_counts,
            unused_fallback_keys: self.unused_fallback.as_deref(),
            next_batch_token: next_batch,
        }
    }
}

/// Polls `/sync` until the process ends; failures are retried with a backoff.
pub async fn run(device: Arc<Device>) {
    let mut backoff = Backoff::new(RetryPolicy::default());
    loop {
        match poll_once(&device).await {
            Ok(()) => backoff.succeeded(),
            Err(error) => {
                let delay = backoff.failed(&error);
                tracing::warn!(%error, delay_ms = delay.as_millis(), "the bridge device's /sync failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// One `/sync`, taken in.
pub async fn poll_once(device: &Device) -> Result<(), E2eeError> {
    poll(device, POLL).await
}

/// One `/sync` the homeserver holds open at most `timeout` when it has nothing new, taken in.
pub(super) async fn poll(device: &Device, timeout: Duration) -> Result<(), E2eeError> {
    let since = device.store.next_batch_token().await?;
    let millis = timeout.as_millis().to_string();
    let query = [("timeout", Some(millis.as_str())), ("filter", Some(FILTER)), ("since", since.as_deref())];
    let wait = Some(timeout + Duration::from_secs(30));
    let path = "/_matrix/client/v3/sync";
    let body = device.homeserver.device_call(device.acting(), Method::GET, path, &query, None, wait).await?;
    let next =
        body.get("next_batch").and_then(Value::as_str).ok_or(E2eeError::Malformed("/sync: no next_batch".into()))?;
    let delivered = Delivered::of_sync(&body)?;
    device.receive(delivered.changes(Some(next.to_owned()))).await
}
