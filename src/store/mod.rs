//! The only module that touches RocksDB.
//!
//! Everything durable goes through here: the room logs, their indexes, and the keys of the
//! servers whose signatures the logs carry. Column families are named `<key>_<value>` and listed
//! once, in [`Cf`]; every key layout is in [`keys`] and documented in `schemas/storage.md`.
//! Every change that touches more than one key is one [`Batch`], written atomically; writes go
//! through one group-commit thread so that many appends share one sync. A failed write poisons
//! the store: from then on nothing is acknowledged, because the in-memory room heads above may
//! be ahead of the disk.
#![deny(missing_docs)]

mod advance;
mod appservice;
pub mod batch;
mod cf;
mod commit;
mod crypto;
pub mod keys;
mod migrate;
mod options;
mod provider;
mod queue;
mod read;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

pub use advance::Advances;
pub use appservice::MEDIA_CHUNK;
pub use batch::Batch;
pub use cf::Cf;
pub use commit::{CommitStats, Ticket};
pub use keys::{QueueId, QueueKey, RoomSeq, ShortRoomId, Tail};
pub use options::{DEFAULT_MEMORY_MB, MIN_MEMORY_MB, StoreOptions};
pub use queue::QueueEntry;
pub use read::{RetiredKeyPackage, StateDelta};

/// The schema this build writes. Bump it (and add a fixture) whenever a layout changes.
///
/// Version 2 added the MLS and appservice families after `mlskey_value`; a version-1 store has
/// neither, so opening it for writing creates them empty and records version 2. Read-only opens
/// of a version-1 store read those families as empty. Version 3 moved the homeserver requests
/// into the per-destination queue family and the portals' cursors into typed keys (see
/// `migrate`). Version 4 added the provider's families; version 5 retired the KeyPackages
/// published with LM-triple credentials.
pub const SCHEMA_VERSION: u32 = 7;

/// Storage failures.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("RocksDB at {path}: {message}")]
    Rocks {
        /// The data directory.
        path: String,
        /// RocksDB's message.
        message: String,
    },
    /// The store was written by a newer mimi-bridge.
    #[error(
        "{path} holds storage schema version {found}, but this mimi-bridge supports up to {supported}: upgrade mimi-bridge (the data is untouched)"
    )]
    NewerSchema {
        /// The data directory.
        path: String,
        /// Version found on disk.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A stored value does not have the layout this build expects.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// An earlier write failed; the store accepts no more writes until reopened.
    #[error("the store refused writes after an earlier write failure: {0}")]
    Poisoned(String),
    /// The store is closing.
    #[error("the store is shut down")]
    Closed,
    /// A write to a store opened read-only.
    #[error("{0} was opened read-only")]
    ReadOnly(String),
    /// The directory holds files, but no RocksDB store: it is not ours to write into.
    #[error(
        "{path} is not a mimi-bridge data directory: it is not empty and has no RocksDB CURRENT file (found {found}); \
         point database.path at an empty or new directory"
    )]
    Foreign {
        /// The directory.
        path: String,
        /// Some of the entries found there.
        found: String,
    },
}

impl StoreError {
    pub(crate) fn corrupt(what: &str) -> Self {
        StoreError::Corrupt(what.to_owned())
    }
}

/// Whether each write batch is synced to disk before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// fsync the WAL before acknowledging (default: nothing acknowledged is ever lost).
    #[default]
    Sync,
    /// Leave syncing to the OS (benchmarks and throwaway stores only: a power cut loses data).
    NoSync,
}

/// An open data directory.
pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    poison: Arc<Poison>,
    /// `None` for a read-only store.
    committer: Option<commit::Committer>,
    next_short: AtomicU64,
    announcer: Arc<advance::Announcer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Poison {
    poisoned: AtomicBool,
    reason: std::sync::Mutex<String>,
}

impl Poison {
    fn set(&self, reason: &str) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_empty()
        {
            reason.clone_into(&mut r);
        }
        self.poisoned.store(true, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::SeqCst) {
            let reason = self.reason.lock().map(|r| r.clone()).unwrap_or_default();
            return Err(StoreError::Poisoned(reason));
        }
        Ok(())
    }
}

