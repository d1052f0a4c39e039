//! What the Matrix ⇄ MIMI translation tests share: the room and users, building Matrix events,
//! and taking `to_mimi` / `to_matrix` results apart (each MIMI message checked by encoding,
//! decoding and hashing it, as the bridge does before sending).

use mimi_bridge::mimi::{MessageId, MimiContent, NestedPart, Part, PartSemantics};
use mimi_bridge::translate::{
    DropReason, MatrixOut, MemoryIdMap, OutboundContext, Outcome, Salt, encode_with_id, to_mimi,
};
use serde_json::{Value, json};

pub(crate) const ROOM: &str = "mimi://hs.example/r/portal";
pub(crate) const ALICE: &str = "@alice:hs.example";
pub(crate) const BOB: &str = "@bob:hs.example";

pub(crate) fn ctx() -> OutboundContext {
    OutboundContext { room_uri: ROOM.into(), salt: Salt::Fixed([7; 16]), matrix_origin: None }
}

pub(crate) fn event(kind: &str, sender: &str, content: Value) -> Value {
    let mut ev = json!({"type": kind, "sender": sender, "event_id": "$new", "room_id": "!portal:hs.example"});
    ev["content"] = content;
    ev
}

pub(crate) fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

pub(crate) fn html(body: &str, formatted: &str) -> Value {
    json!({"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html", "formatted_body": formatted})
}

/// Encodes, decodes and hashes `content`, as the bridge does before sending.
pub(crate) fn checked(content: &MimiContent) -> MessageId {
    let (bytes, id) = encode_with_id(content).unwrap();
    assert_eq!(&MimiContent::decode(&bytes).unwrap(), content);
    id
}

/// The single message an event gives (no drops).
pub(crate) fn message(outcomes: Vec<Outcome>) -> MimiContent {
    match <[Outcome; 1]>::try_from(outcomes) {
        Ok([Outcome::Message(m)]) => {
            checked(&m);
            *m
        }
        other => panic!("expected one message, got {other:?}"),
    }
}

/// Sends `ev` through `to_mimi` and records the result as Matrix event `event_id`.
pub(crate) fn send(ids: &mut MemoryIdMap, event_id: &str, ev: &Value) -> MimiContent {
    let m = message(to_mimi(ev, &ctx(), ids).unwrap());
    ids.record(event_id, ev["sender"].as_str().unwrap(), &m).unwrap();
    m
}

pub(crate) fn dropped(outcomes: &[Outcome]) -> Vec<DropReason> {
    outcomes.iter().filter_map(|o| if let Outcome::Dropped(r) = o { Some(r.clone()) } else { None }).collect()
}

/// The single event `to_matrix` gives: (sender, type, content).
pub(crate) fn one_event(out: Vec<MatrixOut>) -> (String, String, Value) {
    match <[MatrixOut; 1]>::try_from(out) {
        Ok([MatrixOut::Event { sender, event_type, content }]) => (sender, event_type, content),
        other => panic!("expected one event, got {other:?}"),
    }
}

pub(crate) fn single(part: &NestedPart) -> (&str, &str) {
    match &part.part {
        Part::Single { content_type, content } => (content_type.as_str(), std::str::from_utf8(content).unwrap()),
        other => panic!("expected a SinglePart, got {other:?}"),
    }
}

pub(crate) fn choose_one(part: &NestedPart) -> Vec<(&str, &str)> {
    match &part.part {
        Part::Multi { semantics: PartSemantics::ChooseOne, parts } => parts.iter().map(single).collect(),
        other => panic!("expected chooseOne, got {other:?}"),
    }
}
