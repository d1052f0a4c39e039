//! `mimi-bridge event sign|check`: the event core on standard input, for debugging and for
//! checking interoperability with other implementations.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::event::canonical::{object_to_bytes, parse_object};
use crate::event::{KeyRing, ServerKey, inspect, sign_as};

use super::{CliError, room_version};

/// Signs the event in `input` as `server` with the key in `key_file`; returns the signed JSON.
pub fn event_sign(input: &[u8], server: &str, key_file: &Path, version: &str) -> Result<String, CliError> {
    let version = room_version(version)?;
    let (key, warning) = ServerKey::read_file(key_file).map_err(|e| CliError::usage(format!("--key-file {e}")))?;
    if let Some(warning) = warning {
        eprintln!("mimi-bridge: warning: --key-file: {warning}");
    }
    let mut object = parse_object(input).map_err(|e| CliError::usage(format!("stdin: {e}")))?;
    sign_as(version, &mut object, &key, server);
    String::from_utf8(object_to_bytes(&object)).map_err(|e| CliError::usage(e.to_string()))
}

/// Recomputes hashes, signatures and the event ID; returns the report and whether it is valid.
pub fn event_check(input: &[u8], keys: &KeyRing, version: &str) -> Result<(String, bool), CliError> {
    let version = room_version(version)?;
    let object = parse_object(input).map_err(|e| CliError::usage(format!("stdin: {e}")))?;
    let report = inspect(version, &object, keys);
    let signatures: Map<String, Value> = report
        .signatures
        .iter()
        .map(|(server, by_key)| {
            let keys: Map<String, Value> = by_key.iter().map(|(id, s)| (id.clone(), Value::from(s.as_str()))).collect();
            (server.clone(), Value::Object(keys))
        })
        .collect();
    let mut out = json!({
        "event_id": report.event_id,
        "sha256": report.sha256,
        "lpdu_sha256": report.lpdu_sha256,
        "signatures": signatures,
        "valid": report.valid(),
    });
    if let (Some(error), Some(map)) = (&report.error, out.as_object_mut()) {
        map.insert("error".into(), Value::from(error.to_string()));
    }
    Ok((out.to_string(), report.valid()))
}
