//! The type of `database`: where the data directory is, how writes reach the disk, and how much
//! memory RocksDB may take (one budget, because a daemon's memory must not follow its write
//! volume; `crate::store` explains how it is spent).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `database`: the RocksDB data directory.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// Path of the data directory (created on first start; an existing directory must be empty
    /// or a mimi-bridge data directory). Required.
    pub path: PathBuf,
    /// Whether each write is synced to disk before it is acknowledged. Default `sync`.
    #[serde(default)]
    pub sync: DatabaseSync,
    /// MiB of memory for RocksDB's memtables and block cache together: up to half for memtables
    /// (recent writes), the rest for cached blocks (data, index and filter). At least 16.
    /// Default 128.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u32,
}

fn default_memory_mb() -> u32 {
    crate::store::DEFAULT_MEMORY_MB
}

impl DatabaseSection {
    /// How the daemon opens the store.
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            sync: self.sync.into(),
            memory_mb: self.memory_mb,
            ..crate::store::StoreOptions::default()
        }
    }
}

/// `database.sync`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseSync {
    /// fsync before acknowledging: nothing acknowledged is ever lost.
    #[default]
    Sync,
    /// Leave syncing to the OS: a power cut can lose acknowledged messages (tests only).
    NoSync,
}

impl From<DatabaseSync> for crate::store::SyncPolicy {
    fn from(sync: DatabaseSync) -> Self {
        match sync {
            DatabaseSync::Sync => Self::Sync,
            DatabaseSync::NoSync => Self::NoSync,
        }
    }
}
