//! What this provider sends other providers, durably: a request is queued in the batch that
//! records why it is sent, and delivered from the store — one request in flight per provider, in
//! order, the same bytes again after a failure (with the queue's backoff) until the peer answers
//! 2xx, and resumed after a restart. The peer's endpoint comes from its directory at delivery
//! time, never from a path written here. A 4xx answer is final: the peer will never take those
//! bytes, and the entry is dropped with an error in the log and the queue's `dropped` count.

use std::sync::Arc;
use std::time::Duration;

use crate::queue::{Deliver, Queue, QueueOptions, Retryable};
use crate::store::{Batch, QueueEntry, QueueId, Store, StoreError};

use super::peers::Peers;

/// The queue of requests to other providers; the destination is the provider's domain.
pub type Outbox = Queue<OutboxDelivery>;

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
}

impl OutboxDelivery {
    /// The peers requests go to (also for requests answered at once, like claims).
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }
}

impl Deliver for OutboxDelivery {
    type Error = OutboxError;

    async fn deliver(&self, dest: &str, entry: &QueueEntry) -> Result<Batch, OutboxError> {
        let outgoing = Outgoing::decode(&entry.payload)
            .ok_or_else(|| OutboxError::Final(format!("outbox entry {} is not a request", entry.seq)))?;
        let directory = self.peers.directory(dest).await.map_err(|e| OutboxError::Retry(e.to_string()))?;
        let variables: Vec<(&str, &str)> = outgoing.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let url = directory
            .url(&outgoing.endpoint, &variables)
            .map_err(|e| OutboxError::Retry(format!("{dest}'s directory: {e}")))?;
        let answer =
            self.peers.client().post(&url, outgoing.body).await.map_err(|e| OutboxError::Retry(e.to_string()))?;
        let status = answer.status;
        let said =
            || format!("{url}: {status} {}", String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)]));
        match status.as_u16() {
            200..=299 => Ok(Batch::new()),
            429 => Err(OutboxError::Later { reason: said(), after: Duration::from_secs(30) }),
            400..=499 => Err(OutboxError::Final(said())),
            _ => Err(OutboxError::Retry(said())),
        }
    }

    async fn undeliverable(&self, dest: &str, entry: &QueueEntry, error: &OutboxError) {
        tracing::error!(provider = dest, seq = entry.seq, %error, "a request to another provider was refused for good");
    }
}

/// Opens the outbox over `store`, delivering through `peers`; call `resume` once serving.
pub fn open(
    store: Arc<Store>,
    peers: Arc<Peers>,
    health: Arc<crate::http::health::Health>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<Outbox>, StoreError> {
    let options =
        QueueOptions { counter: NEXT_SEQ, policy: crate::queue::RetryPolicy::default(), max_in_flight: 8, health };
    Queue::open(QueueId::Provider, store, OutboxDelivery { peers }, options, shutdown)
}
