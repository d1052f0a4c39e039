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
