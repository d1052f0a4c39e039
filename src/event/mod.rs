//! The event core: pure functions over events, no I/O.
//!
//! Everything a server must compute identically to its peers lives here — canonical JSON,
//! redaction, content and reference hashes, ed25519 signatures, room-version rules, the auth
//! rules — so that the hub, a following participant and an offline `log verify` share one
//! implementation and cannot drift apart.

pub mod auth;
pub mod build;
pub mod canonical;
pub mod chain;
pub mod check;
mod error;
pub mod hash;
pub mod keys;
pub mod meta;
pub mod pdu;
pub mod redact;
pub mod room_version;
pub mod sign;
pub mod state;

pub use build::{EventTemplate, build_local, build_lpdu, complete_lpdu, sign_as};
pub use chain::{Chain, ChainError};
pub use check::{CheckReport, Form, inspect};
pub use error::EventError;
pub use keys::{KeyRing, ServerKey};
pub use meta::EventMeta;
pub use pdu::{MAX_PDU_BYTES, Pdu, UnverifiedLpdu, UnverifiedPdu, VerifiedLpdu};
pub use room_version::RoomVersion;
