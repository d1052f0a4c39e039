//! [`StoreIds`]: translation's ID lookups answered from the store, so replies, edits, reactions
//! and redactions find their targets across restarts.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::mimi::MessageId;
use crate::store::{Batch, Store};
use crate::translate::{EventKind, IdMap, MappedEvent};

/// The store's maps, as an [`IdMap`].
#[derive(Debug, Clone)]
pub struct StoreIds(pub Arc<Store>);

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Message => "message",
        EventKind::Edit => "edit",
        EventKind::Reaction => "reaction",
    }
}

fn message_id(value: &Value) -> Option<MessageId> {
    let bytes = hex::decode(value.as_str()?).ok()?;
    Some(MessageId(<[u8; 32]>::try_from(bytes).ok()?))
}

/// Adds `mapped` for `matrix_event_id` to `batch`.
pub fn record(batch: &mut Batch, matrix_event_id: &str, mapped: &MappedEvent) {
    let record = json!({
        "message_id": mapped.message_id.to_hex(),
        "sender": mapped.sender,
        "kind": kind_name(mapped.kind),
        "in_reply_to": mapped.in_reply_to.map(|m| m.to_hex()),
        "topic_id": hex::encode(&mapped.topic_id),
    });
    batch.map_message(matrix_event_id, &mapped.message_id.0, record.to_string().as_bytes());
}

impl IdMap for StoreIds {
    fn event(&self, event_id: &str) -> Option<MappedEvent> {
        let bytes = self.0.mapped(event_id).ok()??;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let kind = match value.get("kind")?.as_str()? {
            "edit" => EventKind::Edit,
            "reaction" => EventKind::Reaction,
            _ => EventKind::Message,
        };
        Some(MappedEvent {
            message_id: message_id(value.get("message_id")?)?,
            sender: value.get("sender")?.as_str()?.to_owned(),
            kind,
            in_reply_to: value.get("in_reply_to").and_then(message_id),
            topic_id: hex::decode(value.get("topic_id")?.as_str()?).ok()?,
        })
    }

    fn event_id(&self, message_id: &MessageId) -> Option<String> {
        self.0.matrix_event_of_message(&message_id.0).ok()?
    }
}
