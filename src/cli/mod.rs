//! The command-line tool's commands. The binary parses arguments; these functions do the work
//! and return what to print, so tests can drive them without a process.
//!
//! Exit codes are part of the interface: 0 success, 1 a check failed, 2 bad usage or input.

mod config_cmd;
mod event_cmd;
mod keygen;
mod log_cmd;
mod mimi_cmd;
mod peer_cmd;
mod serve;

use std::io::Read;
use std::path::Path;

pub use config_cmd::{generate_config, generate_registration};
pub use event_cmd::{event_check, event_sign};
pub use keygen::keygen;
pub use log_cmd::{ShowOptions, log_export, log_import, log_list, log_show, log_state, log_verify};
pub use mimi_cmd::{mimi_decode, mimi_encode, mimi_id};
pub use peer_cmd::{mimi_claim, mimi_directory};
pub use serve::serve;

use crate::event::{KeyRing, RoomVersion};
use crate::store::Store;

/// Most bytes read from standard input for one event.
pub const MAX_STDIN_EVENT: u64 = 1 << 20;

/// A command failed: what to print on standard error, and the exit code.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{message}")]
pub struct CliError {
    /// 1 when a check failed, 2 for bad usage or input.
    pub code: u8,
    /// The message, naming the input, the position and what was expected.
    pub message: String,
}

impl CliError {
    /// Bad usage or input (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: 2, message: message.into() }
    }

    /// A check failed (exit 1).
    pub fn check(message: impl Into<String>) -> Self {
        Self { code: 1, message: message.into() }
    }
}

impl From<crate::replay::ReplayError> for CliError {
    fn from(e: crate::replay::ReplayError) -> Self {
        Self { code: e.exit_code(), message: e.to_string() }
    }
}

/// Reads at most `limit` bytes of standard input, refusing more.
pub fn read_limited(input: &mut impl Read, limit: u64, what: &str) -> Result<Vec<u8>, CliError> {
    let mut bytes = Vec::new();
    input.take(limit + 1).read_to_end(&mut bytes).map_err(|e| CliError::usage(format!("{what}: cannot read: {e}")))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(CliError::usage(format!("{what}: more than {limit} bytes")));
    }
    Ok(bytes)
}

/// Looks up a `--room-version` value.
pub fn room_version(id: &str) -> Result<&'static RoomVersion, CliError> {
    RoomVersion::from_id(id).ok_or_else(|| {
        let known: Vec<&str> = crate::event::room_version::KNOWN.iter().map(|v| v.id).collect();
        CliError::usage(format!("--room-version: unknown room version {id:?}; expected one of {known:?}"))
    })
}

/// Parses every `--key SERVER=ed25519:ID=PUBKEY` argument.
pub fn key_ring(args: &[String]) -> Result<KeyRing, CliError> {
    let mut ring = KeyRing::new();
    for arg in args {
        ring.add_argument(arg).map_err(|e| CliError::usage(format!("--key {arg:?}: {e}")))?;
    }
    Ok(ring)
}

/// Opens an existing data directory for the log tools.
pub fn open_store(dir: &Path) -> Result<Store, CliError> {
    Store::open_existing(dir).map_err(|e| CliError::usage(format!("--data-dir {}: {e}", dir.display())))
}

/// Whether progress bars may be drawn: only on a terminal.
pub fn interactive() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
}
