//! MIMI → Matrix: events appended to a portal's MIMI room by other servers reach the portal as
//! the right ghosts.
//!
//! Two steps, each durable. A follower of every portal's log reads past the portal's cursor,
//! translates each message from another server (its plaintext, stored when this server's client
//! decrypted it) and queues the resulting client-server requests in `hsqueue_request`, in the
//! batch that moves the cursor. A sender works that queue, each room in order (a room the
//! homeserver keeps refusing for now waits without holding up the others): it makes sure the ghost
//! exists and is in the room, sends with the transaction ID fixed at queueing time (so a retry
//! after a crash cannot double-post), and deletes the entry in the batch that records the
//! Matrix ⇄ log ⇄ MIMI mappings.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError};
use super::ghost::GhostTemplate;
use super::ids::{StoreIds, record};
use crate::event::UnverifiedPdu;
use crate::event::meta::server_of;
use crate::mimi::MimiContent;
use crate::mls::events::ENCRYPTED;
use crate::store::{Batch, RoomSeq};
use crate::translate::{MappedEvent, MatrixOut, encode_with_id, to_matrix};

/// The counter naming queued homeserver requests (and their transaction IDs); never reused.
const NEXT_SEQ: &str = "hsqueue_next_seq";

impl Bridge {
    /// Follows every portal's log and works the homeserver queue, forever.
    pub async fn run_outbound(self: Arc<Self>) {
        let mut joined: BTreeSet<(String, String)> = BTreeSet::new();
        // Backoff while the homeserver fails: 100 ms doubling to 30 s, reset by a success.
        let mut backoff = Duration::ZERO;
        loop {
            let queued = self.follow_portals().unwrap_or_else(|error| {
                tracing::warn!(%error, "following the portals failed");
                false
            });
            match self.send_queued(&mut joined).await {
                Err(()) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
                    tokio::time::sleep(backoff).await;
                }
                Ok(sent) => {
                    backoff = Duration::ZERO;
                    if !queued && !sent {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    /// Queues the requests for new events of every portal. Returns whether anything was queued.
    fn follow_portals(&self) -> Result<bool, BridgeError> {
        let store = Arc::clone(self.hub.store());
        let mut any = false;
        for (mimi_room, record_bytes) in store.portals()? {
            let mut record: Value =
                serde_json::from_slice(&record_bytes).map_err(|_| BridgeError::Malformed("portal record"))?;
            let matrix_room = record["matrix_room"].as_str().ok_or(BridgeError::Malformed("portal record"))?.to_owned();
            let Some(short) = store.short_room(&mimi_room)? else { continue };
            let mut cursor = record["cursor"].as_u64().unwrap_or(0);
            let mut next_seq = store.counter(NEXT_SEQ)?.max(1);
            let mut batch = Batch::new();
            let mut queued = 0u64;
            while let Some(bytes) = store.pdu_at(RoomSeq { room: short, seq: cursor })? {
                let pdu = UnverifiedPdu::parse(&bytes).map_err(|_| BridgeError::Malformed("stored PDU"))?;
                let meta = pdu.meta();
                if meta.event_type == ENCRYPTED && server_of(&meta.sender) != self.hub.server_name() {
                    let event_id = pdu.event_id(&crate::event::room_version::LINEARIZED_02);
                    for request in self.requests_for(&matrix_room, &event_id)? {
                        batch.hs_request(next_seq, Some(request.to_string().as_bytes()));
                        next_seq += 1;
                        queued += 1;
                    }
                }
                cursor += 1;
                if queued >= 100 {
                    break;
                }
            }
            if cursor == record["cursor"].as_u64().unwrap_or(0) {
                continue;
            }
            record["cursor"] = json!(cursor);
            batch.counter(NEXT_SEQ, next_seq);
            batch.portal(&matrix_room, &mimi_room, record.to_string().as_bytes());
            store.write(batch)?;
            self.metrics.hs_queue_depth.fetch_add(queued, Ordering::Relaxed);
            any = true;
        }
        Ok(any)
    }

    /// The homeserver requests a stored message becomes.
    fn requests_for(&self, matrix_room: &str, event_id: &str) -> Result<Vec<Value>, BridgeError> {
        let Some(plaintext) = self.hub.store().plaintext(event_id)? else {
            self.metrics.dropped("undecryptable");
            return Ok(Vec::new());
        };
        let Ok(content) = MimiContent::decode(&plaintext) else {
            self.metrics.dropped("malformed_mimi_content");
            return Ok(Vec::new());
        };
        let ids = StoreIds(Arc::clone(self.hub.store()));
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

    /// Sends queued requests, each room's in order. A room whose request fails in a way worth
    /// retrying is held back (its later requests wait) while other rooms go on; `Err` asks the
    /// caller to back off before the next pass. `Ok` says whether anything was sent.
    async fn send_queued(&self, joined: &mut BTreeSet<(String, String)>) -> Result<bool, ()> {
        let Ok(queue) = self.hub.store().hs_queue() else { return Err(()) };
        let mut sent = false;
        let mut held: BTreeSet<String> = BTreeSet::new();
        for (seq, bytes) in queue {
            let Ok(request) = serde_json::from_slice::<Value>(&bytes) else { continue };
            let room = request["room"].as_str().unwrap_or_default().to_owned();
            if held.contains(&room) {
                continue;
            }
            match self.send_one(seq, &request, joined).await {
                Ok(()) => {
                    sent = true;
                    self.metrics.events_out.fetch_add(1, Ordering::Relaxed);
                    crate::http::metrics::Metrics::decrement(&self.metrics.hs_queue_depth);
                }
                Err(error) if error.is_transient() => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(seq, %error, "sending to the homeserver failed; will retry");
                    held.insert(room);
                }
                Err(error) => {
                    tracing::warn!(seq, %error, "request dropped");
                    self.metrics.dropped("homeserver_refused");
                    let mut batch = Batch::new();
                    batch.hs_request(seq, None);
                    if self.hub.store().submit(batch).wait().await.is_err() {
                        return Err(());
                    }
                }
            }
        }
        if held.is_empty() { Ok(sent) } else { Err(()) }
    }

    async fn send_one(
        &self,
        seq: u64,
        request: &Value,
        joined: &mut BTreeSet<(String, String)>,
    ) -> Result<(), BridgeError> {
        let field = |name: &'static str| request[name].as_str().ok_or(BridgeError::Malformed(name));
        let (room, mimi_sender, log_event_id) = (field("room")?, field("mimi_sender")?, field("log_event_id")?);
        let ghost = self.settings.ghosts.ghost_of(mimi_sender).ok_or(BridgeError::Malformed("sender"))?;
        if joined.insert((room.to_owned(), ghost.clone()))
            && let Err(error) = self.enter(room, &ghost).await
        {
            joined.remove(&(room.to_owned(), ghost.clone()));
            return Err(error);
        }
        let txn_id = format!("mimi.{seq}");
        let mut batch = Batch::new();
        batch.hs_request(seq, None);
        if request["kind"] == "media" {
            let Some((event_type, content)) = self.upload_attachment(request, &ghost).await? else {
                self.metrics.dropped("media_unavailable");
                self.hub.store().submit(batch).wait().await?;
                return Ok(());
            };
            let matrix_event_id =
                self.homeserver.send_event(room, &event_type, &txn_id, &content, Some(&ghost), None).await?;
            batch.map_event(&matrix_event_id, log_event_id);
            if let Some(mapped) = self.mapped_for(request, mimi_sender, log_event_id)? {
                record(&mut batch, &matrix_event_id, &mapped);
            }
        } else if request["kind"] == "redact" {
            let redacts = field("redacts")?;
            self.homeserver.redact(room, redacts, &txn_id, Some(&ghost), None).await?;
        } else {
            let (event_type, content) = (field("event_type")?, &request["content"]);
            let matrix_event_id =
                self.homeserver.send_event(room, event_type, &txn_id, content, Some(&ghost), None).await?;
            batch.map_event(&matrix_event_id, log_event_id);
            if let Some(mapped) = self.mapped_for(request, mimi_sender, log_event_id)? {
                record(&mut batch, &matrix_event_id, &mapped);
            }
        }
        self.hub.store().submit(batch).wait().await?;
        Ok(())
    }

    /// The translation record of the message a request came from (only its first request);
    /// senders are MIMI user IDs on both sides of the map.
    fn mapped_for(
        &self,
        request: &Value,
        mimi_sender: &str,
        log_event_id: &str,
    ) -> Result<Option<MappedEvent>, BridgeError> {
        if request["message_id"].is_null() || self.hub.store().matrix_event_of(log_event_id)?.is_some() {
            return Ok(None);
        }
        let Some(plaintext) = self.hub.store().plaintext(log_event_id)? else { return Ok(None) };
        let Ok(content) = MimiContent::decode(&plaintext) else { return Ok(None) };
        let Ok((_, message_id)) = encode_with_id(&content) else { return Ok(None) };
        Ok(Some(MappedEvent::from_content(message_id, mimi_sender, &content)))
    }

    /// Fetches, verifies and decrypts the attachment of a queued media request and uploads the
    /// plaintext to the homeserver as the ghost; returns the event to send. Attachments hosted
    /// here are read from the store; fetching other servers' comes with the outbound HTTPS
    /// client (until then they are counted as unavailable).
    async fn upload_attachment(&self, request: &Value, ghost: &str) -> Result<Option<(String, Value)>, BridgeError> {
        let log_event_id = request["log_event_id"].as_str().ok_or(BridgeError::Malformed("log_event_id"))?;
        let index = request["index"].as_u64().and_then(|i| usize::try_from(i).ok()).unwrap_or(usize::MAX);
        let Some(plaintext) = self.hub.store().plaintext(log_event_id)? else { return Ok(None) };
        let Ok(content) = MimiContent::decode(&plaintext) else { return Ok(None) };
        let ids = StoreIds(Arc::clone(self.hub.store()));
        let Some(MatrixOut::Media(upload)) =
            to_matrix(&content, &ids).ok().and_then(|mut o| (index < o.len()).then(|| o.swap_remove(index)))
        else {
            return Ok(None);
        };
        let Some(external) = upload.external() else { return Ok(None) };
        let Some(media_id) = crate::federation::media::local_id(self.hub.server_name(), &external.url) else {
            return Ok(None);
        };
        let Some(ciphertext) = self.hub.store().media(media_id)? else { return Ok(None) };
        let Ok(file) = crate::translate::media::decrypt_from_mimi(&ciphertext, external) else {
            tracing::warn!(log_event_id, "attachment does not match its hash or key");
            return Ok(None);
        };
        let content_type = external.content_type.clone();
        let mxc = self.homeserver.upload_media(file, &content_type, None, Some(ghost)).await?;
        match upload.finish(&mxc) {
            Ok(MatrixOut::Event { event_type, content, .. }) => Ok(Some((event_type, content))),
            _ => Ok(None),
        }
    }

    /// The bridge user that opened a portal (and so is in its Matrix room).
    fn opener_of(&self, matrix_room: &str) -> Result<String, BridgeError> {
        for (_, record) in self.hub.store().portals()? {
            let record: Value = serde_json::from_slice(&record).map_err(|_| BridgeError::Malformed("portal record"))?;
            if record["matrix_room"] == matrix_room {
                return Ok(record["opener"].as_str().map_or_else(|| self.settings.bot(), str::to_owned));
            }
        }
        Ok(self.settings.bot())
    }

    /// Registers the ghost and brings it into the portal (the portal's opener invites, the ghost
    /// joins).
    async fn enter(&self, room: &str, ghost: &str) -> Result<(), BridgeError> {
        if let Some(localpart) = GhostTemplate::localpart_of(ghost) {
            self.homeserver.register_ghost(localpart).await?;
        }
        let opener = self.opener_of(room)?;
        let inviter = (opener != self.settings.bot()).then_some(opener.as_str());
        if let Err(error) = self.homeserver.invite(room, inviter, ghost).await {
            tracing::debug!(%error, ghost, "invite before join failed (already invited or joined?)");
        }
        self.homeserver.join(room, Some(ghost)).await?;
        Ok(())
    }
}
