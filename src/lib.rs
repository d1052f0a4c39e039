//! mimi-bridge lets a Matrix homeserver take part in MIMI rooms.
//!
//! Module map, lowest layer first:
//! - [`event`] — pure: canonical JSON, redaction, hashes, signatures, room versions, auth rules,
//!   and the linear-log rules (`Chain`) that the hub, followers and replay share.
//! - [`mimi`] — pure: MIMI content (deterministic CBOR), message IDs, status reports; and the
//!   MIMI protocol's binary bodies (`mimi::protocol`, with the `mls` feature: they embed MLS objects).
//! - [`translate`] — pure: Matrix event content ⇄ MIMI content, media encryption, receipts.
//! - [`mls`] — openmls with its state in the store, written in the same batch as the event.
//! - [`store`] — the only module that touches RocksDB: column families, typed keys, group commit,
//!   and the "room R is durable up to N" announcements the commit thread makes.
//! - [`queue`] — durable delivery queues, one ordered lane per destination with its own backoff
//!   (the one retry policy); the homeserver's requests now, deliveries to providers next.
//! - [`hub`] — the single writer of each room's log: completes LPDUs, authors local events,
//!   follows other hubs, admits this server's users into rooms' MLS groups in one call.
//! - [`replay`] — `log list|show|state|verify|export|import`: offline, bit-for-bit checks.
//! - [`appservice`] — the homeserver side: bounded durable intake read in pages, per-room
//!   workers, portals, ghosts, the portal follower woken by the store's announcements, the
//!   homeserver queue's delivery, and the client-server API client.
//! - [`http`] — the hyper server: requests admitted on their headers before any body is read, a
//!   body budget across connections, graceful shutdown, Matrix errors, readiness, metrics; mutual
//!   TLS with the verified peer certificate handed to handlers.
//! - [`provider`] — the bridge as a MIMI provider: its directory and endpoints (key material,
//!   consent, discovery, abuse reports) and the client reaching peers through their directories.
//! - [`e2ee`] — end-to-bridge encryption: the bridge's Matrix device (matrix-sdk-crypto), its
//!   state in the store, its keys by `/sync` or transactions, decryption for encrypted portals.
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
#[cfg(feature = "store")]
pub mod e2ee;
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
pub mod provider;
#[cfg(feature = "store")]
pub mod queue;
#[cfg(feature = "store")]
pub mod replay;
#[cfg(feature = "store")]
pub mod store;
pub mod translate;
