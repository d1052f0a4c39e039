//! Event ID ⇄ message ID lookups, behind a trait so the bridge's store can answer them.
//!
//! Translating a relation needs more than the other side's ID: an edit must know whether its
//! target is itself an edit (Matrix forbids edits of edits) and must keep the original's reply
//! and topic (MIMI lets an edit change only the body); a redaction must know whether it deletes a
//! message or un-does a reaction, and whether the redactor sent it. [`MappedEvent`] is exactly what
//! the store has to keep per mapped event for that.

use std::collections::BTreeMap;

use crate::mimi::{Disposition, MessageId, MimiContent, Part, PartSemantics};

use super::{TranslateError, encode_with_id};

/// What a mapped event is, as far as relations care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A first version of a message (text, media, …): can be replied to, edited, deleted.
    Message,
    /// An edit (Matrix `m.replace`; MIMI `replaces` with a body).
    Edit,
    /// A reaction (Matrix `m.annotation`; MIMI disposition reaction).
    Reaction,
}

/// What the store keeps about one event that exists on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedEvent {
    /// The MIMI message ID.
    pub message_id: MessageId,
    /// The Matrix user ID of its sender.
    pub sender: String,
    /// Message, edit or reaction.
    pub kind: EventKind,
    /// The MIMI message it replied (or reacted) to.
    pub in_reply_to: Option<MessageId>,
    /// Its MIMI topic ID (empty = none).
    pub topic_id: Vec<u8>,
}

impl MappedEvent {
    /// The record for `content`, sent by Matrix user `sender`, whose ID is `message_id`.
    pub fn from_content(message_id: MessageId, sender: &str, content: &MimiContent) -> Self {
        Self {
            message_id,
            sender: sender.to_owned(),
            kind: kind_of(content),
            in_reply_to: content.in_reply_to,
            topic_id: content.topic_id.clone(),
        }
    }
}

/// Classifies MIMI content: reactions (also a change of reaction) first, then edits.
pub fn kind_of(content: &MimiContent) -> EventKind {
    let reaction = match &content.body.part {
        Part::Multi { semantics: PartSemantics::ProcessAll, parts } => {
            parts.iter().all(|p| p.disposition == Disposition::REACTION)
        }
        Part::Null => false,
        _ => content.body.disposition == Disposition::REACTION,
    };
    if reaction {
        EventKind::Reaction
    } else if content.replaces.is_some() && content.body.part != Part::Null {
        EventKind::Edit
    } else {
        EventKind::Message
    }
}

/// The lookups translation needs; the store implements it, [`MemoryIdMap`] serves tests.
pub trait IdMap {
    /// The mapped event with this Matrix event ID.
    fn event(&self, event_id: &str) -> Option<MappedEvent>;

    /// The Matrix event ID of this MIMI message.
    fn event_id(&self, message_id: &MessageId) -> Option<String>;

    /// The MIMI message ID of this Matrix event.
    fn message_id(&self, event_id: &str) -> Option<MessageId> {
        self.event(event_id).map(|e| e.message_id)
    }
}

/// An in-memory [`IdMap`].
#[derive(Debug, Clone, Default)]
pub struct MemoryIdMap {
    events: BTreeMap<String, MappedEvent>,
    messages: BTreeMap<MessageId, String>,
}

impl MemoryIdMap {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one mapping (replacing earlier ones of either ID).
    pub fn insert(&mut self, event_id: &str, event: MappedEvent) {
        self.messages.insert(event.message_id, event_id.to_owned());
        self.events.insert(event_id.to_owned(), event);
    }

    /// Records `content` as sent for Matrix event `event_id` by `sender`; returns its -08 ID.
    pub fn record(&mut self, event_id: &str, sender: &str, content: &MimiContent) -> Result<MessageId, TranslateError> {
        let (_, id) = encode_with_id(content)?;
        self.insert(event_id, MappedEvent::from_content(id, sender, content));
        Ok(id)
    }

    /// How many events are mapped.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl IdMap for MemoryIdMap {
    fn event(&self, event_id: &str) -> Option<MappedEvent> {
        self.events.get(event_id).cloned()
    }

    fn event_id(&self, message_id: &MessageId) -> Option<String> {
        self.messages.get(message_id).cloned()
    }
}

impl<T: IdMap + ?Sized> IdMap for &T {
    fn event(&self, event_id: &str) -> Option<MappedEvent> {
        (**self).event(event_id)
    }

    fn event_id(&self, message_id: &MessageId) -> Option<String> {
        (**self).event_id(message_id)
    }
}
