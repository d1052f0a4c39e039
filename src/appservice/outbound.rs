//! MIMI → Matrix, first step: a portal's log becomes queued homeserver requests.
//!
//! The follower sleeps until the store announces that some room's log is durable further
//! ("room R is durable up to N"); it then reads each woken portal's log past its cursor, a page
//! at a time, translates every message from another server (its plaintext, stored when this
//! server's client decrypted it) and puts the resulting client-server requests on the
//! homeserver queue in the batch that moves the cursor. The queue (`delivery`) sends them, one
//! Matrix room at a time, in order. An idle bridge does nothing here: no timer, no polling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError, off_runtime};
use super::delivery::HomeserverQueue;
use super::ids::StoreIds;
use crate::event::UnverifiedPdu;
use crate::event::meta::server_of;
use crate::mimi::MimiContent;
use crate::mls::events::{ENCRYPTED, FANOUT};
use crate::queue::{Backoff, RetryPolicy};
use crate::store::{Advances, Batch, ShortRoomId};
use crate::translate::{MatrixOut, encode_with_id, to_matrix};

/// Log events read per batch that moves a cursor.
const EVENTS_PER_PAGE: usize = 256;
/// Requests queued per batch that moves a cursor.
const REQUESTS_PER_PAGE: usize = 100;

