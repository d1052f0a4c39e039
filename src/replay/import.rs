//! `log import`: all or nothing. Every line is parsed, every event verified and chained, and
//! only then is the whole room written, in one batch.

use std::io::{BufRead, Read as _};

use crate::event::canonical::{parse_object, to_bytes};
use crate::event::keys::decode_public;
use crate::event::{Chain, KeyRing, Pdu};
use crate::mls::public::{MlsCheckError, PublicView, apply_step, check_event};
use crate::store::batch::EventRecord;
use crate::store::{Batch, RoomSeq, Store};

use super::export::{ExportHeader, FORMAT};
use super::pipeline::pipeline;
use super::{EventFault, Failure, ReplayError, check_event_bytes, progress};

/// Longest accepted line: a PDU is at most 64 KiB; the header carries keys, so allow more.
const MAX_LINE: usize = 1 << 20;

/// What an import wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The room.
    pub room_id: String,
    /// Events written.
    pub events: u64,
}

/// Reads an export from `input`, verifies all of it, and writes it to `store`. The header's
/// keys are trusted unless `overrides` names the server, whose keys then replace them.
pub fn import_log(
    store: &Store,
    input: &mut impl BufRead,
    overrides: &KeyRing,
    show_progress: bool,
) -> Result<ImportSummary, ReplayError> {
    let lines = read_lines(input)?;
    let Some(header_bytes) = lines.first() else {
        return Err(ReplayError::Invalid { line: 1, reason: "empty input: expected a header line".into() });
    };
    let header = parse_header(header_bytes)?;
    let keys = header_keys(&header, overrides)?;
    let events = &lines[1..];
    if u64::try_from(events.len()).ok() != Some(header.events) {
        return Err(ReplayError::Invalid {
            line: 1,
            reason: format!("header says {} events, the file has {}", header.events, events.len()),
        });
    }
    let version = crate::event::RoomVersion::from_id(&header.room_version).filter(|v| v.loggable).ok_or_else(|| {
        ReplayError::Invalid { line: 1, reason: format!("room_version {:?} is not supported", header.room_version) }
    })?;
    let bar = progress(header.events, "import");
    if !show_progress {
        bar.finish_and_clear();
    }
    let fail = |line: usize, event_id: Option<String>, reason: String| {
        ReplayError::Check(Failure {
            room_id: header.room_id.clone(),
            position: line.checked_sub(2).map(|p| p as u64),
            event_id,
            line: Some(line),
            reason,
        })
    };
    let mut chain: Option<Chain> = None;
    // The MLS layer is checked as `log verify` checks it: an import is all or nothing.
    let mut mls: Option<PublicView> = None;
    let mut pdus: Vec<Pdu> = Vec::with_capacity(events.len());
    let input = events.iter().enumerate().map(Ok::<_, ReplayError>);
    pipeline(
        input,
        |(index, bytes)| (index, check_event_bytes(bytes, version, &keys)),
        |(index, result)| {
            let line = index + 2;
            let pdu = result.map_err(|fault| match fault {
                EventFault::Invalid(reason) => ReplayError::Invalid { line, reason },
                EventFault::Check { event_id, reason } => fail(line, event_id, reason),
            })?;
            let id = || Some(pdu.event_id().to_owned());
            if pdu.meta().room_id != header.room_id {
                let reason = format!("event is for room {}, header says {}", pdu.meta().room_id, header.room_id);
                return Err(fail(line, id(), reason));
            }
            let chain = match &mut chain {
                Some(chain) => chain,
                None => chain.insert(Chain::for_create(&pdu).map_err(|e| fail(line, id(), e.to_string()))?),
            };
            if chain.version().id != version.id {
                let reason = format!("create event declares {}, header says {}", chain.version().id, version.id);
                return Err(fail(line, id(), reason));
            }
            let seq = u64::try_from(pdus.len()).unwrap_or(u64::MAX);
            let mls_fail = |e: MlsCheckError| fail(line, id(), format!("MLS: {e}"));
            let step = check_event(mls.as_ref(), seq, &pdu, chain.state(), None, true).map_err(mls_fail)?;
            chain.push(&pdu).map_err(|e| fail(line, id(), e.to_string()))?;
            apply_step(&mut mls, step, pdu.event_id()).map_err(mls_fail)?;
            pdus.push(pdu);
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    unused_key(&header, &pdus).map_or(Ok(()), |(server, key_id)| {
        Err(ReplayError::Invalid { line: 1, reason: format!("key {server} {key_id} is listed but signs nothing") })
    })?;
    write_room(store, &header, &keys, &pdus)?;
    Ok(ImportSummary { room_id: header.room_id, events: header.events })
}

fn read_lines(input: &mut impl BufRead) -> Result<Vec<Vec<u8>>, ReplayError> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = input
            .by_ref()
            .take(u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| ReplayError::Io(e.to_string()))?;
        if read == 0 {
            break;
        }
        let number = lines.len() + 1;
        if line.last() != Some(&b'\n') {
            let reason = if line.len() > MAX_LINE {
                format!("longer than {MAX_LINE} bytes")
            } else {
                "missing final newline".into()
            };
            return Err(ReplayError::Invalid { line: number, reason });
        }
        line.pop();
        lines.push(line);
    }
    Ok(lines)
}

