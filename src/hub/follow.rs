//! Following a hub: what a participant does with the PDUs the hub sends it.
//!
//! A followed PDU is verified (the hub's and the origin's signatures, both hashes) and then
//! must be the exact next entry of the local copy: its `prev_events` must be `[local tail]`.
//! Anything else is refused with the gap named, so the caller can backfill from the hub rather
//! than accept a forked or reordered history.

use crate::event::chain::create_version;
use crate::event::{Chain, UnverifiedPdu};

use super::{Appended, Hub, HubError, PendingAppend, RoomHead, lock};

impl Hub {
    /// Verifies a PDU from a room's hub and appends it if it extends the local log.
    #[tracing::instrument(skip_all, fields(room_id = %pdu.meta().room_id))]
    pub fn submit_followed(&self, pdu: UnverifiedPdu) -> Result<PendingAppend, HubError> {
        let meta = pdu.meta().clone();
        let is_create =
            meta.event_type == "m.room.create" && meta.prev_events.as_deref().is_some_and(<[String]>::is_empty);
        let keys = self.directories.trusted_keys();
        if is_create {
            let version = create_version(&meta, pdu.content())?;
            let pdu = pdu.verify(version, &keys)?;
            if let Some(existing) = self.already_logged(&meta.room_id, pdu.event_id())? {
                return Ok(existing);
            }
            let chain = Chain::for_create(&pdu)?;
            let head = self.insert_head(&meta.room_id, RoomHead::new(self.store.allocate_short_room(), chain))?;
            return self.append_built(&mut lock(&head), &pdu, None, crate::store::Batch::new());
        }
        let head = self.head(&meta.room_id)?;
        let version = lock(&head).chain.version();
        let pdu = pdu.verify(version, &keys)?;
        let mut head = lock(&head);
        if let Some(existing) = self.already_logged(&meta.room_id, pdu.event_id())? {
            return Ok(existing);
        }
        // A redelivery of the event just appended, whose batch may still be queued: a duplicate,
        // acknowledged through the store like the first copy.
        if head.chain.tail() == Some(pdu.event_id()) {
            let position = head.chain.next_position().saturating_sub(1);
            let appended = Appended {
                room_id: meta.room_id,
                position,
                event_id: pdu.event_id().to_owned(),
                lpdu_id: None,
                duplicate: true,
            };
            return Ok(PendingAppend::new(appended, Some(self.store.submit(crate::store::Batch::new()))));
        }
        self.append_built(&mut head, &pdu, None, crate::store::Batch::new())
    }

    /// `submit_followed`, then waits until the event is durable.
    pub async fn follow(&self, pdu: UnverifiedPdu) -> Result<Appended, HubError> {
        self.submit_followed(pdu)?.durable().await
    }

    fn already_logged(&self, room_id: &str, event_id: &str) -> Result<Option<PendingAppend>, HubError> {
        let Some(pos) = self.store.event_position(event_id)? else {
            return Ok(None);
        };
        let room_id = room_id.to_owned();
        let appended =
            Appended { room_id, position: pos.seq, event_id: event_id.to_owned(), lpdu_id: None, duplicate: true };
        Ok(Some(PendingAppend::new(appended, None)))
    }
}
