//! Matrix → MIMI: one event as the homeserver delivers it → MIMI messages (or drops).
//!
//! Every message gets extension 1 (the sender's user URI) and 2 (the room URI): MIMI's franking
//! and message IDs rest on them. Relations resolve through [`IdMap`]: an edit, delete or unlike
//! keeps the original's `inReplyTo` and `topicId` (only the body may change), and targets the
//! original's message ID, which is the first version because edits of edits never get through.

use serde_json::Value as Json;

use crate::mimi::cbor::Value;
use crate::mimi::{Disposition, ExtensionKey, MessageId, MimiContent, NestedPart, Part};

use super::ids::{EventKind, IdMap};
use super::media::{EncryptedBlob, external_part_for};
use super::receipts::receipt_event;
use super::text::{mimi_text, single, str_at, str_field};
use super::uri::{split_user_id, user_uri};
use super::{DropReason, MSGTYPE_KEY, Outcome, TEXT_PLAIN, TranslateError};

/// Where a salt comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Salt {
    /// 16 bytes from the operating system's CSPRNG for every message (production).
    Random,
    /// This salt for every message (tests and vectors only: IDs become predictable).
    Fixed([u8; 16]),
}

impl Salt {
    /// A salt.
    pub fn draw(self) -> Result<[u8; 16], TranslateError> {
        match self {
            Self::Fixed(s) => Ok(s),
            Self::Random => {
                let mut s = [0u8; 16];
                getrandom::fill(&mut s).map_err(|_| TranslateError::Random)?;
                Ok(s)
            }
        }
    }
}

/// What the bridge knows about the portal room a Matrix event arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundContext {
    /// The MIMI room URI (extension 2).
    pub room_uri: String,
    /// The salt source.
    pub salt: Salt,
    /// When set (the homeserver's domain), every message also carries the Matrix event's
    /// `origin_server_ts` and ID as extensions 3 and 4 (`mimi.more_content_extensions`).
    pub matrix_origin: Option<String>,
}

/// A Matrix attachment on its way to MIMI: everything but the uploaded blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMedia {
    /// The message, its body a NullPart placeholder until [`finish`](Self::finish).
    pub content: MimiContent,
    /// The file to fetch from the homeserver.
    pub mxc_url: String,
    /// The Matrix media content (`msgtype`, `body`, `filename`, `info`…).
    pub source: Json,
}

impl PendingMedia {
    /// The message, once the encrypted blob is at `url`.
    pub fn finish(self, url: &str, blob: &EncryptedBlob) -> Result<MimiContent, TranslateError> {
        let mut content = self.content;
        content.body = external_part_for(&self.source, url, blob)?;
        Ok(content)
    }
}

/// Translates one Matrix event (timeline or ephemeral) for the MIMI room `ctx` describes.
pub fn to_mimi(event: &Json, ctx: &OutboundContext, ids: &impl IdMap) -> Result<Vec<Outcome>, TranslateError> {
    let mut outcomes = translate(event, ctx, ids)?;
    if let Some(scope) = &ctx.matrix_origin {
        let ts = event.get("origin_server_ts").and_then(Json::as_u64);
        let event_id = event.get("event_id").and_then(Json::as_str);
        for outcome in &mut outcomes {
            let content = match outcome {
                Outcome::Message(content) => content.as_mut(),
                Outcome::Media(pending) => &mut pending.content,
                Outcome::Dropped(_) => continue,
            };
            if let Some(ts) = ts {
                content.set_sender_timestamp_ms(ts);
            }
            if let Some(id) = event_id {
                content.set_external_message_id(id.as_bytes(), scope);
            }
        }
    }
    Ok(outcomes)
}

fn translate(event: &Json, ctx: &OutboundContext, ids: &impl IdMap) -> Result<Vec<Outcome>, TranslateError> {
    let event_type = str_field(event, "type")?;
    let dropped = |r| Ok(vec![Outcome::Dropped(r)]);
    match event_type {
        "m.typing" => dropped(DropReason::Typing),
        "m.presence" => dropped(DropReason::Presence),
        "m.fully_read" => dropped(DropReason::PrivateReceipt),
        "m.receipt" => receipt_event(event, ctx, ids),
        "m.room.pinned_events" => dropped(DropReason::PinnedEvents),
        "m.room.encrypted" => dropped(DropReason::Encrypted),
        t if t.starts_with("m.call.") || t.starts_with("org.matrix.msc3401.call") || t.starts_with("m.rtc.") => {
            dropped(DropReason::Call)
        }
        t if t.starts_with("m.poll.") || t.starts_with("org.matrix.msc3381.poll.") => dropped(DropReason::Poll),
        t if t.contains("widget") => dropped(DropReason::Widget),
        _ if event.get("state_key").is_some() => dropped(DropReason::State),
        "m.room.message" | "m.sticker" => message(event, ctx, ids),
        "m.reaction" => reaction(event, ctx, ids),
        "m.room.redaction" => redaction(event, ctx, ids),
        other => dropped(DropReason::Unsupported(other.to_owned())),
    }
}

