//! MIMI → Matrix, second step: the homeserver queue's deliveries.
//!
//! Each entry is one client-server request, queued with the Matrix room as its destination, so
//! one room the homeserver keeps refusing waits alone while every other portal goes on. Before
//! a ghost first speaks in a room it is registered and brought in (the portal's opener invites,
//! the ghost joins). The send uses the transaction ID fixed at queueing time (`mimi.<seq>`), so a
//! retry after a crash cannot double-post, and the entry is deleted in the batch that records
//! the Matrix ⇄ log ⇄ MIMI mappings. A ghost that was kicked is brought back in and the send
//! tried again; if the room will not have it, the opener says so in the room and the failure
//! is counted — a message is never dropped silently. The queue also carries the notices that
//! tell a Matrix user their message was refused (`refusal`), sent as the portal's opener.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError};
use super::ghost::GhostTemplate;
use super::ids::{StoreIds, record};
use crate::mimi::MimiContent;
use crate::queue::{Deliver, Queue};
use crate::store::{Batch, QueueEntry};
use crate::translate::{MappedEvent, MatrixOut, encode_with_id, to_matrix};

/// The counter naming queued homeserver requests (and their transaction IDs); never reused.
pub const NEXT_SEQ: &str = "hsqueue_next_seq";

/// (Matrix room, ghost) pairs remembered as joined before most are forgotten again.
const MAX_JOINED: usize = 100_000;

/// The homeserver queue.
pub type HomeserverQueue = Queue<HomeserverDelivery>;

/// Delivers homeserver requests (see the module documentation).
#[derive(Debug)]
pub struct HomeserverDelivery {
    bridge: Arc<Bridge>,
    /// Ghosts known to be in a room; a kick is noticed when a send is refused.
    joined: Mutex<BTreeSet<(String, String)>>,
}

impl HomeserverDelivery {
    /// Delivery through `bridge`'s homeserver client.
    pub fn new(bridge: Arc<Bridge>) -> Self {
        Self { bridge, joined: Mutex::new(BTreeSet::new()) }
    }

    fn joined(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Brings the ghost into the room unless it is known to be there.
    async fn ensure_in_room(&self, room: &str, ghost: &str) -> Result<(), BridgeError> {
        let pair = (room.to_owned(), ghost.to_owned());
        if self.joined().contains(&pair) {
            return Ok(());
        }
        self.bridge.enter(room, ghost).await?;
        let mut joined = self.joined();
        if joined.len() >= MAX_JOINED {
            joined.clear();
        }
        joined.insert(pair);
        Ok(())
    }
}

impl HomeserverDelivery {
    /// A membership the MIMI room's log changed: a user of this homeserver a followed room's
    /// hub welcomed (`invite`) or removed (`kick`), invited or kicked by the portal's opener; a
    /// ghost whose user left (`leave`). One already in (or out) is left as is.
    async fn membership(&self, room: &str, kind: &str, request: &Value) -> Result<Batch, BridgeError> {
        let bridge = &self.bridge;
        let user = request["user"].as_str().ok_or(BridgeError::Malformed("user"))?;
        let opener = bridge.opener_of(room)?;
        let as_opener = (opener != bridge.settings.bot()).then_some(opener.as_str());
        let done = match kind {
            "invite" => bridge.homeserver.invite(room, as_opener, user).await,
            "kick" => bridge.homeserver.kick(room, as_opener, user, "removed from the MIMI room by its hub").await,
            _ => {
                let ghost = bridge.settings.ghosts.ghost_of(user).ok_or(BridgeError::Malformed("user"))?;
                let handed_over =
                    if ghost == opener { bridge.hand_over_to_bot(room, &ghost).await? } else { Batch::new() };
                self.joined().remove(&(room.to_owned(), ghost.clone()));
                return match bridge.homeserver.leave(room, Some(&ghost)).await {
                    Ok(()) | Err(super::homeserver::HomeserverError::Matrix { status: 403, .. }) => Ok(handed_over),
                    Err(error) => Err(error.into()),
                };
            }
        };
        match done {
            Err(super::homeserver::HomeserverError::Matrix { status: 403, .. }) => Ok(Batch::new()),
            other => other.map(|()| Batch::new()).map_err(BridgeError::from),
        }
    }
}

fn not_in_room(error: &BridgeError) -> bool {
    match error {
        BridgeError::Homeserver(e) | BridgeError::Device(crate::e2ee::E2eeError::Homeserver(e)) => {
            e.errcode() == Some("M_FORBIDDEN")
        }
        _ => false,
    }
}

impl Deliver for HomeserverDelivery {
    type Error = BridgeError;

