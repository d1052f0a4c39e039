//! What this provider sends other providers, durably: a request is queued in the batch that
//! records why it is sent, and delivered from the store — one request in flight per provider, in
//! order, the same bytes again after a failure (with the queue's backoff) until the peer answers
//! 2xx, and resumed after a restart. The peer's endpoint comes from its directory at delivery
//! time, never from a path written here. A 4xx answer is final: the peer will never take those
//! bytes, and the entry is dropped with an error in the log and the queue's `dropped` count —
//! except 409, a follower's gap, which is never skipped: the follower is sent what it missed
//! from the room's log (`hub::backfill`, from the epoch its answer names), then the refused
//! request again; until that succeeds it is tried again, and the destination's failures and
//! oldest entry show it.

use std::sync::Arc;
use std::time::Duration;

use crate::hub::Resubmit;
use crate::mimi::protocol::{SubmitMessageResponse, UpdateOutcome, UpdateRoomResponse, Wire as _};
use crate::queue::{Deliver, Queue, QueueOptions, Retryable};
use crate::store::{Batch, QueueEntry, QueueId, QueueKey, Store, StoreError};

use super::peers::Peers;

/// The queue of requests to other providers; the destination is the provider's domain.
pub type Outbox = Queue<OutboxDelivery>;

/// At most this many messages, and bytes, in one `notify` body (the peers' body limit is 4 MiB).
const MAX_NOTIFY_MESSAGES: usize = 64;
const MAX_NOTIFY_BODY: usize = 1 << 20;

/// Which of a provider's next outbox entries go as one request with the first: when it is a
/// `notify`, the next `notify` entries of the same room, past other rooms' entries (the draft
/// lets a `notify` body carry several `FanoutMessage`s and the follower takes them in order;
/// order matters within a room only), within [`MAX_NOTIFY_MESSAGES`] and [`MAX_NOTIFY_BODY`],
/// up to any other request for that room; any other entry alone.
pub fn notify_group(entries: &[QueueEntry]) -> Vec<usize> {
    let Some(first) = entries.first().and_then(|entry| Outgoing::decode(&entry.payload)) else { return vec![0] };
    if first.endpoint != "notify" {
        return vec![0];
    }
    let (mut picked, mut size) = (vec![0], first.body.len());
    for (index, entry) in entries.iter().enumerate().skip(1) {
        let Some(next) = Outgoing::decode(&entry.payload).filter(|next| next.variables == first.variables) else {
            continue;
        };
        size += next.body.len();
        if next.endpoint != "notify" || size > MAX_NOTIFY_BODY || picked.len() == MAX_NOTIFY_MESSAGES {
            break;
        }
        picked.push(index);
    }
    picked
}

/// The counter naming outbox entries (`metaname_value`).
const NEXT_SEQ: &str = "provider_next_seq";

/// One request: the directory's endpoint name, the values of its URL template's variables, and
/// the body (a TLS-encoded MIMI body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The endpoint, as the directory names it (`updateConsent`, `notify`, …).
    pub endpoint: String,
    /// `{name}` → value in the endpoint's URL template.
    pub variables: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// The stored form: JSON with the body in hex.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    endpoint: String,
    variables: Vec<(String, String)>,
    body: String,
}

impl Outgoing {
    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let stored = Stored {
            endpoint: self.endpoint.clone(),
            variables: self.variables.clone(),
            body: hex::encode(&self.body),
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads the stored form.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let stored: Stored = serde_json::from_slice(bytes).ok()?;
        Some(Self { endpoint: stored.endpoint, variables: stored.variables, body: hex::decode(stored.body).ok()? })
    }
}

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The peer (or the way to it) failed; the same bytes go again later.
    #[error("{0}")]
    Retry(String),
    /// The peer asked to be left alone for a while.
    #[error("{reason} (retry after {after:?})")]
    Later {
        /// What it said.
        reason: String,
        /// How long it asked for.
        after: Duration,
    },
    /// The peer will never take these bytes, or they are not a request.
    #[error("{0}")]
    Final(String),
    /// A follower missed messages of a room: its record is at this epoch.
    #[error("{reason}")]
    Gap {
        /// What it said.
        reason: String,
        /// Its record's epoch.
        epoch: u64,
    },
}

