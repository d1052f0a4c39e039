//! Typed storage keys with a fixed big-endian layout, so that RocksDB's byte order is the
//! logical order: iterating `roomseq_*` walks one room's log from position 0 upwards.

use super::StoreError;

/// The storage surrogate of a room ID: 8 bytes instead of up to 255 in every log key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShortRoomId(pub u64);

impl ShortRoomId {
    /// Big-endian bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads big-endian bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let array = <[u8; 8]>::try_from(bytes).map_err(|_| StoreError::corrupt("short room ID is not 8 bytes"))?;
        Ok(Self(u64::from_be_bytes(array)))
    }
}

/// A position in a room's log: room surrogate, then 0-based sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomSeq {
    /// The room.
    pub room: ShortRoomId,
    /// 0-based position; the create event is 0.
    pub seq: u64,
}

impl RoomSeq {
    /// 16 bytes: room then position, both big-endian.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.room.to_bytes());
        out[8..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Reads the 16-byte layout.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let array =
            <[u8; 16]>::try_from(bytes).map_err(|_| StoreError::corrupt("room position key is not 16 bytes"))?;
        let (room, seq) = array.split_at(8);
        let seq = <[u8; 8]>::try_from(seq).map_err(|_| StoreError::corrupt("room position key"))?;
        Ok(Self { room: ShortRoomId::from_bytes(room)?, seq: u64::from_be_bytes(seq) })
    }
}

/// Which durable queue an entry is on. The byte is the first of every [`QueueKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum QueueId {
    /// Client-server requests for the homeserver; the destination is the Matrix room.
    Homeserver,
    /// MIMI requests for other providers; the destination is the provider's domain.
    Provider,
}

impl QueueId {
    /// The key byte.
    pub fn to_byte(self) -> u8 {
        match self {
            QueueId::Homeserver => 1,
            QueueId::Provider => 2,
        }
    }

    /// A short name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            QueueId::Homeserver => "homeserver",
            QueueId::Provider => "provider",
        }
    }
}

/// An entry of a durable queue: queue, destination, then the entry's sequence number, so one
/// destination's entries sort together in the order they were queued.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    /// The queue.
    pub queue: QueueId,
    /// The destination (a Matrix room, a provider), at most 65,535 bytes of UTF-8.
    pub dest: String,
    /// The entry's sequence number (unique within the queue, never reused).
    pub seq: u64,
}

impl QueueKey {
    /// The bytes every entry of (`queue`, `dest`) starts with: the queue byte, the destination's
    /// length (u16 BE) and the destination.
    pub fn prefix(queue: QueueId, dest: &str) -> Vec<u8> {
        let bytes = dest.as_bytes();
        let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(3 + bytes.len() + 8);
        out.push(queue.to_byte());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes[..usize::from(len)]);
        out
    }

    /// Prefix ‖ sequence number (u64 BE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Self::prefix(self.queue, &self.dest);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Reads the layout of [`to_bytes`](Self::to_bytes) for a key of `queue`.
    pub fn from_bytes(queue: QueueId, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::corrupt("queue key does not have the queue key layout");
        let (&first, rest) = bytes.split_first().ok_or_else(corrupt)?;
        if first != queue.to_byte() || rest.len() < 10 {
            return Err(corrupt());
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let dest = rest.get(2..2 + len).ok_or_else(corrupt)?;
        let seq = <[u8; 8]>::try_from(&rest[2 + len..]).map_err(|_| corrupt())?;
        let dest = String::from_utf8(dest.to_vec()).map_err(|_| corrupt())?;
        Ok(Self { queue, dest, seq: u64::from_be_bytes(seq) })
    }
}

/// The tail of a room: its last position and that event's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// Position of the last event.
    pub seq: u64,
    /// ID of the last event.
    pub event_id: String,
}

impl Tail {
    /// The number of events in the log (position + 1), refusing a corrupt maximal position.
    pub fn events(&self) -> Result<u64, StoreError> {
        self.seq.checked_add(1).ok_or_else(|| StoreError::corrupt("room tail at the largest position"))
    }