    async fn deliver(&self, room: &str, entry: &QueueEntry) -> Result<Batch, BridgeError> {
        let request: Value =
            serde_json::from_slice(&entry.payload).map_err(|_| BridgeError::Malformed("queued request"))?;
        let bridge = &self.bridge;
        if request["kind"] == "notice" {
            let batch = bridge.send_notice(room, &request).await?;
            bridge.metrics.events_out.fetch_add(1, Ordering::Relaxed);
            return Ok(batch);
        }
        if let Some(kind @ ("invite" | "kick" | "leave")) = request["kind"].as_str() {
            return self.membership(room, kind, &request).await;
        }
        let mimi_sender = request["mimi_sender"].as_str().ok_or(BridgeError::Malformed("mimi_sender"))?;
        let ghost = bridge.settings.ghosts.ghost_of(mimi_sender).ok_or(BridgeError::Malformed("sender"))?;
        if let Some(durable_us) = request["durable_us"].as_u64() {
            let waited = super::outbound::now_us().saturating_sub(durable_us);
            bridge.metrics.handoff_latency(std::time::Duration::from_micros(waited));
        }
        self.ensure_in_room(room, &ghost).await?;
        let result = bridge.send_request(room, entry.seq, &request, &ghost).await;
        let batch = match result {
            Err(error) if not_in_room(&error) => {
                // Kicked (or never really in): back in, and once more.
                tracing::info!(room, ghost, "the ghost is not in the room; inviting it again");
                self.joined().remove(&(room.to_owned(), ghost.clone()));
                self.ensure_in_room(room, &ghost).await?;
                bridge.send_request(room, entry.seq, &request, &ghost).await?
            }
            other => other?,
        };
        bridge.metrics.events_out.fetch_add(1, Ordering::Relaxed);
        Ok(batch)
    }

    async fn undeliverable(&self, room: &str, entry: &QueueEntry, error: &BridgeError) {
        let bridge = &self.bridge;
        let request: Value = serde_json::from_slice(&entry.payload).unwrap_or_default();
        if request["kind"] == "notice" {
            tracing::error!(room, seq = entry.seq, %error, "a refusal notice could not be delivered to the homeserver");
            return;
        }
        bridge.metrics.dropped("homeserver_refused");
        let sender = request["mimi_sender"].as_str().unwrap_or("a MIMI user");
        tracing::error!(room, seq = entry.seq, sender, %error, "a message could not be delivered to the homeserver");
        let notice = format!("A message from {sender} could not be delivered to this room: {error}");
        let content = json!({"msgtype": "m.notice", "body": notice});
        let txn = format!("undeliverable.{}", entry.seq);
        if let Err(error) = bridge.send_notice_content(room, &txn, &content).await {
            tracing::warn!(room, %error, "the undeliverable notice could not be sent either");
        }
    }
}

impl Bridge {
    /// Sends one queued request as `ghost`; returns the writes recording its effect.
    async fn send_request(&self, room: &str, seq: u64, request: &Value, ghost: &str) -> Result<Batch, BridgeError> {
        let field = |name: &'static str| request[name].as_str().ok_or(BridgeError::Malformed(name));
        let (mimi_sender, log_event_id) = (field("mimi_sender")?, field("log_event_id")?);
        let txn_id = format!("mimi.{seq}");
        let mut batch = Batch::new();
        let (event_type, content) = match request["kind"].as_str() {
            Some("media") => {
                let Some(event) = self.upload_attachment(request, (room, ghost)).await? else {
                    self.metrics.dropped("media_unavailable");
                    return Ok(batch);
                };
                event
            }
            Some("redact") => {
                self.homeserver.redact(room, field("redacts")?, &txn_id, Some(ghost), None).await?;
                return Ok(batch);
            }
            _ => (field("event_type")?.to_owned(), request["content"].clone()),
        };
        let matrix_event_id = self.send_as_ghost((room, ghost, &txn_id), &event_type, &content).await?;
        batch.map_event(&matrix_event_id, log_event_id);
        if let Some(mapped) = self.mapped_for(request, mimi_sender, log_event_id)? {
            record(&mut batch, &matrix_event_id, &mapped);
        }
        Ok(batch)
    }

