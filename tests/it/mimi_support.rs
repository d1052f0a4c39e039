//! What the MIMI content tests share: where the draft's example vectors live, the message
//! vectors' names, room, first sender and content types, and loading a vector's `.cbor` bytes,
//! `.edn` text and header message ID.

use mimi_bridge::mimi::MessageId;

use crate::edn;

pub(crate) const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content");
/// Every message vector (all `NAME.cbor` but `implied-original`, which is not a message).
pub(crate) const MESSAGES: [&str; 10] = [
    "attachment",
    "delete",
    "edit",
    "mention",
    "multipart-1",
    "multipart-2",
    "original",
    "reaction",
    "reply",
    "unlike",
];
pub(crate) const ROOM: &str = "mimi://example.com/r/engineering_team";
pub(crate) const ALICE: &str = "mimi://example.com/u/alice-smith";
pub(crate) const GFM: &str = "text/markdown;variant=GFM-MIMI";
pub(crate) const PLAIN: &str = "text/plain;charset=utf-8";

pub(crate) fn cbor_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}.cbor")).unwrap_or_else(|e| panic!("{name}.cbor: {e}"))
}

pub(crate) fn edn_file(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}.edn")).unwrap_or_else(|e| panic!("{name}.edn: {e}"))
}

/// The ID of a vector as its `.edn` header states it (-08 algorithm).
pub(crate) fn header_id(name: &str) -> MessageId {
    let hex = edn::header_message_id(&edn_file(name)).unwrap_or_else(|| panic!("{name}.edn has no message ID header"));
    MessageId(hex::decode(hex).unwrap().try_into().unwrap())
}