impl Retryable for OutboxError {
    fn is_retryable(&self) -> bool {
        !matches!(self, Self::Final(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Later { after, .. } => Some(*after),
            _ => None,
        }
    }
}

/// Delivers outbox entries through the peers' directories.
#[derive(Debug)]
pub struct OutboxDelivery {
    peers: Arc<Peers>,
    /// Whose clients re-encrypt a message a room's hub found too old.
    hub: Arc<crate::hub::Hub>,
}

impl OutboxDelivery {
    /// The peers requests go to (also for requests answered at once, like claims).
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// Posts a `submitMessage` or `update` made again for the hub's epoch.
    async fn resent(&self, url: &str, endpoint: &str, new_body: Vec<u8>) -> Result<Batch, OutboxError> {
        match read_answer(endpoint, &self.post(url, new_body).await?) {
            Answer::Done => Ok(Batch::new()),
            Answer::Refused(why) => Err(OutboxError::Final(format!("{url}: {why}"))),
            _ => Err(OutboxError::Retry(format!("{url}: made again for the hub's epoch but not accepted yet"))),
        }
    }

    /// Where `outgoing` goes at `dest`, from its directory.
    async fn url(&self, dest: &str, outgoing: &Outgoing) -> Result<String, OutboxError> {
        let directory = self.peers.directory(dest).await.map_err(|e| OutboxError::Retry(e.to_string()))?;
        let variables: Vec<(&str, &str)> = outgoing.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        directory
            .url(&outgoing.endpoint, &variables)
            .map_err(|e| OutboxError::Retry(format!("{dest}'s directory: {e}")))
    }

    /// Posts `body` (for `outgoing`); a `notify` refused for a gap is sent again once the
    /// follower has what it missed.
    async fn post_healing(
        &self,
        dest: &str,
        outgoing: &Outgoing,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, OutboxError> {
        match self.post(url, body.clone()).await {
            Err(OutboxError::Gap { reason, epoch }) if outgoing.endpoint == "notify" => {
                tracing::warn!(provider = dest, url, epoch, reason, "a follower missed messages: healing from the log");
                let room = room_of(outgoing).ok_or_else(|| OutboxError::Final(format!("{url}: names no room")))?;
                self.heal(dest, url, &room, epoch).await?;
                self.post(url, body).await
            }
            other => other,
        }
    }

    /// Sends `dest` what this hub owed it in `room` since `epoch`, page by page.
    async fn heal(&self, dest: &str, url: &str, room: &str, epoch: u64) -> Result<(), OutboxError> {
        let mut at = crate::hub::Backfill::from_epoch(epoch);
        loop {
            let (hub, room, dest_owned) = (Arc::clone(&self.hub), room.to_owned(), dest.to_owned());
            let (page, after) = tokio::task::spawn_blocking(move || {
                let page = hub.backfill(&room, &dest_owned, &mut at, MAX_NOTIFY_MESSAGES, MAX_NOTIFY_BODY);
                (page, at)
            })
            .await
            .map_err(|_| OutboxError::Retry("worker stopped".into()))?;
            let page = page.map_err(|e| OutboxError::Retry(format!("{url}: reading the log to heal a gap: {e}")))?;
            if page.is_empty() {
                return Ok(());
            }
            at = after;
            self.peers.client().metrics().healed(dest, page.len());
            self.post(url, crate::mimi::protocol::FanoutMessage::encode_all(&page)).await?;
        }
    }

    /// Posts `body`; the answer's body once 2xx.
    async fn post(&self, url: &str, body: Vec<u8>) -> Result<Vec<u8>, OutboxError> {
        let answer = self.peers.client().post(url, body).await.map_err(|e| OutboxError::Retry(e.to_string()))?;
        let status = answer.status;
        let said =
            || format!("{url}: {status} {}", String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]));
        match status.as_u16() {
            200..=299 => Ok(answer.body.to_vec()),
            429 => Err(OutboxError::Later { reason: said(), after: Duration::from_secs(30) }),
            // A follower that found a gap: never skipped, healed or tried again.
            409 => {
                let epoch =
                    serde_json::from_slice::<serde_json::Value>(&answer.body).ok().and_then(|v| v["epoch"].as_u64());
                Err(epoch
                    .map_or_else(|| OutboxError::Retry(said()), |epoch| OutboxError::Gap { reason: said(), epoch }))
            }
            400..=499 => Err(OutboxError::Final(said())),
            _ => Err(OutboxError::Retry(said())),
        }
    }
}

