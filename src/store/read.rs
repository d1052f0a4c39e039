//! Reads. RocksDB iterators read from an implicit snapshot and every append is one atomic batch
//! written in log order, so a reader always sees a gap-free prefix of each room's log.

use rocksdb::{Direction, IteratorMode};

use super::keys::{RoomSeq, ShortRoomId, Tail, split_server_key_id};
use super::{Cf, Store, StoreError, rocks};

/// A state event's position and key, as recorded when it was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDelta {
    /// Position of the state event.
    pub seq: u64,
    /// Its type.
    pub event_type: String,
    /// Its state key.
    pub state_key: String,
}

/// A KeyPackage the schema-5 upgrade retired (see `userdeviceref_retiredkeypackage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKeyPackage {
    /// The device's user.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The package's hash reference.
    pub reference: Vec<u8>,
    /// Whether it was the device's last resort.
    pub last_resort: bool,
}

impl Store {
    /// The short ID of a room.
    pub fn short_room(&self, room_id: &str) -> Result<Option<ShortRoomId>, StoreError> {
        self.get(Cf::RoomidShortroomid, room_id.as_bytes())?.map(|b| ShortRoomId::from_bytes(&b)).transpose()
    }

    /// The room ID of a short ID.
    pub fn room_id_of(&self, short: ShortRoomId) -> Result<Option<String>, StoreError> {
        self.get(Cf::ShortroomidRoomid, &short.to_bytes())?
            .map(|b| String::from_utf8(b).map_err(|_| StoreError::corrupt("room ID is not UTF-8")))
            .transpose()
    }

    pub(super) fn last_short_room(&self) -> Result<Option<ShortRoomId>, StoreError> {
        let mut iter = self.db.iterator_cf(self.cf(Cf::ShortroomidRoomid)?, IteratorMode::End);
        iter.next().transpose().map_err(rocks(&self.path))?.map(|(k, _)| ShortRoomId::from_bytes(&k)).transpose()
    }

