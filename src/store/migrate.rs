//! Upgrades of older stores, run on a read-write open in the batch that records the new
//! schema version, so an upgrade is all or nothing — except for moves too large for one batch
//! (attachments), which go first, one item per synced batch, each whole; an upgrade
//! interrupted among them resumes with the items not yet moved.
//!
//! 2 → 3: each request of `hsqueue_request` (u64 sequence → JSON naming its Matrix `room`) moves
//! to `queuedestseq_entry` under (homeserver queue, that room, the same sequence number), so its
//! transaction ID `mimi.<seq>` is unchanged; each portal record's `cursor` field moves to
//! `shortroomid_portalcursor` and leaves the record; each hosted attachment of `mediaid_blob`
//! moves to `mediaidchunk_blob` in chunks. Version 1 stores have none of these.
//!
//! 4 → 5: MLS credentials became client URIs; every published KeyPackage (its leaf names the
//! device by the LM triple) moves from `userdeviceref_keypackage` to
//! `userdeviceref_retiredkeypackage`, where the hub finds it at its next start
//! (`Directories::reissue_retired`).
//!
//! 5 → 6: the family `commitid_removed` was added; it starts empty (nothing moves).
//!
//! 6 → 7: the family `cryptokey_value` (the bridge device's crypto state) was added; it starts
//! empty (nothing moves).

use rocksdb::IteratorMode;

use super::keys::{QueueId, QueueKey};
use super::{Batch, Cf, Store, StoreError, rocks};

impl Store {
    pub(super) fn migrate(&self, from: u32) -> Result<Batch, StoreError> {
        let mut batch = Batch::new();
        if from < 3 {
            self.chunk_media()?;
            self.move_homeserver_requests(&mut batch)?;
            self.move_portal_cursors(&mut batch)?;
        }
        if from < 5 {
            self.retire_key_packages(&mut batch)?;
        }
        Ok(batch)
    }

    /// Every package published so far names its device by the LM triple: it moves aside, key
    /// and value unchanged, for the hub to replace (it alone can reach the private keys).
    fn retire_key_packages(&self, batch: &mut Batch) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(Cf::UserdevicerefKeypackage)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            batch.put(Cf::UserdevicerefRetiredkeypackage, key.to_vec(), value.to_vec());
            batch.ops.push((Cf::UserdevicerefKeypackage, key.to_vec(), None));
        }
        Ok(())
    }

    fn move_homeserver_requests(&self, batch: &mut Batch) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        for item in self.db.iterator_cf(self.cf(Cf::HsqueueRequest)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let seq = <[u8; 8]>::try_from(&key[..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::corrupt("hsqueue_request key is not 8 bytes"))?;
            let request: serde_json::Value =
                serde_json::from_slice(&value).map_err(|_| StoreError::corrupt("hsqueue_request entry is not JSON"))?;
            let room =
                request["room"].as_str().ok_or_else(|| StoreError::corrupt("hsqueue_request entry without room"))?;
            batch.queue_push(&QueueKey { queue: QueueId::Homeserver, dest: room.to_owned(), seq }, now, &value);
            batch.ops.push((Cf::HsqueueRequest, key.to_vec(), None));
        }
        Ok(())
    }

    /// Each attachment in its own batch: together they may be far larger than memory.
    fn chunk_media(&self) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(Cf::MediaidBlob)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let media_id = String::from_utf8(key.to_vec()).map_err(|_| StoreError::corrupt("media ID is not UTF-8"))?;
            let mut batch = Batch::new();
            batch.media(&media_id, &value);
            batch.ops.push((Cf::MediaidBlob, key.to_vec(), None));
            self.submit(batch).blocking_wait()?;
        }
        Ok(())
    }

    fn move_portal_cursors(&self, batch: &mut Batch) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.cf(Cf::MimiroomPortal)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let mut record: serde_json::Value =
                serde_json::from_slice(&value).map_err(|_| StoreError::corrupt("portal record is not JSON"))?;
            let room = String::from_utf8(key.to_vec()).map_err(|_| StoreError::corrupt("room ID is not UTF-8"))?;
            let Some(short) = self.short_room(&room)? else { continue };
            let cursor = record.get("cursor").and_then(serde_json::Value::as_u64).unwrap_or(0);
            batch.portal_cursor(short, cursor);
            if let Some(object) = record.as_object_mut() {
                object.remove("cursor");
            }
            batch.put(Cf::MimiroomPortal, key.to_vec(), record.to_string().into_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::ShortRoomId;

    /// A store as schema 2 left it: queued homeserver requests in `hsqueue_request`, a portal
    /// record with its cursor inside. Reopened, both have moved and nothing else changed.
    #[test]
    fn a_version_2_store_moves_its_queue_and_cursors_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let mut batch = Batch::new();
            batch.add_room(ShortRoomId(1), "!m:mimi.test");
            batch.put(Cf::MimiroomPortal, b"!m:mimi.test".to_vec(), br#"{"matrix_room":"!p:hs","cursor":7}"#.to_vec());
            for (seq, room) in [(3u64, "!p:hs"), (4, "!q:hs"), (5, "!p:hs")] {
                let request = format!(r#"{{"kind":"send","room":"{room}","n":{seq}}}"#);
                batch.ops.push((Cf::HsqueueRequest, seq.to_be_bytes().to_vec(), Some(request.into_bytes())));
            }
            let blob: Vec<u8> = (0..600_000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
            batch.put(Cf::MediaidBlob, b"abc".to_vec(), blob);
            batch.put(Cf::MetanameValue, b"schema_version".to_vec(), 2u32.to_be_bytes().to_vec());
            store.write(batch).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let page = store.queue_page(QueueId::Homeserver, "!p:hs", 0, 10).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 5], "same numbers, so same transaction IDs");
        assert!(String::from_utf8_lossy(&page[1].payload).contains(r#""n":5"#));
        assert_eq!(store.queue_page(QueueId::Homeserver, "!q:hs", 0, 10).unwrap().len(), 1);
        assert_eq!(store.queue_destinations(QueueId::Homeserver, None, 10).unwrap().len(), 2);
        assert!(store.db.iterator_cf(store.cf(Cf::HsqueueRequest).unwrap(), IteratorMode::Start).next().is_none());
        assert_eq!(store.portal_cursor(ShortRoomId(1)).unwrap(), 7);
        let blob: Vec<u8> = (0..600_000u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
        assert_eq!(store.media("abc").unwrap().unwrap(), blob, "the attachment, re-chunked");
        assert_eq!(store.media_chunk("abc", 2).unwrap().unwrap().len(), 600_000 - 2 * crate::store::MEDIA_CHUNK);
        assert!(store.media_chunk("abc", 3).unwrap().is_none());
        let record: serde_json::Value =
            serde_json::from_slice(&store.portal_record("!m:mimi.test").unwrap().unwrap()).unwrap();
        assert_eq!(record, serde_json::json!({"matrix_room": "!p:hs"}));
        let version = store.get(Cf::MetanameValue, b"schema_version").unwrap().unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION.to_be_bytes());
    }
}
