//! Durable intake of the homeserver's transactions.
//!
//! Today's bridges answer a transaction before its events are bridged and remember transaction
//! IDs in memory, so a crash after the answer loses messages and a restart forgets what was done.
//! Here a transaction is answered only once its events and its ID are synced in RocksDB: each
//! new event goes onto the intake queue under the next sequence number, in one batch with the
//! transaction ID. The same transaction again is answered with nothing new; an event already
//! taken in (Synapse may put it in another transaction after a restart) is stored once. The
//! bridge then works the queue per room, deleting each entry in the batch of its effect.
//!
//! The queue is bounded by a [`Backlog`]: a transaction waits for room before it is stored, so
//! under a flood the bridge slows its answers (and so the homeserver) instead of growing without
//! bound. The bridge reads the queue a page at a time through an [`IntakeReader`], woken when a
//! transaction lands.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};

use serde_json::Value;

use crate::http::MatrixError;
use crate::store::{Batch, Store, StoreError, Ticket};

/// The counter that names intake entries; never reused.
const NEXT_SEQ: &str = "intake_next_seq";
/// Most events one transaction may carry (Synapse sends at most 100).
pub const MAX_EVENTS: usize = 1000;

/// What taking a transaction in did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// Events newly queued.
    pub new_events: usize,
    /// The transaction was taken in before: nothing was stored.
    pub duplicate: bool,
    /// The `origin_server_ts` (ms) of each event of a new transaction, for the push delay.
    pub origin_ts: Vec<u64>,
}

/// An event on the intake queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Its sequence number.
    pub seq: u64,
    /// The Matrix event.
    pub event: Value,
}

/// Events the intake queue holds at most by default (taken in, not yet bridged).
pub const DEFAULT_BACKLOG: usize = 10_000;

/// The bound on events taken in and not yet bridged.
#[derive(Debug)]
pub struct Backlog {
    permits: Semaphore,
    /// Entries found at start beyond the bound: finishing them frees no room.
    debt: AtomicU64,
    capacity: usize,
}

impl Backlog {
    fn new(capacity: usize, pending: u64) -> Self {
        let capacity = capacity.max(MAX_EVENTS);
        let held = usize::try_from(pending).unwrap_or(usize::MAX).min(capacity);
        Self {
            permits: Semaphore::new(capacity - held),
            debt: AtomicU64::new(pending.saturating_sub(capacity as u64)),
            capacity,
        }
    }

    /// Frees room for `events` more (their entries were deleted, durably).
    pub fn release(&self, events: usize) {
        let mut free = 0;
        for _ in 0..events {
            let paid = self.debt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1)).is_ok();
            if !paid {
                free += 1;
            }
        }
        self.permits.add_permits(free);
    }

    /// Room left before `take` waits.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The intake (see the module documentation).
#[derive(Debug)]
pub struct Intake {
    store: Arc<Store>,
    /// The next sequence number, and events queued whose batch may not be durable yet.
    state: Arc<Mutex<(u64, BTreeMap<String, u64>)>>,
    /// Wakes the reader when a transaction landed.
    arrived: Arc<Notify>,
    backlog: Arc<Backlog>,
}

/// Reads the intake queue in order, a page at a time (see the module documentation).
#[derive(Debug)]
pub struct IntakeReader {
    store: Arc<Store>,
    next: u64,
    arrived: Arc<Notify>,
    backlog: Arc<Backlog>,
}

impl IntakeReader {
    /// The next entries, at most `limit`, oldest first; waits while there are none. Entries
    /// are handed out once each (a restart hands out again what was not deleted).
    pub async fn next_page(&mut self, limit: usize) -> Result<Vec<Queued>, StoreError> {
        loop {
            let notified = self.arrived.notified();
            let (store, from) = (Arc::clone(&self.store), self.next);
            let page = crate::queue::blocking(move || store.intake_page(from, limit)).await?;
            if let Some((last, _)) = page.last() {
                self.next = last + 1;
                return page
                    .into_iter()
                    .map(|(seq, bytes)| {
                        let event = serde_json::from_slice(&bytes)
                            .map_err(|_| StoreError::corrupt("intake entry is not JSON"))?;
                        Ok(Queued { seq, event })
                    })
                    .collect();
            }
            notified.await;
        }
    }

