//! Appending for users of other MIMI providers: what a follower provider submits with `update`
//! (commits) and `submitMessage` (application messages) to a room hubbed here.
//!
//! The provider is authenticated by its client certificate; here it may speak only for its own
//! users, who must be joined. The message then takes the same path as a local user's: the event
//! is built under the room's lock with the remote user as sender (signed by this hub, as
//! [`MIMI_HUB_1`](crate::event::room_version::MIMI_HUB_1) rooms are), checked by the room's
//! public view, and appended with its fan-out in one batch. A refusal stores nothing and says
//! which of the draft's answers applies.

use crate::event::meta::server_of;
use crate::mimi::protocol::Wire;
use crate::mls::events::{COMMIT, CommitContent, ENCRYPTED, EncryptedContent};
use crate::mls::member::ciphertext_hash;
use crate::mls::public::MlsCheckError;
use crate::store::Batch;

use super::{Hub, HubError, PendingAppend, RoomHead, lock};

/// What the hub made of a submission.
#[derive(Debug)]
pub enum Verdict {
    /// Accepted at `timestamp` (ms): durable once `pending` is. A resubmission of a message
    /// already accepted in this epoch is accepted again with its first timestamp, nothing new
    /// appended (`pending` is `None`).
    Accepted {
        /// The hub's acceptance time.
        timestamp: u64,
        /// The append, if this submission made one.
        pending: Option<PendingAppend>,
        /// The hub's frank of an application message (when the room franks and the message
        /// carries a franking tag).
        frank: Option<Box<crate::mimi::protocol::Frank>>,
    },
    /// The message is for another epoch than the room's current one.
    WrongEpoch(u64),
    /// The sender may not do this (not a joined user of the submitting provider, or the room is
    /// not hubbed here).
    NotAllowed(String),
    /// A proposal the room's rules refuse.
    InvalidProposal(String),
}

pub(super) fn now_ms() -> u64 {
    crate::queue::now_ms()
}

impl Hub {
    /// `submitMessage`: `sender` (a user of `provider`) sends an application message.
    pub fn submit_remote_message(
        &self,
        room_id: &str,
        provider: &str,
        sender: &str,
        ciphertext: &[u8],
    ) -> Result<Verdict, HubError> {
        let head = match self.remote_head(room_id)? {
            Ok(head) => head,
            Err(refusal) => return Ok(refusal),
        };
        let mut head = lock(&head);
        if let Some(refusal) = self.refuse_remote(&head, provider, sender) {
            return Ok(refusal);
        }
        let Some(mls) = head.mls.as_ref() else { return Ok(Verdict::NotAllowed("the room is not encrypted".into())) };
        let epoch = mls.view.epoch();
        match mls.view.message_epoch(ciphertext) {
            Ok(e) if e == epoch => {}
            Ok(_) => return Ok(Verdict::WrongEpoch(epoch)),
            Err(error) => return Ok(Verdict::NotAllowed(error.to_string())),
        }
        if let Some(timestamp) = mls.accepted.get(&ciphertext_hash(ciphertext)) {
            // Franks are deterministic: the first acceptance's, made again.
            let frank = mls.view.frank(ciphertext, sender, *timestamp, &self.key).map(Box::new);
            return Ok(Verdict::Accepted { timestamp: *timestamp, pending: None, frank });
        }
        let timestamp = now_ms();
        let frank = mls.view.frank(ciphertext, sender, timestamp, &self.key);
        let content = EncryptedContent {
            ciphertext: ciphertext.to_vec(),
            commit_event_id: mls.view.latest_commit().into(),
            frank: frank.as_ref().map(Wire::encode),
        };
        let template = super::mls::template(room_id, sender, ENCRYPTED, content.to_json(), ts(timestamp));
        let appended = verdict(self.append_template(&mut head, template, |_| Batch::new()), timestamp, epoch);
        Ok(match appended {
            Verdict::Accepted { timestamp, pending, .. } => {
                Verdict::Accepted { timestamp, pending, frank: frank.map(Box::new) }
            }
            refused => refused,
        })
    }