    /// 8 bytes of position, then the event ID.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.event_id.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(self.event_id.as_bytes());
        out
    }

    /// Reads the layout back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() < 8 {
            return Err(StoreError::corrupt("room tail shorter than 8 bytes"));
        }
        let (seq, id) = bytes.split_at(8);
        let seq = <[u8; 8]>::try_from(seq).map_err(|_| StoreError::corrupt("room tail"))?;
        let event_id =
            String::from_utf8(id.to_vec()).map_err(|_| StoreError::corrupt("room tail event ID is not UTF-8"))?;
        Ok(Self { seq: u64::from_be_bytes(seq), event_id })
    }
}

/// A server's key: `server`, a zero byte, then the key ID (neither may contain a zero byte).
pub fn server_key_id(server: &str, key_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(server.len() + 1 + key_id.len());
    out.extend_from_slice(server.as_bytes());
    out.push(0);
    out.extend_from_slice(key_id.as_bytes());
    out
}

/// Splits a `server_key_id` key.
pub fn split_server_key_id(bytes: &[u8]) -> Result<(String, String), StoreError> {
    let zero =
        bytes.iter().position(|b| *b == 0).ok_or_else(|| StoreError::corrupt("server key ID without separator"))?;
    let (server, key_id) = (&bytes[..zero], &bytes[zero + 1..]);
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| StoreError::corrupt("server key ID is not UTF-8"));
    Ok((text(server)?, text(key_id)?))
}

/// A device's key: `user`, a zero byte, `device` and, for a key package, another zero byte and
/// the package's reference in lowercase hex (none of them may contain a zero byte). Every
/// device of a user sorts together, so a prefix scan finds them.
pub fn user_device_ref(user_id: &str, device_id: &str, reference: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_id.len() + device_id.len() + 2 + reference.map_or(0, |r| 2 * r.len()));
    out.extend_from_slice(user_id.as_bytes());
    out.push(0);
    out.extend_from_slice(device_id.as_bytes());
    if let Some(reference) = reference {
        out.push(0);
        for byte in reference {
            out.extend_from_slice(format!("{byte:02x}").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn byte_order_is_logical_order(a in any::<(u64, u64)>(), b in any::<(u64, u64)>()) {
            let ka = RoomSeq { room: ShortRoomId(a.0), seq: a.1 };
            let kb = RoomSeq { room: ShortRoomId(b.0), seq: b.1 };
            prop_assert_eq!(ka.cmp(&kb), ka.to_bytes().cmp(&kb.to_bytes()));
            prop_assert_eq!(RoomSeq::from_bytes(&ka.to_bytes()).unwrap(), ka);
        }
    }

    proptest! {
        #[test]
        fn queue_keys_of_one_destination_sort_by_sequence(dest in "[a-z!:.]{0,40}", a: u64, b: u64) {
            let ka = QueueKey { queue: QueueId::Homeserver, dest: dest.clone(), seq: a };
            let kb = QueueKey { queue: QueueId::Homeserver, dest, seq: b };
            prop_assert_eq!(a.cmp(&b), ka.to_bytes().cmp(&kb.to_bytes()));
            prop_assert_eq!(QueueKey::from_bytes(QueueId::Homeserver, &ka.to_bytes()).unwrap(), ka.clone());
            prop_assert!(ka.to_bytes().starts_with(&QueueKey::prefix(QueueId::Homeserver, &ka.dest)));
        }
    }

    #[test]
    fn queue_keys_refuse_other_layouts() {
        assert!(QueueKey::from_bytes(QueueId::Homeserver, &[1, 0, 5, b'a']).is_err());
        assert!(QueueKey::from_bytes(QueueId::Homeserver, &[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        let key = QueueKey { queue: QueueId::Homeserver, dest: "!a:b".into(), seq: 9 };
        assert_eq!(QueueKey::from_bytes(QueueId::Homeserver, &key.to_bytes()).unwrap(), key);
    }

    #[test]
    fn tails_and_server_keys_round_trip() {
        let tail = Tail { seq: 7, event_id: "$abc".into() };
        assert_eq!(Tail::from_bytes(&tail.to_bytes()).unwrap(), tail);
        assert!(Tail::from_bytes(b"short").is_err());
        let key = server_key_id("hub.example", "ed25519:a_1");
        assert_eq!(split_server_key_id(&key).unwrap(), ("hub.example".into(), "ed25519:a_1".into()));
        assert!(RoomSeq::from_bytes(&[0; 15]).is_err());
    }
}