impl Deliver for OutboxDelivery {
    type Error = OutboxError;

    async fn deliver(&self, dest: &str, entry: &QueueEntry) -> Result<Batch, OutboxError> {
        let outgoing = Outgoing::decode(&entry.payload)
            .ok_or_else(|| OutboxError::Final(format!("outbox entry {} is not a request", entry.seq)))?;
        let url = self.url(dest, &outgoing).await?;
        let body = outgoing.body.clone();
        let answer = self.post_healing(dest, &outgoing, &url, body.clone()).await?;
        let epoch = match read_answer(&outgoing.endpoint, &answer) {
            Answer::Done => return Ok(Batch::new()),
            Answer::Stale(epoch) => epoch,
            Answer::Refused(why) => return Err(OutboxError::Final(format!("{url}: {why}"))),
            Answer::Unreadable(why) => return Err(OutboxError::Retry(format!("{url}: {why}"))),
        };
        let room = room_of(&outgoing)
            .ok_or_else(|| OutboxError::Final(format!("outbox entry {} names no room", entry.seq)))?;
        // Too old: the same plaintext encrypted anew (or the same leave proposed, the same add
        // committed, anew) once the record reached the hub's epoch, the queued body replaced in
        // the same batch, unless the hub took it meanwhile.
        let key = QueueKey { queue: QueueId::Provider, dest: dest.to_owned(), seq: entry.seq };
        let (hub, queued_ms, endpoint) = (Arc::clone(&self.hub), entry.queued_ms, outgoing.endpoint.clone());
        let update = endpoint == "update";
        let again = tokio::task::spawn_blocking(move || {
            let replace = |new_body: &[u8]| {
                let mut batch = Batch::new();
                let replaced = Outgoing { body: new_body.to_vec(), ..outgoing };
                batch.queue_push(&key, queued_ms, &replaced.encode());
                batch
            };
            if update {
                hub.repropose(&room, &body, epoch, replace)
            } else {
                hub.resubmit(&room, &body, epoch, replace)
            }
        })
        .await
        .map_err(|_| OutboxError::Retry("worker stopped".into()))?
        .map_err(|e| OutboxError::Retry(e.to_string()))?;
        match again {
            Resubmit::Accepted => Ok(Batch::new()),
            Resubmit::Behind => Err(OutboxError::Retry(format!("{url}: stale epoch; following the hub to {epoch}"))),
            Resubmit::Body(new_body) => {
                self.peers.client().metrics().reencrypted(dest);
                self.resent(&url, &endpoint, new_body).await
            }
        }
    }

    fn together(&self, entries: &[QueueEntry]) -> Vec<usize> {
        notify_group(entries)
    }

    async fn deliver_together(&self, dest: &str, entries: &[QueueEntry]) -> Result<Batch, OutboxError> {
        let mut requests = entries.iter().map(|entry| Outgoing::decode(&entry.payload));
        let Some(Some(first)) = requests.next() else {
            return Err(OutboxError::Final("outbox entries that are not requests".into()));
        };
        let mut body = first.body.clone();
        for request in requests {
            body.extend(request.ok_or_else(|| OutboxError::Final("an outbox entry is not a request".into()))?.body);
        }
        let url = self.url(dest, &first).await?;
        self.post_healing(dest, &first, &url, body).await.map(|_| Batch::new())
    }

    async fn undeliverable(&self, dest: &str, entry: &QueueEntry, error: &OutboxError) {
        tracing::error!(provider = dest, seq = entry.seq, %error, "a request to another provider was refused for good");
    }
}

