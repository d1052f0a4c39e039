//! The appservice's durable state: transactions taken in, the intake queue, the maps between
//! Matrix and log event IDs, and portals (the homeserver's requests are on a delivery queue,
//! `queue`).
//!
//! Queues are keyed by u64 big-endian sequence numbers, so iteration is arrival order; an entry
//! is deleted in the same batch as the effect it had, which makes processing exactly-once.

use rocksdb::IteratorMode;

use super::batch::Batch;
use super::{Cf, Store, StoreError, rocks};

/// Bytes per stored (and served) chunk of a hosted attachment.
pub const MEDIA_CHUNK: usize = 256 << 10;

/// `media ID ‖ 0x00 ‖ chunk number (u32 BE)`.
pub(super) fn media_chunk_key(media_id: &str, index: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(media_id.len() + 5);
    key.extend_from_slice(media_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(key).map(u64::from_be_bytes).map_err(|_| StoreError::corrupt("queue key is not 8 bytes"))
}

impl Batch {
    /// Sets a counter in `metaname_value` (sequence numbers that must never repeat, even after
    /// their queue drained: they name transactions).
    pub fn counter(&mut self, name: &str, value: u64) {
        self.put(Cf::MetanameValue, name.as_bytes().to_vec(), value.to_be_bytes().to_vec());
    }

    /// Records a homeserver transaction (its ID's exact bytes) as taken in.
    pub fn txn_seen(&mut self, txn_id: &[u8], ms: u64) {
        self.put(Cf::TxnidSeen, txn_id.to_vec(), ms.to_be_bytes().to_vec());
    }

    /// Queues (`Some`) or removes (`None`) a Matrix event on the intake queue.
    pub fn intake(&mut self, seq: u64, event_json: Option<&[u8]>) {
        self.ops.push((Cf::IntakeseqEvent, seq.to_be_bytes().to_vec(), event_json.map(<[u8]>::to_vec)));
    }

    /// Records that a Matrix event was taken in (under its intake sequence number).
    pub fn matrix_taken_in(&mut self, matrix_event_id: &str, seq: u64) {
        self.put(Cf::MatrixidIntakeseq, matrix_event_id.as_bytes().to_vec(), seq.to_be_bytes().to_vec());
    }

    /// Maps a Matrix event ID and a log event ID to each other.
    pub fn map_event(&mut self, matrix_event_id: &str, log_event_id: &str) {
        self.put(Cf::MatrixidEventid, matrix_event_id.as_bytes().to_vec(), log_event_id.as_bytes().to_vec());
        self.put(Cf::EventidMatrixid, log_event_id.as_bytes().to_vec(), matrix_event_id.as_bytes().to_vec());
    }

    /// Records (or updates) a portal: the Matrix room and the portal's JSON record.
    pub fn portal(&mut self, matrix_room: &str, mimi_room: &str, record_json: &[u8]) {
        self.put(Cf::MatrixroomMimiroom, matrix_room.as_bytes().to_vec(), mimi_room.as_bytes().to_vec());
        self.put(Cf::MimiroomPortal, mimi_room.as_bytes().to_vec(), record_json.to_vec());
    }

    /// Records a Matrix event's translation facts and its MIMI message ID.
    pub fn map_message(&mut self, matrix_event_id: &str, message_id: &[u8; 32], record_json: &[u8]) {
        self.put(Cf::MatrixidMapped, matrix_event_id.as_bytes().to_vec(), record_json.to_vec());
        self.put(Cf::MimiidMatrixid, message_id.to_vec(), matrix_event_id.as_bytes().to_vec());
    }

    /// Stores an encrypted attachment this server hosts, in chunks of [`MEDIA_CHUNK`] bytes.
    pub fn media(&mut self, media_id: &str, ciphertext: &[u8]) {
        for (index, chunk) in ciphertext.chunks(MEDIA_CHUNK).enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            self.put(Cf::MediaidchunkBlob, media_chunk_key(media_id, index), chunk.to_vec());
        }
        if ciphertext.is_empty() {
            self.put(Cf::MediaidchunkBlob, media_chunk_key(media_id, 0), Vec::new());
        }
    }

    /// Records (`Some`) or clears (`None`) the intent to open a portal for a Matrix room.
    pub fn portal_intent(&mut self, matrix_room: &str, intent_json: Option<&[u8]>) {
        self.ops.push((Cf::MatrixroomPortalintent, matrix_room.as_bytes().to_vec(), intent_json.map(<[u8]>::to_vec)));
    }

    /// Records a management room (a direct chat with the bot).
    pub fn management_room(&mut self, matrix_room: &str, record_json: &[u8]) {
        self.put(Cf::MatrixroomManagement, matrix_room.as_bytes().to_vec(), record_json.to_vec());
    }
}