/// One page of a portal's log, turned into requests.
struct Page {
    batch: Batch,
    requests: Vec<(String, Vec<u8>)>,
    /// The log has events past this page.
    more: bool,
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Bridge {
    /// Follows the portals' logs into the homeserver queue until the process ends. Every portal
    /// is looked at once at start (what arrived while the bridge was down), then only those the
    /// store announces.
    pub async fn run_follower(self: Arc<Self>, advances: Advances, queue: Arc<HomeserverQueue>) {
        if let Err(error) = self.mark_every_portal(&advances).await {
            tracing::error!(%error, "listing the portals failed; following only new appends");
        }
        // A portal that fails to follow (a store error) is looked at again after its own backoff,
        // from a timer, so the others are not held up.
        let mut failing: BTreeMap<ShortRoomId, Backoff> = BTreeMap::new();
        loop {
            let rooms = advances.next().await;
            let durable_us = now_us();
            for (room, position) in rooms {
                if let Err(error) = self.follow_portal(room, durable_us, &queue).await {
                    let delay =
                        failing.entry(room).or_insert_with(|| Backoff::new(RetryPolicy::default())).failed(&error);
                    tracing::warn!(%error, delay_ms = delay.as_millis(), "following a portal failed; retrying");
                    let advances = advances.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        advances.mark(room, position);
                    });
                } else {
                    failing.remove(&room);
                }
            }
        }
    }

    async fn mark_every_portal(&self, advances: &Advances) -> Result<(), BridgeError> {
        let mut after: Option<String> = None;
        loop {
            let (store, hub) = (Arc::clone(self.store()), Arc::clone(&self.hub));
            let from = after.clone();
            let page = off_runtime(move || {
                let portals = store.portals_page(from.as_deref(), 256)?;
                let mut shorts = Vec::with_capacity(portals.len());
                for (room, _) in &portals {
                    shorts.push(hub.short_room(room)?);
                }
                Ok((portals.last().map(|(room, _)| room.clone()), shorts))
            })
            .await?;
            let (Some(last), shorts) = page else { return Ok(()) };
            for short in shorts.into_iter().flatten() {
                advances.mark(short, 0);
            }
            after = Some(last);
        }
    }

    /// Queues the requests for a portal's events past its cursor, a page per batch.
    async fn follow_portal(
        self: &Arc<Self>,
        room: ShortRoomId,
        durable_us: u64,
        queue: &Arc<HomeserverQueue>,
    ) -> Result<(), BridgeError> {
        let bridge = Arc::clone(self);
        let unopened = off_runtime(move || {
            let Some(mimi_room) = bridge.hub.room_id_of(room)? else { return Ok(None) };
            Ok(bridge.store().portal_record(&mimi_room)?.is_none().then_some(mimi_room))
        })
        .await?;
        if let Some(mimi_room) = unopened
            && !self.open_followed_portal(&mimi_room).await?
        {
            return Ok(());
        }
        loop {
            let bridge = Arc::clone(self);
            let page = off_runtime(move || bridge.portal_page(room, durable_us)).await?;
            let Some(page) = page else { return Ok(()) };
            let (ticket, keys) = queue.enqueue(page.batch, page.requests);
            ticket.wait().await?;
            queue.wake(&keys);
            if !page.more {
                return Ok(());
            }
        }
    }

    /// Reads a portal's next page (blocking). `None` when the room is no portal or has nothing
    /// new.
    fn portal_page(&self, room: ShortRoomId, durable_us: u64) -> Result<Option<Page>, BridgeError> {
        let store = self.store();
        let Some(mimi_room) = self.hub.room_id_of(room)? else { return Ok(None) };
        let Some(record) = store.portal_record(&mimi_room)? else { return Ok(None) };
        let record: Value = serde_json::from_slice(&record).map_err(|_| BridgeError::Malformed("portal record"))?;
        let matrix_room = record["matrix_room"].as_str().ok_or(BridgeError::Malformed("portal record"))?;
        let cursor = store.portal_cursor(room)?;
        let mut next = cursor;
        let mut requests = Vec::new();
        let mut more = false;
        // One more than a page: whether there is more.
        for (seq, bytes) in self.hub.log_page(room, cursor, EVENTS_PER_PAGE + 1)? {
            if next - cursor >= EVENTS_PER_PAGE as u64 || requests.len() >= REQUESTS_PER_PAGE {
                more = true;
                break;
            }
            let pdu = UnverifiedPdu::parse(&bytes).map_err(|_| BridgeError::Malformed("stored PDU"))?;
            let meta = pdu.meta();
            // A followed room's record names the sender inside each message: ours come back too.
            let from_here = match meta.event_type.as_str() {
                ENCRYPTED => Some(server_of(&meta.sender) == self.hub.server_name()),
                FANOUT => None,
                _ => Some(true),
            };
            if meta.event_type == FANOUT {
                let event_id = pdu.event_id(&crate::event::room_version::LINEARIZED_02);
                let welcomed = self.hub.welcomed_in(&mimi_room, pdu.content())?.into_iter().map(|u| ("invite", u));
                let removed = store.removed_by(&event_id)?.into_iter().map(|u| ("kick", u));
                for (kind, user) in welcomed.chain(removed) {
                    let request = json!({"kind": kind, "room": matrix_room, "user": self.matrix_user(&user)});
                    requests.push((matrix_room.to_owned(), request.to_string().into_bytes()));
                }
            }
            let membership = pdu.content().get("membership").and_then(|m| m.as_str());
            // A user of this server invited by a user of another provider (a follower's add, whose
            // Welcome the hub used): invited to the portal too.
            if meta.event_type == "m.room.member"
                && membership == Some("invite")
                && server_of(&meta.sender) != self.hub.server_name()
                && let Some(user) = meta.state_key.as_deref().filter(|u| server_of(u) == self.hub.server_name())
            {
                let request = json!({"kind": "invite", "room": matrix_room, "user": self.matrix_user(user)});
                requests.push((matrix_room.to_owned(), request.to_string().into_bytes()));
            }
            // A user of another provider who left: their ghost leaves the portal too.
            if meta.event_type == "m.room.member"
                && membership == Some("leave")
                && meta.state_key.as_deref() == Some(meta.sender.as_str())
                && server_of(&meta.sender) != self.hub.server_name()
            {
                let request = json!({"kind": "leave", "room": matrix_room, "user": meta.sender});
                requests.push((matrix_room.to_owned(), request.to_string().into_bytes()));
            }
            if from_here != Some(true) {
                let event_id = pdu.event_id(&crate::event::room_version::LINEARIZED_02);
                for mut request in self.requests_for(matrix_room, &event_id, from_here.is_none())? {
                    request["durable_us"] = json!(durable_us);
                    requests.push((matrix_room.to_owned(), request.to_string().into_bytes()));
                }
            }
            next = seq + 1;
        }
        if next == cursor {
            return Ok(None);
        }
        let mut batch = Batch::new();
        batch.portal_cursor(room, next);
        Ok(Some(Page { batch, requests, more }))
    }

    /// The Matrix user of one of this server's MIMI users (`@name:<MIMI domain>`).
    fn matrix_user(&self, user: &str) -> String {
        let local = user.strip_prefix('@').and_then(|u| u.split_once(':')).map(|(l, _)| l);
        format!("@{}:{}", local.unwrap_or_default(), self.settings.domain)
    }

    /// The homeserver requests a stored message becomes.
    /// `unless_ours`: nothing for a message whose content names a sender of this provider.
    fn requests_for(&self, matrix_room: &str, event_id: &str, unless_ours: bool) -> Result<Vec<Value>, BridgeError> {
        let Some(plaintext) = self.hub.plaintext(event_id)? else {
            // A record's Welcomes and commits carry no message.
            if !unless_ours {
                self.metrics.dropped("undecryptable");
            }
            return Ok(Vec::new());
        };
        let Ok(content) = MimiContent::decode(&plaintext) else {
            self.metrics.dropped("malformed_mimi_content");
            return Ok(Vec::new());
        };
        let from_this_provider = content
            .sender_uri()
            .and_then(|uri| crate::translate::uri::matrix_user_id(uri).ok())
            .is_some_and(|user| server_of(&user) == self.hub.server_name());
        if unless_ours && from_this_provider {
            return Ok(Vec::new());
        }
        let ids = StoreIds(Arc::clone(self.store()));
        let outs = match to_matrix(&content, &ids) {
            Ok(outs) => outs,
            Err(error) => {
                tracing::info!(%error, event_id, "MIMI content cannot be translated");
                self.metrics.dropped("untranslatable");
                return Ok(Vec::new());
            }
        };
        let message_id = encode_with_id(&content).ok().map(|(_, id)| id.to_hex());
        let mut requests = Vec::new();
        for (index, out) in outs.into_iter().enumerate() {
            let request = match out {
                MatrixOut::Event { sender, event_type, content: body } => json!({
                    "kind": "send", "room": matrix_room, "mimi_sender": sender, "event_type": event_type,
                    "content": body, "log_event_id": event_id, "message_id": message_id,
                }),
                MatrixOut::Redaction { sender, redacts } => json!({
                    "kind": "redact", "room": matrix_room, "mimi_sender": sender, "redacts": redacts,
                    "log_event_id": event_id,
                }),
                MatrixOut::ReadReceipt { .. } => {
                    self.metrics.dropped("read_receipt_not_yet_bridged");
                    continue;
                }
                MatrixOut::Media(upload) => json!({
                    "kind": "media", "room": matrix_room, "mimi_sender": upload.sender, "index": index,
                    "log_event_id": event_id, "message_id": message_id,
                }),
                MatrixOut::Dropped(reason) => {
                    self.metrics.dropped(reason.counter_name());
                    continue;
                }
            };
            requests.push(request);
        }
        Ok(requests)
    }
}
