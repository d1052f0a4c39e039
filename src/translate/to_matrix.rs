//! MIMI → Matrix: one received message → the events, redactions and receipts to send.
//!
//! MIMI overloads few fields where Matrix has many event shapes, so the body decides: a status
//! report becomes receipts; `replaces` with a NullPart a redaction (delete and unlike alike —
//! both remove the mapped event); `replaces` with a reaction a change of reaction (redact the old,
//! send the new); `replaces` with anything else an `m.replace` edit of the original event; a
//! reaction body (or a `processAll` of them) `m.reaction`s; the rest messages, threaded by
//! `topicId` and replying by `inReplyTo`, without legacy reply fallbacks.

use serde_json::{Map, Value as Json, json};

use crate::mimi::cbor::Value;
use crate::mimi::status::StatusReport;
use crate::mimi::{Disposition, ExtensionKey, ExternalPart, MessageId, MimiContent, NestedPart, Part, PartSemantics};

use super::ids::{EventKind, IdMap, kind_of};
use super::media::matrix_file_content;
use super::receipts::receipts_out;
use super::text::{MatrixText, base_type, matrix_text};
use super::uri::{matrix_user_id, split_user_id};
use super::{DropReason, MESSAGE_STATUS, MSGTYPE_KEY, MatrixOut, TranslateError};

/// A MIMI attachment on its way to Matrix: everything but the uploaded file.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingUpload {
    /// Matrix user ID to send as.
    pub sender: String,
    /// The ExternalPart (with its disposition) to fetch, verify, decrypt and upload.
    pub part: NestedPart,
    /// `m.relates_to` to add (thread, reply), if any.
    pub relates_to: Option<Json>,
}

impl PendingUpload {
    /// The part's ExternalPart.
    pub fn external(&self) -> Option<&ExternalPart> {
        match &self.part.part {
            Part::External(e) => Some(e),
            _ => None,
        }
    }

    /// The event to send once the decrypted file is uploaded as `mxc_url`.
    pub fn finish(&self, mxc_url: &str) -> Result<MatrixOut, TranslateError> {
        let mut content = matrix_file_content(&self.part, mxc_url)?;
        if let (Some(r), Some(obj)) = (&self.relates_to, content.as_object_mut()) {
            obj.insert("m.relates_to".into(), r.clone());
        }
        Ok(MatrixOut::Event { sender: self.sender.clone(), event_type: "m.room.message".into(), content })
    }
}

/// Translates one received MIMI message.
pub fn to_matrix(content: &MimiContent, ids: &impl IdMap) -> Result<Vec<MatrixOut>, TranslateError> {
    let sender = matrix_user_id(content.sender_uri().ok_or(TranslateError::NoSender)?)?;
    let mut out = if let Some(report) = status_report(&content.body)? {
        receipts_out(&report, &sender, ids)
    } else if let Some(target) = content.replaces {
        replacement(content, target, &sender, ids)
    } else if kind_of(content) == EventKind::Reaction {
        reactions(content, &sender, ids)
    } else {
        message(content, &sender, ids)
    };
    if content.expires.is_some() {
        out.push(MatrixOut::Dropped(DropReason::Expiry));
    }
    Ok(out)
}

fn status_report(body: &NestedPart) -> Result<Option<StatusReport>, TranslateError> {
    match &body.part {
        Part::Single { content_type, content } if base_type(content_type) == MESSAGE_STATUS => {
            Ok(Some(StatusReport::decode(content)?))
        }
        _ => Ok(None),
    }
}

fn msgtype(content: &MimiContent) -> &str {
    let ext = content.extensions.iter().find_map(|(k, v)| match (k, v) {
        (ExtensionKey::Text(k), Value::Text(v)) if k == MSGTYPE_KEY => Some(v.as_str()),
        _ => None,
    });
    match ext {
        Some(t @ ("m.notice" | "m.emote")) => t,
        _ => "m.text",
    }
}

fn text_for(content: &MimiContent, part: &NestedPart, sender: &str) -> Option<(MatrixText, &'static str)> {
    let mut text = matrix_text(part)?;
    let msgtype = match msgtype(content) {
        "m.notice" => "m.notice",
        "m.emote" => {
            text.strip_emote(split_user_id(sender).map_or("", |(l, _)| l));
            "m.emote"
        }
        _ => "m.text",
    };
    Some((text, msgtype))
}

fn replacement(content: &MimiContent, target: MessageId, sender: &str, ids: &impl IdMap) -> Vec<MatrixOut> {
    let Some(event_id) = ids.event_id(&target) else { return vec![MatrixOut::Dropped(DropReason::UnknownTarget)] };
    let redaction = MatrixOut::Redaction { sender: sender.to_owned(), redacts: event_id.clone() };
    if content.body.part == Part::Null {
        return vec![redaction];
    }
    if kind_of(content) == EventKind::Reaction {
        let mut out = vec![redaction];
        out.extend(reactions(content, sender, ids));
        return out;
    }
    match ids.event(&event_id).map(|e| e.kind) {
        Some(EventKind::Edit) => return vec![MatrixOut::Dropped(DropReason::EditOfEdit)],
        Some(EventKind::Reaction) => {
            return vec![MatrixOut::Dropped(DropReason::UnsupportedContent("an edit of a reaction".into()))];
        }
        _ => {}
    }
    let Some((text, msgtype)) = text_for(content, &content.body, sender) else {
        return vec![MatrixOut::Dropped(DropReason::UnsupportedContent("an edit of an attachment".into()))];
    };
    let new_content = text.content(msgtype);
    let mut c = Map::new();
    c.insert("msgtype".into(), msgtype.into());
    c.insert("body".into(), format!("* {}", text.body).into());
    if let Some(h) = &text.html {
        c.insert("format".into(), "org.matrix.custom.html".into());
        c.insert("formatted_body".into(), format!("* {h}").into());
    }
    c.insert("m.mentions".into(), json!({}));
    c.insert("m.new_content".into(), Json::Object(new_content));
    c.insert("m.relates_to".into(), json!({"rel_type": "m.replace", "event_id": event_id}));
    vec![MatrixOut::Event { sender: sender.to_owned(), event_type: "m.room.message".into(), content: Json::Object(c) }]
}

