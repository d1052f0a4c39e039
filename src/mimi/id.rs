//! Message IDs: `0x01 ‖ SHA-256(hash input)[0..31]`, over the exact received bytes.
//!
//! Two incompatible inputs exist in the wild, so the draft is a parameter: -08 prefixes the
//! sender and room URIs with their 16-bit big-endian byte lengths; -06/-07 (and the peers built
//! on them) do not. Both append the salt again after the content.

use sha2::{Digest, Sha256};

use super::content::MessageId;

/// Which draft's message-ID input to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdDraft {
    /// draft-ietf-mimi-content-07 (and -06): no length prefixes.
    V07,
    /// The editor's copy "-08": 16-bit length prefixes on both URIs.
    #[default]
    V08,
}

/// Why an ID cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// A URI too long for a 16-bit length prefix.
    #[error("{which} is {len} bytes; the -08 message ID allows at most 65535")]
    UriTooLong {
        /// `sender URI` or `room URI`.
        which: &'static str,
        /// Its length.
        len: usize,
    },
}

/// The message ID of `content` (the exact CBOR bytes) sent by `sender` in `room`, with `salt`
/// (the message's own salt, appended again).
pub fn message_id(draft: IdDraft, sender: &str, room: &str, content: &[u8], salt: &[u8]) -> Result<MessageId, IdError> {
    let mut hasher = Sha256::new();
    for (which, uri) in [("sender URI", sender), ("room URI", room)] {
        if draft == IdDraft::V08 {
            let len = u16::try_from(uri.len()).map_err(|_| IdError::UriTooLong { which, len: uri.len() })?;
            hasher.update(len.to_be_bytes());
        }
        hasher.update(uri.as_bytes());
    }
    hasher.update(content);
    hasher.update(salt);
    let digest = hasher.finalize();
    let mut id = [0u8; 32];
    id[0] = 0x01;
    id[1..].copy_from_slice(&digest[..31]);
    Ok(MessageId(id))
}
