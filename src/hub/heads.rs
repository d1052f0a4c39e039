//! The loaded room heads, bounded: a room's head (its chain, LPDU memory and MLS group) is kept
//! while the room is used and evicted, least recently used first, once more than
//! [`MAX_LOADED_ROOMS`] are loaded. Only an idle head goes: nobody holds it, and everything it
//! appended is durable (a head ahead of the disk could not be rebuilt from it). An evicted room
//! is loaded again from the store on its next use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::store::Store;

use super::RoomHead;

/// Room heads kept loaded before idle ones are evicted.
pub const MAX_LOADED_ROOMS: usize = 4096;

/// One loaded head and when it was last used.
pub(super) struct Loaded {
    pub(super) head: Arc<Mutex<RoomHead>>,
    used: AtomicU64,
}

/// The loaded heads by room ID.
#[derive(Default)]
pub(super) struct Heads {
    rooms: BTreeMap<String, Loaded>,
    tick: u64,
    /// The bound (a field so that tests can make it small).
    pub(super) limit: usize,
}

impl Heads {
    pub(super) fn new(limit: usize) -> Self {
        Self { rooms: BTreeMap::new(), tick: 0, limit }
    }

    pub(super) fn get(&mut self, room_id: &str) -> Option<Arc<Mutex<RoomHead>>> {
        self.tick += 1;
        let loaded = self.rooms.get(room_id)?;
        loaded.used.store(self.tick, Ordering::Relaxed);
        Some(Arc::clone(&loaded.head))
    }

    pub(super) fn contains(&self, room_id: &str) -> bool {
        self.rooms.contains_key(room_id)
    }

    /// Inserts `head`, loaded from the store outside the lock, unless the room is loaded already;
    /// returns the room's head either way, or `None` if `head` is stale: while it was loaded,
    /// another thread loaded the room, appended and had it evicted, so the log moved on.
    pub(super) fn insert(
        &mut self,
        room_id: &str,
        head: Arc<Mutex<RoomHead>>,
        store: &Store,
    ) -> Option<Arc<Mutex<RoomHead>>> {
        if let Some(existing) = self.get(room_id) {
            return Some(existing);
        }
        if !head.try_lock().is_ok_and(|loaded| durable(&loaded, store)) {
            return None;
        }
        self.tick += 1;
        self.rooms.insert(room_id.to_owned(), Loaded { head: Arc::clone(&head), used: AtomicU64::new(self.tick) });
        if self.rooms.len() > self.limit {
            self.evict(store);
        }
        Some(head)
    }

    /// Evicts idle heads, least recently used first, down to three quarters of the bound.
    fn evict(&mut self, store: &Store) {
        let target = self.limit - self.limit / 4;
        let mut by_use: Vec<(u64, String)> =
            self.rooms.iter().map(|(room, l)| (l.used.load(Ordering::Relaxed), room.clone())).collect();
        by_use.sort_unstable();
        for (_, room) in by_use {
            if self.rooms.len() <= target {
                break;
            }
            let idle = self.rooms.get(&room).is_some_and(|l| {
                // Held only by this map: no append or load is using it.
                Arc::strong_count(&l.head) == 1 && l.head.try_lock().is_ok_and(|head| durable(&head, store))
            });
            if idle {
                self.rooms.remove(&room);
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rooms.len()
    }
}

/// Everything the head appended is durable: the stored tail is the head's last position.
fn durable(head: &RoomHead, store: &Store) -> bool {
    let last = head.chain.next_position().checked_sub(1);
    store.tail(head.short).ok().flatten().map(|t| t.seq) == last
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use crate::event::{EventTemplate, ServerKey};
    use crate::hub::{Hub, RoomPreset, lock};
    use crate::store::Store;

    /// The race a loader outside the rooms lock can lose: it read the log at position N, then
    /// another thread loaded the room, appended N+1 and had it evicted. The stale head is refused
    /// and the next use loads the room where its log now ends.
    #[test]
    fn a_head_loaded_before_the_log_moved_on_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::from_seed("k1", [7; 32]).unwrap();
        let hub = Hub::new("hub.example", &key, Arc::new(Store::open(dir.path()).unwrap())).unwrap();
        let (room, _) = hub.create_room_blocking("@alice:hub.example", &RoomPreset::default(), 1).unwrap();
        let short = hub.store.short_room(&room).unwrap().unwrap();
        let stale = Arc::new(Mutex::new(hub.load_head(short).unwrap()));

        let message = EventTemplate {
            room_id: room.clone(),
            event_type: "m.room.message".to_owned(),
            sender: "@alice:hub.example".to_owned(),
            state_key: None,
            content: [("body".to_owned(), "moved on".into())].into_iter().collect(),
            origin_server_ts: 2,
        };
        let appended = hub.submit_local(message).unwrap().wait().unwrap();
        lock(&hub.rooms).rooms.clear();

        assert!(lock(&hub.rooms).insert(&room, stale, &hub.store).is_none());
        assert_eq!(lock(&hub.head(&room).unwrap()).chain.next_position(), appended.position + 1);
    }
}
