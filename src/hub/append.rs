//! Appending as the hub: events authored by this server's users, and LPDUs from participants.

use std::sync::Arc;

use crate::event::{EventError, EventTemplate, Pdu, UnverifiedLpdu, build_local, complete_lpdu};
use crate::store::{Batch, RoomSeq, batch::EventRecord};

use super::{Appended, Hub, HubError, LpduRejection, PendingAppend, RoomHead, lock};

/// LPDU IDs remembered per room before durable ones are evicted.
const RECENT_LPDUS: usize = 4096;

impl Hub {
    /// Appends an event authored by a user of this server.
    #[tracing::instrument(skip_all, fields(room_id = %template.room_id, event_type = %template.event_type))]
    pub fn submit_local(&self, template: EventTemplate) -> Result<PendingAppend, HubError> {
        if crate::event::meta::server_of(&template.sender) != self.server_name {
            return Err(HubError::NotLocalSender { sender: template.sender, server: self.server_name.clone() });
        }
        let head = self.head(&template.room_id)?;
        let mut head = lock(&head);
        self.append_template(&mut head, template, |_| Batch::new())
    }

    /// Builds, signs and appends a local event under the room's lock.
    /// `extra` gives, for the new event's ID, writes to make durable in the event's batch.
    pub(super) fn append_template(
        &self,
        head: &mut RoomHead,
        template: EventTemplate,
        extra: impl FnOnce(&str) -> Batch,
    ) -> Result<PendingAppend, HubError> {
        let chain = &head.chain;
        let meta = authorize(chain, &template)?;
        let auth_events = chain.select_auth(&meta, &template.content);
        let pdu =
            build_local(chain.version(), template, &auth_events, &chain.prev_events(), &self.key, &self.server_name)?;
        let extra = extra(pdu.event_id());
        self.append_built(head, &pdu, None, extra)
    }

    /// Appends an event authored by a user of this server and waits until it is durable.
    pub async fn append_local(&self, template: EventTemplate) -> Result<Appended, HubError> {
        self.submit_local(template)?.durable().await
    }

