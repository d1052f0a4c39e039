//! `mimi-bridge log …`: the replay tools over a data directory.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::Path;

use ruma::CanonicalJsonValue;
use serde_json::json;

use crate::event::canonical::object_to_bytes;
use crate::replay::{self, TimelineEntry};

use super::{CliError, interactive, key_ring, open_store};

/// `log list`: one line per room.
pub fn log_list(dir: &Path, as_json: bool) -> Result<String, CliError> {
    let rooms = replay::list_rooms(&open_store(dir)?)?;
    if as_json {
        let rows: Vec<_> = rooms
            .iter()
            .map(|r| json!({"room_id": r.room_id, "events": r.events, "tail_event_id": r.tail_event_id, "hub": r.hub}))
            .collect();
        return Ok(serde_json::Value::from(rows).to_string());
    }
    let mut out = String::from("ROOM\tEVENTS\tTAIL\tHUB\n");
    for r in rooms {
        let _ = writeln!(out, "{}\t{}\t{}\t{}", r.room_id, r.events, r.tail_event_id, r.hub);
    }
    Ok(out.trim_end().to_owned())
}

/// How `log show` prints a room's timeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShowOptions {
    /// First position.
    pub from: u64,
    /// Most events.
    pub limit: Option<u64>,
    /// JSON lines `{"position", "event_id", "pdu"}` instead of text.
    pub json: bool,
    /// Also print the MIMI content this server stored for each MLS application message
    /// (`m.room.encrypted`, or `m.mimi.fanout` in a follower's record).
    pub decrypt: bool,
}

/// `log show`: the timeline, as text or as JSON lines (with `decrypted` when asked).
pub fn log_show(dir: &Path, room: &str, options: ShowOptions) -> Result<String, CliError> {
    let store = open_store(dir)?;
    let entries = replay::timeline(&store, room, options.from, options.limit)?;
    let mut out = String::new();
    for e in &entries {
        let decrypted =
            if options.decrypt && carries_a_message(e) { Some(decrypted(&store, &e.event_id)?) } else { None };
        if options.json {
            let pdu = String::from_utf8_lossy(&e.bytes);
            let decrypted = decrypted.map(|d| format!("\"decrypted\":{d},")).unwrap_or_default();
            let (id, pos) = (json!(e.event_id), e.position);
            let _ = writeln!(out, "{{{decrypted}\"event_id\":{id},\"pdu\":{pdu},\"position\":{pos}}}");
        } else {
            let _ = writeln!(out, "{}", show_line(e));
            if let Some(d) = decrypted {
                let _ = writeln!(out, "        decrypted: {d}");
            }
        }
    }
    Ok(out.trim_end().to_owned())
}

/// Whether an event carries an MLS application message: an `m.room.encrypted` of a hub's log, or
/// an `m.mimi.fanout` of an application message in a follower's record of a room.
fn carries_a_message(e: &TimelineEntry) -> bool {
    use crate::mimi::protocol::{FanoutExtra, FanoutMessage, Wire as _};
    use crate::mls::events::{ENCRYPTED, FANOUT, FanoutContent};
    match e.meta.event_type.as_str() {
        ENCRYPTED => true,
        FANOUT => FanoutContent::parse(&e.content)
            .ok()
            .and_then(|c| FanoutMessage::decode(&c.fanout).ok())
            .is_some_and(|fanout| matches!(fanout.extra, FanoutExtra::Application(_))),
        _ => false,
    }
}

/// The stored MIMI content of an encrypted event as compact JSON (`null` if none is stored:
/// sent before this server's client joined, or not decryptable by it).
fn decrypted(store: &crate::store::Store, event_id: &str) -> Result<String, CliError> {
    let cbor = store.plaintext(event_id).map_err(|e| CliError::check(e.to_string()))?;
    let Some(cbor) = cbor else { return Ok("null".into()) };
    let content = crate::mimi::MimiContent::decode(&cbor)
        .map_err(|e| CliError::check(format!("stored plaintext of {event_id} is not MIMI content: {e}")))?;
    Ok(crate::mimi::json::content_to_json(&content).to_string())
}

