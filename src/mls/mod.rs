//! MLS for the bridge's own clients, on openmls.
//!
//! openmls keeps all of a group's state (tree, epoch secrets, sender ratchets, key material) in
//! its storage provider; the bridge's provider, [`MlsProvider`], keeps it in the store's
//! `mlskey_value` column family through [`RocksStorage`]. That storage holds every write in
//! memory until the caller moves it into a store [`Batch`](crate::store::Batch) with
//! [`RocksStorage::take_batch`], so an MLS state change becomes durable in the same atomic batch
//! as the event it produced, or not at all.
//!
//! Every group uses [`CIPHERSUITE`]. Groups are created with [`group_create_config`] (joined with
//! [`group_join_config`]): handshake messages go out as `PublicMessage` so that the hub can
//! check them, and the ratchet tree travels in the Welcome.
#![deny(missing_docs)]

pub mod directory;
pub mod events;
pub mod framing;
pub mod group;
pub mod identity;
pub mod key_package;
pub mod member;
pub mod public;
pub mod room_data;
pub mod seal;
pub mod storage;
mod welcome;

use openmls::prelude::{
    BasicCredential, Ciphersuite, Extensions, ExternalSender, GroupContext, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
    MlsGroupCreateConfig, MlsGroupJoinConfig, SignatureScheme,
};

pub use storage::{Flush, MlsProvider, MlsStorageError, RocksStorage};

/// The ciphersuite of every group the bridge creates or joins: MLS's mandatory-to-implement
/// suite (X25519, AES-128-GCM, SHA-256, Ed25519).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The signature scheme of [`CIPHERSUITE`], for the clients' credential keys.
pub const SIGNATURE_SCHEME: SignatureScheme = SignatureScheme::ED25519;

/// How the bridge creates a group: [`CIPHERSUITE`]; commits and proposals as `PublicMessage`
/// (`MIXED_PLAINTEXT`: the hub must be able to police them; application messages are always
/// `PrivateMessage`); the ratchet tree in the Welcome's `ratchet_tree` extension (openmls has no
/// MIMI `RatchetTreeOption`).
pub fn group_create_config() -> MlsGroupCreateConfig {
    hubbed_group_config(Extensions::empty())
}

/// [`group_create_config`] with the `GroupContext` `extensions` of a MIMI room
/// ([`room_data::new_room_extensions`]: the hub as external sender, so that it may propose
/// without being a member, and the room state). The creator's leaf advertises what the
/// devices' key packages do ([`key_package::capabilities`]).
pub fn hubbed_group_config(extensions: Extensions<GroupContext>) -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .capabilities(key_package::capabilities())
        .with_group_context_extensions(extensions)
        .build()
}

/// A hub as an external sender: its provider URI (`mimi://<domain>`) in a basic credential and
/// its server's ed25519 key, which signs what the hub sends as itself.
pub fn hub_sender(domain: &str, public_key: [u8; 32]) -> ExternalSender {
    ExternalSender::new(public_key.to_vec().into(), hub_credential(domain))
}

/// A hub's credential: its provider URI (`mimi://<domain>`) in a basic credential.
pub fn hub_credential(domain: &str) -> openmls::prelude::Credential {
    BasicCredential::new(format!("mimi://{domain}").into_bytes()).into()
}

/// How the bridge joins a group from a Welcome: the same policies as [`group_create_config`].
pub fn group_join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(true)
        .build()
}