fn parse_header(bytes: &[u8]) -> Result<ExportHeader, ReplayError> {
    let invalid = |reason: String| ReplayError::Invalid { line: 1, reason };
    let object = parse_object(bytes).map_err(|e| invalid(e.to_string()))?;
    if to_bytes(&ruma::CanonicalJsonValue::Object(object.clone())) != bytes {
        return Err(invalid("header is not canonical JSON".into()));
    }
    let value = serde_json::to_value(&object).map_err(|e| invalid(e.to_string()))?;
    let header: ExportHeader =
        serde_json::from_value(value).map_err(|e| invalid(format!("not an export header: {e}")))?;
    if header.events == 0 {
        return Err(invalid("`events` must be at least 1: a room starts with its create event".into()));
    }
    if !crate::event::meta::is_room_id(&header.room_id) {
        return Err(invalid(format!("`room_id` {:?} is not a room ID", header.room_id)));
    }
    if let Some(bad) = header
        .keys
        .values()
        .flat_map(|ids| ids.keys())
        .find(|id| !id.strip_prefix("ed25519:").is_some_and(crate::event::keys::valid_key_version))
    {
        return Err(invalid(format!("key ID {bad:?} is not ed25519:<version>")));
    }
    if header.format != FORMAT || header.version != 1 {
        return Err(invalid(format!(
            "format must be {FORMAT:?} version 1, found {:?} version {}",
            header.format, header.version
        )));
    }
    Ok(header)
}

fn header_keys(header: &ExportHeader, overrides: &KeyRing) -> Result<KeyRing, ReplayError> {
    let mut keys = KeyRing::new();
    for (server, by_id) in &header.keys {
        if overrides.knows_server(server) {
            continue;
        }
        for (key_id, public) in by_id {
            let key = decode_public(public)
                .map_err(|e| ReplayError::Invalid { line: 1, reason: format!("key {server} {key_id}: {e}") })?;
            keys.insert(server, key_id, key);
        }
    }
    keys.extend(overrides);
    Ok(keys)
}

fn unused_key(header: &ExportHeader, pdus: &[Pdu]) -> Option<(String, String)> {
    header.keys.iter().flat_map(|(s, ids)| ids.keys().map(move |id| (s.clone(), id.clone()))).find(
        |(server, key_id)| {
            !pdus
                .iter()
                .any(|p| crate::event::sign::signatures_of(p.object(), server).iter().any(|(id, _)| id == key_id))
        },
    )
}

fn write_room(store: &Store, header: &ExportHeader, keys: &KeyRing, pdus: &[Pdu]) -> Result<(), ReplayError> {
    if store.short_room(&header.room_id)?.is_some() {
        return Err(ReplayError::RoomExists(header.room_id.clone()));
    }
    let stored = super::verify::effective_keys(store, &KeyRing::new())?;
    let mut batch = Batch::new();
    for (server, key_id, key) in keys.iter() {
        match stored.get(server, key_id) {
            Some(existing) if existing != key => {
                return Err(ReplayError::Check(Failure {
                    room_id: header.room_id.clone(),
                    position: None,
                    event_id: None,
                    line: Some(1),
                    reason: format!("key {server} {key_id} differs from the one already in the data directory"),
                }));
            }
            Some(_) => {}
            // Kept to verify this log, never trusted by a hub using the directory.
            None => batch.add_imported_key(server, key_id, key.as_bytes()),
        }
    }
    let short = store.allocate_short_room();
    batch.add_room(short, &header.room_id);
    for (seq, pdu) in (0u64..).zip(pdus) {
        let meta = pdu.meta();
        if crate::mls::events::carries_commit(&meta.event_type, pdu.content()) {
            // The hub reloads the group from the latest commit; `log verify` checks this index.
            batch.set_latest_commit(short, seq);
        }
        batch.append_event(&EventRecord {
            pos: RoomSeq { room: short, seq },
            event_id: pdu.event_id(),
            bytes: pdu.bytes(),
            state: meta.state_key.as_deref().map(|k| (meta.event_type.as_str(), k)),
            lpdu_id: None,
        });
    }
    store.write(batch)?;
    Ok(())
}
