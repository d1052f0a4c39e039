//! The room events that carry MLS, as the Linearized Matrix draft shapes them.
//!
//! Binary MLS messages travel as unpadded standard base64 (Matrix's convention). The hub checks
//! both event types (see [`super::public`]), so these parsers are strict: a missing, mistyped or
//! undecodable field is an error naming the field.
//!
//! * `m.room.create` of an encrypted room: `{"encryption": {"algorithm": ALGORITHM,
//!   "group_info": b64}}`. The group info (with the ratchet tree) is the group's epoch 0, its
//!   creator's device alone; the draft names only the algorithm, the group info is ours, so that
//!   anyone holding the log can follow the group from its first epoch.
//! * `m.mls.commit`: `{"message": b64 PublicMessage, "public_group_state": b64 GroupInfo}`; the
//!   group info is the group after the commit, with the ratchet tree.
//! * `m.room.encrypted`: `{"algorithm": ALGORITHM, "ciphertext": b64 PrivateMessage,
//!   "commit_event_id": …}`: the commit that opened the epoch it was sent in, or the create
//!   event for epoch 0.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

/// The room's encryption algorithm, and `m.room.encrypted`'s `algorithm`.
pub const ALGORITHM: &str = "m.mls.v1.dhkemx25519-aes128gcm-sha256-ed25519";
/// The commit event type.
pub const COMMIT: &str = "m.mls.commit";
/// The application message event type.
pub const ENCRYPTED: &str = "m.room.encrypted";
/// A follower's record of one message the room's hub fanned out.
pub const FANOUT: &str = "m.mimi.fanout";

/// Why an MLS event's content is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{event_type} content: field `{field}` {expected}")]
pub struct ContentError {
    /// The event type.
    pub event_type: &'static str,
    /// The field at fault.
    pub field: &'static str,
    /// What was expected.
    pub expected: &'static str,
}

fn string<'a>(
    content: &'a CanonicalJsonObject,
    event_type: &'static str,
    field: &'static str,
) -> Result<&'a str, ContentError> {
    match content.get(field) {
        Some(CanonicalJsonValue::String(s)) => Ok(s),
        _ => Err(ContentError { event_type, field, expected: "must be a string" }),
    }
}

fn bytes(
    content: &CanonicalJsonObject,
    event_type: &'static str,
    field: &'static str,
) -> Result<Vec<u8>, ContentError> {
    STANDARD_NO_PAD.decode(string(content, event_type, field)?).map_err(|_| ContentError {
        event_type,
        field,
        expected: "must be unpadded base64",
    })
}

fn b64(bytes: &[u8]) -> CanonicalJsonValue {
    CanonicalJsonValue::String(STANDARD_NO_PAD.encode(bytes))
}

fn text(s: &str) -> CanonicalJsonValue {
    CanonicalJsonValue::String(s.to_owned())
}

fn algorithm(content: &CanonicalJsonObject, event_type: &'static str) -> Result<(), ContentError> {
    if string(content, event_type, "algorithm")? != ALGORITHM {
        return Err(ContentError { event_type, field: "algorithm", expected: "must be the room's MLS algorithm" });
    }
    Ok(())
}

/// The `encryption` of an encrypted room's create event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEncryption {
    /// The group's epoch-0 `GroupInfo` (TLS `MlsMessage`), ratchet tree included.
    pub group_info: Vec<u8>,
}

impl RoomEncryption {
    /// Reads the create event's content: `None` for a room without MLS.
    pub fn from_create(content: &CanonicalJsonObject) -> Result<Option<Self>, ContentError> {
        let Some(value) = content.get("encryption") else { return Ok(None) };
        let CanonicalJsonValue::Object(encryption) = value else {
            return Err(ContentError {
                event_type: "m.room.create",
                field: "encryption",
                expected: "must be an object",
            });
        };
        algorithm(encryption, "m.room.create")?;
        Ok(Some(Self { group_info: bytes(encryption, "m.room.create", "group_info")? }))
    }

    /// The `encryption` value for a create event's content.
    pub fn to_json(&self) -> CanonicalJsonValue {
        let object: CanonicalJsonObject =
            [("algorithm".to_owned(), text(ALGORITHM)), ("group_info".to_owned(), b64(&self.group_info))].into();
        CanonicalJsonValue::Object(object)
    }
}

/// An `m.mls.commit`'s content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitContent {
    /// The commit (TLS `MlsMessage` holding a `PublicMessage`).
    pub message: Vec<u8>,
    /// The group after the commit (TLS `MlsMessage` holding a `GroupInfo`).
    pub public_group_state: Vec<u8>,
}

impl CommitContent {
    /// Parses the content.
    pub fn parse(content: &CanonicalJsonObject) -> Result<Self, ContentError> {
        Ok(Self {
            message: bytes(content, COMMIT, "message")?,
            public_group_state: bytes(content, COMMIT, "public_group_state")?,
        })
    }

