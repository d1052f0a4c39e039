//! Integration tests: real RocksDB stores on disk, the real binary, checked-in vectors.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

mod admin_files;
mod appservice_http;
mod appservice_limits;
mod bridge_crash;
mod bridge_isolation;
mod bridge_pair;
mod bridge_peer;
mod bridge_synapse;
mod cli;
mod common;
mod config;
mod crash;
mod edn;
mod federation_limits;
mod fixtures;
mod homeserver;
mod hub;
mod mimi_cli;
mod mimi_discard;
mod mimi_properties;
mod mimi_protocol;
mod mimi_protocol_support;
mod mimi_support;
mod mimi_vectors;
mod mls;
mod mls_crash;
mod mls_group;
mod mls_identity;
mod mls_key_package;
mod mls_log;
mod mls_rooms;
mod pki;
mod ports;
mod properties;
mod provider_crash;
mod provider_peers;
mod provider_tls;
mod replay;
mod rooms_across;
mod synapse;
mod translate;
mod translate_relations;
mod translate_support;
mod vectors;
