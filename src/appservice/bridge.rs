//! Matrix → MIMI: works the intake queue, one task per Matrix room (a room's events in order,
//! rooms in parallel).
//!
//! Each event's effect and the deletion of its intake entry are one batch: the appended
//! `m.room.encrypted` with its Matrix ⇄ log ⇄ MIMI mappings, or just the deletion for an event
//! that is deliberately not bridged (counted by reason). A user's message the MIMI room refuses
//! for good (too large once encrypted) is not dropped silently: its entry's deletion queues a
//! notice to the sender (`refusal`). Events sent by the bridge's own
//! namespace (the bot, ghosts) are never bridged again, so nothing echoes between bridges.
//! Failures talking to the homeserver are retried; the entry stays queued until it has an
//! effect, so a crash at any point leaves it to be worked again after the restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;

use super::delivery::HomeserverQueue;
use super::homeserver::HomeserverClient;
use super::ids::{StoreIds, record};
use super::intake::{Backlog, IntakeReader, Queued};
use super::service::Settings;
use crate::http::health::Health;
use crate::http::metrics::Metrics;
use crate::hub::{Hub, HubError};
use crate::queue::{Backoff, RetryPolicy, Retryable};
use crate::store::{Batch, Store, StoreError};
use crate::translate::{MappedEvent, OutboundContext, Outcome, Salt, encode_with_id, to_mimi};

/// Why an event could not be bridged (yet).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The hub refused or failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The homeserver failed (retried).
    #[error("homeserver: {0}")]
    Homeserver(#[from] super::homeserver::HomeserverError),
    /// The event is malformed.
    #[error("malformed event: {0}")]
    Malformed(&'static str),
    /// A task the work ran on failed (panicked).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The MIMI room will never take the user's message: the sender is told (see `refusal`).
    #[error(transparent)]
    Refused(#[from] super::refusal::Refusal),
    /// A user of another MIMI provider could not be brought in.
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
    /// An encrypted event's room key has not reached the bridge's device yet.
    #[error("the room key has not arrived yet")]
    KeyMissing,
    /// A ghost's Matrix device could not encrypt or send.
    #[error("a ghost's device: {0}")]
    Device(#[from] crate::e2ee::E2eeError),
}

/// Hub work running at once on blocking threads: enough to keep both cores and the group commit
/// busy, few enough that a flood over many rooms does not start a thread (and its allocator
/// caches) per room.
const HUB_WORKERS: usize = 8;
static HUB_WORK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(HUB_WORKERS);

/// Runs hub work on a blocking thread: it may load a cold room, run MLS, or wait on synced
/// writes, none of which belongs on a runtime thread. At most [`HUB_WORKERS`] at once.
pub(super) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BridgeError> + Send + 'static,
) -> Result<T, BridgeError> {
    let _turn = HUB_WORK.acquire().await.map_err(|_| BridgeError::Internal("hub work closed"))?;
    tokio::task::spawn_blocking(work).await.map_err(|_| BridgeError::Internal("a blocking task panicked"))?
}

impl BridgeError {
    /// Worth trying again later (the homeserver or the store may recover).
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Self::Homeserver(e) => e.is_retryable(),
            Self::Device(e) => e.is_retryable(),
            Self::Hub(HubError::Store(_) | HubError::CommitPending { .. }) | Self::Store(_) | Self::KeyMissing => true,
            // The other provider may be back later; its refusals are final.
            Self::Remote(super::remote::RemoteError::Peer(e)) => {
                matches!(
                    e,
                    crate::provider::peers::PeersError::Transport(_)
                        | crate::provider::peers::PeersError::Directory { .. }
                ) || matches!(e, crate::provider::peers::PeersError::Status { status, .. } if *status >= 500 || *status == 429)
            }
            _ => false,
        }
    }
}