    /// The bound the bridge frees room in as it finishes entries.
    pub fn backlog(&self) -> Arc<Backlog> {
        Arc::clone(&self.backlog)
    }
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
    /// The intake over `store`, holding at most `backlog` events (at least [`MAX_EVENTS`]); the
    /// reader hands out, first, every entry left from before a restart, in order.
    pub fn open(store: Arc<Store>, backlog: usize) -> Result<(Self, IntakeReader), StoreError> {
        let next = store.counter(NEXT_SEQ)?.max(1);
        let backlog = Arc::new(Backlog::new(backlog, store.intake_len()?));
        let arrived = Arc::new(Notify::new());
        let reader = IntakeReader {
            store: Arc::clone(&store),
            next: 0,
            arrived: Arc::clone(&arrived),
            backlog: Arc::clone(&backlog),
        };
        Ok((Self { store, state: Arc::new(Mutex::new((next, BTreeMap::new()))), arrived, backlog }, reader))
    }

    /// Events queued and not yet bridged (from the bound's point of view).
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
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
    /// `txn_id` is the ID's exact bytes (the path segment percent-decoded).
    /// Cancelling it (the homeserver hung up) leaves the accounting whole: whatever was
    /// submitted is settled by a task of its own.
    pub async fn take(&self, txn_id: &[u8], body: &[u8]) -> Result<Taken, MatrixError> {
        let events = Self::parse(body)?;
        if self.store.txn_seen(txn_id).map_err(storage)? {
            return Ok(Taken { new_events: 0, duplicate: true, origin_ts: Vec::new() });
        }
        let origin_ts = events.iter().filter_map(|e| e.get("origin_server_ts").and_then(Value::as_u64)).collect();
        // Room for every event first: under a flood this is where the answer slows down.
        let wanted = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let permits = self
            .backlog
            .permits
            .acquire_many(wanted)
            .await
            .map_err(|_| MatrixError::internal("the bridge is shutting down; retry"))?;
        permits.forget();
        let mut reserved = Reserved { backlog: Arc::clone(&self.backlog), unused: events.len() };
        let (ticket, queued) = self.queue(txn_id, events)?;
        reserved.unused -= queued.len();
        let (state, arrived) = (Arc::clone(&self.state), Arc::clone(&self.arrived));
        let settled = tokio::spawn(async move {
            let mut reserved = reserved; // the guard itself, not just its field, moves here
            let durable = ticket.wait().await;
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            for id in &queued {
                state.1.remove(id);
            }
            match &durable {
                Ok(()) => arrived.notify_one(),
                Err(_) => reserved.unused += queued.len(),
            }
            durable.map(|()| queued.len())
        });
        let new_events = settled.await.map_err(|_| MatrixError::internal("intake stopped"))?.map_err(storage)?;
        Ok(Taken { new_events, duplicate: false, origin_ts })
    }

    /// Queues the events not taken in before, and the transaction ID, in one batch; returns its
    /// ticket and the IDs of the events it queues (in flight until the ticket resolves).
    fn queue(&self, txn_id: &[u8], events: Vec<Value>) -> Result<(Ticket, Vec<String>), MatrixError> {
        let mut batch = Batch::new();
        let mut queued: Vec<String> = Vec::new();
        // Sequence numbers are handed out and the batch queued under one lock, so batches reach
        // the store in sequence order; a request that skips an event another request is still
        // writing waits on its own batch, which the store writes after that one.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, in_flight) = &mut *state;
        let mut seq = *next;
        for event in events {
            let event_id = field(&event, "event_id", 0)?.to_owned();
            if in_flight.contains_key(&event_id)
                || queued.contains(&event_id)
                || self.store.matrix_taken_in(&event_id).map_err(storage)?.is_some()
            {
                continue;
            }
            batch.intake(seq, Some(event.to_string().as_bytes()));
            batch.matrix_taken_in(&event_id, seq);
            queued.push(event_id);
            seq += 1;
        }
        for (id, seq) in queued.iter().zip(*next..) {
            in_flight.insert(id.clone(), seq);
        }
        *next = seq;
        batch.counter(NEXT_SEQ, seq);
        batch.txn_seen(txn_id, now_ms());
        Ok((self.store.submit(batch), queued))
    }
}

/// Backlog room taken for a transaction and not used by it, given back however the request ends.
struct Reserved {
    backlog: Arc<Backlog>,
    unused: usize,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.backlog.permits.add_permits(self.unused);
    }
}
