//! This bridge as a MIMI provider (draft-ietf-mimi-protocol-06): its directory and endpoints on
//! a mutual-TLS listener, and the client that reaches other providers through their directories.

pub mod client;
pub mod directory;
