//! Push mode (`encryption.push`): what the homeserver delivers to the device arrives in the
//! appservice's transactions instead of `/sync` — to-device messages (MSC4203, still under the
//! MSC2409 prefix) and the device's key counts and device-list changes (MSC3202) — and is taken
//! in before the transaction is answered, so an acknowledged room key is a stored one.
//!
//! Seen with Synapse 1.163: a to-device message sent while it holds the appservice as down (from
//! a failed transaction until its retries get through) was not pushed at all; a room key lost so
//! leaves its messages reported undecryptable. `/sync` mode has
//! no such window (the homeserver deletes a message only once a later `since` acknowledges it);
//! push mode stays the administrator's choice, as in other bridges.

use serde_json::Value;

use super::sync::Delivered;
use super::{Device, E2eeError};

const TO_DEVICE: &str = "de.sorunome.msc2409.to_device";
const DEVICE_LISTS: &str = "org.matrix.msc3202.device_lists";
const KEY_COUNTS: &str = "org.matrix.msc3202.device_one_time_keys_count";
/// The misspelt name Synapse also sends.
const KEY_COUNTS_LEGACY: &str = "org.matrix.msc3202.device_one_time_key_counts";
const FALLBACK: &str = "org.matrix.msc3202.device_unused_fallback_key_types";

/// Whether a transaction body may carry anything for the device (before parsing it).
pub fn may_carry(body: &[u8]) -> bool {
    let has = |name: &str| body.windows(name.len()).any(|w| w == name.as_bytes());
    has(TO_DEVICE) || has("org.matrix.msc3202")
}

fn field<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, E2eeError> {
    T::deserialize(value).map_err(|e| E2eeError::Malformed(format!("{what}: {e}")))
}

impl Delivered {
    /// What a transaction carries for `owner`'s `device`; `None` when nothing.
    pub fn of_transaction(body: &Value, (owner, device): (&str, &str)) -> Result<Option<Self>, E2eeError> {
        let mine = |m: &&Value| m["to_user_id"] == owner && m["to_device_id"] == device;
        let messages = body.get(TO_DEVICE).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let to_device: Vec<Value> = messages.iter().filter(mine).cloned().collect();
        let lists = body.get(DEVICE_LISTS).filter(|l| !l.is_null());
        let ours = |name: &str| body.get(name).and_then(|m| m.get(owner)).and_then(|m| m.get(device));
        let counts = ours(KEY_COUNTS).or_else(|| ours(KEY_COUNTS_LEGACY));
        let fallback = ours(FALLBACK);
        if to_device.is_empty() && lists.is_none() && counts.is_none() && fallback.is_none() {
            return Ok(None);
        }
        let mut key_counts: std::collections::BTreeMap<_, _> =
            counts.map(|c| field(c, KEY_COUNTS)).transpose()?.unwrap_or_default();
        if counts.is_some() {
            // Synapse leaves out algorithms it holds none of; the library must see the zero to
            // upload more.
            key_counts.entry(ruma::OneTimeKeyAlgorithm::SignedCurve25519).or_insert(ruma::UInt::MIN);
        }
        Ok(Some(Self {
            to_device: to_device.iter().map(|m| field(m, TO_DEVICE)).collect::<Result<_, _>>()?,
            device_lists: lists.map(|l| field(l, DEVICE_LISTS)).transpose()?.unwrap_or_default(),
            key_counts,
            unused_fallback: fallback.map(|f| field(f, FALLBACK)).transpose()?,
        }))
    }
}

impl Device {
    /// Takes in what a transaction carries for the device (push mode), durably.
    pub async fn receive_transaction(&self, body: &[u8]) -> Result<(), E2eeError> {
        if !may_carry(body) {
            return Ok(());
        }
        let body: Value =
            serde_json::from_slice(body).map_err(|e| E2eeError::Malformed(format!("transaction: {e}")))?;
        match Delivered::of_transaction(&body, self.acting())? {
            Some(delivered) => self.receive(delivered.changes(None)).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_device_s_own_messages_and_counts_are_taken_and_a_missing_count_is_zero() {
        let body = serde_json::json!({
            "events": [],
            TO_DEVICE: [
                {"type": "m.room.encrypted", "sender": "@a:hs", "content": {}, "to_user_id": "@o:hs", "to_device_id": "D"},
                {"type": "m.room.encrypted", "sender": "@a:hs", "content": {}, "to_user_id": "@ghost:hs", "to_device_id": "G"},
            ],
            KEY_COUNTS: {"@o:hs": {"D": {"signed_curve25519": 7}}, "@x:hs": {"X": {"signed_curve25519": 1}}},
            DEVICE_LISTS: {"changed": ["@a:hs"], "left": []},
        });
        let delivered = Delivered::of_transaction(&body, ("@o:hs", "D")).unwrap().unwrap();
        assert_eq!(delivered.to_device.len(), 1);
        assert_eq!(delivered.key_counts[&ruma::OneTimeKeyAlgorithm::SignedCurve25519], ruma::UInt::from(7u32));
        assert_eq!(delivered.device_lists.changed.len(), 1);
        let empty = serde_json::json!({KEY_COUNTS_LEGACY: {"@o:hs": {"D": {}}}});
        let delivered = Delivered::of_transaction(&empty, ("@o:hs", "D")).unwrap().unwrap();
        assert_eq!(delivered.key_counts[&ruma::OneTimeKeyAlgorithm::SignedCurve25519], ruma::UInt::MIN);
        let nothing = serde_json::json!({"events": [], TO_DEVICE: []});
        assert!(Delivered::of_transaction(&nothing, ("@o:hs", "D")).unwrap().is_none());
        assert!(!may_carry(b"{\"events\": []}"));
    }
}
