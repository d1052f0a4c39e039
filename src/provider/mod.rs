//! This bridge as a MIMI provider (draft-ietf-mimi-protocol-06): its directory and endpoints on
//! a mutual-TLS listener, and the client that reaches other providers through their directories.

mod abuse;
pub mod client;
pub mod consent;
pub mod directory;
mod group_info;
mod identifier;
pub mod key_material;
pub mod metrics;
mod notify;
pub mod outbox;
pub mod peers;
mod quota;
pub mod requests;
pub mod service;
mod submit;
mod update;

pub use service::Provider;