impl Store {
    /// Whether a homeserver transaction (its ID's exact bytes) was already taken in.
    pub fn txn_seen(&self, txn_id: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get(Cf::TxnidSeen, txn_id)?.is_some())
    }

    /// The intake sequence number a Matrix event was taken in under, if it was.
    pub fn matrix_taken_in(&self, matrix_event_id: &str) -> Result<Option<u64>, StoreError> {
        self.get(Cf::MatrixidIntakeseq, matrix_event_id.as_bytes())?.map(|b| seq_of(&b)).transpose()
    }

    /// Up to `limit` intake entries from sequence number `from`, oldest first.
    pub fn intake_page(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(Cf::IntakeseqEvent)?, mode).take(limit) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            out.push((seq_of(&key)?, value.to_vec()));
        }
        Ok(out)
    }

    /// How many entries the intake queue holds (a scan: for startup gauges).
    pub fn intake_len(&self) -> Result<u64, StoreError> {
        let mut count = 0u64;
        for item in self.db.iterator_cf(self.cf(Cf::IntakeseqEvent)?, IteratorMode::Start) {
            item.map_err(rocks(&self.path))?;
            count += 1;
        }
        Ok(count)
    }

    /// A counter kept in `metaname_value` (0 if never set).
    pub fn counter(&self, name: &str) -> Result<u64, StoreError> {
        self.get(Cf::MetanameValue, name.as_bytes())?.map_or(Ok(0), |b| seq_of(&b))
    }

    /// The log event a Matrix event became.
    pub fn log_event_of(&self, matrix_event_id: &str) -> Result<Option<String>, StoreError> {
        self.text(Cf::MatrixidEventid, matrix_event_id.as_bytes())
    }

    /// The Matrix event a log event is.
    pub fn matrix_event_of(&self, log_event_id: &str) -> Result<Option<String>, StoreError> {
        self.text(Cf::EventidMatrixid, log_event_id.as_bytes())
    }

    /// A Matrix event's translation facts (JSON), if it was mapped.
    pub fn mapped(&self, matrix_event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::MatrixidMapped, matrix_event_id.as_bytes())
    }

    /// The Matrix event of a MIMI message.
    pub fn matrix_event_of_message(&self, message_id: &[u8; 32]) -> Result<Option<String>, StoreError> {
        self.text(Cf::MimiidMatrixid, message_id)
    }

    /// An encrypted attachment this server hosts, whole (for decrypting it; serving reads
    /// [`media_chunk`](Self::media_chunk)s).
    pub fn media(&self, media_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut whole: Option<Vec<u8>> = None;
        for index in 0.. {
            let Some(chunk) = self.media_chunk(media_id, index)? else { break };
            whole.get_or_insert_with(Vec::new).extend_from_slice(&chunk);
        }
        Ok(whole)
    }

    /// Chunk `index` (0-based) of a hosted attachment; `None` past its end or for an unknown ID.
    pub fn media_chunk(&self, media_id: &str, index: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_added(Cf::MediaidchunkBlob, &media_chunk_key(media_id, index))
    }

    /// Whether a Matrix room is a management room.
    pub fn is_management_room(&self, matrix_room: &str) -> Result<bool, StoreError> {
        Ok(self.get(Cf::MatrixroomManagement, matrix_room.as_bytes())?.is_some())
    }

    /// The MIMI room a Matrix room is a portal to.
    pub fn portal_of(&self, matrix_room: &str) -> Result<Option<String>, StoreError> {
        self.text(Cf::MatrixroomMimiroom, matrix_room.as_bytes())
    }

    /// Every portal: (MIMI room, record JSON).
    pub fn portals(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::MimiroomPortal)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let room = String::from_utf8(key.to_vec()).map_err(|_| StoreError::corrupt("room ID is not UTF-8"))?;
            out.push((room, value.to_vec()));
        }
        Ok(out)
    }

    /// The intent to open a portal for a Matrix room (JSON), if one is under way.
    pub fn portal_intent(&self, matrix_room: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_added(Cf::MatrixroomPortalintent, matrix_room.as_bytes())
    }

    /// A portal's record (JSON), by its MIMI room.
    pub fn portal_record(&self, mimi_room: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::MimiroomPortal, mimi_room.as_bytes())
    }

    /// Up to `limit` portals after the MIMI room `after`, in key order: (MIMI room, record JSON).
    pub fn portals_page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut start = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        if after.is_some() {
            start.push(0);
        }
        let mut out = Vec::new();
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(Cf::MimiroomPortal)?, mode).take(limit) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let room = String::from_utf8(key.to_vec()).map_err(|_| StoreError::corrupt("room ID is not UTF-8"))?;
            out.push((room, value.to_vec()));
        }
        Ok(out)
    }

    fn text(&self, cf: Cf, key: &[u8]) -> Result<Option<String>, StoreError> {
        self.get(cf, key)?
            .map(|b| String::from_utf8(b).map_err(|_| StoreError::corrupt("stored ID is not UTF-8")))
            .transpose()
    }
}
