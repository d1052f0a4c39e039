//! `mimi-bridge mimi decode|encode|id`: MIMI content on standard input, for debugging and
//! interop checks. Bad input exits 2 naming the byte offset (CBOR) or the field (JSON).

use crate::mimi::derived::DerivedValues;
use crate::mimi::json::{content_to_json, derived_to_json, json_to_content};
use crate::mimi::{IdDraft, MimiContent, message_id};

use super::CliError;

/// CBOR → JSON (a message, or with `derived` a `MessageDerivedValues` record).
pub fn mimi_decode(input: &[u8], derived: bool) -> Result<String, CliError> {
    let json = if derived {
        derived_to_json(&DerivedValues::decode(input).map_err(|e| CliError::usage(format!("stdin: {e}")))?)
    } else {
        content_to_json(&MimiContent::decode(input).map_err(|e| CliError::usage(format!("stdin: {e}")))?)
    };
    serde_json::to_string_pretty(&json).map_err(|e| CliError::usage(e.to_string()))
}

/// JSON → CBOR.
pub fn mimi_encode(input: &[u8]) -> Result<Vec<u8>, CliError> {
    let json: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| CliError::usage(format!("stdin: not JSON: {e}")))?;
    let content = json_to_content(&json).map_err(|e| CliError::usage(format!("stdin: {e}")))?;
    Ok(content.encode())
}

/// The message ID of the CBOR message on stdin, in lowercase hex.
pub fn mimi_id(input: &[u8], sender: Option<&str>, room: Option<&str>, draft: &str) -> Result<String, CliError> {
    let draft = match draft {
        "07" => IdDraft::V07,
        "08" => IdDraft::V08,
        other => return Err(CliError::usage(format!("--draft: expected 07 or 08, found {other:?}"))),
    };
    let content = MimiContent::decode(input).map_err(|e| CliError::usage(format!("stdin: {e}")))?;
    let sender = sender
        .or(content.sender_uri())
        .ok_or_else(|| CliError::usage("no --sender given and the message has no senderUri extension (1)"))?;
    let room = room
        .or(content.room_uri())
        .ok_or_else(|| CliError::usage("no --room given and the message has no roomUri extension (2)"))?;
    let id = message_id(draft, sender, room, input, &content.salt).map_err(|e| CliError::usage(e.to_string()))?;
    Ok(id.to_hex())
}