/// A message with extensions 1 and 2 and a fresh salt.
pub(super) fn envelope(
    sender_uri: &str,
    ctx: &OutboundContext,
    body: NestedPart,
) -> Result<MimiContent, TranslateError> {
    let mut content = MimiContent {
        salt: ctx.salt.draw()?,
        replaces: None,
        topic_id: Vec::new(),
        expires: None,
        in_reply_to: None,
        extensions: Vec::new(),
        body,
    };
    content.set_extension(ExtensionKey::Int(1), Value::Text(sender_uri.to_owned()));
    content.set_extension(ExtensionKey::Int(2), Value::Text(ctx.room_uri.clone()));
    Ok(content)
}

fn null_part(disposition: Disposition) -> NestedPart {
    NestedPart { disposition, language: String::new(), part: Part::Null }
}

fn message(event: &Json, ctx: &OutboundContext, ids: &impl IdMap) -> Result<Vec<Outcome>, TranslateError> {
    let sender = str_field(event, "sender")?;
    let content = event.get("content").ok_or_else(|| TranslateError::MissingField("content".into()))?;
    let rel_type = str_at(content, &["m.relates_to", "rel_type"]);
    let mut notes = Vec::new();
    let (mut replaces, mut in_reply_to, mut topic_id) = (None, None, Vec::new());
    let source = if rel_type == Some("m.replace") {
        let target = str_at(content, &["m.relates_to", "event_id"])
            .ok_or_else(|| TranslateError::MissingField("content.m.relates_to.event_id".into()))?;
        let Some(original) = ids.event(target) else { return Ok(vec![Outcome::Dropped(DropReason::UnknownTarget)]) };
        let drop = match original.kind {
            EventKind::Edit => Some(DropReason::EditOfEdit),
            _ if original.sender != sender => Some(DropReason::ForeignEdit),
            EventKind::Reaction => Some(DropReason::Unsupported("m.replace of a reaction".into())),
            EventKind::Message => None,
        };
        if let Some(reason) = drop {
            return Ok(vec![Outcome::Dropped(reason)]);
        }
        (replaces, in_reply_to, topic_id) = (Some(original.message_id), original.in_reply_to, original.topic_id);
        content.get("m.new_content").ok_or_else(|| TranslateError::MissingField("content.m.new_content".into()))?
    } else {
        let reply = str_at(content, &["m.relates_to", "m.in_reply_to", "event_id"]);
        if rel_type == Some("m.thread") {
            let root = str_at(content, &["m.relates_to", "event_id"]).unwrap_or("");
            match ids.message_id(root) {
                Some(id) => topic_id = id.0.to_vec(),
                None => notes.push(Outcome::Dropped(DropReason::UnknownThread)),
            }
        }
        let falling_back = content.pointer("/m.relates_to/is_falling_back").and_then(Json::as_bool) == Some(true);
        if let Some(reply) = reply.filter(|_| !(rel_type == Some("m.thread") && falling_back)) {
            in_reply_to = lookup(ids, reply, &mut notes);
        }
        content
    };
    if source.pointer("/m.mentions/room").and_then(Json::as_bool) == Some(true) {
        notes.push(Outcome::Dropped(DropReason::RoomMention));
    }
    let event_type = str_field(event, "type")?;
    let msgtype = if event_type == "m.sticker" { "m.sticker" } else { str_field(source, "msgtype")? };
    let is_reply = content.pointer("/m.relates_to/m.in_reply_to").is_some();
    let localpart = split_user_id(sender)?.0;
    let body = match msgtype {
        "m.image" | "m.file" | "m.video" | "m.audio" | "m.sticker" => None,
        "m.emote" => Some(mimi_text(source, is_reply, Some(localpart))?),
        "m.location" => {
            let text = format!("{} ({})", str_field(source, "body")?, str_field(source, "geo_uri")?);
            Some(single(Disposition::RENDER, TEXT_PLAIN, text.into_bytes()))
        }
        _ => Some(mimi_text(source, is_reply, None)?),
    };
    let is_media = body.is_none();
    let mut mimi = envelope(&user_uri(sender)?, ctx, body.unwrap_or_else(|| null_part(Disposition::RENDER)))?;
    (mimi.replaces, mimi.in_reply_to, mimi.topic_id) = (replaces, in_reply_to, topic_id);
    if matches!(msgtype, "m.notice" | "m.emote") {
        mimi.set_extension(ExtensionKey::Text(MSGTYPE_KEY.into()), Value::Text(msgtype.into()));
    }
    let first = if is_media {
        // An encrypted room's attachment names its ciphertext in `file` (the bridge decrypts it).
        let encrypted = source.get("file").and_then(|f| f.get("url")).and_then(Json::as_str);
        let mxc_url = match encrypted {
            Some(url) => url.to_owned(),
            None => str_field(source, "url")?.to_owned(),
        };
        let mut source = source.clone();
        if msgtype == "m.sticker"
            && let Some(obj) = source.as_object_mut()
        {
            obj.insert("msgtype".into(), "m.sticker".into());
        }
        Outcome::Media(Box::new(PendingMedia { content: mimi, mxc_url, source }))
    } else {
        Outcome::Message(Box::new(mimi))
    };
    notes.insert(0, first);
    Ok(notes)
}

