//! How RocksDB is tuned: one memory budget for the whole store, and column-family options by
//! workload.
//!
//! **Why one budget.** RocksDB sizes everything per column family by default (64 MiB memtables,
//! two of them, an 8 MiB block cache each), so with ~40 families a busy bridge's memory followed
//! its write volume, and index and filter blocks lived outside any cache. Here one LRU block
//! cache of `database.memory_mb` holds data blocks *and* index and filter blocks, and one write
//! buffer manager charges every memtable to that same cache, capped at half of it: memtables
//! take up to half the budget (flushed, largest first, past it), blocks the rest. The process's
//! RocksDB memory is the budget plus what iterators pin, whatever was written.
//!
//! **Why bounded WALs.** A WAL file can only be deleted once every family with data in it has
//! flushed. A family written rarely (the portal records, the management rooms) kept its small
//! memtable unflushed for hours and with it every WAL since, so the WALs grew to hundreds of
//! MiB on disk and a restart replayed them all (11.5 s after 200,000 events). `max_total_wal_size`
//! at the memtable budget makes RocksDB flush the families holding the oldest WAL once the WALs
//! exceed it: disk and replay time stay bounded by the budget.
//!
//! **Why per-workload options.** The families are of four kinds:
//! - *Logs* (keys are positions written in order, read in ranges: the room logs, state deltas,
//!   media chunks, abuse reports): 16 KiB blocks (canonical JSON compresses better in larger
//!   blocks, and the index shrinks fourfold), LZ4 down to the last level, no Bloom filter (every
//!   point read is of a position that exists, so a filter would only cost memory), larger
//!   memtables and files since they take most of the bytes.
//! - *Lookups by ID* (event IDs, transaction IDs, Matrix event IDs, MLS keys: random keys, read
//!   one at a time, often absent — a redelivered transaction, a new Matrix event): a full Bloom
//!   filter (10 bits per key, ~1% false positives) so an absent key costs no block read, a hash
//!   index inside data blocks and a memtable Bloom filter — what RocksDB's
//!   `optimize_for_point_lookup` sets, minus its private block cache, which would escape the
//!   budget.
//! - *Queues* (intake, delivery queues, sent-ciphertext records: written, then deleted within
//!   seconds, read from the front): files compact after two L0 files instead of four, and a file
//!   whose entries are mostly tombstones is marked for compaction at once, so reading the front
//!   never steps over a long run of deletes.
//! - *Small* (schema version, room tails, keys, portal records, consent…): 4 KiB blocks and a
//!   Bloom filter, small memtables.
//!
//! Compaction keeps up through `level_compaction_dynamic_level_bytes` (level sizes follow the
//! data, so space amplification stays near 1.1×) and up to four background jobs.

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, DataBlockIndexType, Options, WriteBufferManager};

use super::{Cf, SyncPolicy};

/// `database.memory_mb` when it is not configured: 128 MiB, up to 64 of them memtables.
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// The smallest budget accepted: below it, memtables flush so often that writes stall.
pub const MIN_MEMORY_MB: u32 = 16;

/// How a data directory is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Whether each write batch is synced before it is acknowledged.
    pub sync: SyncPolicy,
    /// MiB for RocksDB's memtables and block cache together (`database.memory_mb`).
    pub memory_mb: u32,
    /// The uniform options of earlier builds (64 MiB memtable cap, a separate 32 MiB block
    /// cache, index blocks outside it, WALs unbounded): only for benchmarks to compare against.
    #[doc(hidden)]
    pub baseline: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { sync: SyncPolicy::Sync, memory_mb: DEFAULT_MEMORY_MB, baseline: false }
    }
}

impl From<SyncPolicy> for StoreOptions {
    fn from(sync: SyncPolicy) -> Self {
        Self { sync, ..Self::default() }
    }
}

/// What a column family is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    Log,
    Lookup,
    Queue,
    Small,
}

