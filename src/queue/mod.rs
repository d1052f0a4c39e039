//! Durable delivery queues, one ordered lane per destination.
//!
//! Everything the bridge sends to another party (requests for the homeserver now, deliveries to
//! other providers next) leaves from here, never from memory alone. A [`Queue`] keeps its entries
//! in the store under typed keys (queue, destination, sequence), so:
//! - each destination is delivered in order with one request in flight, by a worker that exists
//!   only while the destination has entries and reads them a page at a time;
//! - a destination that keeps failing backs off alone ([`Backoff`], honouring `Retry-After`) while
//!   every other destination goes on at full rate;
//! - an entry is deleted in the batch that records its effect, so a restart resumes exactly
//!   where delivery stopped (workers are started for every destination with entries).
//!
//! Sequence numbers are handed out and the enqueueing batch submitted under one lock, so the
//! counter on disk never goes back and a transaction ID derived from a sequence number is never
//! reused, even across a crash.

mod destinations;
pub mod retry;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{Batch, QueueEntry, QueueId, QueueKey, Store, StoreError, Ticket};

pub use destinations::MAX_DESTINATIONS;
pub use retry::{Backoff, Retried, RetryPolicy, Retryable, retry};

/// Entries a worker reads from the store at once.
const PAGE: usize = 64;

/// What a queue's entries are delivered with.
pub trait Deliver: Send + Sync + 'static {
    /// A failed delivery; [`Retryable`] says whether to try again and how soon.
    type Error: Retryable + std::fmt::Display + Send;

    /// Delivers one entry to `dest` and returns the writes that record its effect; the queue adds
    /// the entry's deletion to them. A final error drops the entry (after
    /// [`undeliverable`](Self::undeliverable)); a retryable one keeps it for the next attempt.
    fn deliver(&self, dest: &str, entry: &QueueEntry) -> impl Future<Output = Result<Batch, Self::Error>> + Send;

    /// Reports an entry given up on (a final error), before it is deleted.
    fn undeliverable(&self, dest: &str, entry: &QueueEntry, error: &Self::Error) -> impl Future<Output = ()> + Send;

    /// Which of the destination's next entries (`entries`, in order, at least one) one request
    /// carries together with the first: their indices, ascending, starting with 0. The others
    /// keep their order. `[0]`, the default, delivers one at a time.
    fn together(&self, _entries: &[QueueEntry]) -> Vec<usize> {
        vec![0]
    }

    /// Delivers several entries (as [`together`](Self::together) grouped them) as one request;
    /// its result stands for each of them. The default delivers the first only, since the
    /// default grouping never makes more.
    fn deliver_together(
        &self,
        dest: &str,
        entries: &[QueueEntry],
    ) -> impl Future<Output = Result<Batch, Self::Error>> + Send {
        let first = entries.first().cloned();
        async move {
            match first {
                Some(entry) => self.deliver(dest, &entry).await,
                None => Ok(Batch::new()),
            }
        }
    }
}

/// A queue's figures (Prometheus names in `http::metrics`).
#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// Entries waiting.
    pub depth: AtomicU64,
    /// Entries delivered.
    pub delivered: AtomicU64,
    /// Failed attempts (each retry, and each entry given up on).
    pub failures: AtomicU64,
    /// Entries given up on after a final error.
    pub dropped: AtomicU64,
}

/// What the queue knows of one destination with a worker.
#[derive(Debug, Default)]
struct Lane {
    /// Entries were queued since the worker last read the store.
    dirty: bool,
    /// Queue time (ms) of the entry the worker is on, for the oldest-entry gauge.
    head_ms: Option<u64>,
}

/// A durable queue (see the module documentation).
#[derive(Debug)]
pub struct Queue<D> {
    id: QueueId,
    store: Arc<Store>,
    deliver: D,
    policy: RetryPolicy,
    /// The counter (in `metaname_value`) that names entries; never reused.
    counter: &'static str,
    next: Mutex<u64>,
    lanes: Mutex<BTreeMap<String, Lane>>,
    /// Most deliveries in flight across destinations.
    slots: tokio::sync::Semaphore,
    metrics: QueueMetrics,
    /// Figures per destination, for the provider queue only (see `destinations`).
    per_destination: Option<destinations::DestinationMetrics>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Workers running; [`Queue::drained`] waits for none.
    workers: tokio::sync::watch::Sender<usize>,
    /// Told when a worker stops because the store failed (delivery is down until a restart).
    health: Arc<crate::http::health::Health>,
}

/// How a queue delivers.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// The counter that names entries (`metaname_value`).
    pub counter: &'static str,
    /// Backoff per destination.
    pub policy: RetryPolicy,
    /// Most deliveries in flight across all destinations.
    pub max_in_flight: usize,
    /// Where a worker stopped by a store failure is reported (readiness turns 503).
    pub health: Arc<crate::http::health::Health>,
}

