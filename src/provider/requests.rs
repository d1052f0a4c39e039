//! What the hub owes other providers (a hub's `notify`, a follower's `submitMessage`), delivered
//! by the provider's outbox: each request becomes an outbox entry in the batch that owes it
//! (see `hub::fanout`). Generic over the delivery only so that a bench can measure the hub's
//! durable promise through this very code with a delivery that needs no network.

use std::sync::Arc;

use crate::hub::{Owed, RequestQueue};
use crate::queue::{Deliver, Queue};
use crate::store::{Batch, QueueKey, Ticket};

use super::outbox::{OutboxDelivery, Outgoing};

/// [`RequestQueue`] through the outbox.
#[derive(Debug)]
pub struct OutboxRequests<D: Deliver = OutboxDelivery>(pub Arc<Queue<D>>);

impl<D: Deliver + std::fmt::Debug> RequestQueue for OutboxRequests<D> {
    fn submit(&self, batch: Batch, owed: Vec<Owed>) -> (Ticket, Vec<QueueKey>) {
        let entries = owed
            .into_iter()
            .filter_map(|n| {
                let room = crate::translate::uri::room_uri_of(&n.room_id).ok()?;
                let outgoing =
                    Outgoing { endpoint: n.endpoint.into(), variables: vec![("roomId".into(), room)], body: n.body };
                Some((n.provider, outgoing.encode()))
            })
            .collect();
        self.0.enqueue(batch, entries)
    }

    fn wake(&self, keys: &[QueueKey]) {
        self.0.wake(keys);
    }
}