    /// `update`: a commit by a device of a user of `provider`, with the group after it
    /// (`group_info`: a TLS `MlsMessage` with the GroupInfo and its ratchet tree) and the Welcome
    /// for the devices it adds.
    pub fn submit_remote_commit(
        &self,
        room_id: &str,
        provider: &str,
        commit: &[u8],
        group_info: &[u8],
        welcome: Option<&[u8]>,
    ) -> Result<Verdict, HubError> {
        let head = match self.remote_head(room_id)? {
            Ok(head) => head,
            Err(refusal) => return Ok(refusal),
        };
        let mut head = lock(&head);
        let Some(mls) = head.mls.as_ref() else { return Ok(Verdict::NotAllowed("the room is not encrypted".into())) };
        let epoch = mls.view.epoch();
        let committer = match mls.view.committer(commit) {
            Ok(committer) => committer,
            Err(MlsCheckError::StaleEpoch { .. } | MlsCheckError::FutureEpoch { .. }) => {
                return Ok(Verdict::WrongEpoch(epoch));
            }
            Err(error) => return Ok(Verdict::NotAllowed(error.to_string())),
        };
        let sender = committer.user_id().to_owned();
        if let Some(refusal) = self.refuse_remote(&head, provider, &sender) {
            return Ok(refusal);
        }
        let newcomers = match mls.view.newcomers(commit, head.chain.state()) {
            Ok(newcomers) => newcomers,
            Err(error) => return Ok(verdict(Err(error.into()), 0, epoch)),
        };
        // This server's devices the Welcome is for: claimed here by the committer's provider.
        let claimed = welcome.map(|w| self.welcomed_devices(provider, w)).transpose()?.unwrap_or_default();
        let content = CommitContent { message: commit.to_vec(), public_group_state: group_info.to_vec() };
        let timestamp = now_ms();
        let template = super::mls::template(room_id, &sender, COMMIT, content.to_json(), ts(timestamp));
        // Users the commit makes participants join first (see `hub::adds`).
        let joins = match self.append_newcomers(&mut head, &sender, (&newcomers, &claimed), &template)? {
            Ok(joins) => joins,
            Err(refusal) => return Ok(refusal),
        };
        let kept = welcome.map(<[u8]>::to_vec);
        let targets = claimed.clone();
        let extra = move |event_id: &str| {
            let mut batch = Batch::new();
            if let Some(welcome) = &kept {
                batch.put_welcome(event_id, &crate::mls::member::welcome_json(welcome, event_id, &targets));
            }
            batch
        };
        let appended = self.append_template(&mut head, template, extra);
        drop(head);
        for join in joins {
            join.wait()?;
        }
        let (Some(welcome), false) = (welcome, claimed.is_empty()) else {
            return Ok(verdict(appended, timestamp, epoch));
        };
        let pending = match appended {
            Ok(pending) => pending,
            refused => return Ok(verdict(refused, timestamp, epoch)),
        };
        // This server's clients join once the commit is durable (a crash before: they join
        // from the stored Welcome when their users next speak).
        pending.wait()?;
        for (user, _) in &claimed {
            if let Err(error) = self.join_group(room_id, user, welcome) {
                tracing::warn!(room_id, user, %error, "a Welcome for a client here could not be used");
            }
        }
        Ok(Verdict::Accepted { timestamp, pending: None, frank: None })
    }

    /// `user`, of another MIMI provider, joins a MIMI room hubbed here (its provider handed out
    /// the user's key material for the room, which is the user's consent): this hub vouches
    /// for it, signing the join as it signs every event of such a room. The room's rules still
    /// apply (an invite first, unless the room is public). Done already is done.
    pub fn vouch_join(&self, room_id: &str, user: &str, ts: i64) -> Result<Option<PendingAppend>, HubError> {
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let provider = server_of(user).to_owned();
        if head.chain.state().membership(user) == Some("join") {
            return Ok(None);
        }
        if provider == self.server_name || !head.chain.version().hub_signs() || head.chain.hub() != self.server_name {
            return Err(HubError::NotLocalSender { sender: user.to_owned(), server: self.server_name.clone() });
        }
        let template = super::member_event(room_id, user, user, "join", ts);
        self.append_template(&mut head, template, |_| Batch::new()).map(Some)
    }

    /// The room's head, or the answer for a room this server does not have.
    pub(super) fn remote_head(
        &self,
        room_id: &str,
    ) -> Result<Result<std::sync::Arc<std::sync::Mutex<RoomHead>>, Verdict>, HubError> {
        match self.head(room_id) {
            Ok(head) => Ok(Ok(head)),
            Err(HubError::UnknownRoom(_)) => Ok(Err(Verdict::NotAllowed(format!("no room {room_id} here")))),
            Err(e) => Err(e),
        }
    }

    /// The answer for a room this server has but does not hub as a MIMI room, if it does not.
    pub(super) fn not_hubbed_here(&self, head: &RoomHead) -> Option<Verdict> {
        (!head.chain.version().hub_signs() || head.chain.hub() != self.server_name)
            .then(|| Verdict::NotAllowed(format!("{} is not a MIMI room hubbed here", head.chain.room_id())))
    }

    /// Why `provider` may not speak for `sender` in this room, if it may not.
    fn refuse_remote(&self, head: &RoomHead, provider: &str, sender: &str) -> Option<Verdict> {
        if let Some(refusal) = self.not_hubbed_here(head) {
            return Some(refusal);
        }
        if server_of(sender) != provider || provider == self.server_name {
            return Some(Verdict::NotAllowed(format!("{provider} does not speak for {sender}")));
        }
        let membership = head.chain.state().membership(sender);
        (membership != Some("join"))
            .then(|| Verdict::NotAllowed(format!("{sender} is not a participant (membership {membership:?})")))
    }
}

pub(super) fn ts(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The draft's answer for an append's outcome.
pub(super) fn verdict(result: Result<PendingAppend, HubError>, timestamp: u64, epoch: u64) -> Verdict {
    match result {
        Ok(pending) => Verdict::Accepted { timestamp, pending: Some(pending), frank: None },
        Err(HubError::Mls(MlsCheckError::StaleEpoch { .. } | MlsCheckError::FutureEpoch { .. })) => {
            Verdict::WrongEpoch(epoch)
        }
        Err(HubError::Mls(
            error @ (MlsCheckError::Identity(_)
            | MlsCheckError::RemovalNotAllowed { .. }
            | MlsCheckError::UnsupportedProposal(_)
            | MlsCheckError::RoomState(_)
            | MlsCheckError::ParticipantList { .. }),
        )) => Verdict::InvalidProposal(error.to_string()),
        Err(error) => Verdict::NotAllowed(error.to_string()),
    }
}
