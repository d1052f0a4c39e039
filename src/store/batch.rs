//! A set of writes that lands atomically or not at all.

use super::Cf;
use super::keys::{RoomSeq, ShortRoomId, Tail, server_key_id};

/// Writes to apply together. Appending an event writes the PDU, its ID index, the room's tail
/// and (for state events) the state delta in one batch, so a reader never sees one without the
/// others.
#[must_use = "a batch does nothing until it is submitted to the store"]
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// `(family, key, Some(value))` puts, `(family, key, None)` deletes, applied in order.
    pub(super) ops: Vec<(Cf, Vec<u8>, Option<Vec<u8>>)>,
    /// Log positions this batch appends, announced to subscribers once it is durable.
    pub(super) appends: Vec<RoomSeq>,
}

/// What `Batch::append_event` records about one event.
#[derive(Debug, Clone, Copy)]
pub struct EventRecord<'a> {
    /// Where it goes.
    pub pos: RoomSeq,
    /// Its ID.
    pub event_id: &'a str,
    /// Its canonical JSON.
    pub bytes: &'a [u8],
    /// `(type, state_key)` for state events.
    pub state: Option<(&'a str, &'a str)>,
    /// The reference ID of the LPDU it was completed from, if any.
    pub lpdu_id: Option<&'a str>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The payload size, for grouping.
    pub(super) fn size(&self) -> usize {
        self.ops.iter().map(|(_, k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum()
    }

    pub(super) fn put(&mut self, cf: Cf, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((cf, key, Some(value)));
    }

    /// Writes (`Some`) or deletes (`None`) one key of the MLS state (`mlskey_value`). A delete
    /// is a real RocksDB delete: forward secrecy depends on spent keys going away.
    pub fn mls_write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.ops.push((Cf::MlskeyValue, key, value));
    }

    /// Registers a room under its short ID.
    pub fn add_room(&mut self, short: ShortRoomId, room_id: &str) {
        self.put(Cf::RoomidShortroomid, room_id.as_bytes().to_vec(), short.to_bytes().to_vec());
        self.put(Cf::ShortroomidRoomid, short.to_bytes().to_vec(), room_id.as_bytes().to_vec());
    }

    /// Appends one event and moves the room's tail to it.
    pub fn append_event(&mut self, record: &EventRecord<'_>) {
        self.appends.push(record.pos);
        let pos = record.pos.to_bytes().to_vec();
        self.put(Cf::RoomseqPdu, pos.clone(), record.bytes.to_vec());
        self.put(Cf::EventidRoomseq, record.event_id.as_bytes().to_vec(), pos.clone());
        let tail = Tail { seq: record.pos.seq, event_id: record.event_id.to_owned() };
        self.put(Cf::RoomTail, record.pos.room.to_bytes().to_vec(), tail.to_bytes());
        if let Some((event_type, state_key)) = record.state {
            let delta = serde_json::to_vec(&[event_type, state_key]).unwrap_or_default();
            self.put(Cf::RoomseqStatedelta, pos, delta);
        }
        if let Some(lpdu_id) = record.lpdu_id {
            self.put(Cf::LpduidEventid, lpdu_id.as_bytes().to_vec(), record.event_id.as_bytes().to_vec());
        }
    }

    /// Records a public key the hub trusts.
    pub fn add_server_key(&mut self, server: &str, key_id: &str, public: &[u8; 32]) {
        self.put(Cf::ServerkeyidVerifykey, server_key_id(server, key_id), public.to_vec());
    }

    /// Records a public key that came with an imported log (for verifying it, not trusted).
    pub fn add_imported_key(&mut self, server: &str, key_id: &str, public: &[u8; 32]) {
        self.put(Cf::ImportkeyidVerifykey, server_key_id(server, key_id), public.to_vec());
    }

    /// Records the position of a room's latest `m.mls.commit`.
    pub fn set_latest_commit(&mut self, room: ShortRoomId, seq: u64) {
        self.put(Cf::ShortroomidCommitseq, room.to_bytes().to_vec(), seq.to_be_bytes().to_vec());
    }

    /// Stores the MIMI content of an `m.room.encrypted` event.
    pub fn put_plaintext(&mut self, event_id: &str, mimi_cbor: &[u8]) {
        self.put(Cf::EventidPlaintext, event_id.as_bytes().to_vec(), mimi_cbor.to_vec());
    }

    /// Keeps (`Some`) or drops (`None`) the MIMI content of a ciphertext sent to another hub,
    /// keyed by the ciphertext's SHA-256.
    pub fn sent_plaintext(&mut self, ciphertext_hash: &[u8; 32], mimi_cbor: Option<&[u8]>) {
        self.ops.push((Cf::CiphertexthashPlaintext, ciphertext_hash.to_vec(), mimi_cbor.map(<[u8]>::to_vec)));
    }

    /// The Welcome this batch stores for a commit, if it does.
    pub fn welcome_of(&self, commit_event_id: &str) -> Option<Vec<u8>> {
        self.ops.iter().find_map(|(cf, key, value)| {
            (*cf == Cf::CommitidWelcome && key == commit_event_id.as_bytes()).then(|| value.clone()).flatten()
        })
    }

    /// Stores the Welcome a commit produced.
    pub fn put_welcome(&mut self, commit_event_id: &str, welcome_json: &[u8]) {
        self.put(Cf::CommitidWelcome, commit_event_id.as_bytes().to_vec(), welcome_json.to_vec());
    }

    /// Notes this server's users whose clients a commit in a follower's record removed.
    pub fn put_removed(&mut self, commit_event_id: &str, users: &[String]) {
        let json = serde_json::to_vec(users).unwrap_or_default();
        self.put(Cf::CommitidRemoved, commit_event_id.as_bytes().to_vec(), json);
    }

    /// Publishes (`Some`) or removes (`None`) a key package of a device; the value is
    /// 1 byte last-resort flag ‖ TLS `KeyPackage`.
    pub fn key_package(&mut self, user_id: &str, device_id: &str, reference: &[u8], value: Option<Vec<u8>>) {
        let key = super::keys::user_device_ref(user_id, device_id, Some(reference));
        self.ops.push((Cf::UserdevicerefKeypackage, key, value));
    }

    /// Forgets a package the schema-5 upgrade retired (see [`Store::retired_key_packages`]).
    pub fn forget_retired_key_package(&mut self, user_id: &str, device_id: &str, reference: &[u8]) {
        let key = super::keys::user_device_ref(user_id, device_id, Some(reference));
        self.ops.push((Cf::UserdevicerefRetiredkeypackage, key, None));
    }

    /// Stores a device object (canonical JSON) of a user's device.
    pub fn put_device_object(&mut self, user_id: &str, device_id: &str, json: &[u8]) {
        self.put(Cf::UserdeviceDeviceobject, super::keys::user_device_ref(user_id, device_id, None), json.to_vec());
    }
}