    /// Completes and appends a participant's LPDU: verifies the origin's signature and
    /// `hashes.lpdu`, requires `hub_server` to be this server, selects auth events, links it to
    /// the tail, hashes, signs and runs the auth rules. A retry of an LPDU already appended
    /// returns the existing event, marked `duplicate`.
    #[tracing::instrument(skip_all, fields(room_id = %lpdu.meta().room_id))]
    #[expect(
        clippy::result_large_err,
        reason = "a rejection carries its full reason to the peer; it is not the hot path"
    )]
    pub fn submit_lpdu(&self, lpdu: UnverifiedLpdu) -> Result<PendingAppend, LpduRejection> {
        let head = self.head(&lpdu.meta().room_id);
        let version = match &head {
            Ok(head) => lock(head).chain.version(),
            Err(_) => &crate::event::room_version::LINEARIZED_02,
        };
        // The reference ID is computed here only for refusals before verification; verification
        // computes it anyway.
        let early =
            |lpdu: &UnverifiedLpdu, error: HubError| LpduRejection { lpdu_id: lpdu.reference_id(version), error };
        let head = head.map_err(|e| early(&lpdu, e))?;
        let found_hub = lpdu.meta().hub_server.clone().unwrap_or_default();
        if found_hub != self.server_name {
            let error = EventError::WrongHub { expected: self.server_name.clone(), found: found_hub };
            return Err(early(&lpdu, error.into()));
        }
        // Signatures are checked before the room lock: they are the expensive part.
        let verified = lpdu.verify_reporting(version, &self.directories.trusted_keys());
        let lpdu = verified.map_err(|failure| {
            let (error, lpdu_id) = *failure;
            LpduRejection { lpdu_id, error: error.into() }
        })?;
        let lpdu_id = lpdu.lpdu_id().to_owned();
        let reject = |error: HubError| LpduRejection { lpdu_id: lpdu_id.clone(), error };
        let mut head = lock(&head);
        if head.chain.hub() != self.server_name {
            let hub = head.chain.hub().to_owned();
            return Err(reject(HubError::NotHub { room_id: lpdu.meta().room_id.clone(), hub }));
        }
        if let Some(existing) = self.known_lpdu(&head, &lpdu_id).map_err(reject)? {
            // The first copy may still be queued: an empty batch behind it resolves only once
            // everything before it is durable (and fails if the store is poisoned).
            let ticket = self.store.submit(Batch::new());
            return Ok(PendingAppend::new(existing, Some(ticket)));
        }
        let chain = &head.chain;
        chain.authorize(lpdu.meta(), lpdu.content()).map_err(|e| reject(EventError::from(e).into()))?;
        let auth_events = chain.select_auth(lpdu.meta(), lpdu.content());
        let prev_events = chain.prev_events();
        let pdu = complete_lpdu(chain.version(), lpdu, &auth_events, &prev_events, &self.key, &self.server_name)
            .map_err(|e| reject(e.into()))?;
        self.append_built(&mut head, &pdu, Some(&lpdu_id), Batch::new()).map_err(reject)
    }

    /// `submit_lpdu`, then waits until the event is durable.
    pub async fn append_lpdu(&self, lpdu: UnverifiedLpdu) -> Result<Appended, LpduRejection> {
        let pending = self.submit_lpdu(lpdu)?;
        let lpdu_id = pending.appended.lpdu_id.clone().unwrap_or_default();
        pending.durable().await.map_err(|error| LpduRejection { lpdu_id, error })
    }

    fn known_lpdu(&self, head: &RoomHead, lpdu_id: &str) -> Result<Option<Appended>, HubError> {
        let room_id = head.chain.room_id().to_owned();
        if let Some((position, event_id)) = head.recent_lpdus.get(lpdu_id) {
            let event_id = event_id.clone();
            return Ok(Some(Appended {
                room_id,
                position: *position,
                event_id,
                lpdu_id: Some(lpdu_id.to_owned()),
                duplicate: true,
            }));
        }
        let Some(event_id) = self.store.lpdu_event(lpdu_id)? else {
            return Ok(None);
        };
        let position = self.store.event_position(&event_id)?.map_or(0, |p| p.seq);
        Ok(Some(Appended { room_id, position, event_id, lpdu_id: Some(lpdu_id.to_owned()), duplicate: true }))
    }

    /// Checks `pdu` against the chain (the same checks a follower and `log verify` run), queues
    /// its batch while the room lock is held, and advances the head.
    pub(super) fn append_built(
        &self,
        head: &mut RoomHead,
        pdu: &Pdu,
        lpdu_id: Option<&str>,
        extra: Batch,
    ) -> Result<PendingAppend, HubError> {
        head.chain.check(pdu)?;
        let step = self.check_mls(head, pdu)?;
        let position = head.chain.next_position();
        let meta = pdu.meta();
        let mut batch = extra;
        if position == 0 {
            batch.add_room(head.short, &meta.room_id);
        }
        batch.append_event(&EventRecord {
            pos: RoomSeq { room: head.short, seq: position },
            event_id: pdu.event_id(),
            bytes: pdu.bytes(),
            state: meta.state_key.as_deref().map(|k| (meta.event_type.as_str(), k)),
            lpdu_id,
        });
        let flushes = Self::observe_mls(head, pdu, position, &step, &mut batch);
        let owed = self.owed(head, pdu, &step, &batch);
        let (ticket, owed) = match self.outbox.get().filter(|_| !owed.is_empty()) {
            Some(outbox) => {
                let (ticket, keys) = outbox.submit(batch, owed);
                (ticket, Some((Arc::clone(outbox), keys)))
            }
            None => (self.store.submit(batch), None),
        };
        head.chain.apply(pdu);
        Self::apply_mls(head, step, pdu);
        if let Some(lpdu_id) = lpdu_id {
            if head.recent_lpdus.len() >= RECENT_LPDUS {
                // Only durable entries may go: the store answers for those.
                let durable = self.store.tail(head.short)?.map(|t| t.seq);
                head.recent_lpdus.retain(|_, (p, _)| durable.is_none_or(|d| *p > d));
            }
            head.recent_lpdus.insert(lpdu_id.to_owned(), (position, pdu.event_id().to_owned()));
        }
        let appended = Appended {
            room_id: meta.room_id.clone(),
            position,
            event_id: pdu.event_id().to_owned(),
            lpdu_id: lpdu_id.map(str::to_owned),
            duplicate: false,
        };
        Ok(PendingAppend { appended, ticket: Some(ticket), flushes, owed })
    }

    pub(super) fn insert_head(
        &self,
        room_id: &str,
        head: RoomHead,
    ) -> Result<Arc<std::sync::Mutex<RoomHead>>, HubError> {
        let mut rooms = lock(&self.rooms);
        if rooms.contains(room_id) || self.store.short_room(room_id)?.is_some() {
            return Err(HubError::RoomExists(room_id.to_owned()));
        }
        rooms
            .insert(room_id, Arc::new(std::sync::Mutex::new(head)), &self.store)
            .ok_or_else(|| HubError::RoomExists(room_id.to_owned()))
    }
}

/// Runs the room's auth rules on a local event before it is built; returns its metadata.
pub(super) fn authorize(
    chain: &crate::event::Chain,
    template: &EventTemplate,
) -> Result<crate::event::EventMeta, HubError> {
    let meta = crate::event::EventMeta {
        room_id: template.room_id.clone(),
        event_type: template.event_type.clone(),
        sender: template.sender.clone(),
        state_key: template.state_key.clone(),
        origin_server_ts: template.origin_server_ts,
        hub_server: None,
        prev_events: None,
        auth_events: None,
    };
    chain.authorize(&meta, &template.content).map_err(EventError::from)?;
    Ok(meta)
}