    /// The translation record of the message a request came from (only its first request);
    /// senders are MIMI user IDs on both sides of the map.
    fn mapped_for(
        &self,
        request: &Value,
        mimi_sender: &str,
        log_event_id: &str,
    ) -> Result<Option<MappedEvent>, BridgeError> {
        if request["message_id"].is_null() || self.store().matrix_event_of(log_event_id)?.is_some() {
            return Ok(None);
        }
        let Some(plaintext) = self.hub.plaintext(log_event_id)? else { return Ok(None) };
        let Ok(content) = MimiContent::decode(&plaintext) else { return Ok(None) };
        let Ok((_, message_id)) = encode_with_id(&content) else { return Ok(None) };
        Ok(Some(MappedEvent::from_content(message_id, mimi_sender, &content)))
    }

    /// Fetches, verifies and decrypts the attachment of a queued media request and uploads the
    /// plaintext to the homeserver as the ghost (into an encrypted portal, encrypted as Matrix
    /// clients do: `e2ee::attachments`); returns the event to send. Attachments hosted here are
    /// read from the store, those of another MIMI provider fetched from it.
    async fn upload_attachment(
        &self,
        request: &Value,
        (room, ghost): (&str, &str),
    ) -> Result<Option<(String, Value)>, BridgeError> {
        let log_event_id = request["log_event_id"].as_str().ok_or(BridgeError::Malformed("log_event_id"))?;
        let index = request["index"].as_u64().and_then(|i| usize::try_from(i).ok()).unwrap_or(usize::MAX);
        let Some(plaintext) = self.hub.plaintext(log_event_id)? else { return Ok(None) };
        let Ok(content) = MimiContent::decode(&plaintext) else { return Ok(None) };
        let ids = StoreIds(Arc::clone(self.store()));
        let Some(MatrixOut::Media(upload)) =
            to_matrix(&content, &ids).ok().and_then(|mut o| (index < o.len()).then(|| o.swap_remove(index)))
        else {
            return Ok(None);
        };
        let Some(external) = upload.external() else { return Ok(None) };
        let ciphertext = match crate::federation::media::local_id(self.hub.server_name(), &external.url) {
            Some(media_id) => self.store().media(media_id)?,
            None => self.fetch_attachment(&external.url, request["mimi_sender"].as_str().unwrap_or_default()).await?,
        };
        let Some(ciphertext) = ciphertext else { return Ok(None) };
        let Ok(file) = crate::translate::media::decrypt_from_mimi(&ciphertext, external) else {
            tracing::warn!(log_event_id, "attachment does not match its hash or key");
            return Ok(None);
        };
        if !self.encrypts(room, ghost).await? {
            let mxc = self.homeserver.upload_media(file, &external.content_type, None, Some(ghost)).await?;
            return match upload.finish(&mxc) {
                Ok(MatrixOut::Event { event_type, content, .. }) => Ok(Some((event_type, content))),
                _ => Ok(None),
            };
        }
        let (ciphertext, mut encrypted) = crate::e2ee::attachments::encrypt(&file)?;
        let mxc = self.homeserver.upload_media(ciphertext, "application/octet-stream", None, Some(ghost)).await?;
        match upload.finish(&mxc) {
            Ok(MatrixOut::Event { event_type, mut content, .. }) => {
                if let Some(fields) = content.as_object_mut() {
                    encrypted["url"] = fields.remove("url").unwrap_or_default();
                    fields.insert("file".into(), encrypted);
                }
                Ok(Some((event_type, content)))
            }
            _ => Ok(None),
        }
    }

