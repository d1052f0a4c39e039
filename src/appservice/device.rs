//! The bridge's own Matrix device (`encryption.enabled`), made ready at start.
//!
//! Encrypted Matrix rooms are only readable by a device that the room's members' clients share
//! their keys with. The bridge's device belongs to a namespaced user other than the bot (Synapse
//! refuses `/sync` for the bot, and polling `/sync` is how keys reach a device on a stock
//! homeserver), is created through the appservice device management of Matrix v1.17 (MSC4190)
//! and acted as with `device_id` beside `user_id` (MSC4326). In push mode, once the device is
//! open (`crate::e2ee`), it sends itself a to-device probe, which must come back in a
//! transaction (MSC4203): a homeserver
//! without the feature would otherwise leave every room key undelivered, silently. Each failing
//! step names the setting or homeserver feature to fix, before the bridge takes any traffic.

use std::time::Duration;

use super::homeserver::HomeserverClient;
use crate::config::{Config, EncryptionSection};

/// The event type of the push-mode probe.
const PROBE: &str = "org.mimi-bridge.probe";

/// How long a probe may take to come back in a transaction, before and after a ping.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// Registers the device's owner, creates its device `device` (deleting any other it has: the
/// bridge holds one) and checks that requests can act as it; returns the owner's user ID, or
/// what the administrator must fix.
pub async fn ready(homeserver: &HomeserverClient, config: &Config, device: &str) -> Result<String, String> {
    let localpart = EncryptionSection::owner_localpart(&config.appservice.bot.username);
    let owner = format!("@{localpart}:{}", config.homeserver.domain);
    homeserver.register_ghost(&localpart).await.map_err(|e| {
        format!(
            "encryption.enabled: the homeserver refused to register {owner}, the owner of the bridge's device ({e}); \
             run generate-registration again (the registration must list {owner}) and restart the homeserver"
        )
    })?;
    homeserver.put_device(&owner, device, "mimi-bridge").await.map_err(|e| {
        format!(
            "encryption.enabled: the homeserver did not let the bridge create its device {device} ({e}); the \
             registration needs `io.element.msc4190: true` (appservice device management, Matrix v1.17): run \
             generate-registration again and restart the homeserver"
        )
    })?;
    let acting = homeserver.whoami_device(&owner, device).await.map_err(|e| {
        format!("encryption.enabled: the homeserver cannot act as the bridge's device ({e}); it needs Matrix v1.17 (MSC4326)")
    })?;
    if acting != device {
        return Err(format!(
            "encryption.enabled: asked to act as device {device}, the homeserver acted as {acting}; it needs \
             Matrix v1.17 (MSC4326, `device_id` beside `user_id`)"
        ));
    }
    // A device from before the store was new (its keys lost with it) only confuses clients.
    let devices = homeserver
        .devices_of(&owner)
        .await
        .map_err(|e| format!("encryption.enabled: listing {owner}'s devices: {e}"))?;
    for old in devices.iter().filter(|d| d.as_str() != device) {
        homeserver
            .delete_device(&owner, old)
            .await
            .map_err(|e| format!("encryption.enabled: deleting {owner}'s old device {old}: {e}"))?;
        tracing::info!(owner, device = old, "deleted a device of the bridge from before its store was new");
    }
    Ok(owner)
}

/// Push mode: checks that to-device messages arrive in transactions (`probes`: the nonces
/// transactions carried), or says what the administrator must fix.
///
/// Synapse was seen not to push a to-device message sent while it held the appservice as down
/// (after a crash, until its retries get through): a probe sent then may never come. So the probe goes again after
/// a ping, which ends that state, and only a second probe that does not come is a refusal.
pub async fn probe(
    homeserver: &HomeserverClient,
    (owner, device): (&str, &str),
    mut probes: tokio::sync::watch::Receiver<Vec<String>>,
) -> Result<(), String> {
    for attempt in 0..2 {
        let nonce = crate::event::keys::random_letters(24).ok_or("no randomness for the probe")?;
        let messages = serde_json::json!({ owner: { device: { "nonce": nonce } } });
        let sent = homeserver.send_to_device((owner, device), PROBE, &nonce, &messages).await;
        sent.map_err(|e| format!("encryption.push: the bridge's device could not send a to-device message ({e})"))?;
        if tokio::time::timeout(PROBE_WAIT, probes.wait_for(|seen| seen.contains(&nonce))).await.is_ok() {
            return Ok(());
        }
        if attempt == 0 {
            let _ = homeserver.ping(Some("mimi-bridge-probe")).await;
        }
    }
    Err(format!(
        "encryption.push: no to-device message reached the bridge in a transaction within {} s: set \
         `experimental_features: {{msc2409_to_device_messages_enabled: true, msc3202_transaction_extensions: \
         true}}` in homeserver.yaml and restart it (the registration keeps receive_ephemeral and \
         org.matrix.msc3202), or set encryption.push: false",
        2 * PROBE_WAIT.as_secs()
    ))
}

/// The nonces of the to-device probes in a transaction's body (`de.sorunome.msc2409.to_device`):
/// several when earlier ones waited (sent while the homeserver pushed none).
pub fn probes_in(body: &[u8]) -> Vec<String> {
    // Most transactions carry none: look before parsing.
    if !body.windows(PROBE.len()).any(|w| w == PROBE.as_bytes()) {
        return Vec::new();
    }
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let messages = body.get("de.sorunome.msc2409.to_device").and_then(|m| m.as_array()).cloned().unwrap_or_default();
    messages
        .iter()
        .filter(|m| m["type"] == PROBE)
        .filter_map(|m| m["content"]["nonce"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::probes_in;

    #[test]
    fn a_transaction_s_probes_are_read_in_order_and_nothing_else() {
        let body = serde_json::json!({
            "events": [],
            "de.sorunome.msc2409.to_device": [
                {"type": "org.mimi-bridge.probe", "content": {"nonce": "old"}, "to_device_id": "MIMIBRIDGE"},
                {"type": "m.room_key", "content": {"nonce": "not a probe"}},
                {"type": "org.mimi-bridge.probe", "content": {"nonce": "new"}},
            ],
        });
        assert_eq!(probes_in(body.to_string().as_bytes()), ["old", "new"]);
        let elsewhere = serde_json::json!({"events": [{"type": "org.mimi-bridge.probe", "content": {"nonce": "x"}}]});
        assert!(probes_in(elsewhere.to_string().as_bytes()).is_empty(), "only to-device messages count");
        assert!(probes_in(b"{\"org.mimi-bridge.probe\": ").is_empty(), "malformed");
        assert!(probes_in(b"{\"events\": []}").is_empty());
    }
}
