//! Linearization: the single writer of each room's log.
//!
//! A room's head (its `Chain`: tail, next position, current state) lives behind one mutex per
//! room. Choosing `prev_events`, selecting auth events, signing, running the auth rules and
//! queueing the write all happen while that mutex is held, so two appends can never name the
//! same tail. The mutex is released before the write is synced: the next append to the same
//! room builds on the in-memory head and its batch queues behind, in order, and the store's
//! group commit syncs them together. A caller learns "appended" only once its own batch is
//! durable; if a write fails the store is poisoned, so nothing built on the lost head is ever
//! acknowledged. Rooms proceed in parallel.

mod adds;
mod admit;
mod append;
mod backfill;
mod create;
mod directories;
mod error;
mod fanout;
mod follow;
mod group_info;
mod heads;
mod leave;
mod log;
mod mls;
mod receive;
mod record;
mod remote;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::canonical::parse_object;
use crate::event::{Chain, ServerKey, UnverifiedPdu};
use crate::mls::{Flush, MlsProvider};
use crate::store::{RoomSeq, ShortRoomId, Store, StoreError, Ticket};
use openmls::prelude::OpenMlsProvider as _;

pub use admit::{Admission, member_event};
pub use backfill::Backfill;
pub use create::RoomPreset;
pub use directories::Directories;
pub use error::{HubError, LpduRejection};
pub use fanout::{Owed, RequestQueue};
pub use group_info::GROUP_INFO_MESSAGE;
pub use heads::MAX_LOADED_ROOMS;
pub use receive::Refused;
pub use record::{KEEPER, Recorded, Resubmit};
pub use remote::Verdict;

/// An event that is (or, for a `PendingAppend`, will be once durable) in a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The room.
    pub room_id: String,
    /// 0-based position in the room's log.
    pub position: u64,
    /// The event ID.
    pub event_id: String,
    /// The reference ID of the LPDU it was completed from, for events that began as one.
    pub lpdu_id: Option<String>,
    /// The event was already in the log (an idempotent retry); nothing new was written.
    pub duplicate: bool,
}

/// An append whose batch is queued; it counts only once `durable` or `wait` returns `Ok`.
#[must_use = "an append is acknowledged only once it is durable"]
#[derive(Debug)]
pub struct PendingAppend {
    appended: Appended,
    ticket: Option<Ticket>,
    /// MLS writes the batch carries, released from memory once durable.
    flushes: Vec<(Arc<MlsProvider>, Flush)>,
    /// `notify` requests the batch queued, to start delivering once durable.
    owed: Option<(Arc<dyn RequestQueue>, Vec<crate::store::QueueKey>)>,
}

impl PendingAppend {
    fn new(appended: Appended, ticket: Option<Ticket>) -> Self {
        Self { appended, ticket, flushes: Vec::new(), owed: None }
    }

    fn done(self) -> Appended {
        for (provider, flush) in &self.flushes {
            provider.storage().mark_durable(*flush);
        }
        if let Some((outbox, keys)) = &self.owed {
            outbox.wake(keys);
        }
        self.appended
    }

    /// Waits until the event is durable.
    pub async fn durable(mut self) -> Result<Appended, HubError> {
        if let Some(ticket) = self.ticket.take() {
            ticket.wait().await?;
        }
        Ok(self.done())
    }

    /// Waits until the event is durable, blocking the thread (not for async code).
    pub fn wait(mut self) -> Result<Appended, HubError> {
        if let Some(ticket) = self.ticket.take() {
            ticket.blocking_wait()?;
        }
        Ok(self.done())
    }
}

pub(crate) struct RoomHead {
    short: ShortRoomId,
    chain: Chain,
    /// LPDUs appended by this process, so a retry arriving before the first copy is durable is
    /// still recognised. Durable ones are also found through the store.
    recent_lpdus: BTreeMap<String, (u64, String)>,
    /// The room's MLS group (public view and this server's clients), for encrypted rooms.
    mls: Option<mls::RoomMls>,
}

impl RoomHead {
    fn new(short: ShortRoomId, chain: Chain) -> Self {
        Self { short, chain, recent_lpdus: BTreeMap::new(), mls: None }
    }
}

/// The log writer of one server: hub of the rooms it created, follower of the others.
///
/// It is made of two parts that share nothing but the store: the linearizer (the loaded room
/// heads behind their locks, with this server's MLS clients of each room, which follow the log
/// under the room's lock) and the [`Directories`] (trusted keys, device objects, key packages),
/// which take no room lock.
pub struct Hub {
    server_name: String,
    key: ServerKey,
    store: Arc<Store>,
    rooms: Mutex<heads::Heads>,
    directories: Directories,
    outbox: std::sync::OnceLock<Arc<dyn RequestQueue>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a room lock leaves no half-applied head: heads change only after
    // the batch is queued, in statements that cannot panic. Recover the guard.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// A hub for `server_name` signing with `key`, over `store`. The server's own key and every
    /// key already in the store are trusted.
    pub fn new(server_name: &str, key: &ServerKey, store: Arc<Store>) -> Result<Self, HubError> {
        Ok(Self {
            server_name: server_name.to_owned(),
            key: key.clone(),
            rooms: Mutex::new(heads::Heads::new(MAX_LOADED_ROOMS)),
            directories: Directories::open(server_name, key, Arc::clone(&store))?,
            outbox: std::sync::OnceLock::new(),
            store,
        })
    }