fn show_line(e: &TimelineEntry) -> String {
    let m = &e.meta;
    let state = m.state_key.as_ref().map(|k| format!(" [{k}]")).unwrap_or_default();
    let summary = match (m.event_type.as_str(), e.content.get("membership"), e.content.get("body")) {
        ("m.room.member", Some(CanonicalJsonValue::String(membership)), _) => membership.clone(),
        (_, _, Some(CanonicalJsonValue::String(body))) => format!("{body:?}"),
        _ => String::from_utf8_lossy(&object_to_bytes(&e.content)).into_owned(),
    };
    let summary: String =
        if summary.chars().count() > 100 { summary.chars().take(99).chain(['…']).collect() } else { summary };
    format!(
        "{:>6}  {}  {}  {}  {}{}  {}",
        e.position,
        e.event_id,
        iso8601(m.origin_server_ts),
        m.sender,
        m.event_type,
        state,
        summary
    )
}

/// `log state`: the state after position `at`.
pub fn log_state(dir: &Path, room: &str, at: Option<u64>, as_json: bool) -> Result<String, CliError> {
    let (at, rows) = replay::state_at(&open_store(dir)?, room, at).map_err(|e| match e {
        replay::ReplayError::Invalid { reason, .. } => CliError::usage(reason),
        other => other.into(),
    })?;
    if as_json {
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                let ev = &row.event;
                let content: serde_json::Value =
                    serde_json::from_slice(&object_to_bytes(&ev.content)).unwrap_or_default();
                json!({"position": row.position, "type": row.event_type, "state_key": row.state_key,
                       "event_id": ev.event_id, "sender": ev.sender, "content": content})
            })
            .collect();
        return Ok(json!({"room_id": room, "at": at, "state": rows}).to_string());
    }
    let mut out = format!("state of {room} after position {at}\n");
    for row in rows {
        let (ev, t, k, pos) = (&row.event, &row.event_type, &row.state_key, row.position);
        let content = String::from_utf8_lossy(&object_to_bytes(&ev.content)).into_owned();
        let _ = writeln!(out, "{t}\t{k:?}\t{}\t(position {pos}, {})\t{content}", ev.event_id, ev.sender);
    }
    Ok(out.trim_end().to_owned())
}

/// `log verify`.
pub fn log_verify(dir: &Path, room: Option<&str>, keys: &[String]) -> Result<String, CliError> {
    let overrides = key_ring(keys)?;
    let summary = replay::verify_store(&open_store(dir)?, room, &overrides, interactive())?;
    Ok(format!(
        "ok: {} room(s), {} event(s) verified, {} MLS commit(s) replayed",
        summary.rooms, summary.events, summary.mls_commits
    ))
}

/// `log export`.
pub fn log_export(dir: &Path, room: &str, out: &mut impl Write) -> Result<String, CliError> {
    let header = replay::export_room(&open_store(dir)?, room, out, interactive())?;
    Ok(format!("exported {} event(s) of {}", header.events, header.room_id))
}

/// `log import`.
pub fn log_import(dir: &Path, input: &mut impl BufRead, keys: &[String]) -> Result<String, CliError> {
    let overrides = key_ring(keys)?;
    let store =
        crate::store::Store::open(dir).map_err(|e| CliError::usage(format!("--data-dir {}: {e}", dir.display())))?;
    let summary = replay::import_log(&store, input, &overrides, interactive()).map_err(|e| {
        let mut e = CliError::from(e);
        e.message = format!("stdin: {}", e.message);
        e
    })?;
    Ok(format!("imported {} event(s) of {}", summary.events, summary.room_id))
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` from milliseconds since the epoch.
pub(crate) fn iso8601(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(super::iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