impl Workload {
    /// The workload of a family by its name; families of a newer build are opened as small.
    pub(super) fn of(name: &str) -> Self {
        Cf::ALL.iter().find(|cf| cf.name() == name).map_or(Workload::Small, |cf| Self::of_cf(*cf))
    }

    fn of_cf(cf: Cf) -> Self {
        match cf {
            Cf::RoomseqPdu | Cf::RoomseqStatedelta | Cf::MediaidchunkBlob | Cf::MediaidBlob | Cf::AbuseseqReport => {
                Workload::Log
            }
            Cf::EventidRoomseq
            | Cf::LpduidEventid
            | Cf::MlskeyValue
            | Cf::CryptokeyValue
            | Cf::EventidPlaintext
            | Cf::CommitidWelcome
            | Cf::CommitidRemoved
            | Cf::TxnidSeen
            | Cf::MatrixidIntakeseq
            | Cf::MatrixidEventid
            | Cf::EventidMatrixid
            | Cf::MatrixidMapped
            | Cf::MimiidMatrixid
            | Cf::RoomidShortroomid => Workload::Lookup,
            Cf::IntakeseqEvent | Cf::QueuedestseqEntry | Cf::CiphertexthashPlaintext | Cf::HsqueueRequest => {
                Workload::Queue
            }
            Cf::MetanameValue
            | Cf::ShortroomidRoomid
            | Cf::RoomTail
            | Cf::ServerkeyidVerifykey
            | Cf::ImportkeyidVerifykey
            | Cf::ShortroomidCommitseq
            | Cf::UserdevicerefKeypackage
            | Cf::UserdeviceDeviceobject
            | Cf::MatrixroomMimiroom
            | Cf::MimiroomPortal
            | Cf::MatrixroomManagement
            | Cf::ShortroomidPortalcursor
            | Cf::MatrixroomPortalintent
            | Cf::ConsentscopeRecord
            | Cf::KeypackagerefClaim
            | Cf::UserdevicerefRetiredkeypackage => Workload::Small,
        }
    }
}

/// The pieces every family shares: the database options, and the cache all blocks (and, charged
/// to it, all memtables) live in.
pub(super) struct Tuning {
    pub(super) db: Options,
    cache: Cache,
    memtables: usize,
    baseline: bool,
}

const MIB: usize = 1 << 20;

impl Tuning {
    /// The database-wide options for `options`.
    pub(super) fn new(options: StoreOptions) -> Self {
        let mut db = Options::default();
        db.create_if_missing(true);
        db.create_missing_column_families(true);
        db.set_compression_type(DBCompressionType::Lz4);
        if options.baseline {
            db.set_max_background_jobs(2);
            db.set_db_write_buffer_size(64 * MIB);
            return Self { db, cache: Cache::new_lru_cache(32 * MIB), memtables: 64 * MIB, baseline: true };
        }
        let total = usize::try_from(options.memory_mb.max(MIN_MEMORY_MB)).unwrap_or(usize::MAX / MIB) * MIB;
        let memtables = total / 2;
        let cache = Cache::new_lru_cache(total);
        let manager = WriteBufferManager::new_write_buffer_manager_with_cache(memtables, false, cache.clone());
        db.set_write_buffer_manager(&manager);
        db.set_max_total_wal_size(u64::try_from(memtables).unwrap_or(u64::MAX));
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        db.set_max_background_jobs(i32::try_from(cores.clamp(2, 4)).unwrap_or(2));
        db.set_bytes_per_sync(MIB as u64);
        db.set_keep_log_file_num(3);
        db.set_max_log_file_size(8 * MIB);
        Self { db, cache, memtables, baseline: false }
    }

