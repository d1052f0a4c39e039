//! Durable intake of the homeserver's transactions.
//!
//! Today's bridges answer a transaction before its events are bridged and remember transaction
//! IDs in memory, so a crash after the answer loses messages and a restart forgets what was done.
//! Here a transaction is answered only once its events and its ID are synced in RocksDB: each
//! new event goes onto the intake queue under the next sequence number, in one batch with the
//! transaction ID. The same transaction again is answered with nothing new; an event already
//! taken in (Synapse may put it in another transaction after a restart) is stored once. The
//! bridge then works the queue per room, deleting each entry in the batch of its effect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http::MatrixError;
use crate::store::{Batch, Store, StoreError};

/// The counter that names intake entries; never reused.
const NEXT_SEQ: &str = "intake_next_seq";
/// Most events one transaction may carry (Synapse sends at most 100).
pub const MAX_EVENTS: usize = 1000;

/// What taking a transaction in did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Events newly queued.
    pub new_events: usize,
    /// The transaction was taken in before: nothing was stored.
    pub duplicate: bool,
}

/// An event on the intake queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Its sequence number.
    pub seq: u64,
    /// The Matrix event.
    pub event: Value,
}

/// The intake (see the module documentation).
#[derive(Debug)]
pub struct Intake {
    store: Arc<Store>,
    /// The next sequence number, and events queued whose batch may not be durable yet.
    state: Mutex<(u64, BTreeMap<String, u64>)>,
    /// New entries for the bridge to work.
    sender: tokio::sync::mpsc::UnboundedSender<Queued>,
}

fn field<'a>(event: &'a Value, name: &str, index: usize) -> Result<&'a str, MatrixError> {
    event
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| MatrixError::bad_request("M_BAD_JSON", format!("events[{index}].{name}: expected a string")))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[expect(clippy::needless_pass_by_value, reason = "used as map_err(storage)")]
fn storage(error: StoreError) -> MatrixError {
    tracing::error!(%error, "intake could not store a transaction");
    MatrixError::internal("the bridge could not store the transaction; retry")
}

impl Intake {
    /// The intake over `store`; new entries (and, first, every entry left from before a restart,
    /// in order) go to the returned receiver.
    pub fn open(store: Arc<Store>) -> Result<(Self, tokio::sync::mpsc::UnboundedReceiver<Queued>), StoreError> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        for (seq, bytes) in store.intake_queue()? {
            let event = serde_json::from_slice(&bytes).map_err(|_| StoreError::corrupt("intake entry is not JSON"))?;
            let _ = sender.send(Queued { seq, event });
        }
        let next = store.counter(NEXT_SEQ)?.max(1);
        Ok((Self { store, state: Mutex::new((next, BTreeMap::new())), sender }, receiver))
    }

    /// Checks a transaction body: `events` an array of objects with string `event_id`,
    /// `room_id`, `type` and `sender`; `ephemeral` and `to_device` arrays if present.
    pub fn parse(body: &[u8]) -> Result<Vec<Value>, MatrixError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| MatrixError::bad_request("M_NOT_JSON", format!("body: {e}")))?;
        let events = value
            .get("events")
            .and_then(Value::as_array)
            .ok_or_else(|| MatrixError::bad_request("M_BAD_JSON", "events: expected an array"))?;
        if events.len() > MAX_EVENTS {
            return Err(MatrixError::bad_request("M_BAD_JSON", format!("events: more than {MAX_EVENTS}")));
        }
        for (index, event) in events.iter().enumerate() {
            for name in ["event_id", "room_id", "type", "sender"] {
                field(event, name, index)?;
            }
        }
        for key in ["ephemeral", "de.sorunome.msc2409.ephemeral", "de.sorunome.msc2409.to_device"] {
            if value.get(key).is_some_and(|v| !v.is_array()) {
                return Err(MatrixError::bad_request("M_BAD_JSON", format!("{key}: expected an array")));
            }
        }
        Ok(events.clone())
    }

    /// Takes a transaction in: durable before this returns `Ok` (see the module documentation).
    pub async fn take(&self, txn_id: &str, body: &[u8]) -> Result<Taken, MatrixError> {
        let events = Self::parse(body)?;
        if self.store.txn_seen(txn_id).map_err(storage)? {
            return Ok(Taken { new_events: 0, duplicate: true });
        }
        let mut batch = Batch::new();
        let mut queued = Vec::new();
        // Sequence numbers are handed out and the batch queued under one lock, so batches reach
        // the store in sequence order; a request that skips an event another request is still
        // writing waits on its own batch, which the store writes after that one.
        let ticket = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let (next, in_flight) = &mut *state;
            let mut seq = *next;
            for event in events {
                let event_id = field(&event, "event_id", 0)?.to_owned();
                if in_flight.contains_key(&event_id)
                    || self.store.matrix_taken_in(&event_id).map_err(storage)?.is_some()
                    || queued.iter().any(|q: &Queued| q.event.get("event_id") == event.get("event_id"))
                {
                    continue;
                }
                batch.intake(seq, Some(event.to_string().as_bytes()));
                batch.matrix_taken_in(&event_id, seq);
                queued.push(Queued { seq, event });
                seq += 1;
            }
            *next = seq;
            for q in &queued {
                if let Some(id) = q.event.get("event_id").and_then(Value::as_str) {
                    in_flight.insert(id.to_owned(), q.seq);
                }
            }
            batch.counter(NEXT_SEQ, seq);
            batch.txn_seen(txn_id, now_ms());
            self.store.submit(batch)
        };
        let durable = ticket.wait().await;
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for q in &queued {
                if let Some(id) = q.event.get("event_id").and_then(Value::as_str) {
                    state.1.remove(id);
                }
            }
        }
        durable.map_err(storage)?;
        let new_events = queued.len();
        for q in queued {
            let _ = self.sender.send(q);
        }
        Ok(Taken { new_events, duplicate: false })
    }
}
