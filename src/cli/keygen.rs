//! `mimi-bridge keygen`: a server signing key in Synapse's file format.

use std::io::Write as _;
use std::path::Path;

use crate::event::ServerKey;

use super::CliError;

/// Writes a new key to `out` (never overwriting one) and returns the line to print: key ID and
/// public key.
pub fn keygen(out: &Path, key_id: Option<&str>) -> Result<String, CliError> {
    let key = ServerKey::generate(key_id).map_err(|e| CliError::usage(format!("--key-id: {e}")))?;
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(|e| {
            CliError::usage(format!("--out {}: {e} (an existing key is never overwritten)", out.display()))
        })?;
    restrict_permissions(&file);
    file.write_all(key.to_synapse_line().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::usage(format!("--out {}: {e}", out.display())))?;
    Ok(format!("{} {}", key.key_id(), key.public_b64()))
}

#[cfg(unix)]
fn restrict_permissions(file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_file: &std::fs::File) {}