    /// The ciphertext of an attachment the sender's MIMI provider hosts (directly: the bridge is
    /// its users' clients' provider), over mutual TLS, at most [`MAX_MEDIA_BYTES`](super::bridge::MAX_MEDIA_BYTES). Another host
    /// is not asked (a member cannot make the bridge fetch from anywhere); neither is one
    /// without a provider side. `None` when it is refused or too large; transport failures and
    /// 5xx are retried.
    async fn fetch_attachment(&self, url: &str, mimi_sender: &str) -> Result<Option<Vec<u8>>, BridgeError> {
        let provider = crate::event::meta::server_of(mimi_sender);
        let Some(outbox) = self.outbox.as_ref() else { return Ok(None) };
        if url.strip_prefix("https://").and_then(|u| u.strip_prefix(provider)).is_none_or(|u| !u.starts_with('/')) {
            tracing::warn!(url, provider, "an attachment not hosted by its sender's provider is not fetched");
            return Ok(None);
        }
        let limit = usize::try_from(super::bridge::MAX_MEDIA_BYTES).unwrap_or(usize::MAX);
        let peer_error = |e: crate::provider::peers::PeersError| BridgeError::from(super::remote::RemoteError::from(e));
        match outbox.deliverer().peers().client().get_up_to(url, limit).await {
            Ok(answer) if answer.status.is_success() => Ok(Some(answer.body.to_vec())),
            Ok(answer) if answer.status.is_server_error() || answer.status.as_u16() == 429 => {
                let (url, status) = (url.to_owned(), answer.status.as_u16());
                Err(peer_error(crate::provider::peers::PeersError::Status { url, status, body: String::new() }))
            }
            Err(crate::provider::client::PeerError::TooLarge(..)) | Ok(_) => {
                tracing::warn!(url, "an attachment of another provider is unavailable");
                Ok(None)
            }
            Err(error) => Err(peer_error(error.into())),
        }
    }

    /// The ghost that opened a portal is leaving: the bot takes its place, or the homeserver
    /// would stop telling the bridge about the room (it sends an appservice only the events of
    /// rooms its users are in). Returns the portal record's change, for the leave's batch.
    async fn hand_over_to_bot(&self, matrix_room: &str, ghost: &str) -> Result<Batch, BridgeError> {
        let bot = self.settings.bot();
        match self.homeserver.invite(matrix_room, Some(ghost), &bot).await {
            Ok(()) | Err(super::homeserver::HomeserverError::Matrix { status: 403, .. }) => {}
            Err(error) => return Err(error.into()),
        }
        self.homeserver.join(matrix_room, None).await?;
        let store = self.store();
        let mut batch = Batch::new();
        if let Some(mimi_room) = store.portal_of(matrix_room)? {
            let record = store.portal_record(&mimi_room)?;
            let mut record: Value = record.and_then(|r| serde_json::from_slice(&r).ok()).unwrap_or_default();
            record["opener"] = Value::String(bot);
            batch.portal(matrix_room, &mimi_room, record.to_string().as_bytes());
        }
        Ok(batch)
    }

    /// The bridge user that opened a portal (and so is in its Matrix room).
    pub(super) fn opener_of(&self, matrix_room: &str) -> Result<String, BridgeError> {
        let store = self.store();
        let record = match store.portal_of(matrix_room)? {
            Some(mimi_room) => store.portal_record(&mimi_room)?,
            None => None,
        };
        let record: Value = record.and_then(|r| serde_json::from_slice(&r).ok()).unwrap_or_default();
        Ok(record["opener"].as_str().map_or_else(|| self.settings.bot(), str::to_owned))
    }

    /// Registers the ghost and brings it into the portal (the portal's opener invites, the ghost
    /// joins).
    pub(super) async fn enter(&self, room: &str, ghost: &str) -> Result<(), BridgeError> {
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
