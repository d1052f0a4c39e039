//! The application-service side: what Synapse pushes to the bridge, and what the bridge does on
//! the homeserver through the client-server API.
//!
//! Everything that reaches the bridge is made durable before it is acknowledged, and everything
//! the bridge sends to the homeserver goes from a durable queue with a transaction ID kept with
//! it, so neither a crash nor a retry loses or duplicates a message.

pub mod bridge;
pub mod commands;
pub mod delivery;
pub mod device;
pub mod encrypted;
pub mod followed;
pub mod ghost;
pub mod homeserver;
pub mod ids;
pub mod intake;
pub mod outbound;
pub mod ping;
pub mod portal;
pub mod refusal;
pub mod remote;
pub mod rooms;
pub mod service;
pub mod transactions;
pub mod users;