    /// Every room, in short-ID order.
    pub fn rooms(&self) -> Result<Vec<(ShortRoomId, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::ShortroomidRoomid)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let room_id = String::from_utf8(value.to_vec()).map_err(|_| StoreError::corrupt("room ID is not UTF-8"))?;
            out.push((ShortRoomId::from_bytes(&key)?, room_id));
        }
        Ok(out)
    }

    /// The last event of a room.
    pub fn tail(&self, room: ShortRoomId) -> Result<Option<Tail>, StoreError> {
        self.get(Cf::RoomTail, &room.to_bytes())?.map(|b| Tail::from_bytes(&b)).transpose()
    }

    /// The PDU at a position.
    pub fn pdu_at(&self, pos: RoomSeq) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::RoomseqPdu, &pos.to_bytes())
    }

    /// Where an event sits.
    pub fn event_position(&self, event_id: &str) -> Result<Option<RoomSeq>, StoreError> {
        self.get(Cf::EventidRoomseq, event_id.as_bytes())?.map(|b| RoomSeq::from_bytes(&b)).transpose()
    }

    /// The event an LPDU was completed into, if the hub already appended it.
    pub fn lpdu_event(&self, lpdu_id: &str) -> Result<Option<String>, StoreError> {
        self.get(Cf::LpduidEventid, lpdu_id.as_bytes())?
            .map(|b| String::from_utf8(b).map_err(|_| StoreError::corrupt("event ID is not UTF-8")))
            .transpose()
    }

    /// A room's PDUs from position `from` on, in log order.
    pub fn pdus(
        &self,
        room: ShortRoomId,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_, StoreError> {
        let start = RoomSeq { room, seq: from }.to_bytes();
        let iter = self.db.iterator_cf(self.cf(Cf::RoomseqPdu)?, IteratorMode::From(&start, Direction::Forward));
        Ok(iter
            .map(move |item| {
                let (key, value) = item.map_err(rocks(&self.path))?;
                Ok((RoomSeq::from_bytes(&key)?, value.into_vec()))
            })
            .take_while(move |item| !matches!(item, Ok((pos, _)) if pos.room != room))
            .map(|item| item.map(|(pos, bytes)| (pos.seq, bytes))))
    }

    /// The state delta recorded at one position, if any: `(type, state_key)`.
    pub fn state_delta_at(&self, pos: RoomSeq) -> Result<Option<(String, String)>, StoreError> {
        self.get(Cf::RoomseqStatedelta, &pos.to_bytes())?
            .map(|value| {
                serde_json::from_slice::<[String; 2]>(&value)
                    .map(|[t, k]| (t, k))
                    .map_err(|_| StoreError::corrupt("state delta is not [type, state_key]"))
            })
            .transpose()
    }

    /// The state deltas of a room up to and including position `upto`.
    pub fn state_deltas(&self, room: ShortRoomId, upto: u64) -> Result<Vec<StateDelta>, StoreError> {
        let start = RoomSeq { room, seq: 0 }.to_bytes();
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::RoomseqStatedelta)?, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let pos = RoomSeq::from_bytes(&key)?;
            if pos.room != room || pos.seq > upto {
                break;
            }
            let [event_type, state_key]: [String; 2] = serde_json::from_slice(&value)
                .map_err(|_| StoreError::corrupt("state delta is not [type, state_key]"))?;
            out.push(StateDelta { seq: pos.seq, event_type, state_key });
        }
        Ok(out)
    }

    /// One value of the MLS state (`mlskey_value`), as `crate::mls` stored it. A store opened
    /// read-only from a build before that family existed has no MLS state: `None`.
    pub fn mls_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(cf) = self.db.cf_handle(Cf::MlskeyValue.name()) else {
            return Ok(None);
        };
        self.db.get_cf(cf, key).map_err(rocks(&self.path))
    }

    /// Every key the hub trusts: (server, key ID, public key).
    pub fn server_keys(&self) -> Result<Vec<(String, String, [u8; 32])>, StoreError> {
        self.keys_in(Cf::ServerkeyidVerifykey)
    }

    /// Every key that came with an imported log.
    pub fn imported_keys(&self) -> Result<Vec<(String, String, [u8; 32])>, StoreError> {
        self.keys_in(Cf::ImportkeyidVerifykey)
    }

    fn keys_in(&self, cf: Cf) -> Result<Vec<(String, String, [u8; 32])>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf)?, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let (server, key_id) = split_server_key_id(&key)?;
            let public =
                <[u8; 32]>::try_from(&value[..]).map_err(|_| StoreError::corrupt("public key is not 32 bytes"))?;
            out.push((server, key_id, public));
        }
        Ok(out)
    }

    /// Position of the room's latest `m.mls.commit`, if it has one.
    pub fn latest_commit(&self, room: ShortRoomId) -> Result<Option<u64>, StoreError> {
        let Some(bytes) = self.get_added(Cf::ShortroomidCommitseq, &room.to_bytes())? else {
            return Ok(None);
        };
        let array =
            <[u8; 8]>::try_from(&bytes[..]).map_err(|_| StoreError::corrupt("commit position is not 8 bytes"))?;
        Ok(Some(u64::from_be_bytes(array)))
    }

    /// The MIMI content stored for an `m.room.encrypted` event.
    pub fn plaintext(&self, event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_added(Cf::EventidPlaintext, event_id.as_bytes())
    }

    /// The MIMI content of a ciphertext this server sent to another hub, by its SHA-256.
    pub fn sent_plaintext(&self, ciphertext_hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_added(Cf::CiphertexthashPlaintext, ciphertext_hash)
    }

    /// The Welcome stored for a commit.
    pub fn welcome(&self, commit_event_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_added(Cf::CommitidWelcome, commit_event_id.as_bytes())
    }

    /// This server's users whose clients a commit in a follower's record removed.
    pub fn removed_by(&self, commit_event_id: &str) -> Result<Vec<String>, StoreError> {
        let json = self.get_added(Cf::CommitidRemoved, commit_event_id.as_bytes())?;
        Ok(json.and_then(|j| serde_json::from_slice(&j).ok()).unwrap_or_default())
    }

    /// Every stored Welcome: (commit event ID, JSON).
    pub fn welcomes(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let Some(cf) = self.db.cf_handle(Cf::CommitidWelcome.name()) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            out.push((String::from_utf8_lossy(&key).into_owned(), value.to_vec()));
        }
        Ok(out)
    }

    /// A device's published key packages, in key order: (reference hex, stored value).
    pub fn key_packages(&self, user_id: &str, device_id: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut prefix = super::keys::user_device_ref(user_id, device_id, None);
        prefix.push(0);
        let Some(cf) = self.db.cf_handle(Cf::UserdevicerefKeypackage.name()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::From(&prefix, Direction::Forward)) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let Some(reference) = key.strip_prefix(prefix.as_slice()) else { break };
            let reference =
                String::from_utf8(reference.to_vec()).map_err(|_| StoreError::corrupt("key package ref is not hex"))?;
            out.push((reference, value.to_vec()));
        }
        Ok(out)
    }

    /// Every package the schema-5 upgrade retired.
    pub fn retired_key_packages(&self) -> Result<Vec<RetiredKeyPackage>, StoreError> {
        let Some(cf) = self.db.cf_handle(Cf::UserdevicerefRetiredkeypackage.name()) else {
            return Ok(Vec::new());
        };
        let corrupt = || StoreError::corrupt("retired key package key is not user \\0 device \\0 hex reference");
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let mut parts = key.splitn(3, |b| *b == 0);
            let (Some(user), Some(device), Some(reference)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt());
            };
            out.push(RetiredKeyPackage {
                user_id: String::from_utf8(user.to_vec()).map_err(|_| corrupt())?,
                device_id: String::from_utf8(device.to_vec()).map_err(|_| corrupt())?,
                reference: hex::decode(reference).map_err(|_| corrupt())?,
                last_resort: value.first() == Some(&1),
            });
        }
        Ok(out)
    }

    /// A device object this server stored.
    pub fn device_object(&self, user_id: &str, device_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_added(Cf::UserdeviceDeviceobject, &super::keys::user_device_ref(user_id, device_id, None))
    }

    /// Every device object stored: (user, device, canonical JSON).
    pub fn device_objects(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let Some(cf) = self.db.cf_handle(Cf::UserdeviceDeviceobject.name()) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item.map_err(rocks(&self.path))?;
            let (user, device) = split_server_key_id(&key)?;
            out.push((user, device, value.to_vec()));
        }
        Ok(out)
    }
}
