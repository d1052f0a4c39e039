//! A Matrix user's message the MIMI room will never take (too large once encrypted, or refused
//! outright): the sender is told in the portal and the refusal is counted, because a message that
//! vanishes without a word is worse than one that fails loudly.
//!
//! The notice is queued on the homeserver queue in the same batch that deletes the message's
//! intake entry, so it is queued exactly once per Matrix event whatever crashes or retries come
//! between; its transaction ID is derived from the Matrix event ID (`refused.<event ID>`), so even
//! a repeated send posts it once. The portal's opener (the bot, or the ghost that was invited)
//! sends it: it is the bridge user known to be in the room.

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError};
use super::delivery::HomeserverQueue;
use super::intake::Queued;
use crate::event::EventError;
use crate::hub::HubError;
use crate::store::Batch;

/// A permanent refusal of a user's message: the counter's reason and what the sender is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused ({reason}): {notice}")]
pub struct Refusal {
    /// The `reason` label of `mimi_bridge_messages_refused_total`.
    pub reason: &'static str,
    /// The notice's body.
    pub notice: String,
}

impl Refusal {
    /// The refusal a hub error amounts to; `None` for a failure worth retrying (storage).
    pub fn of(error: &HubError) -> Option<Self> {
        match error {
            HubError::Store(_) | HubError::CommitPending { .. } => None,
            HubError::Event(EventError::TooLarge { size, limit }) => Some(Self {
                reason: "too_large",
                notice: format!(
                    "Your message was not bridged: it is {} bytes once encrypted, over the {}-byte limit of a MIMI \
                     room event.",
                    thousands(*size),
                    thousands(*limit)
                ),
            }),
            other => Some(Self {
                reason: "refused",
                notice: format!("Your message was not bridged: the MIMI room refused it ({other})."),
            }),
        }
    }
}

/// An append's error, with a hub error that refuses the message for good made a
/// [`BridgeError::Refused`].
pub fn refusing(error: BridgeError) -> BridgeError {
    match error {
        BridgeError::Hub(hub) => Refusal::of(&hub).map_or(BridgeError::Hub(hub), BridgeError::Refused),
        other => other,
    }
}

/// `65536` → `65,536`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The queued request of a refusal notice for the Matrix event `event_id` in `room`.
pub fn notice_request(room: &str, event_id: &str, refusal: &Refusal) -> Value {
    json!({
        "kind": "notice", "room": room, "txn_id": format!("refused.{event_id}"), "matrix_event_id": event_id,
        "content": {"msgtype": "m.notice", "body": refusal.notice},
    })
}

impl Bridge {
    /// Queues the notice of `refusal` for the intake entry `queued` and deletes the entry, in one
    /// batch; counts the refusal once it is durable (before the notice can go out).
    pub(super) async fn refuse(
        &self,
        queued: &Queued,
        refusal: &Refusal,
        queue: &std::sync::Arc<HomeserverQueue>,
    ) -> Result<(), BridgeError> {
        let field = |name: &'static str| queued.event.get(name).and_then(Value::as_str).unwrap_or_default();
        let (room, event_id) = (field("room_id"), field("event_id"));
        tracing::info!(room, event_id, reason = refusal.reason, "a user's message was refused; telling them");
        let mut batch = Batch::new();
        batch.intake(queued.seq, None);
        let request = notice_request(room, event_id, refusal).to_string().into_bytes();
        let (ticket, keys) = queue.enqueue(batch, vec![(room.to_owned(), request)]);
        ticket.wait().await?;
        self.metrics.refused(refusal.reason);
        queue.wake(&keys);
        Ok(())
    }

    /// Sends a queued notice under its fixed transaction ID (`send_notice_content`).
    pub(super) async fn send_notice(&self, room: &str, request: &Value) -> Result<Batch, BridgeError> {
        let txn_id = request["txn_id"].as_str().ok_or(BridgeError::Malformed("txn_id"))?;
        self.send_notice_content(room, txn_id, &request["content"]).await?;
        Ok(Batch::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_large_message_is_named_with_its_size_and_the_limit() {
        let error = HubError::Event(EventError::TooLarge { size: 81_234, limit: 65_536 });
        let refusal = Refusal::of(&error).unwrap();
        assert_eq!(refusal.reason, "too_large");
        assert_eq!(
            refusal.notice,
            "Your message was not bridged: it is 81,234 bytes once encrypted, over the 65,536-byte limit of a MIMI \
             room event."
        );
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let request = notice_request("!r:hs.test", "$e", &refusal);
        assert_eq!((request["kind"].as_str(), request["txn_id"].as_str()), (Some("notice"), Some("refused.$e")));
    }
}