    /// The event content.
    pub fn to_json(&self) -> CanonicalJsonObject {
        [("message".to_owned(), b64(&self.message)), ("public_group_state".to_owned(), b64(&self.public_group_state))]
            .into()
    }
}

/// An `m.room.encrypted`'s content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedContent {
    /// The application message (TLS `MlsMessage` holding a `PrivateMessage`).
    pub ciphertext: Vec<u8>,
    /// The commit that opened the message's epoch (the create event for epoch 0).
    pub commit_event_id: String,
    /// The hub's frank of the message (a TLS `Frank`), when the room franks and the message
    /// carries a franking tag.
    pub frank: Option<Vec<u8>>,
}

impl EncryptedContent {
    /// Parses the content.
    pub fn parse(content: &CanonicalJsonObject) -> Result<Self, ContentError> {
        algorithm(content, ENCRYPTED)?;
        Ok(Self {
            ciphertext: bytes(content, ENCRYPTED, "ciphertext")?,
            commit_event_id: string(content, ENCRYPTED, "commit_event_id")?.to_owned(),
            frank: content.contains_key("frank").then(|| bytes(content, ENCRYPTED, "frank")).transpose()?,
        })
    }

    /// The event content.
    pub fn to_json(&self) -> CanonicalJsonObject {
        let mut content: CanonicalJsonObject = [
            ("algorithm".to_owned(), text(ALGORITHM)),
            ("ciphertext".to_owned(), b64(&self.ciphertext)),
            ("commit_event_id".to_owned(), text(&self.commit_event_id)),
        ]
        .into();
        if let Some(frank) = &self.frank {
            content.insert("frank".to_owned(), b64(frank));
        }
        content
    }
}

/// An `m.mimi.fanout`'s content: `{"fanout": b64}`, one `FanoutMessage` of a `notify` body
/// (the hub's timestamp, the MLS message and what came with it) exactly as received; a Welcome
/// that brings this server back into a group it had left carries `"rejoined": b64` too, the
/// group (`GroupInfo` with its tree) as the welcomed client joined it, which the record goes on
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutContent {
    /// The `FanoutMessage`, TLS-encoded.
    pub fanout: Vec<u8>,
    /// The group the record starts again from (see above).
    pub rejoined: Option<Vec<u8>>,
}

impl FanoutContent {
    /// Parses the content.
    pub fn parse(content: &CanonicalJsonObject) -> Result<Self, ContentError> {
        Ok(Self {
            fanout: bytes(content, FANOUT, "fanout")?,
            rejoined: content.contains_key("rejoined").then(|| bytes(content, FANOUT, "rejoined")).transpose()?,
        })
    }

    /// The event content.
    pub fn to_json(&self) -> CanonicalJsonObject {
        let mut content: CanonicalJsonObject = [("fanout".to_owned(), b64(&self.fanout))].into();
        if let Some(group_info) = &self.rejoined {
            content.insert("rejoined".to_owned(), b64(group_info));
        }
        content
    }
}

/// Whether an event carries a commit: an `m.mls.commit`, or a follower's record of one.
pub fn carries_commit(event_type: &str, content: &CanonicalJsonObject) -> bool {
    use crate::mimi::protocol::Wire as _;
    match event_type {
        COMMIT => true,
        FANOUT => FanoutContent::parse(content).ok().is_some_and(|c| {
            crate::mimi::protocol::FanoutMessage::decode(&c.fanout)
                .is_ok_and(|f| matches!(f.extra, crate::mimi::protocol::FanoutExtra::Commit(_)))
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_round_trip_and_bad_fields_are_named() {
        let commit = CommitContent { message: vec![1, 2, 3], public_group_state: vec![4] };
        assert_eq!(CommitContent::parse(&commit.to_json()).unwrap(), commit);
        let encrypted = EncryptedContent { ciphertext: vec![9; 40], commit_event_id: "$c".into(), frank: None };
        assert_eq!(EncryptedContent::parse(&encrypted.to_json()).unwrap(), encrypted);
        let franked = EncryptedContent { frank: Some(vec![1; 99]), ..encrypted.clone() };
        assert_eq!(EncryptedContent::parse(&franked.to_json()).unwrap(), franked);

        let mut bad = encrypted.to_json();
        bad.insert("algorithm".into(), text("m.megolm.v1.aes-sha2"));
        assert_eq!(EncryptedContent::parse(&bad).unwrap_err().field, "algorithm");
        let mut bad = commit.to_json();
        bad.insert("message".into(), text("AAA="));
        assert_eq!(CommitContent::parse(&bad).unwrap_err().expected, "must be unpadded base64");
        let create: CanonicalJsonObject = [("encryption".to_owned(), text("x"))].into();
        assert_eq!(RoomEncryption::from_create(&create).unwrap_err().field, "encryption");
        assert_eq!(RoomEncryption::from_create(&CanonicalJsonObject::new()).unwrap(), None);
    }
}