    /// The directories: trusted keys, device objects, key packages.
    pub fn directories(&self) -> &Directories {
        &self.directories
    }

    /// This server's name.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The store, for the offline tools and tests. The bridge's own parts above the hub read the
    /// logs through the hub ([`log_page`](Self::log_page), [`plaintext`](Self::plaintext)) and
    /// keep their state through the store handle the daemon gives them.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How many room heads are loaded (at most about [`MAX_LOADED_ROOMS`]).
    pub fn loaded_rooms(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Sets how many room heads stay loaded before idle ones are evicted.
    pub fn set_max_loaded_rooms(&self, limit: usize) {
        lock(&self.rooms).limit = limit.max(1);
    }

    /// The hub of a room this server has, if it has it.
    pub fn room_hub(&self, room_id: &str) -> Option<String> {
        let head = self.head(room_id).ok()?;
        let hub = lock(&head).chain.hub().to_owned();
        Some(hub)
    }

    /// A user's current membership in a room (`join`, `invite`, `leave`, …).
    pub fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<String>, HubError> {
        let head = self.head(room_id)?;
        let membership = lock(&head).chain.state().membership(user_id).map(str::to_owned);
        Ok(membership)
    }

    /// The head of a room, loaded from the store on first use.
    fn head(&self, room_id: &str) -> Result<Arc<Mutex<RoomHead>>, HubError> {
        if let Some(head) = lock(&self.rooms).get(room_id) {
            return Ok(head);
        }
        // Loaded without holding the rooms lock, so a cold room does not stall the others. If
        // another thread loaded it meanwhile, its head (which may already be ahead) wins; if the
        // log moved on while this one loaded, it is loaded again.
        let short = self.store.short_room(room_id)?.ok_or_else(|| HubError::UnknownRoom(room_id.to_owned()))?;
        loop {
            let loaded = Arc::new(Mutex::new(self.load_head(short)?));
            if let Some(head) = lock(&self.rooms).insert(room_id, loaded, &self.store) {
                return Ok(head);
            }
        }
    }

    /// Rebuilds a room's chain from its stored log. Stored events were verified on the way in;
    /// here they are applied without re-verifying (that is `log verify`'s job).
    fn load_head(&self, short: ShortRoomId) -> Result<RoomHead, HubError> {
        let corrupt = |what: &str| HubError::Store(StoreError::Corrupt(what.to_owned()));
        let tail = self.store.tail(short)?.ok_or_else(|| corrupt("room without a tail"))?;
        let create_bytes = self
            .store
            .pdu_at(RoomSeq { room: short, seq: 0 })?
            .ok_or_else(|| corrupt("room without a create event"))?;
        let create = trusted_pdu(&create_bytes, None)?;
        let mut chain = Chain::for_create(&create)?;
        let version = chain.version();
        // State comes from the state deltas; the chain needs only the state events themselves.
        let mut latest: BTreeMap<(String, String), u64> = BTreeMap::new();
        for delta in self.store.state_deltas(short, tail.seq)? {
            latest.insert((delta.event_type, delta.state_key), delta.seq);
        }
        let mut positions: Vec<u64> = latest.into_values().collect();
        positions.sort_unstable();
        for seq in positions {
            let bytes = self
                .store
                .pdu_at(RoomSeq { room: short, seq })?
                .ok_or_else(|| corrupt("state delta without its PDU"))?;
            chain.apply(&trusted_pdu(&bytes, Some(version))?);
        }
        chain.restore_tail(tail.events()?, tail.event_id);
        let mls = self.load_mls(short, &create, version, chain.state())?;
        let mut head = RoomHead::new(short, chain);
        head.mls = mls;
        Ok(head)
    }
}

/// Re-reads a stored PDU. Stored bytes were verified before they were written.
fn trusted_pdu(
    bytes: &[u8],
    version: Option<&'static crate::event::RoomVersion>,
) -> Result<crate::event::Pdu, HubError> {
    let object = parse_object(bytes).map_err(crate::event::EventError::from)?;
    let unverified = UnverifiedPdu::from_object(object)?;
    let version = match version {
        Some(v) => v,
        None => crate::event::chain::create_version(unverified.meta(), unverified.content())?,
    };
    Ok(unverified.into_stored(version)?)
}
