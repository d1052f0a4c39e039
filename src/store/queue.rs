//! Durable delivery queues: entries keyed by [`QueueKey`], so each destination's entries are
//! one ordered range that its worker reads a page at a time, never the whole queue.
//!
//! An entry's value is the time it was queued (u64 BE ms, for the oldest-entry gauge) followed
//! by the payload. An entry is deleted in the batch that records its effect, which makes
//! delivery exactly-once as far as the store can see.

use rocksdb::{Direction, IteratorMode};

use super::batch::Batch;
use super::keys::{QueueId, QueueKey, ShortRoomId};
use super::{Cf, Store, StoreError, rocks};

/// One queued entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// Its sequence number.
    pub seq: u64,
    /// When it was queued, in ms since the Unix epoch.
    pub queued_ms: u64,
    /// The payload.
    pub payload: Vec<u8>,
}

fn u64_of(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 8 bytes")))
}

impl Batch {
    /// Queues `payload` for `key`'s destination.
    pub fn queue_push(&mut self, key: &QueueKey, queued_ms: u64, payload: &[u8]) {
        let mut value = Vec::with_capacity(8 + payload.len());
        value.extend_from_slice(&queued_ms.to_be_bytes());
        value.extend_from_slice(payload);
        self.put(Cf::QueuedestseqEntry, key.to_bytes(), value);
    }

    /// Removes an entry (delivered, or given up on).
    pub fn queue_remove(&mut self, key: &QueueKey) {
        self.ops.push((Cf::QueuedestseqEntry, key.to_bytes(), None));
    }

    /// Moves a portal's cursor: the next log position of its MIMI room to bridge to Matrix.
    pub fn portal_cursor(&mut self, room: ShortRoomId, next: u64) {
        self.put(Cf::ShortroomidPortalcursor, room.to_bytes().to_vec(), next.to_be_bytes().to_vec());
    }
}

impl Store {
    /// Up to `limit` entries of one destination with sequence numbers from `from`, in order.
    pub fn queue_page(
        &self,
        queue: QueueId,
        dest: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<QueueEntry>, StoreError> {
        let prefix = QueueKey::prefix(queue, dest);
        let start = QueueKey { queue, dest: dest.to_owned(), seq: from }.to_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::QueuedestseqEntry)?, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item.map_err(rocks(&self.path))?;
            if out.len() >= limit || !key.starts_with(&prefix) {
                break;
            }
            let key = QueueKey::from_bytes(queue, &key)?;
            let (ms, payload) =
                value.split_at_checked(8).ok_or_else(|| StoreError::corrupt("queue entry too short"))?;
            out.push(QueueEntry { seq: key.seq, queued_ms: u64_of(ms, "queue time")?, payload: payload.to_vec() });
        }
        Ok(out)
    }

    /// The destinations of `queue` that have entries, after `after` (in key order), at most
    /// `limit` of them, each with its number of entries and its oldest entry's queue time.
    pub fn queue_destinations(
        &self,
        queue: QueueId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let start = match after {
            // Past every key of `after`: its prefix followed by the largest sequence number, plus one byte.
            Some(dest) => {
                let mut key = QueueKey { queue, dest: dest.to_owned(), seq: u64::MAX }.to_bytes();
                key.push(0);
                key
            }
            None => vec![queue.to_byte()],
        };
        let mut out: Vec<(String, u64, u64)> = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::QueuedestseqEntry)?, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item.map_err(rocks(&self.path))?;
            if key.first() != Some(&queue.to_byte()) {
                break;
            }
            let key = QueueKey::from_bytes(queue, &key)?;
            let queued_ms = u64_of(value.get(..8).unwrap_or_default(), "queue time")?;
            let full = out.len() >= limit;
            match out.last_mut() {
                Some((dest, count, oldest)) if *dest == key.dest => {
                    *count += 1;
                    *oldest = (*oldest).min(queued_ms);
                }
                _ if full => break,
                _ => out.push((key.dest, 1, queued_ms)),
            }
        }
        Ok(out)
    }

    /// The next log position of a portal's MIMI room to bridge to Matrix (0 if never moved).
    pub fn portal_cursor(&self, room: ShortRoomId) -> Result<u64, StoreError> {
        self.get_added(Cf::ShortroomidPortalcursor, &room.to_bytes())?.map_or(Ok(0), |b| u64_of(&b, "portal cursor"))
    }
}
