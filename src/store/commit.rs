//! Group commit: one thread drains every batch queued while the previous sync ran and writes
//! them as one synced RocksDB write. A synced write costs the same for one event or a thousand,
//! so durable throughput grows with concurrency instead of being capped at the disk's sync rate.
//! Batches are written in submission order, so a room's appends land in log order.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use std::sync::{Condvar, Mutex};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::Notify;

use super::advance::Announcer;
use super::{Batch, Poison, StoreError, SyncPolicy};

/// Most batches merged into one write.
const MAX_GROUP: usize = 4096;
/// Most payload bytes merged into one write.
const MAX_GROUP_BYTES: usize = 16 << 20;

struct Pending {
    batch: Batch,
    done: Option<Arc<Completion>>,
}

impl Pending {
    fn finish(mut self, result: Result<(), StoreError>) {
        if let Some(done) = self.done.take() {
            done.complete(result);
        }
    }
}

/// The outcome of one batch, awaitable from async code and from plain threads alike (the hub is
/// called from both, including `spawn_blocking` threads, where tokio's blocking receive panics).
#[derive(Debug, Default)]
struct Completion {
    result: Mutex<Option<Result<(), StoreError>>>,
    ready: Condvar,
    notify: Notify,
}

impl Completion {
    fn complete(&self, result: Result<(), StoreError>) {
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(result);
        }
        self.ready.notify_all();
        // Stores a permit if nobody waits yet, so a waiter arriving later still wakes.
        self.notify.notify_one();
    }

    fn take(&self) -> Option<Result<(), StoreError>> {
        self.result.lock().ok().and_then(|mut slot| slot.take())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A batch dropped without an outcome (the thread ended) must not leave a waiter hanging.
        if let Some(done) = self.done.take() {
            done.complete(Err(StoreError::Closed));
        }
    }
}

pub(super) struct Committer {
    queue: Option<mpsc::Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
    pub(super) stats: Arc<Counters>,
}

/// How well group commit is grouping: batches acknowledged per RocksDB write.
#[derive(Debug, Default)]
pub(super) struct Counters {
    writes: std::sync::atomic::AtomicU64,
    batches: std::sync::atomic::AtomicU64,
}

/// A snapshot of the group-commit counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// RocksDB writes (each one sync under the default policy).
    pub writes: u64,
    /// Batches those writes carried.
    pub batches: u64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> CommitStats {
        use std::sync::atomic::Ordering::Relaxed;
        CommitStats { writes: self.writes.load(Relaxed), batches: self.batches.load(Relaxed) }
    }
}

impl Committer {
    pub(super) fn start(
        db: Arc<DB>,
        poison: Arc<Poison>,
        sync: SyncPolicy,
        path: PathBuf,
        announcer: Arc<Announcer>,
    ) -> Self {
        let (queue, receiver) = mpsc::channel::<Pending>();
        let stats = Arc::new(Counters::default());
        let counters = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || run(&db, &poison, sync, &path, &receiver, &counters, &announcer))
            .ok();
        Self { queue: Some(queue), thread, stats }
    }

    pub(super) fn submit(&self, batch: Batch) -> Ticket {
        let done = Arc::new(Completion::default());
        match &self.queue {
            Some(queue) if queue.send(Pending { batch, done: Some(Arc::clone(&done)) }).is_ok() => {
                Ticket(Inner::Waiting(done))
            }
            _ => Ticket::failed(StoreError::Closed),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    db: &DB,
    poison: &Poison,
    sync: SyncPolicy,
    path: &std::path::Path,
    receiver: &mpsc::Receiver<Pending>,
    counters: &Counters,
    announcer: &Announcer,
) {
    let mut options = WriteOptions::default();
    options.set_sync(sync == SyncPolicy::Sync);
    let full_disk = FullDisk::from_env();
    while let Ok(first) = receiver.recv() {
        let mut bytes = first.batch.size();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match receiver.try_recv() {
                Ok(next) => {
                    bytes += next.batch.size();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let result =
            poison.check().and_then(|()| full_disk.check(path)).and_then(|()| write_group(db, &group, &options, path));
        counters.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counters.batches.fetch_add(u64::try_from(group.len()).unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        match &result {
            Ok(()) => announcer.announce(group.iter().flat_map(|p| p.batch.appends.iter().copied())),
            Err(StoreError::Poisoned(_)) => {}
            Err(other) => poison.set(&other.to_string()),
        }
        for pending in group {
            pending.finish(result.clone());
        }
    }
}

/// A test hook for the one fault tests cannot provoke without mounting a filesystem: while the
/// file named by `MIMI_BRIDGE_FAULT_FULL_DISK` exists, every write fails as a full disk's does.
struct FullDisk(Option<PathBuf>);

impl FullDisk {
    fn from_env() -> Self {
        Self(std::env::var_os("MIMI_BRIDGE_FAULT_FULL_DISK").map(PathBuf::from))
    }

    fn check(&self, path: &std::path::Path) -> Result<(), StoreError> {
        match &self.0 {
            Some(flag) if flag.exists() => Err(StoreError::Rocks {
                path: path.display().to_string(),
                message: "IO error: No space left on device (injected by MIMI_BRIDGE_FAULT_FULL_DISK)".into(),
            }),
            _ => Ok(()),
        }
    }
}

fn write_group(db: &DB, group: &[Pending], options: &WriteOptions, path: &std::path::Path) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    for pending in group {
        for (cf, key, value) in &pending.batch.ops {
            let handle = db
                .cf_handle(cf.name())
                .ok_or_else(|| StoreError::Corrupt(format!("column family {} missing", cf.name())))?;
            match value {
                Some(value) => batch.put_cf(handle, key, value),
                None => batch.delete_cf(handle, key),
            }
        }
    }
    db.write_opt(batch, options)
        .map_err(|e| StoreError::Rocks { path: path.display().to_string(), message: e.into_string() })
}

/// A submitted batch; resolves once the batch is durable (or failed).
#[must_use = "a write is acknowledged only once its ticket resolves"]
#[derive(Debug)]
pub struct Ticket(Inner);

#[derive(Debug)]
enum Inner {
    Waiting(Arc<Completion>),
    Failed(StoreError),
}

impl Ticket {
    pub(super) fn failed(error: StoreError) -> Self {
        Ticket(Inner::Failed(error))
    }

    /// Waits for durability.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            Inner::Waiting(done) => loop {
                let notified = done.notify.notified();
                if let Some(result) = done.take() {
                    return result;
                }
                notified.await;
            },
            Inner::Failed(e) => Err(e),
        }
    }

    /// Waits for durability, blocking the thread (from plain or `spawn_blocking` threads; an
    /// async task should use `wait`).
    pub fn blocking_wait(self) -> Result<(), StoreError> {
        match self.0 {
            Inner::Waiting(done) => {
                let Ok(mut slot) = done.result.lock() else {
                    return Err(StoreError::Closed);
                };
                loop {
                    if let Some(result) = slot.take() {
                        return result;
                    }
                    slot = match done.ready.wait(slot) {
                        Ok(slot) => slot,
                        Err(_) => return Err(StoreError::Closed),
                    };
                }
            }
            Inner::Failed(e) => Err(e),
        }
    }
}