/// Milliseconds since the epoch (what durable records are stamped with).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl<D: Deliver> Queue<D> {
    /// Opens queue `id` over `store`; call [`resume`](Self::resume) to start delivering what a
    /// previous run left. Workers stop taking new entries once `shutdown` turns true.
    pub fn open(
        id: QueueId,
        store: Arc<Store>,
        deliver: D,
        options: QueueOptions,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Arc<Self>, StoreError> {
        let next = store.counter(options.counter)?.max(1);
        Ok(Arc::new(Self {
            id,
            store,
            deliver,
            policy: options.policy,
            counter: options.counter,
            next: Mutex::new(next),
            lanes: Mutex::new(BTreeMap::new()),
            slots: tokio::sync::Semaphore::new(options.max_in_flight.max(1)),
            metrics: QueueMetrics::default(),
            per_destination: (id == QueueId::Provider).then(destinations::DestinationMetrics::default),
            shutdown,
            workers: tokio::sync::watch::channel(0).0,
            health: options.health,
        }))
    }

    /// Starts a worker for every destination that has entries, counting them in the gauges.
    /// Reads the destinations a page at a time.
    pub async fn resume(self: &Arc<Self>) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let (store, id, from) = (Arc::clone(&self.store), self.id, after.clone());
            let page = blocking(move || store.queue_destinations(id, from.as_deref(), 256)).await?;
            let Some((last, _, _)) = page.last() else { return Ok(()) };
            after = Some(last.clone());
            for (dest, count, _) in page {
                self.woken(&dest, count);
            }
        }
    }

    /// Adds `entries` (destination, payload) to `batch` under fresh sequence numbers and submits
    /// it; once the ticket resolves `Ok`, call [`wake`](Self::wake) with the returned keys.
    pub fn enqueue(&self, mut batch: Batch, entries: Vec<(String, Vec<u8>)>) -> (Ticket, Vec<QueueKey>) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let ms = now_ms();
        let mut keys = Vec::with_capacity(entries.len());
        for (dest, payload) in entries {
            let key = QueueKey { queue: self.id, dest, seq: *next };
            *next += 1;
            batch.queue_push(&key, ms, &payload);
            keys.push(key);
        }
        batch.counter(self.counter, *next);
        (self.store.submit(batch), keys)
    }

    /// Starts (or nudges) the workers of durable entries' destinations.
    pub fn wake(self: &Arc<Self>, keys: &[QueueKey]) {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for key in keys {
            *counts.entry(key.dest.as_str()).or_default() += 1;
        }
        for (dest, count) in counts {
            self.woken(dest, count);
        }
    }

    fn woken(self: &Arc<Self>, dest: &str, count: u64) {
        self.metrics.depth.fetch_add(count, Ordering::Relaxed);
        if let Some(per_destination) = &self.per_destination {
            per_destination.queued(dest, count);
        }
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.get_mut(dest) {
            lane.dirty = true;
            return;
        }
        lanes.insert(dest.to_owned(), Lane::default());
        drop(lanes);
        self.workers.send_modify(|n| *n += 1);
        tokio::spawn(worker::run(Arc::clone(self), dest.to_owned()));
    }

    /// The queue's figures.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    /// Which queue this is.
    pub fn id(&self) -> QueueId {
        self.id
    }

    /// Age of the oldest entry a worker is on (zero when none is).
    pub fn oldest_age(&self) -> Duration {
        let lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = lanes.values().filter_map(|l| l.head_ms).min();
        oldest.map_or(Duration::ZERO, |ms| Duration::from_millis(now_ms().saturating_sub(ms)))
    }

    /// Destinations with a worker.
    pub fn active_destinations(&self) -> usize {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Waits until every worker has stopped (after shutdown, each finishes the delivery it is in).
    pub async fn drained(&self) {
        let mut workers = self.workers.subscribe();
        let _ = workers.wait_for(|n| *n == 0).await;
    }

    /// The delivery implementation.
    pub fn deliverer(&self) -> &D {
        &self.deliver
    }
}

/// Runs store work on a blocking thread (RocksDB never runs on a runtime thread).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.unwrap_or(Err(StoreError::Closed))
}

impl<D: Deliver + std::fmt::Debug> crate::http::metrics::QueueStats for Queue<D> {
    fn name(&self) -> &'static str {
        self.id.name()
    }

    fn counts(&self) -> [u64; 4] {
        let m = &self.metrics;
        [&m.depth, &m.delivered, &m.failures, &m.dropped].map(|a| a.load(Ordering::Relaxed))
    }

    fn oldest_age(&self) -> Duration {
        Queue::oldest_age(self)
    }

    fn destinations(&self) -> usize {
        self.active_destinations()
    }

    fn per_destination(&self) -> Vec<crate::http::metrics::DestinationStats> {
        let Some(per_destination) = &self.per_destination else { return Vec::new() };
        let heads: Vec<(String, u64)> = {
            let lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
            lanes.iter().filter_map(|(dest, lane)| Some((dest.clone(), lane.head_ms?))).collect()
        };
        per_destination.snapshot(&heads, now_ms())
    }
}
