//! MessageDerivedValues: what a receiver knows about a message beyond its content (the hub's
//! timestamp, the MLS group and sender) — `implied.cddl` of draft-ietf-mimi-content.

use super::cbor::{self, DecodeError, MAX_VALUE_DEPTH, Reader, Value};
use super::content::MessageId;

/// The hub's accepted time: milliseconds, or an RFC 9581 extended time (tag 1001).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timestamp {
    /// Milliseconds since the UNIX epoch.
    Millis(u64),
    /// Tag 1001 with its map, kept as is.
    Extended(Value),
}

/// The derived values of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedValues {
    /// Its ID.
    pub message_id: MessageId,
    /// When the hub accepted it.
    pub hub_accepted_timestamp: Timestamp,
    /// The MLS group.
    pub mls_group_id: Vec<u8>,
    /// The sender's leaf.
    pub sender_leaf_index: u32,
    /// The sender's client URI.
    pub sender_client_url: String,
    /// The sender's user URI.
    pub sender_user_url: String,
    /// The room URI.
    pub room_url: String,
}

impl DerivedValues {
    /// Decodes a record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let at = r.position();
        let len = r.array("")?;
        if len != 7 {
            return Err(Reader::error(at, "", format!("expected the 7-item MessageDerivedValues array, found {len}")));
        }
        let at = r.position();
        let id: [u8; 32] = r
            .bytes("messageId")?
            .try_into()
            .map_err(|b: Vec<u8>| Reader::error(at, "messageId", format!("32 bytes expected, found {}", b.len())))?;
        let at = r.position();
        let hub_accepted_timestamp = match r.value("hubAcceptedTimestamp", MAX_VALUE_DEPTH)? {
            Value::Unsigned(ms) => Timestamp::Millis(ms),
            tagged @ Value::Tag(1001, _) => Timestamp::Extended(tagged),
            other => {
                return Err(Reader::error(
                    at,
                    "hubAcceptedTimestamp",
                    format!("expected milliseconds or tag 1001, found {other:?}"),
                ));
            }
        };
        let mls_group_id = r.bytes("mlsGroupId")?;
        let at = r.position();
        let sender_leaf_index = u32::try_from(r.uint("senderLeafIndex")?)
            .map_err(|_| Reader::error(at, "senderLeafIndex", "must fit in 32 bits"))?;
        let sender_client_url = r.text("senderClientUrl")?;
        let sender_user_url = r.text("senderUserUrl")?;
        let room_url = r.text("roomUrl")?;
        r.finish()?;
        Ok(Self {
            message_id: MessageId(id),
            hub_accepted_timestamp,
            mls_group_id,
            sender_leaf_index,
            sender_client_url,
            sender_user_url,
            room_url,
        })
    }

    /// The deterministic encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        cbor::write_head(&mut out, 4, 7);
        cbor::write_bytes(&mut out, &self.message_id.0);
        match &self.hub_accepted_timestamp {
            Timestamp::Millis(ms) => cbor::write_head(&mut out, 0, *ms),
            Timestamp::Extended(v) => cbor::write_value(&mut out, v),
        }
        cbor::write_bytes(&mut out, &self.mls_group_id);
        cbor::write_head(&mut out, 0, u64::from(self.sender_leaf_index));
        cbor::write_text(&mut out, &self.sender_client_url);
        cbor::write_text(&mut out, &self.sender_user_url);
        cbor::write_text(&mut out, &self.room_url);
        out
    }
}
