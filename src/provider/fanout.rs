//! The hub's fan-out, delivered by the provider's outbox: each `notify` the hub owes becomes an
//! outbox entry for the follower, in the batch that appends the message (see `hub::fanout`).

use std::sync::Arc;

use crate::hub::{Fanout, Notify};
use crate::store::{Batch, QueueKey, Ticket};

use super::outbox::{Outbox, Outgoing};

/// [`Fanout`] through the outbox.
#[derive(Debug)]
pub struct OutboxFanout(pub Arc<Outbox>);

impl Fanout for OutboxFanout {
    fn submit(&self, batch: Batch, notifies: Vec<Notify>) -> (Ticket, Vec<QueueKey>) {
        let entries = notifies
            .into_iter()
            .filter_map(|n| {
                let room = crate::translate::uri::room_uri_of(&n.room_id).ok()?;
                let outgoing =
                    Outgoing { endpoint: "notify".into(), variables: vec![("roomId".into(), room)], body: n.body };
                Some((n.provider, outgoing.encode()))
            })
            .collect();
        self.0.enqueue(batch, entries)
    }

    fn wake(&self, keys: &[QueueKey]) {
        self.0.wake(keys);
    }
}