fn lookup(ids: &impl IdMap, event_id: &str, notes: &mut Vec<Outcome>) -> Option<MessageId> {
    let id = ids.message_id(event_id);
    if id.is_none() {
        notes.push(Outcome::Dropped(DropReason::UnknownTarget));
    }
    id
}

fn reaction(event: &Json, ctx: &OutboundContext, ids: &impl IdMap) -> Result<Vec<Outcome>, TranslateError> {
    let sender = str_field(event, "sender")?;
    let content = event.get("content").ok_or_else(|| TranslateError::MissingField("content".into()))?;
    if str_at(content, &["m.relates_to", "rel_type"]) != Some("m.annotation") {
        return Ok(vec![Outcome::Dropped(DropReason::Unsupported("m.reaction without m.annotation".into()))]);
    }
    let target = str_at(content, &["m.relates_to", "event_id"])
        .ok_or_else(|| TranslateError::MissingField("content.m.relates_to.event_id".into()))?;
    let key = str_at(content, &["m.relates_to", "key"])
        .ok_or_else(|| TranslateError::MissingField("content.m.relates_to.key".into()))?;
    let Some(target) = ids.message_id(target) else { return Ok(vec![Outcome::Dropped(DropReason::UnknownTarget)]) };
    let body = single(Disposition::REACTION, TEXT_PLAIN, key.as_bytes().to_vec());
    let mut mimi = envelope(&user_uri(sender)?, ctx, body)?;
    mimi.in_reply_to = Some(target);
    Ok(vec![Outcome::Message(Box::new(mimi))])
}

fn redaction(event: &Json, ctx: &OutboundContext, ids: &impl IdMap) -> Result<Vec<Outcome>, TranslateError> {
    let sender = str_field(event, "sender")?;
    let target = str_field(event, "redacts")
        .or_else(|_| str_at(event, &["content", "redacts"]).ok_or(TranslateError::MissingField("redacts".into())))?;
    let Some(target) = ids.event(target) else { return Ok(vec![Outcome::Dropped(DropReason::UnknownTarget)]) };
    let disposition = match target.kind {
        _ if target.sender != sender => return Ok(vec![Outcome::Dropped(DropReason::ModeratorRedaction)]),
        EventKind::Edit => return Ok(vec![Outcome::Dropped(DropReason::RedactedEdit)]),
        EventKind::Reaction => Disposition::REACTION,
        EventKind::Message => Disposition::RENDER,
    };
    let mut mimi = envelope(&user_uri(sender)?, ctx, null_part(disposition))?;
    mimi.replaces = Some(target.message_id);
    mimi.in_reply_to = target.in_reply_to;
    if disposition == Disposition::RENDER {
        mimi.topic_id = target.topic_id;
    }
    let mut out = vec![Outcome::Message(Box::new(mimi))];
    if str_at(event, &["content", "reason"]).is_some_and(|r| !r.is_empty()) {
        out.push(Outcome::Dropped(DropReason::RedactionReason));
    }
    Ok(out)
}
