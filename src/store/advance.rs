//! "Room R is durable up to position N": what the group-commit thread announces after each
//! synced write, so that whatever works from the logs (the Matrix side's delivery, later the
//! fan-out to providers) wakes when there is work instead of polling every room.
//!
//! Announcements coalesce: a subscriber holds, per room, the highest durable position it has
//! not taken yet, so a burst of a thousand appends wakes it once with one entry per room, and
//! an idle bridge has nothing to wake for. The commit thread never blocks on a subscriber.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use super::keys::{RoomSeq, ShortRoomId};

#[derive(Debug, Default)]
struct Inbox {
    rooms: Mutex<BTreeMap<ShortRoomId, u64>>,
    notify: Notify,
}

impl Inbox {
    fn mark(&self, room: ShortRoomId, position: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = rooms.entry(room).or_insert(position);
        *entry = (*entry).max(position);
    }
}

/// The subscribers of one store (weak: a dropped [`Advances`] stops receiving).
#[derive(Debug, Default)]
pub(super) struct Announcer {
    inboxes: Mutex<Vec<Weak<Inbox>>>,
}

impl Announcer {
    /// Called by the commit thread once the batches carrying `positions` are durable.
    pub(super) fn announce(&self, positions: impl Iterator<Item = RoomSeq>) {
        let mut inboxes = self.inboxes.lock().unwrap_or_else(PoisonError::into_inner);
        inboxes.retain(|inbox| inbox.strong_count() > 0);
        if inboxes.is_empty() {
            return;
        }
        let live: Vec<Arc<Inbox>> = inboxes.iter().filter_map(Weak::upgrade).collect();
        drop(inboxes);
        let mut any = false;
        for position in positions {
            for inbox in &live {
                inbox.mark(position.room, position.seq);
            }
            any = true;
        }
        if any {
            for inbox in &live {
                // Stores a permit when the subscriber is busy, so it looks again when done.
                inbox.notify.notify_one();
            }
        }
    }

    pub(super) fn subscribe(&self) -> Advances {
        let inbox = Arc::new(Inbox::default());
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&inbox));
        Advances { inbox }
    }
}

/// A subscription to durable appends (see the module documentation). Clones share it: marking
/// through a clone wakes whoever waits on another.
#[derive(Debug, Clone)]
pub struct Advances {
    inbox: Arc<Inbox>,
}

impl Advances {
    /// Waits until some room advanced, then takes every room that did with its highest durable
    /// position (0-based) announced since the last call.
    pub async fn next(&self) -> BTreeMap<ShortRoomId, u64> {
        loop {
            let taken = std::mem::take(&mut *self.inbox.rooms.lock().unwrap_or_else(PoisonError::into_inner));
            if !taken.is_empty() {
                return taken;
            }
            self.inbox.notify.notified().await;
        }
    }

    /// Marks a room as advanced to `position` from outside the commit thread (a subscriber's
    /// catch-up after a restart, a retry it put off).
    pub fn mark(&self, room: ShortRoomId, position: u64) {
        self.inbox.mark(room, position);
        self.inbox.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn announcements_coalesce_per_room_and_wake_once() {
        let announcer = Announcer::default();
        let advances = announcer.subscribe();
        let at = |room, seq| RoomSeq { room: ShortRoomId(room), seq };
        announcer.announce([at(1, 0), at(1, 1), at(2, 5)].into_iter());
        announcer.announce([at(1, 2)].into_iter());
        let taken = advances.next().await;
        assert_eq!(taken, BTreeMap::from([(ShortRoomId(1), 2), (ShortRoomId(2), 5)]));
        // Nothing new: the stored permit wakes the subscriber, which finds nothing and waits.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), advances.next()).await;
        assert!(waited.is_err(), "woke with nothing announced");
        drop(advances);
        announcer.announce([at(3, 0)].into_iter());
        assert!(announcer.inboxes.lock().unwrap().is_empty(), "a dropped subscriber is forgotten");
    }
}
