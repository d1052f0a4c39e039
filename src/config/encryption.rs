//! The type of `encryption`: whether the bridge holds a Matrix device of its own (for portals
//! in encrypted Matrix rooms), and how the keys for it reach the bridge.
//!
//! The device belongs to a user of the bridge's namespace other than the bot: Synapse refuses
//! `/sync` for the registration's sender user, and polling `/sync` is how keys arrive on a stock
//! homeserver (the default). The homeserver must let the appservice manage devices (MSC4190,
//! Matrix v1.17: `io.element.msc4190: true` in the registration); push mode also needs the
//! transaction extensions (MSC4203 to-device messages, MSC3202 device lists and key counts),
//! which Synapse has behind `experimental_features`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the bridge's Matrix device IDs begin (a random suffix follows: a new device, with new
/// keys, gets a new ID, since clients ignore changed keys under a device ID they know).
pub const BRIDGE_DEVICE: &str = "MIMIBRIDGE";

/// `encryption`: the bridge's own Matrix device.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionSection {
    /// Hold a Matrix device of the bridge's own: at start the bridge registers its owner
    /// (`<bot username>_device`), creates the device `MIMIBRIDGE…` through the appservice device
    /// management (MSC4190) and checks that it can act as it (MSC4326). Default false.
    /// *(registration)*
    #[serde(default)]
    pub enabled: bool,
    /// Take to-device messages and device-list changes from the homeserver's transactions
    /// (MSC4203, MSC3202) instead of polling `/sync` as the device's owner. Synapse needs
    /// `experimental_features: {msc2409_to_device_messages_enabled: true,
    /// msc3202_transaction_extensions: true}`; at start the device sends itself a to-device
    /// probe that must come back in a transaction. Default false. *(registration)*
    #[serde(default)]
    pub push: bool,
    /// Bridge only messages sent from devices their owners signed with their cross-signing keys
    /// (Element's "exclude insecure devices"): a message from an unsigned device is refused, its
    /// sender told in the room, and counted (`undecryptable`). Default false: members' clients
    /// often have devices they never signed, and a bridge has no one to verify devices for it.
    #[serde(default)]
    pub require_verification: bool,
    /// Path of the recovery key file. The cross-signing keys of the bridge's Matrix users (the
    /// device's owner and every ghost that holds a device) are kept in their secret storage
    /// (account data on the homeserver), encrypted with this key: a bridge whose data directory
    /// was lost takes them back instead of resetting its users' identities. The first start
    /// writes a new key there (readable by its owner only); keep a copy away from the data
    /// directory. Default: none (the keys are kept in the data directory alone).
    #[serde(default)]
    pub recovery_key_file: Option<PathBuf>,
}

impl EncryptionSection {
    /// The localpart of the device's owner, for the bot `bot`.
    pub fn owner_localpart(bot: &str) -> String {
        format!("{bot}_device")
    }
}
