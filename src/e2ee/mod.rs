//! End-to-bridge encryption: the bridge's own Matrix device reads Megolm-encrypted portals.
//!
//! Matrix clients encrypt private rooms and direct chats by default, and the Digital Markets Act
//! asks that interoperation keep end-to-end encryption: a room a user bridges stays encrypted on
//! the homeserver, and the bridge, as one more device in it, decrypts members' messages into
//! MIMI content that MLS encrypts again. Olm and Megolm are matrix-sdk-crypto's (over
//! vodozemac); this module gives it a durable store in the bridge's RocksDB ([`store`]), carries
//! its requests to the homeserver as the device ([`requests`]), and feeds it what the homeserver
//! delivers to the device: `/sync` long-polled as the device's owner ([`sync`], works on any
//! homeserver) or the fields appservice transactions carry in push mode ([`push`]).
//!
//! One device, owned by a namespaced user other than the bot (Synapse refuses `/sync` for the
//! bot), receives the room keys. That user joins each encrypted portal, since clients share
//! room keys with the devices of the room's members only. What arrives from MIMI is encrypted
//! by a device of the ghost that speaks ([`ghosts`], which says why not by the bridge's one).

pub mod attachments;
mod cross_signing;
pub mod device;
pub mod ghosts;
pub mod push;
mod records;
pub mod recovery;
pub mod requests;
pub mod store;
pub mod sync;

pub use device::Device;

use crate::appservice::homeserver::HomeserverError;
use crate::store::StoreError;

/// What went wrong with the bridge's device.
#[derive(Debug, thiserror::Error)]
pub enum E2eeError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record could not be written as JSON.
    #[error("crypto state: {0}")]
    Json(serde_json::Error),
    /// A record of the crypto state is not what this build wrote.
    #[error("corrupt crypto state: {0}")]
    Corrupt(String),
    /// The homeserver refused or failed a request of the device.
    #[error("homeserver: {0}")]
    Homeserver(#[from] HomeserverError),
    /// matrix-sdk-crypto failed.
    #[error("olm machine: {0}")]
    Machine(String),
    /// The homeserver answered with something the device cannot use.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The recovery key file (`encryption.recovery_key_file`) is unusable.
    #[error("encryption.recovery_key_file: {0}")]
    Recovery(String),
}

impl crate::queue::Retryable for E2eeError {
    /// Worth trying again later: the store or the homeserver may recover.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Store(_) => true,
            Self::Homeserver(e) => e.is_retryable(),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Homeserver(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl From<std::convert::Infallible> for E2eeError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<E2eeError> for matrix_sdk_crypto::CryptoStoreError {
    fn from(error: E2eeError) -> Self {
        Self::backend(error)
    }
}

/// Maps any error of matrix-sdk-crypto.
pub(crate) fn machine_error(error: impl std::fmt::Display) -> E2eeError {
    E2eeError::Machine(error.to_string())
}
