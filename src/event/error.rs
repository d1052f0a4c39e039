//! Why an event was refused, precisely enough for a peer or an admin to act on it.

use super::auth::AuthError;
use super::canonical::CanonicalError;

/// An event failed parsing, shape, hash, signature, size or auth checks.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The bytes are not canonical-JSON material.
    #[error("invalid JSON: {0}")]
    Json(#[from] CanonicalError),
    /// A field is missing or has the wrong type or form.
    #[error("field `{field}`: expected {expected}")]
    Field {
        /// The field path, e.g. `hashes.lpdu.sha256`.
        field: String,
        /// What the field must be.
        expected: &'static str,
    },
    /// The completed, signed PDU is larger than the protocol allows.
    #[error("event is {size} bytes as canonical JSON; the limit is {limit}")]
    TooLarge {
        /// Canonical size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The room version is unknown or cannot be used here.
    #[error("room version {0:?} is not supported here")]
    UnsupportedRoomVersion(String),
    /// A content hash does not match the recomputed value.
    #[error("{which} hash mismatch: event says {found}, recomputed {computed}")]
    HashMismatch {
        /// `hashes.sha256` or `hashes.lpdu.sha256`.
        which: &'static str,
        /// The value in the event.
        found: String,
        /// The value recomputed from the event.
        computed: String,
    },
    /// A required server did not sign.
    #[error("no signature from {server}, which must sign ({role})")]
    MissingSignature {
        /// The server whose signature is missing.
        server: String,
        /// Why it must sign: `origin` or `hub`.
        role: &'static str,
    },
    /// A required server's signature does not verify.
    #[error("signature of {server} with {key_id} does not verify ({role})")]
    BadSignature {
        /// The signing server.
        server: String,
        /// Its key ID.
        key_id: String,
        /// `origin` or `hub`.
        role: &'static str,
    },
    /// A required server signed with a key this server does not know.
    #[error("signature of {server} uses unknown key {key_id} ({role})")]
    UnknownKey {
        /// The signing server.
        server: String,
        /// The unknown key ID.
        key_id: String,
        /// `origin` or `hub`.
        role: &'static str,
    },
    /// A server that has no business signing this event signed it.
    #[error("unexpected signature from {server}: only the origin and the hub sign a logged event")]
    UnexpectedSignature {
        /// The extra signer.
        server: String,
    },
    /// The LPDU names another hub.
    #[error("hub_server is {found}, but this hub is {expected}")]
    WrongHub {
        /// This server's name.
        expected: String,
        /// The LPDU's `hub_server`.
        found: String,
    },
    /// The auth rules reject the event.
    #[error("auth rules reject the event: {0}")]
    Auth(#[from] AuthError),
}

impl EventError {
    pub(crate) fn field(field: impl Into<String>, expected: &'static str) -> Self {
        EventError::Field { field: field.into(), expected }
    }
}
