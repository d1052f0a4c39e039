//! `log export`: a room's log as JSON Lines (`schemas/log-export.schema.json`).
//!
//! Line 1 is a header naming the room, its version, its length and the public keys of every
//! server whose signature the log carries; each following line is one PDU's canonical JSON,
//! byte for byte as stored, in log order (line n+2 holds position n). Everything needed to
//! verify the file travels with it.

use std::collections::BTreeMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::event::KeyRing;
use crate::event::canonical::parse_object;
use crate::event::sign::{signatures_of, signing_servers};
use crate::store::Store;

use super::verify::effective_keys;
use super::{ReplayError, corrupt, progress, room_version};

/// The `format` value of an export header.
pub(crate) const FORMAT: &str = "mimi-bridge-log-export";

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always `mimi-bridge-log-export`.
    pub format: String,
    /// Format version; this build writes and reads 1.
    pub version: u32,
    /// The room.
    pub room_id: String,
    /// Its room version.
    pub room_version: String,
    /// Number of PDU lines that follow.
    pub events: u64,
    /// Public keys (unpadded base64) by server and key ID: exactly those the log's signatures use.
    pub keys: BTreeMap<String, BTreeMap<String, String>>,
}

/// Writes a room's log to `out`.
pub fn export_room(
    store: &Store,
    room_id: &str,
    out: &mut impl Write,
    show_progress: bool,
) -> Result<ExportHeader, ReplayError> {
    let short = store.short_room(room_id)?.ok_or_else(|| ReplayError::UnknownRoom(room_id.to_owned()))?;
    let tail = store.tail(short)?.ok_or_else(|| ReplayError::UnknownRoom(room_id.to_owned()))?;
    let keys = effective_keys(store, &KeyRing::new())?;
    // First pass: the room version and the keys the signatures use.
    let mut used: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let room_version = room_version(store, short).map_err(|e| corrupt(0, &e))?.id;
    for item in store.pdus(short, 0)? {
        let (seq, bytes) = item?;
        let object = parse_object(&bytes).map_err(|e| corrupt(seq, &e))?;
        for server in signing_servers(&object) {
            for (key_id, _) in signatures_of(&object, server) {
                if let Some(key) = keys.get(server, key_id) {
                    let public =
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, key.as_bytes());
                    used.entry(server.to_owned()).or_default().insert(key_id.to_owned(), public);
                }
            }
        }
    }
    let header = ExportHeader {
        format: FORMAT.to_owned(),
        version: 1,
        room_id: room_id.to_owned(),
        room_version: room_version.to_owned(),
        events: tail.events()?,
        keys: used,
    };
    let io = |e: std::io::Error| ReplayError::Io(e.to_string());
    out.write_all(&header_line(&header)).map_err(io)?;
    let bar = progress(header.events, "export");
    if !show_progress {
        bar.finish_and_clear();
    }
    for item in store.pdus(short, 0)? {
        let (_, bytes) = item?;
        out.write_all(&bytes).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    out.flush().map_err(io)?;
    Ok(header)
}

/// The header as one canonical JSON line (struct fields serialize to strings and integers only).
pub(crate) fn header_line(header: &ExportHeader) -> Vec<u8> {
    let value = serde_json::to_value(header).unwrap_or_default();
    let canonical = ruma::CanonicalJsonValue::try_from(value).unwrap_or(ruma::CanonicalJsonValue::Null);
    let mut line = crate::event::canonical::to_bytes(&canonical);
    line.push(b'\n');
    line
}
