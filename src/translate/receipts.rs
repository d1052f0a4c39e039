//! Public read receipts ⇄ MIMI message status `read`.
//!
//! A Matrix receipt says "read up to here" for one user; a MIMI status report lists messages one
//! by one. The bridge reports exactly the receipted events (it does not invent "all earlier
//! messages"), and in reverse turns every `read` entry into an `m.read` receipt — the homeserver
//! keeps the furthest. Reports travel nested in a normal message as a SinglePart of type
//! `application/mimi-message-status`, the form phnx-im and nexun use.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::mimi::status::{Status, StatusReport};
use crate::mimi::{Disposition, MimiContent};

use super::ids::IdMap;
use super::text::single;
use super::to_mimi::envelope;
use super::uri::user_uri;
use super::{DropReason, MESSAGE_STATUS, MatrixOut, OutboundContext, Outcome, TranslateError};

/// A `read` report for the Matrix events `event_ids`; unknown events are dropped with reasons.
pub fn read_receipt_to_status(event_ids: &[&str], ids: &impl IdMap) -> (StatusReport, Vec<DropReason>) {
    let mut report = StatusReport::default();
    let mut dropped = Vec::new();
    for event_id in event_ids {
        match ids.message_id(event_id) {
            Some(id) => report.entries.push((id, Status::READ)),
            None => dropped.push(DropReason::UnknownTarget),
        }
    }
    (report, dropped)
}

/// The events to send `m.read` receipts for: `read` entries of known messages. Other statuses
/// and unknown messages are dropped with reasons.
pub fn status_to_read_receipts(report: &StatusReport, ids: &impl IdMap) -> (Vec<String>, Vec<DropReason>) {
    let mut events = Vec::new();
    let mut dropped = Vec::new();
    for (id, status) in &report.entries {
        if *status != Status::READ {
            dropped.push(DropReason::StatusWithoutEquivalent(status.name()));
        } else if let Some(event_id) = ids.event_id(id) {
            events.push(event_id);
        } else {
            dropped.push(DropReason::UnknownTarget);
        }
    }
    (events, dropped)
}

/// The message that carries `report` from `sender_uri`.
pub fn status_message(
    report: &StatusReport,
    sender_uri: &str,
    ctx: &OutboundContext,
) -> Result<MimiContent, TranslateError> {
    envelope(sender_uri, ctx, single(Disposition::UNSPECIFIED, MESSAGE_STATUS, report.encode()))
}

/// `m.receipt` (`{event_id: {receipt_type: {user_id: {ts, thread_id?}}}}`) → one status message
/// per user with public receipts; private receipts and other types are dropped.
pub(super) fn receipt_event(
    event: &Json,
    ctx: &OutboundContext,
    ids: &impl IdMap,
) -> Result<Vec<Outcome>, TranslateError> {
    let content =
        event.get("content").and_then(Json::as_object).ok_or_else(|| TranslateError::MissingField("content".into()))?;
    let mut by_user: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut out = Vec::new();
    for (event_id, types) in content {
        for (receipt_type, users) in types.as_object().into_iter().flatten() {
            let users = users.as_object().into_iter().flatten().map(|(u, _)| u.as_str());
            match receipt_type.as_str() {
                "m.read" => users.for_each(|u| by_user.entry(u).or_default().push(event_id)),
                "m.read.private" => out.extend(users.map(|_| Outcome::Dropped(DropReason::PrivateReceipt))),
                other => out.push(Outcome::Dropped(DropReason::Unsupported(format!("receipt type {other}")))),
            }
        }
    }
    let mut messages = Vec::new();
    for (user, event_ids) in by_user {
        let (report, dropped) = read_receipt_to_status(&event_ids, ids);
        out.extend(dropped.into_iter().map(Outcome::Dropped));
        if !report.entries.is_empty() {
            messages.push(Outcome::Message(Box::new(status_message(&report, &user_uri(user)?, ctx)?)));
        }
    }
    messages.extend(out);
    Ok(messages)
}

/// A nested status report → read receipts by `sender` (and drops).
pub(super) fn receipts_out(report: &StatusReport, sender: &str, ids: &impl IdMap) -> Vec<MatrixOut> {
    let (events, dropped) = status_to_read_receipts(report, ids);
    let receipts = events.into_iter().map(|event_id| MatrixOut::ReadReceipt { sender: sender.to_owned(), event_id });
    receipts.chain(dropped.into_iter().map(MatrixOut::Dropped)).collect()
}
