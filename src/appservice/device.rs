//! The bridge's own Matrix device (`encryption.enabled`), made ready at start.
//!
//! Encrypted Matrix rooms are only readable by a device that the room's members' clients share
//! their keys with. The bridge's device belongs to a namespaced user other than the bot (Synapse
//! refuses `/sync` for the bot, and polling `/sync` is how keys reach a device on a stock
//! homeserver), is created through the appservice device management of Matrix v1.17 (MSC4190)
//! and acted as with `device_id` beside `user_id` (MSC4326). Each failing step names the
//! setting or homeserver feature to fix, before the bridge takes any traffic.

use super::homeserver::HomeserverClient;
use crate::config::{BRIDGE_DEVICE, Config, EncryptionSection};

/// Registers the device's owner, creates the device and checks that requests can act as it;
/// returns the owner's user ID, or what the administrator must fix.
pub async fn ready(homeserver: &HomeserverClient, config: &Config) -> Result<String, String> {
    let localpart = EncryptionSection::owner_localpart(&config.appservice.bot.username);
    let owner = format!("@{localpart}:{}", config.homeserver.domain);
    homeserver.register_ghost(&localpart).await.map_err(|e| {
        format!(
            "encryption.enabled: the homeserver refused to register {owner}, the owner of the bridge's device ({e}); \
             run generate-registration again (the registration must list {owner}) and restart the homeserver"
        )
    })?;
    homeserver.put_device(&owner, BRIDGE_DEVICE, "mimi-bridge").await.map_err(|e| {
        format!(
            "encryption.enabled: the homeserver did not let the bridge create its device {BRIDGE_DEVICE} ({e}); the \
             registration needs `io.element.msc4190: true` (appservice device management, Matrix v1.17): run \
             generate-registration again and restart the homeserver"
        )
    })?;
    let acting = homeserver.whoami_device(&owner, BRIDGE_DEVICE).await.map_err(|e| {
        format!("encryption.enabled: the homeserver cannot act as the bridge's device ({e}); it needs Matrix v1.17 (MSC4326)")
    })?;
    if acting != BRIDGE_DEVICE {
        return Err(format!(
            "encryption.enabled: asked to act as device {BRIDGE_DEVICE}, the homeserver acted as {acting}; it needs \
             Matrix v1.17 (MSC4326, `device_id` beside `user_id`)"
        ));
    }
    Ok(owner)
}