impl Retryable for BridgeError {
    fn is_retryable(&self) -> bool {
        self.is_transient()
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Homeserver(e) => e.retry_after(),
            Self::Device(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// How long a room's worker waits for more work before it stops.
const IDLE_WORKER: Duration = Duration::from_secs(30);

/// A room's worker: where its events go, and its task (awaited by a successor).
struct RoomWorker {
    sender: mpsc::Sender<Queued>,
    task: tokio::task::JoinHandle<()>,
}

/// The Matrix → MIMI side (see the module documentation).
#[derive(Debug)]
pub struct Bridge {
    /// The log writer; the logs are read through it.
    pub hub: Arc<Hub>,
    /// The appservice's own durable state (intake, portals, maps, the homeserver queue, hosted
    /// media), in the bridge's store.
    pub state: Arc<Store>,
    /// Configuration shared with the endpoints.
    pub settings: Settings,
    /// The homeserver.
    pub homeserver: Arc<HomeserverClient>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Where workers that stop for good say so (readiness turns 503).
    pub health: Arc<Health>,
    /// Wakes the portal follower (a portal recorded, a retry put off).
    pub advances: crate::store::Advances,
    /// Requests to other providers, when the bridge is a MIMI provider (`mimi.tls`).
    pub outbox: Option<Arc<crate::provider::outbox::Outbox>>,
    /// The bridge's Matrix device, for encrypted portals (`encryption.enabled`).
    pub e2ee: Option<Arc<crate::e2ee::Device>>,
    /// The ghosts' Matrix devices, for what arrives from MIMI into encrypted portals.
    pub ghosts: Option<super::encrypted::Ghosts>,
}

fn str_of<'a>(event: &'a Value, name: &'static str) -> Result<&'a str, BridgeError> {
    event.get(name).and_then(Value::as_str).ok_or(BridgeError::Malformed(name))
}

impl Bridge {
    pub(super) fn store(&self) -> &Arc<Store> {
        &self.state
    }

    /// The MIMI user standing for a homeserver user: the same localpart on the bridge's server.
    pub fn mimi_user(&self, matrix_user: &str) -> Option<String> {
        let (localpart, domain) = matrix_user.strip_prefix('@')?.split_once(':')?;
        (domain == self.settings.domain).then(|| format!("@{localpart}:{}", self.hub.server_name()))
    }

    /// Works the intake queue until the process ends: reads it a page at a time and hands each
    /// entry to its room's worker. A room's worker exists while the room has work and stops
    /// after [`IDLE_WORKER`] without any. Its channel is bounded by the backlog, which bounds
    /// all rooms' entries together: a slow or retrying room never fills it, so it never holds
    /// up the reader and the other rooms, while the backlog holds the homeserver back.
    /// Refusal notices go out through `queue`.
    pub async fn run(self: Arc<Self>, mut reader: IntakeReader, queue: Arc<HomeserverQueue>) {
        let backlog = reader.backlog();
        let mut rooms: BTreeMap<String, RoomWorker> = BTreeMap::new();
        loop {
            let page = match reader.next_page(256).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::error!(%error, "reading the intake queue failed; bridging stopped");
                    self.health.failed("intake");
                    return;
                }
            };
            for queued in page {
                let room = queued.event.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let mut queued = Some(queued);
                while let Some(item) = queued.take() {
                    let worker =
                        rooms.entry(room.clone()).or_insert_with(|| self.spawn_room_worker(&backlog, &queue, None));
                    if let Err(mpsc::error::SendError(item)) = worker.sender.send(item).await {
                        // The worker stopped for idleness just now, and may still be finishing
                        // what it had: its successor starts once it has, keeping the room's order.
                        let stopping = rooms.remove(&room).map(|w| w.task);
                        rooms.insert(room.clone(), self.spawn_room_worker(&backlog, &queue, stopping));
                        queued = Some(item);
                    }
                }
            }
            if rooms.len() > 1024 {
                rooms.retain(|_, worker| !worker.task.is_finished());
            }
        }
    }

    /// Starts a room's worker; it begins once `predecessor` (the room's previous worker) ended.
    fn spawn_room_worker(
        self: &Arc<Self>,
        backlog: &Arc<Backlog>,
        queue: &Arc<HomeserverQueue>,
        predecessor: Option<tokio::task::JoinHandle<()>>,
    ) -> RoomWorker {
        let (sender, mut receiver) = mpsc::channel::<Queued>(backlog.capacity());
        let (bridge, backlog, queue) = (Arc::clone(self), Arc::clone(backlog), Arc::clone(queue));
        let task = tokio::spawn(async move {
            if let Some(predecessor) = predecessor {
                let _ = predecessor.await;
            }
            loop {
                let queued = match tokio::time::timeout(IDLE_WORKER, receiver.recv()).await {
                    Ok(Some(queued)) => queued,
                    Ok(None) => return,
                    Err(_) => {
                        // Idle: refuse further sends, then finish what was already handed over.
                        receiver.close();
                        while let Some(queued) = receiver.recv().await {
                            bridge.work(queued, &backlog, &queue).await;
                        }
                        return;
                    }
                };
                bridge.work(queued, &backlog, &queue).await;
            }
        });
        RoomWorker { sender, task }
    }

    /// Bridges one queued event, retrying transient failures with the queue's backoff; frees
    /// its place in the backlog once its entry is gone. A message the MIMI room refuses is not
    /// dropped silently: its sender is told through `queue`.
    async fn work(&self, queued: Queued, backlog: &Backlog, queue: &Arc<HomeserverQueue>) {
        let started = Instant::now();
        let mut backoff = Backoff::new(RetryPolicy::default());
        loop {
            match self.process(&queued).await {
                Ok(()) => break,
                Err(BridgeError::KeyMissing) => {
                    // Held, in the room's order, until keys arrive (see `encrypted`).
                    self.wait_for_keys(Duration::from_secs(5)).await;
                }
                Err(error) if error.is_transient() => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.failed(&error);
                    tracing::warn!(seq = queued.seq, %error, delay_ms = delay.as_millis(), "bridging an event failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(BridgeError::Refused(refusal)) => {
                    if let Err(error) = self.refuse(&queued, &refusal, queue).await {
                        tracing::error!(seq = queued.seq, %error, "queueing a refusal notice failed");
                        self.health.failed("intake");
                        return;
                    }
                    break;
                }
                Err(error) => {
                    tracing::warn!(seq = queued.seq, %error, "event not bridged");
                    self.metrics.dropped("bridge_error");
                    if self.finish(queued.seq, Batch::new()).await.is_err() {
                        self.health.failed("intake");
                        return;
                    }
                    break;
                }
            }
        }
        backlog.release(1);
        Metrics::decrement(&self.metrics.intake_depth);
        self.metrics.append_latency(started.elapsed());
    }

    /// Deletes an intake entry (with `batch`), durably.
    pub(super) async fn finish(&self, seq: u64, mut batch: Batch) -> Result<(), BridgeError> {
        batch.intake(seq, None);
        Ok(self.store().submit(batch).wait().await?)
    }

    pub(super) async fn drop_event(&self, seq: u64, reason: &'static str) -> Result<(), BridgeError> {
        self.metrics.dropped(reason);
        self.finish(seq, Batch::new()).await
    }

    async fn process(&self, queued: &Queued) -> Result<(), BridgeError> {
        let event = &queued.event;
        let (sender, room, event_type) = (str_of(event, "sender")?, str_of(event, "room_id")?, str_of(event, "type")?);
        if self.settings.is_ours(sender) {
            return self.drop_event(queued.seq, "own_namespace").await;
        }
        if event_type == "m.room.member" {
            let target = str_of(event, "state_key")?;
            let membership = event.pointer("/content/membership").and_then(Value::as_str).unwrap_or_default();
            let direct = event.pointer("/content/is_direct").and_then(Value::as_bool) == Some(true);
            if membership == "invite" && direct && target == self.settings.bot() {
                return self.open_management(queued.seq, room, sender).await;
            }
            if membership == "invite" && self.settings.is_ours(target) {
                return self.open_portal(queued.seq, room, sender, target).await;
            }
        }
        if matches!(event_type, "m.room.message" | "m.room.encrypted") && self.store().is_management_room(room)? {
            let decrypted;
            let event = if event_type == "m.room.encrypted" {
                decrypted = self.decrypted(queued, room).await?;
                &decrypted.event
            } else {
                event
            };
            if event["type"] == "m.room.message" {
                let body = event.pointer("/content/body").and_then(Value::as_str).unwrap_or_default();
                return self.command(queued.seq, room, sender, body).await;
            }
            return self.drop_event(queued.seq, "not_a_command").await;
        }
        let Some(mimi_room) = self.store().portal_of(room)? else {
            return self.drop_event(queued.seq, "not_a_portal").await;
        };
        if event_type == "m.room.member" {
            return self.membership_change(queued, &mimi_room).await;
        }
        if event_type == "m.room.encryption"
            && let (Some(ghosts), Some(content)) = (&self.ghosts, event.get("content"))
        {
            ghosts.remember(room, Some(content));
            // A portal opened before the bridge had a device: its owner joins now (a key members
            // shared before the join never reaches it, and what it encrypted is reported once
            // the hold gives up on it).
            let opener = self.opener_of(room)?;
            self.join_device(room, (opener != self.settings.bot()).then_some(opener.as_str())).await?;
        }
        let decrypted;
        let queued = if event_type == "m.room.encrypted" {
            decrypted = self.decrypted(queued, room).await?;
            &decrypted
        } else {
            queued
        };
        let mimi_sender = self.mimi_user(sender).ok_or(BridgeError::Malformed("sender"))?;
        self.ensure_member(&mimi_room, &mimi_sender).await.map_err(super::refusal::refusing)?;
        self.translate_and_append(queued, &mimi_room, &mimi_sender).await
    }

    async fn translate_and_append(
        &self,
        queued: &Queued,
        mimi_room: &str,
        mimi_sender: &str,
    ) -> Result<(), BridgeError> {
        let matrix_event_id = str_of(&queued.event, "event_id")?;
        let mut event = queued.event.clone();
        event["sender"] = Value::String(mimi_sender.to_owned());
        let ctx = OutboundContext {
            room_uri: crate::translate::uri::room_uri_of(mimi_room).map_err(|_| BridgeError::Malformed("room ID"))?,
            salt: Salt::Random,
            matrix_origin: self.settings.more_content_extensions.then(|| self.settings.domain.clone()),
        };
        let ids = StoreIds(Arc::clone(self.store()));
        let outcomes = match to_mimi(&event, &ctx, &ids) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::info!(%error, matrix_event_id, "event cannot be translated");
                return self.drop_event(queued.seq, "untranslatable").await;
            }
        };
        let ts = queued.event.get("origin_server_ts").and_then(Value::as_i64).unwrap_or(0);
        let mut appended = false;
        for outcome in outcomes {
            let (content, hosted) = match outcome {
                Outcome::Message(content) => (*content, None),
                Outcome::Dropped(reason) => {
                    self.metrics.dropped(reason.counter_name());
                    continue;
                }
                Outcome::Media(pending) => match self.host_media(*pending).await? {
                    Some((content, hosted)) => (content, Some(hosted)),
                    None => continue,
                },
            };
            let Ok((bytes, message_id)) = encode_with_id(&content) else {
                self.metrics.dropped("untranslatable");
                continue;
            };
            let mapped = MappedEvent::from_content(message_id, mimi_sender, &content);
            let seq = queued.seq;
            let (hub, room, sender, matrix_id) =
                (Arc::clone(&self.hub), mimi_room.to_owned(), mimi_sender.to_owned(), matrix_event_id.to_owned());
            // A cold room loads its state and MLS group, and encrypting is CPU work: off the
            // runtime threads. Only the wait for durability is async.
            let pending = off_runtime(move || {
                let effects = |event_id: Option<&str>| {
                    let mut batch = Batch::new();
                    batch.intake(seq, None);
                    if let Some(event_id) = event_id {
                        batch.map_event(&matrix_id, event_id);
                    }
                    record(&mut batch, &matrix_id, &mapped);
                    if let Some((media_id, ciphertext)) = &hosted {
                        batch.media(media_id, ciphertext);
                    }
                    batch
                };
                // A room hubbed elsewhere: to its hub, from the outbox; it comes back in the record.
                if hub.is_record(&room)? {
                    hub.submit_to_hub(&room, &sender, &bytes, effects(None))?;
                    return Ok(None);
                }
                Ok(Some(hub.send_encrypted_with(&room, &sender, &bytes, ts, |event_id| effects(Some(event_id)))?))
            })
            .await
            .map_err(super::refusal::refusing)?;
            if let Some(pending) = pending {
                pending.durable().await?;
            }
            appended = true;
        }
        if !appended {
            self.finish(queued.seq, Batch::new()).await?;
        }
        Ok(())
    }

    /// Downloads a Matrix attachment from the homeserver's authenticated media API, encrypts it
    /// as MIMI requires (a fresh AES-128-GCM key per file) and returns the message pointing at
    /// the ciphertext this server will host, with that ciphertext to store beside the event.
    async fn host_media(
        &self,
        pending: crate::translate::PendingMedia,
    ) -> Result<Option<(crate::mimi::MimiContent, (String, Vec<u8>))>, BridgeError> {
        let (_, plaintext) = match self.homeserver.download_media(&pending.mxc_url, MAX_MEDIA_BYTES).await {
            Ok(downloaded) => downloaded,
            Err(error) if error.is_retryable() => return Err(error.into()),
            Err(error) => {
                tracing::info!(%error, mxc = pending.mxc_url, "attachment not downloadable");
                self.metrics.dropped("media_unavailable");
                return Ok(None);
            }
        };
        let plaintext = match pending.source.get("file") {
            None => plaintext,
            Some(file) => match crate::e2ee::attachments::decrypt(&plaintext, file) {
                Ok(plaintext) => plaintext,
                Err(error) => {
                    tracing::info!(%error, mxc = pending.mxc_url, "encrypted attachment not decryptable");
                    self.metrics.dropped("media_unavailable");
                    return Ok(None);
                }
            },
        };
        let (Ok(blob), Some(media_id)) =
            (crate::translate::media::encrypt_for_mimi(&plaintext), crate::event::keys::random_letters(24))
        else {
            self.metrics.dropped("media_unavailable");
            return Ok(None);
        };
        let url = crate::federation::media::url(self.hub.server_name(), &media_id);
        if let Ok(content) = pending.finish(&url, &blob) {
            Ok(Some((content, (media_id, blob.ciphertext))))
        } else {
            self.metrics.dropped("untranslatable");
            Ok(None)
        }
    }
}

/// Largest attachment the bridge carries (the homeserver's default upload limit).
pub const MAX_MEDIA_BYTES: u64 = 50 << 20;