fn reactions(content: &MimiContent, sender: &str, ids: &impl IdMap) -> Vec<MatrixOut> {
    let Some(target) = content.in_reply_to.and_then(|id| ids.event_id(&id)) else {
        return vec![MatrixOut::Dropped(DropReason::UnknownTarget)];
    };
    let parts = match &content.body.part {
        Part::Multi { parts, .. } => parts.iter().collect(),
        _ => vec![&content.body],
    };
    parts
        .into_iter()
        .map(|p| match &p.part {
            Part::Single { content_type, content } if base_type(content_type).starts_with("text/") => {
                let key = String::from_utf8_lossy(content);
                MatrixOut::Event {
                    sender: sender.to_owned(),
                    event_type: "m.reaction".into(),
                    content: json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}),
                }
            }
            _ => MatrixOut::Dropped(DropReason::NonTextReaction),
        })
        .collect()
}

fn message(content: &MimiContent, sender: &str, ids: &impl IdMap) -> Vec<MatrixOut> {
    let mut notes = Vec::new();
    let root = if content.topic_id.is_empty() {
        None
    } else {
        let root = <[u8; 32]>::try_from(content.topic_id.as_slice()).ok().and_then(|t| ids.event_id(&MessageId(t)));
        if root.is_none() {
            notes.push(MatrixOut::Dropped(DropReason::UnknownThread));
        }
        root
    };
    let reply = content.in_reply_to.and_then(|id| {
        let event = ids.event_id(&id);
        if event.is_none() {
            notes.push(MatrixOut::Dropped(DropReason::UnknownTarget));
        }
        event
    });
    let relates_to = match (&root, &reply) {
        (Some(root), reply) => Some(json!({
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": reply.is_none(),
            "m.in_reply_to": {"event_id": reply.as_ref().unwrap_or(root)},
        })),
        (None, Some(reply)) => Some(json!({"m.in_reply_to": {"event_id": reply}})),
        (None, None) => None,
    };
    let mut out: Vec<MatrixOut> = bodies(content, &content.body, sender)
        .into_iter()
        .map(|b| match b {
            Body::Text(text, msgtype) => {
                let mut c = text.content(msgtype);
                if let Some(r) = &relates_to {
                    c.insert("m.relates_to".into(), r.clone());
                }
                MatrixOut::Event {
                    sender: sender.to_owned(),
                    event_type: "m.room.message".into(),
                    content: Json::Object(c),
                }
            }
            Body::Media(part) => MatrixOut::Media(Box::new(PendingUpload {
                sender: sender.to_owned(),
                part,
                relates_to: relates_to.clone(),
            })),
            Body::Dropped(reason) => MatrixOut::Dropped(reason),
        })
        .collect();
    out.extend(notes);
    out
}

/// A link part as text: its description, if any, then the URL.
fn link_text(part: &ExternalPart) -> MatrixText {
    let body =
        if part.description.is_empty() { part.url.clone() } else { format!("{}: {}", part.description, part.url) };
    MatrixText { body, html: None, mentions: Vec::new() }
}

enum Body {
    Text(MatrixText, &'static str),
    Media(NestedPart),
    Dropped(DropReason),
}

/// What each part of a body becomes: `chooseOne` picks the first alternative that renders,
/// `processAll` and `singleUnit` give one Matrix event per part.
fn bodies(content: &MimiContent, part: &NestedPart, sender: &str) -> Vec<Body> {
    if [Disposition::PROFILE, Disposition::ICON, Disposition::SESSION, Disposition::PREVIEW].contains(&part.disposition)
    {
        return vec![Body::Dropped(DropReason::UnsupportedPart)];
    }
    if let Some((text, msgtype)) = text_for(content, part, sender) {
        return vec![Body::Text(text, msgtype)];
    }
    match &part.part {
        Part::Null => Vec::new(),
        // Nothing to download (a conference link): the link itself is the message.
        Part::External(e) if e.hash_alg == 0 => vec![Body::Text(link_text(e), "m.text")],
        Part::External(_) => vec![Body::Media(part.clone())],
        Part::Single { content_type, .. } => vec![Body::Dropped(DropReason::UnsupportedContent(content_type.clone()))],
        Part::Multi { semantics: PartSemantics::ChooseOne, parts } => {
            let mut last = Vec::new();
            for p in parts {
                last = bodies(content, p, sender);
                if last.iter().any(|b| !matches!(b, Body::Dropped(_))) {
                    break;
                }
            }
            last
        }
        Part::Multi { parts, .. } => parts.iter().flat_map(|p| bodies(content, p, sender)).collect(),
    }
}