    /// The options of the family `name`.
    pub(super) fn family(&self, name: &str) -> Options {
        let mut opts = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        opts.set_compression_type(DBCompressionType::Lz4);
        if self.baseline {
            opts.set_block_based_table_factory(&table);
            return opts;
        }
        // Index and filter blocks count against the budget too; L0's stay pinned, as every read
        // consults them.
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        opts.set_level_compaction_dynamic_level_bytes(true);
        opts.set_bottommost_compression_type(DBCompressionType::Lz4);
        let workload = Workload::of(name);
        let (block, memtable) = match workload {
            Workload::Log => (16 << 10, self.memtables / 4),
            Workload::Lookup | Workload::Queue => (4 << 10, self.memtables / 8),
            Workload::Small => (4 << 10, self.memtables / 16),
        };
        table.set_block_size(block);
        opts.set_write_buffer_size(memtable.max(MIB));
        match workload {
            Workload::Log => opts.set_target_file_size_base(64 * MIB as u64),
            Workload::Lookup => {
                table.set_bloom_filter(10.0, false);
                table.set_whole_key_filtering(true);
                table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
                table.set_data_block_hash_ratio(0.75);
                opts.set_memtable_prefix_bloom_ratio(0.02);
                opts.set_memtable_whole_key_filtering(true);
            }
            Workload::Queue => {
                opts.set_level_zero_file_num_compaction_trigger(2);
                opts.add_compact_on_deletion_collector_factory(128, 64, 0.5);
            }
            Workload::Small => table.set_bloom_filter(10.0, false),
        }
        opts.set_block_based_table_factory(&table);
        opts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_a_workload_and_the_logs_are_the_position_keyed_ones() {
        assert_eq!(Workload::of("roomseq_pdu"), Workload::Log);
        assert_eq!(Workload::of("eventid_roomseq"), Workload::Lookup);
        assert_eq!(Workload::of("txnid_seen"), Workload::Lookup);
        assert_eq!(Workload::of("intakeseq_event"), Workload::Queue);
        assert_eq!(Workload::of("a_family_of_a_newer_build"), Workload::Small);
    }

    /// The `[section]` of the OPTIONS file RocksDB wrote at the last open.
    fn options_section(dir: &std::path::Path, header: &str) -> String {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("OPTIONS-"))
            .collect();
        files.sort();
        let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
        let start = text.find(header).unwrap_or_else(|| panic!("no {header}"));
        let rest = &text[start + header.len()..];
        rest[..rest.find("\n[").unwrap_or(rest.len())].to_owned()
    }

    #[test]
    fn the_budget_and_the_workloads_reach_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions { memory_mb: 64, ..StoreOptions::default() };
        drop(super::super::Store::open_with(dir.path(), options).unwrap());
        let section = |header: &str| options_section(dir.path(), header);
        // WALs bounded by the memtable half of the budget (the default is unbounded: 0).
        assert!(section("[DBOptions]").contains("max_total_wal_size=33554432"), "{}", section("[DBOptions]"));
        let lookup = section("[TableOptions/BlockBasedTable \"txnid_seen\"]");
        assert!(lookup.contains("filter_policy=bloomfilter"), "{lookup}");
        assert!(lookup.contains("data_block_index_type=kDataBlockBinaryAndHash"), "{lookup}");
        assert!(lookup.contains("cache_index_and_filter_blocks=true"), "{lookup}");
        assert!(section("[CFOptions \"txnid_seen\"]").contains("write_buffer_size=4194304"));
        let log = section("[TableOptions/BlockBasedTable \"roomseq_pdu\"]");
        assert!(log.contains("block_size=16384") && log.contains("filter_policy=nullptr"), "{log}");
        let log_cf = section("[CFOptions \"roomseq_pdu\"]");
        assert!(log_cf.contains("level_compaction_dynamic_level_bytes=true"), "{log_cf}");
        assert!(log_cf.contains("write_buffer_size=8388608"), "{log_cf}");
        let queue = section("[CFOptions \"intakeseq_event\"]");
        assert!(queue.contains("level0_file_num_compaction_trigger=2"), "{queue}");
        assert!(queue.contains("CompactOnDeletionCollector"), "{queue}");
    }
}