/// Opens the outbox over `store`, delivering through `peers` (and re-encrypting with `hub`'s
/// clients); call `resume` once serving.
pub fn open(
    store: Arc<Store>,
    peers: Arc<Peers>,
    hub: Arc<crate::hub::Hub>,
    health: Arc<crate::http::health::Health>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<Outbox>, StoreError> {
    open_delivering(store, OutboxDelivery { peers, hub }, health, shutdown)
}

/// The outbox's queue (its ID, counter and options) delivering with `deliver`: [`open`]'s, or a
/// bench's delivery that needs no network.
pub fn open_delivering<D: Deliver>(
    store: Arc<Store>,
    deliver: D,
    health: Arc<crate::http::health::Health>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<Queue<D>>, StoreError> {
    let options =
        QueueOptions { counter: NEXT_SEQ, policy: crate::queue::RetryPolicy::default(), max_in_flight: 8, health };
    Queue::open(QueueId::Provider, store, deliver, options, shutdown)
}

/// The room (its log's room ID) a request is about.
fn room_of(outgoing: &Outgoing) -> Option<String> {
    let uri = outgoing.variables.iter().find(|(name, _)| name == "roomId").map(|(_, v)| v)?;
    crate::translate::uri::room_id_of(uri).ok()
}

/// What a hub's answer to a follower's request means for the queued entry.
enum Answer {
    /// Taken (or nothing to read: other endpoints' 2xx is enough).
    Done,
    /// For an older epoch than the hub's (this one).
    Stale(u64),
    /// Refused for good.
    Refused(String),
    /// Not an answer of the draft's: asked again later.
    Unreadable(String),
}

fn read_answer(endpoint: &str, body: &[u8]) -> Answer {
    match endpoint {
        "submitMessage" => match SubmitMessageResponse::decode(body) {
            Ok(SubmitMessageResponse::Accepted { .. }) => Answer::Done,
            Ok(SubmitMessageResponse::EpochTooOld { current_epoch }) => Answer::Stale(current_epoch),
            Ok(SubmitMessageResponse::NotAllowed) => Answer::Refused("notAllowed".into()),
            Err(error) => Answer::Unreadable(error.to_string()),
        },
        "update" => match UpdateRoomResponse::decode(body) {
            Ok(UpdateRoomResponse { outcome, error_description: why }) => match outcome {
                UpdateOutcome::Success(_) => Answer::Done,
                UpdateOutcome::WrongEpoch(epoch) => Answer::Stale(epoch),
                UpdateOutcome::NotAllowed => Answer::Refused(format!("notAllowed: {why}")),
                UpdateOutcome::InvalidProposal(_) => Answer::Refused(format!("invalidProposal: {why}")),
            },
            Err(error) => Answer::Unreadable(error.to_string()),
        },
        _ => Answer::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_NOTIFY_MESSAGES, Outgoing, QueueEntry, notify_group};

    fn entry(seq: u64, endpoint: &str, room: &str) -> QueueEntry {
        let variables = vec![("roomId".to_owned(), room.to_owned())];
        let payload = Outgoing { endpoint: endpoint.into(), variables, body: vec![0; 100] }.encode();
        QueueEntry { seq, queued_ms: 0, payload }
    }

    #[test]
    fn a_notify_takes_its_rooms_next_notifies_past_other_rooms_up_to_another_request_for_it() {
        let entries = [
            entry(1, "notify", "r"),
            entry(2, "notify", "s"),
            entry(3, "notify", "r"),
            entry(4, "requestConsent", "t"),
            entry(5, "notify", "r"),
            entry(6, "submitMessage", "r"),
            entry(7, "notify", "r"),
        ];
        assert_eq!(notify_group(&entries), [0, 2, 4]);
        assert_eq!(notify_group(&entries[1..]), [0], "s alone");
        assert_eq!(notify_group(&entries[3..]), [0], "other requests alone");
        let many: Vec<_> = (0..100).map(|n| entry(n, "notify", "r")).collect();
        assert_eq!(notify_group(&many), (0..MAX_NOTIFY_MESSAGES).collect::<Vec<_>>());
    }
}
