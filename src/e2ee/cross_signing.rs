//! Cross-signing: every device the bridge holds is signed by its owner's self-signing key.
//!
//! Clients of 2026 warn about a device its owner did not sign (Element: "encrypted by a device
//! not verified by its owner"), and with "exclude insecure devices" on they neither show its
//! messages nor share room keys with it. A device signed by its owner's cross-signing identity is
//! shown as any user's whom the reader has not verified — the normal case, without a warning.
//!
//! The owner's keys are made once and kept with the device's state (the `identity` record), and,
//! with a recovery key, in the owner's secret storage too (`recovery`): a new store takes them
//! back from there instead of making new ones. Their upload is repeated at each start until a
//! marker records that the homeserver took it, so a crash between making the keys and uploading
//! them only means uploading them again; the same for secret storage, whose marker names the
//! key that encrypted it. MSC4190 lets an appservice upload (and replace) cross-signing keys
//! without interactive authentication.

use hyper::Method;
use matrix_sdk_crypto::store::CryptoStore;
use serde_json::{Value, json};

use super::recovery::{DEFAULT_KEY, RecoveryKey};
use super::{Device, E2eeError, machine_error};

/// The marker, one of the library's custom values in the device's store.
const UPLOADED: &str = "mimi_bridge.cross_signing_uploaded";

/// The ID of the recovery key the owner's secret storage was last written with.
const STORED_WITH: &str = "mimi_bridge.secret_storage_key";

impl Device {
    /// Makes (once, or takes back from secret storage) and uploads the owner's cross-signing
    /// keys, signs this device with them, and keeps them in the owner's secret storage.
    pub(super) async fn cross_sign(&self) -> Result<(), E2eeError> {
        if self.store.get_custom_value(UPLOADED).await?.is_none() {
            if let Some(recovery) = &self.recovery
                && !self.machine.cross_signing_status().await.has_master
            {
                self.restore(recovery).await?;
            }
            self.upload_cross_signing().await?;
            self.store.set_custom_value(UPLOADED, vec![1]).await?;
            tracing::info!(
                owner = self.owner(),
                device = self.id(),
                "the device is signed by its owner's cross-signing keys"
            );
        }
        if let Some(recovery) = &self.recovery
            && self.store.get_custom_value(STORED_WITH).await?.as_deref() != Some(recovery.key_id().as_bytes())
        {
            let keys = self.machine.export_cross_signing_keys().await.map_err(machine_error)?;
            let keys = keys.ok_or(E2eeError::Machine("no cross-signing keys to keep".into()))?;
            for (kind, content) in recovery.secret_storage(&keys)? {
                self.homeserver.put_account_data(self.acting(), &kind, &content).await?;
            }
            self.store.set_custom_value(STORED_WITH, recovery.key_id().as_bytes().to_vec()).await?;
        }
        Ok(())
    }

    /// Uploads the device's keys, the owner's public cross-signing keys unless the homeserver
    /// has them already (keys taken back from secret storage lack the signatures an upload
    /// needs, and need none), and the device's signature.
    async fn upload_cross_signing(&self) -> Result<(), E2eeError> {
        let requests = self.machine.bootstrap_cross_signing(false).await.map_err(machine_error)?;
        if let Some(upload) = &requests.upload_keys_req {
            self.send(upload).await?;
        }
        let keys = &requests.upload_signing_keys_req;
        let ours =
            keys.master_key.as_ref().map(|k| serde_json::to_value(&k.keys)).transpose().map_err(E2eeError::Json)?;
        let query = json!({ "device_keys": { self.owner(): [] } });
        let known = self.call(Method::POST, "/_matrix/client/v3/keys/query", &query).await?;
        let theirs = known.get("master_keys").and_then(|m| m.get(self.owner())).and_then(|m| m.get("keys"));
        if ours.is_none() || theirs != ours.as_ref() {
            let mut body = json!({});
            for (name, key) in [
                ("master_key", &keys.master_key),
                ("self_signing_key", &keys.self_signing_key),
                ("user_signing_key", &keys.user_signing_key),
            ] {
                if let Some(key) = key {
                    body[name] = serde_json::to_value(key).map_err(E2eeError::Json)?;
                }
            }
            self.call(Method::POST, "/_matrix/client/v3/keys/device_signing/upload", &body).await?;
        }
        let signatures = serde_json::to_value(&requests.upload_signatures_req.signed_keys).map_err(E2eeError::Json)?;
        self.call(Method::POST, "/_matrix/client/v3/keys/signatures/upload", &signatures).await?;
        Ok(())
    }

    /// Takes the owner's cross-signing keys back from their secret storage, if `recovery` opens
    /// it; otherwise new keys are made (and the owner's identity changes), said in the log.
    async fn restore(&self, recovery: &RecoveryKey) -> Result<(), E2eeError> {
        let Some(default) = self.homeserver.account_data(self.acting(), DEFAULT_KEY).await? else { return Ok(()) };
        if default.get("key").and_then(Value::as_str) != Some(recovery.key_id()) {
            tracing::warn!(
                owner = self.owner(),
                key_id = recovery.key_id(),
                "the recovery key does not open the owner's secret storage: new cross-signing keys are made"
            );
            return Ok(());
        }
        let mut secrets = std::collections::BTreeMap::new();
        for name in ["m.cross_signing.master", "m.cross_signing.self_signing", "m.cross_signing.user_signing"] {
            if let Some(content) = self.homeserver.account_data(self.acting(), name).await? {
                secrets.insert(name, content);
            }
        }
        let keys = recovery.open(|name| secrets.remove(name)).map_err(E2eeError::Recovery)?;
        // The library takes private keys only for the public identity it knows.
        self.track(&[self.owner().to_owned()]).await?;
        let status = self.machine.import_cross_signing_keys(keys).await.map_err(machine_error)?;
        if !status.has_master || !status.has_self_signing {
            return Err(E2eeError::Recovery(format!(
                "{}'s secret storage does not hold their current keys",
                self.owner()
            )));
        }
        tracing::info!(owner = self.owner(), "cross-signing keys taken back from secret storage");
        Ok(())
    }
}