fn rocks(path: &Path) -> impl Fn(rocksdb::Error) -> StoreError + '_ {
    move |e| StoreError::Rocks { path: path.display().to_string(), message: e.into_string() }
}

impl Store {
    /// Opens (creating if needed) a data directory with the default options: synced, the
    /// default memory budget.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens an existing data directory read-only (the log tools): nothing is created or
    /// written, and it works beside a running hub.
    pub fn open_existing(path: &Path) -> Result<Self, StoreError> {
        if !path.join("CURRENT").exists() {
            return Err(StoreError::Rocks {
                path: path.display().to_string(),
                message: "no mimi-bridge data directory here (no RocksDB CURRENT file)".into(),
            });
        }
        let opts = Options::default();
        let names = DB::list_cf(&opts, path).map_err(rocks(path))?;
        let db = Arc::new(DB::open_cf_for_read_only(&opts, path, names, false).map_err(rocks(path))?);
        let store = Self {
            db,
            path: path.to_owned(),
            poison: Arc::new(Poison::default()),
            committer: None,
            next_short: AtomicU64::new(0),
            announcer: Arc::default(),
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Opens (creating if needed) a data directory; a [`SyncPolicy`] alone means the default
    /// memory budget.
    pub fn open_with(path: &Path, options: impl Into<StoreOptions>) -> Result<Self, StoreError> {
        let options = options.into();
        // An existing directory is checked read-only first, so a newer schema or a foreign
        // RocksDB directory is refused before anything in it is created or written.
        if path.join("CURRENT").exists() {
            drop(Self::open_existing(path)?);
        } else {
            refuse_foreign(path)?;
        }
        let tuning = options::Tuning::new(options);
        // Column families a newer build added are opened too, so that the schema check below,
        // not RocksDB, reports the version mismatch.
        let mut names: Vec<String> = Cf::ALL.iter().map(|cf| cf.name().to_owned()).collect();
        if let Ok(existing) = DB::list_cf(&tuning.db, path) {
            for name in existing {
                if !names.contains(&name) && name != "default" {
                    names.push(name);
                }
            }
        }
        let descriptors = names.iter().map(|n| ColumnFamilyDescriptor::new(n, tuning.family(n)));
        let db = Arc::new(DB::open_cf_descriptors(&tuning.db, path, descriptors).map_err(rocks(path))?);
        let poison = Arc::new(Poison::default());
        let announcer = Arc::new(advance::Announcer::default());
        let committer = Some(commit::Committer::start(
            Arc::clone(&db),
            Arc::clone(&poison),
            options.sync,
            path.to_owned(),
            Arc::clone(&announcer),
        ));
        let store = Self { db, path: path.to_owned(), poison, committer, next_short: AtomicU64::new(0), announcer };
        store.check_schema()?;
        let next = store.last_short_room()?.map_or(1, |s| s.0 + 1);
        store.next_short.store(next, Ordering::SeqCst);
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let key = b"schema_version";
        let Some(bytes) = self.get(Cf::MetanameValue, key)? else {
            if self.committer.is_none() {
                return Err(StoreError::Corrupt(format!(
                    "{} is a RocksDB directory without a mimi-bridge schema version",
                    self.path.display()
                )));
            }
            let mut batch = Batch::new();
            batch.put(Cf::MetanameValue, key.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec());
            return self.submit(batch).blocking_wait();
        };
        let array =
            <[u8; 4]>::try_from(bytes.as_slice()).map_err(|_| StoreError::corrupt("schema version is not 4 bytes"))?;
        let found = u32::from_be_bytes(array);
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.display().to_string(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION && self.committer.is_some() {
            // New column families were created (empty) by the open; what moved, moves now, in the
            // batch that records the new version.
            let mut batch = self.migrate(found)?;
            batch.put(Cf::MetanameValue, key.to_vec(), SCHEMA_VERSION.to_be_bytes().to_vec());
            return self.submit(batch).blocking_wait();
        }
        Ok(())
    }

    /// A subscription to "room R is durable up to position N", announced after each synced write
    /// that appended to R's log.
    pub fn advances(&self) -> Advances {
        self.announcer.subscribe()
    }

    /// Group-commit counters since the store was opened.
    pub fn commit_stats(&self) -> CommitStats {
        self.committer.as_ref().map(|c| c.stats.snapshot()).unwrap_or_default()
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reserves a fresh short room ID. Callers serialize room creation themselves.
    pub fn allocate_short_room(&self) -> ShortRoomId {
        ShortRoomId(self.next_short.fetch_add(1, Ordering::SeqCst))
    }

    /// Why the store refuses writes, once a write failed (a full disk, an I/O error): nothing
    /// is written after a failure, since what was built on it may be lost. Only a restart
    /// (reopening the store, which replays its log) clears it.
    pub fn poisoned(&self) -> Option<String> {
        self.poison.check().err().map(|e| e.to_string())
    }

    /// Fails the store as a failed write would (for tests of what depends on it).
    #[cfg(test)]
    pub(crate) fn fail_for_test(&self, reason: &str) {
        self.poison.set(reason);
    }

    /// Queues a batch for the next group commit. The ticket resolves once it is durable.
    pub fn submit(&self, batch: Batch) -> Ticket {
        if let Err(e) = self.poison.check() {
            return Ticket::failed(e);
        }
        match &self.committer {
            Some(committer) => committer.submit(batch),
            None => Ticket::failed(StoreError::ReadOnly(self.path.display().to_string())),
        }
    }

    /// Writes a batch and waits until it is durable (blocking; not for async contexts).
    pub fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.submit(batch).blocking_wait()
    }

    fn cf(&self, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(cf.name()).ok_or_else(|| StoreError::Corrupt(format!("column family {} missing", cf.name())))
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(rocks(&self.path))
    }

    /// `get` on a family an older schema lacks: absent (a store opened read-only at an older
    /// version) reads as empty.
    fn get_added(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.db.cf_handle(cf.name()) {
            Some(handle) => self.db.get_cf(handle, key).map_err(rocks(&self.path)),
            None => Ok(None),
        }
    }
}

/// Refuses a directory that exists and holds entries that are not RocksDB's: writing RocksDB
/// files among someone else's would mix the two and could not be undone cleanly. RocksDB's own
/// files without `CURRENT` are a first open that was interrupted, and are opened again.
fn refuse_foreign(path: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(path) else {
        // Missing (RocksDB creates it) or unreadable (RocksDB reports it).
        return Ok(());
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !rocksdb_file(name))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let more = names.len().saturating_sub(3);
    names.truncate(3);
    let mut found = names.join(", ");
    if more > 0 {
        found = format!("{found} and {more} more");
    }
    Err(StoreError::Foreign { path: path.display().to_string(), found })
}

/// Whether `name` is a file RocksDB writes before `CURRENT` exists.
fn rocksdb_file(name: &str) -> bool {
    let numbered = |suffix: &str| {
        name.strip_suffix(suffix).is_some_and(|stem| !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()))
    };
    ["LOCK", "IDENTITY", "LOG"].contains(&name)
        || ["LOG.old.", "MANIFEST-", "OPTIONS-"].iter().any(|prefix| name.starts_with(prefix))
        || [".log", ".sst", ".dbtmp"].iter().any(|suffix| numbered(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_with_an_actionable_message() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = Batch::new();
        batch.put(Cf::MetanameValue, b"schema_version".to_vec(), (SCHEMA_VERSION + 1).to_be_bytes().to_vec());
        store.write(batch).unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, supported: SCHEMA_VERSION, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("upgrade mimi-bridge"), "{err}");
    }

    #[test]
    fn opening_for_reading_never_creates_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nothing-here");
        assert!(Store::open_existing(&missing).unwrap_err().to_string().contains("no mimi-bridge data directory"));
        assert!(!missing.exists());
    }

    #[test]
    fn group_commit_counts_writes_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.commit_stats();
        let tickets: Vec<_> = (0..50u8)
            .map(|i| {
                let mut batch = Batch::new();
                batch.put(Cf::MetanameValue, vec![b'k', i], vec![i]);
                store.submit(batch)
            })
            .collect();
        for t in tickets {
            t.blocking_wait().unwrap();
        }
        let after = store.commit_stats();
        assert_eq!(after.batches - before.batches, 50);
        assert!(after.writes - before.writes <= 50);
    }
}
