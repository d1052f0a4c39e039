//! Fan-out: what a MIMI room's hub owes the other providers for each message it accepts.
//!
//! An accepted MLS message is owed to every provider with a client in the room's group (the
//! sender's own included: its record must hold the room's order, and its other users need the
//! message), and a Welcome to the providers of the devices it adds. Those `notify` requests are computed under the room's lock
//! and queued in the very batch that appends the event, so the log and the fan-out can never
//! disagree: a message is in the log exactly when it is owed to the followers, and a crash
//! can lose neither. Delivery belongs to the provider's outbox, behind [`RequestQueue`]; this module
//! only says what is owed.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::event::Pdu;
use crate::event::meta::server_of;
use crate::mimi::protocol::{FanoutExtra, FanoutMessage, Frank, RatchetTreeOption, Wire as _};
use crate::mls::events::{COMMIT, CommitContent, ENCRYPTED, EncryptedContent};
use crate::mls::public::Step;
use crate::store::{Batch, QueueKey, Ticket};

use super::{Hub, RoomHead};

/// One request owed to another provider about a room: a hub's `notify`, a follower's
/// `submitMessage` or `update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// The provider's domain.
    pub provider: String,
    /// The endpoint, as directories name it.
    pub endpoint: &'static str,
    /// The room (its log's room ID; the request names its MIMI room URI).
    pub room_id: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The durable queue requests to other providers go out from (the provider's outbox).
pub trait RequestQueue: Send + Sync + std::fmt::Debug {
    /// Adds `owed` to `batch` under fresh sequence numbers and submits it, in one step that
    /// keeps the queue's order the order of the batches.
    fn submit(&self, batch: Batch, owed: Vec<Owed>) -> (Ticket, Vec<QueueKey>);

    /// Starts delivering entries once their batch is durable.
    fn wake(&self, keys: &[QueueKey]);
}

impl Hub {
    /// Sets where requests to other providers go. Appends made before (offline tools) owe
    /// nothing to anyone.
    pub fn set_outbox(&self, outbox: Arc<dyn RequestQueue>) {
        let _ = self.outbox.set(outbox);
    }

    /// The `notify` requests owed for `pdu`, about to be appended to a room hubbed here with
    /// `batch` (which holds the Welcome of a commit that adds devices). Computed against the
    /// room's state before the event.
    pub(super) fn owed(&self, head: &RoomHead, pdu: &Pdu, step: &Step, batch: &Batch) -> Vec<Owed> {
        if !head.chain.version().hub_signs() || head.chain.hub() != self.server_name || self.outbox.get().is_none() {
            return Vec::new();
        }
        let meta = pdu.meta();
        let timestamp = u64::try_from(meta.origin_server_ts).unwrap_or_default();
        let followers = self.followers(head);
        let message = match (meta.event_type.as_str(), step) {
            (ENCRYPTED, Step::Encrypted(content)) => application(timestamp, content),
            (COMMIT, Step::Commit(_)) => match CommitContent::parse(pdu.content()) {
                Ok(content) => commit(timestamp, content.message),
                Err(_) => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        let notify = |provider: &str, message: &FanoutMessage| Owed {
            provider: provider.to_owned(),
            endpoint: "notify",
            room_id: meta.room_id.clone(),
            body: FanoutMessage::encode_all(std::slice::from_ref(message)),
        };
        let mut out: Vec<Owed> = followers.iter().map(|p| notify(p, &message)).collect();
        if let Step::Commit(checked) = step
            && let Some(welcome) = batch.welcome_of(pdu.event_id()).and_then(|j| crate::mls::member::parse_welcome(&j))
        {
            let welcome = welcome_of(timestamp, welcome.message, pdu);
            let invited: BTreeSet<&str> = checked
                .added()
                .iter()
                .map(|d| server_of(d.user_id()))
                .filter(|server| *server != self.server_name)
                .collect();
            out.extend(invited.into_iter().map(|p| notify(p, &welcome)));
        }
        out
    }

    /// The providers other than this one with a client in the room's group (before the event):
    /// those that can use what the room carries. A provider whose first client a commit adds
    /// gets that commit's Welcome instead.
    fn followers(&self, head: &RoomHead) -> BTreeSet<String> {
        let Some(mls) = head.mls.as_ref() else { return BTreeSet::new() };
        mls.view
            .members()
            .iter()
            .map(|client| server_of(client.user_id()).to_owned())
            .filter(|server| *server != self.server_name)
            .collect()
    }
}

/// The fan-out of an application message.
pub(super) fn application(timestamp: u64, content: &EncryptedContent) -> FanoutMessage {
    FanoutMessage {
        timestamp,
        message: content.ciphertext.clone(),
        extra: FanoutExtra::Application(content.frank.as_deref().and_then(|f| Frank::decode(f).ok())),
    }
}

/// The fan-out of a commit.
pub(super) fn commit(timestamp: u64, message: Vec<u8>) -> FanoutMessage {
    FanoutMessage { timestamp, message, extra: FanoutExtra::Commit(vec![]) }
}

/// The fan-out of the Welcome of `commit` (its `m.mls.commit`): the tree travels beside it
/// ("full"), as the group after the commit has it.
pub(super) fn welcome_of(timestamp: u64, welcome: Vec<u8>, commit: &Pdu) -> FanoutMessage {
    let tree = CommitContent::parse(commit.content())
        .ok()
        .and_then(|c| crate::mls::public::ratchet_tree(&c.public_group_state))
        .map_or(RatchetTreeOption::DistributionService, RatchetTreeOption::Full);
    FanoutMessage { timestamp, message: welcome, extra: FanoutExtra::Welcome(tree) }
}
