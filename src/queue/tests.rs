//! Queues over a real store, delivered by a scripted [`Deliver`] that holds deliveries until let
//! through and fails the entries whose payload asks for it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Deliver, Queue, QueueOptions, RetryPolicy, Retryable};
use crate::http::metrics::{DestinationStats, Metrics, QueueStats};
use crate::store::{Batch, QueueEntry, QueueId, Store};

#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("try again")]
    Again,
    #[error("never")]
    Never,
}

impl Retryable for Failed {
    fn is_retryable(&self) -> bool {
        matches!(self, Self::Again)
    }
}

/// Payload `again` fails once (retryably), `never` fails for good, anything else is delivered.
#[derive(Debug)]
struct Scripted {
    open: tokio::sync::watch::Sender<bool>,
    started: AtomicU64,
    failed_once: Mutex<BTreeSet<u64>>,
}

impl Scripted {
    fn new(open: bool) -> Self {
        Self { open: tokio::sync::watch::channel(open).0, started: AtomicU64::new(0), failed_once: Mutex::default() }
    }
}

impl Deliver for Scripted {
    type Error = Failed;

    async fn deliver(&self, _dest: &str, entry: &QueueEntry) -> Result<Batch, Failed> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        match entry.payload.as_slice() {
            b"never" => Err(Failed::Never),
            b"again" if self.failed_once.lock().unwrap().insert(entry.seq) => Err(Failed::Again),
            _ => Ok(Batch::new()),
        }
    }

    async fn undeliverable(&self, _dest: &str, _entry: &QueueEntry, _error: &Failed) {}
}

fn open(
    id: QueueId,
    store: &Arc<Store>,
    deliver: Scripted,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> Arc<Queue<Scripted>> {
    let options = QueueOptions {
        counter: if id == QueueId::Provider { "test_provider_seq" } else { "test_homeserver_seq" },
        policy: RetryPolicy { initial_delay: Duration::from_millis(1), ..RetryPolicy::default() },
        max_in_flight: 4,
        health: Arc::default(),
    };
    Queue::open(id, Arc::clone(store), deliver, options, shutdown.clone()).unwrap()
}

fn entry(dest: &str, payload: &str) -> (String, Vec<u8>) {
    (dest.to_owned(), payload.as_bytes().to_vec())
}

fn of(queue: &Queue<Scripted>, dest: &str) -> DestinationStats {
    queue.per_destination().into_iter().find(|d| d.dest == dest).unwrap()
}

async fn drained(queue: &Queue<Scripted>) {
    tokio::time::timeout(Duration::from_secs(10), queue.drained()).await.unwrap();
}

/// A provider queue after a restart found two entries for a.example, took three more (one for
/// a.example, two for b.example) and delivered them all, with one failure per destination.
async fn provider_queue(dir: &std::path::Path, shutdown: &tokio::sync::watch::Receiver<bool>) -> Arc<Queue<Scripted>> {
    let store = Arc::new(Store::open(dir).unwrap());
    let before = open(QueueId::Provider, &store, Scripted::new(true), shutdown);
    let (ticket, _) = before.enqueue(Batch::new(), vec![entry("a.example", "ok"), entry("a.example", "again")]);
    ticket.wait().await.unwrap();
    drop((before, store));

    let store = Arc::new(Store::open(dir).unwrap());
    let queue = open(QueueId::Provider, &store, Scripted::new(false), shutdown);
    queue.resume().await.unwrap();
    assert_eq!(of(&queue, "a.example").depth, 2, "counted from the store on resume");
    let entries = vec![entry("b.example", "never"), entry("b.example", "ok"), entry("a.example", "ok")];
    let (ticket, keys) = queue.enqueue(Batch::new(), entries);
    ticket.wait().await.unwrap();
    queue.wake(&keys);
    let (a, b) = (of(&queue, "a.example"), of(&queue, "b.example"));
    assert_eq!((a.depth, b.depth, a.failures, b.failures), (3, 2, 0, 0));

    let started = async {
        while queue.deliverer().started.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), started).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (a, b) = (of(&queue, "a.example"), of(&queue, "b.example"));
    assert!(a.oldest >= Duration::from_millis(30) && b.oldest >= Duration::from_millis(30), "{a:?} {b:?}");

    queue.deliverer().open.send_replace(true);
    drained(&queue).await;
    queue
}

#[tokio::test]
async fn per_destination_metrics_follow_restart_enqueue_delivery_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let queue = provider_queue(dir.path(), &shutdown).await;
    let (a, b) = (of(&queue, "a.example"), of(&queue, "b.example"));
    assert_eq!((a.depth, a.failures, a.oldest), (0, 1, Duration::ZERO), "retried once, then delivered");
    assert_eq!((b.depth, b.failures, b.oldest), (0, 1, Duration::ZERO), "one dropped for good");
    assert_eq!(queue.per_destination().len(), 2);
    assert_eq!(queue.counts(), [0, 4, 2, 1]);
}

#[tokio::test]
async fn per_destination_metrics_render_for_the_provider_queue_only() {
    let dir = tempfile::tempdir().unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let provider = provider_queue(&dir.path().join("provider"), &shutdown).await;
    let store = Arc::new(Store::open(&dir.path().join("homeserver")).unwrap());
    let homeserver = open(QueueId::Homeserver, &store, Scripted::new(true), &shutdown);
    let (ticket, keys) = homeserver.enqueue(Batch::new(), vec![entry("!room:hs.example", "never")]);
    ticket.wait().await.unwrap();
    homeserver.wake(&keys);
    drained(&homeserver).await;
    assert!(homeserver.per_destination().is_empty());

    let metrics = Metrics::default();
    metrics.add_queue(homeserver);
    metrics.add_queue(provider);
    let text = metrics.render();
    for line in [
        "mimi_bridge_queue_destination_depth{queue=\"provider\",dest=\"a.example\"} 0",
        "mimi_bridge_queue_destination_depth{queue=\"provider\",dest=\"b.example\"} 0",
        "mimi_bridge_queue_destination_oldest_seconds{queue=\"provider\",dest=\"a.example\"} 0",
        "mimi_bridge_queue_destination_failures_total{queue=\"provider\",dest=\"a.example\"} 1",
        "mimi_bridge_queue_destination_failures_total{queue=\"provider\",dest=\"b.example\"} 1",
        "mimi_bridge_queue_failures_total{queue=\"homeserver\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
    }
    for (family, kind) in [
        ("queue_destination_depth", "gauge"),
        ("queue_destination_oldest_seconds", "gauge"),
        ("queue_destination_failures_total", "counter"),
    ] {
        let (help, kind) = (format!("# HELP mimi_bridge_{family} "), format!("# TYPE mimi_bridge_{family} {kind}"));
        assert_eq!(text.lines().filter(|l| l.starts_with(&help)).count(), 1, "{text}");
        assert_eq!(text.lines().filter(|l| *l == kind).count(), 1, "{text}");
    }
    let per_room = |l: &&str| l.starts_with("mimi_bridge_queue_destination_") && l.contains("queue=\"homeserver\"");
    assert_eq!(text.lines().filter(per_room).count(), 0, "{text}");
}
