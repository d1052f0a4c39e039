//! Cross-signing: every device the bridge holds is signed by its owner's self-signing key.
//!
//! Clients of 2026 warn about a device its owner did not sign (Element: "encrypted by a device
//! not verified by its owner"), and with "exclude insecure devices" on they neither show its
//! messages nor share room keys with it. A device signed by its owner's cross-signing identity is
//! shown as any user's whom the reader has not verified — the normal case, without a warning.
//!
//! The owner's keys are made once and kept with the device's state (the `identity` record).
//! Their upload is repeated at each start until a marker records that the homeserver took it, so
//! a crash between making the keys and uploading them only means uploading them again. MSC4190
//! lets an appservice upload (and replace) cross-signing keys without interactive authentication.

use hyper::Method;
use matrix_sdk_crypto::store::CryptoStore;
use serde_json::json;

use super::{Device, E2eeError, machine_error};

/// The marker, one of the library's custom values in the device's store.
const UPLOADED: &str = "mimi_bridge.cross_signing_uploaded";

impl Device {
    /// Makes (once) and uploads the owner's cross-signing keys and signs this device with them.
    pub(super) async fn cross_sign(&self) -> Result<(), E2eeError> {
        if self.store.get_custom_value(UPLOADED).await?.is_some() {
            return Ok(());
        }
        let requests = self.machine.bootstrap_cross_signing(false).await.map_err(machine_error)?;
        if let Some(upload) = &requests.upload_keys_req {
            self.send(upload).await?;
        }
        let keys = &requests.upload_signing_keys_req;
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
        let signatures = serde_json::to_value(&requests.upload_signatures_req.signed_keys).map_err(E2eeError::Json)?;
        self.call(Method::POST, "/_matrix/client/v3/keys/signatures/upload", &signatures).await?;
        self.store.set_custom_value(UPLOADED, vec![1]).await?;
        tracing::info!(
            owner = self.owner(),
            device = self.id(),
            "the device is signed by its owner's cross-signing keys"
        );
        Ok(())
    }
}
