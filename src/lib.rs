//! mimi-bridge lets a Matrix homeserver take part in MIMI rooms.
//!
//! Module map, lowest layer first:
//! - [`event`] — pure: canonical JSON, redaction, hashes, signatures, room versions, auth rules,
//!   and the linear-log rules (`Chain`) that the hub, followers and replay share.
//! - [`mimi`] — pure: MIMI content (deterministic CBOR), message IDs, status reports.
//! - [`translate`] — pure: Matrix event content ⇄ MIMI content, media encryption, receipts.
//! - [`mls`] — openmls with its state in the store, written in the same batch as the event.
//! - [`store`] — the only module that touches RocksDB: column families, typed keys, group commit.
//! - [`hub`] — the single writer of each room's log: completes LPDUs, authors local events,
//!   follows other hubs.
//! - [`replay`] — `log list|show|state|verify|export|import`: offline, bit-for-bit checks.
//! - [`appservice`] — the homeserver side: durable transaction intake, portals, ghosts, and the
//!   client-server API client.
//! - [`http`] — the hyper server: routing, authentication, Matrix errors, health, metrics.
//! - [`cli`] — the command-line tool's commands (the binary only parses arguments).
//!
//! The feature `store` (default) brings in everything that needs RocksDB; without it the crate is
//! the pure half, which the fuzz targets build.

#[cfg(feature = "store")]
pub mod appservice;
#[cfg(feature = "store")]
pub mod cli;
#[cfg(feature = "store")]
pub mod config;
#[cfg(feature = "store")]
pub mod daemon;
pub mod event;
#[cfg(feature = "store")]
pub mod federation;
#[cfg(feature = "store")]
pub mod http;
#[cfg(feature = "store")]
pub mod hub;
pub mod mimi;
#[cfg(feature = "store")]
pub mod mls;
#[cfg(feature = "store")]
pub mod replay;
#[cfg(feature = "store")]
pub mod store;
pub mod translate;
