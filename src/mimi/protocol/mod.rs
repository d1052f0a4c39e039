//! The MIMI protocol's bodies (draft-ietf-mimi-protocol-06), in the TLS presentation language.
//! Pure: bytes in, structs out, and back, exactly. Each body is its own file so that a change of
//! the draft touches one place; embedded MLS objects are kept as the bytes received.
//!
//! Strict where the draft is clear (trailing bytes, presence bytes, unknown enum values refused
//! with the field named); where the draft contradicts itself or a known peer reads it
//! differently, `schemas/mimi-protocol.md` says what is sent and what is accepted.

pub mod abuse;
pub mod common;
pub mod consent;
mod embedded;
pub mod group_info;
pub mod identifier;
pub mod key_material;
pub mod notify;
pub mod room_state;
pub mod submit;
pub mod tls;
pub mod tree;
pub mod update;

pub use abuse::{AbuseReport, AbusiveMessage};
pub use common::AppDataDictionary;
pub use consent::{ConsentEntry, ConsentOperation};
pub use group_info::{GroupInfoRatchetTree, GroupInfoRequest, GroupInfoResponse};
pub use identifier::{IdentifierRequest, IdentifierResponse};
pub use key_material::{ClientMaterial, KeyMaterialRequest, KeyMaterialResponse, UserStatus};
pub use notify::{FanoutExtra, FanoutMessage};
pub use room_state::{ParticipantList, ParticipantListUpdate, RoomMetadata, UserRole};
pub use submit::{Frank, SubmitMessageRequest, SubmitMessageResponse};
pub use tls::{Wire, WireError};
pub use tree::{GroupInfoOption, RatchetTreeOption};
pub use update::{HandshakeBundle, UpdateOutcome, UpdateRoomResponse, WELCOME_MESSAGE};
