//! One destination's worker: reads the destination's entries a page at a time, delivers them in
//! order with one request in flight, backs off alone when the other side fails (then reads the
//! entry again, which a delivery may rewrite), and stops when the destination has nothing left
//! (or the queue shuts down).

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use super::{Backoff, Deliver, PAGE, Queue, Retryable, blocking};
use crate::store::{Batch, QueueEntry, QueueKey};

/// What became of the entry at the head.
enum Done {
    /// Delivered, or dropped for good: removed.
    Removed,
    /// It failed and the worker waited out its backoff: try it again, as stored now.
    Waited,
}

/// Why a worker stops before its destination is empty.
enum Stop {
    Shutdown,
    StoreFailed,
}

pub(super) async fn run<D: Deliver>(queue: Arc<Queue<D>>, dest: String) {
    let mut backoff = Backoff::new(queue.policy.clone());
    let stopped = loop {
        if *queue.shutdown.borrow() {
            break Some(Stop::Shutdown);
        }
        set_lane(&queue, &dest, |lane| lane.dirty = false);
        let (store, id, from_dest) = (Arc::clone(&queue.store), queue.id, dest.clone());
        // Always from the start of the destination: delivered entries are gone, and an entry
        // made durable late (under a lower number) is still picked up in order.
        let page = blocking(move || store.queue_page(id, &from_dest, 0, PAGE)).await;
        let entries = match page {
            Ok(entries) => entries,
            Err(error) => {
                tracing::error!(queue = queue.id.name(), dest, %error, "reading a delivery queue failed");
                break Some(Stop::StoreFailed);
            }
        };
        if entries.is_empty() {
            if finished(&queue, &dest) {
                break None;
            }
            continue;
        }
        let mut stop = None;
        let mut rest = entries;
        while !rest.is_empty() {
            let mut picked = queue.deliver.together(&rest);
            picked.retain(|&i| i < rest.len());
            if picked.first() != Some(&0) || !picked.is_sorted_by(|a, b| a < b) {
                picked = vec![0];
            }
            let group: Vec<QueueEntry> = picked.iter().map(|&i| rest[i].clone()).collect();
            match deliver_group(&queue, &dest, &group, &mut backoff).await {
                Ok(Done::Removed) => {
                    let kept = rest.into_iter().enumerate().filter(|(i, _)| picked.binary_search(i).is_err());
                    rest = kept.map(|(_, entry)| entry).collect();
                }
                // Read again: the delivery may have rewritten the entry while it failed.
                Ok(Done::Waited) => break,
                Err(why) => {
                    stop = Some(why);
                    break;
                }
            }
        }
        if stop.is_some() {
            break stop;
        }
    };
    if let Some(Stop::StoreFailed) = stopped {
        tracing::error!(queue = queue.id.name(), dest, "delivery stopped: the store refuses writes");
        queue.health.failed(queue.id.name());
    }
    if stopped.is_some() {
        queue.lanes.lock().unwrap_or_else(PoisonError::into_inner).remove(&dest);
    }
    queue.workers.send_modify(|n| *n = n.saturating_sub(1));
}

fn set_lane<D>(queue: &Queue<D>, dest: &str, change: impl FnOnce(&mut super::Lane)) {
    if let Some(lane) = queue.lanes.lock().unwrap_or_else(PoisonError::into_inner).get_mut(dest) {
        change(lane);
    }
}

/// The destination read empty: the worker ends unless entries were queued meanwhile.
fn finished<D>(queue: &Queue<D>, dest: &str) -> bool {
    let mut lanes = queue.lanes.lock().unwrap_or_else(PoisonError::into_inner);
    if lanes.get(dest).is_some_and(|lane| lane.dirty) {
        return false;
    }
    lanes.remove(dest);
    true
}

/// Delivers the destination's next entry, or the next few one request carries together.
async fn deliver_group<D: Deliver>(
    queue: &Queue<D>,
    dest: &str,
    group: &[QueueEntry],
    backoff: &mut Backoff,
) -> Result<Done, Stop> {
    let Some(entry) = group.first() else { return Ok(Done::Removed) };
    let keys: Vec<QueueKey> =
        group.iter().map(|e| QueueKey { queue: queue.id, dest: dest.to_owned(), seq: e.seq }).collect();
    set_lane(queue, dest, |lane| lane.head_ms = Some(entry.queued_ms));
    let mut shutdown = queue.shutdown.clone();
    let permit = tokio::select! {
        permit = queue.slots.acquire() => permit.map_err(|_| Stop::Shutdown)?,
        () = crate::http::stopped(&mut shutdown) => return Err(Stop::Shutdown),
    };
    // A delivery that started finishes, shutdown or not: its effect must be recorded.
    let result = if group.len() == 1 {
        queue.deliver.deliver(dest, entry).await
    } else {
        queue.deliver.deliver_together(dest, group).await
    };
    drop(permit);
    let error = match result {
        Ok(mut batch) => {
            backoff.succeeded();
            for key in &keys {
                batch.queue_remove(key);
            }
            return remove(queue, dest, batch, true, keys.len()).await;
        }
        Err(error) => error,
    };
    queue.metrics.failures.fetch_add(1, Ordering::Relaxed);
    if let Some(per_destination) = &queue.per_destination {
        per_destination.failed(dest);
    }
    if !error.is_retryable() {
        tracing::warn!(queue = queue.id.name(), dest, seq = entry.seq, entries = group.len(), %error, "delivery refused for good");
        let mut batch = Batch::new();
        for (entry, key) in group.iter().zip(&keys) {
            queue.deliver.undeliverable(dest, entry, &error).await;
            batch.queue_remove(key);
        }
        queue.metrics.dropped.fetch_add(keys.len() as u64, Ordering::Relaxed);
        return remove(queue, dest, batch, false, keys.len()).await;
    }
    let delay = backoff.failed(&error);
    tracing::warn!(
        queue = queue.id.name(),
        dest,
        seq = entry.seq,
        %error,
        failures_in_a_row = backoff.failures(),
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        "delivery failed; this destination waits, the others go on"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(Done::Waited),
        () = crate::http::stopped(&mut shutdown) => Err(Stop::Shutdown),
    }
}

/// Records `count` entries removed (delivered, or dropped for good) with `batch`.
async fn remove<D>(queue: &Queue<D>, dest: &str, batch: Batch, delivered: bool, count: usize) -> Result<Done, Stop> {
    if let Err(error) = queue.store.submit(batch).wait().await {
        tracing::error!(queue = queue.id.name(), %error, "recording a delivery failed");
        return Err(Stop::StoreFailed);
    }
    for _ in 0..count {
        crate::http::metrics::Metrics::decrement(&queue.metrics.depth);
        if let Some(per_destination) = &queue.per_destination {
            per_destination.removed(dest);
        }
    }
    if delivered {
        queue.metrics.delivered.fetch_add(count as u64, Ordering::Relaxed);
    }
    Ok(Done::Removed)
}
