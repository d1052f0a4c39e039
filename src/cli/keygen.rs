//! `mimi-bridge keygen`: a server signing key in Synapse's file format.

use std::io::Write as _;
use std::path::Path;

use crate::event::ServerKey;

use super::CliError;

/// Writes a new key to `out` (never overwriting one) and returns the line to print: key ID and
/// public key.
pub fn keygen(out: &Path, key_id: Option<&str>) -> Result<String, CliError> {
    let key = ServerKey::generate(key_id).map_err(|e| CliError::usage(format!("--key-id: {e}")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Readable by its owner only, from the moment it exists.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .map_err(|e| CliError::usage(format!("--out {}: {e} (an existing key is never overwritten)", out.display())))?;
    if let Err(e) = file.write_all(key.to_synapse_line().as_bytes()).and_then(|()| file.sync_all()) {
        // A half-written key must not block the next attempt (keygen never overwrites).
        let _ = std::fs::remove_file(out);
        return Err(CliError::usage(format!("--out {}: {e}", out.display())));
    }
    Ok(format!("{} {}", key.key_id(), key.public_b64()))
}
