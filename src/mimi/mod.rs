//! MIMI content (draft-ietf-mimi-content): the deterministic CBOR messages that cross between
//! providers, their message IDs, message-status reports and derived values. Pure: no I/O.
//!
//! No existing Rust crate implements the "-08" editor's copy under a compatible license, and
//! byte-exact re-encoding is what message IDs rest on, so the codec is our own, small and strict.

pub mod cbor;
pub mod content;
pub mod derived;
pub mod extensions;
#[cfg(feature = "mls")]
pub mod frank;
pub mod id;
pub mod json;
#[cfg(feature = "mls")]
pub mod protocol;
pub mod status;

pub use content::{
    Disposition, Expiration, ExtensionKey, ExternalPart, MessageId, MimiContent, NestedPart, Part, PartSemantics,
};
pub use id::{IdDraft, message_id};
