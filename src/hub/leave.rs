//! Users leaving a MIMI room: their membership, then their clients out of the group.
//!
//! MLS has no way for a client to commit its own removal, so another client commits it. In a
//! room hubbed here that is a client of this server, as the room's rules allow once the user is
//! no longer joined. Both steps are durable before the next and each is skipped when done, so a
//! retry after a crash finishes the leave; with no other client of this server in the group the
//! removal waits for the next commit of this server's (the departed clients can still decrypt
//! until then). A user of another provider leaves the same way, once their client proposed its
//! removal (`update` with a Remove proposal). In a room hubbed elsewhere this server's user's
//! client sends that proposal to the hub and the record drops the client when the hub's commit
//! comes back.

use crate::event::meta::server_of;
use crate::mimi::protocol::{HandshakeBundle, Wire as _};
use crate::mls::public::MlsCheckError;

use super::mls::client_error;
use super::remote::{now_ms, ts};
use super::{Hub, HubError, Owed, Resubmit, Verdict, lock, member_event};

impl Hub {
    /// `user_id` (of any provider) leaves the room (`membership` `leave`, or `ban`): `sender`
    /// is the user themselves, or a user of this server with the power to kick or ban them.
    /// Returns whether the clients are out.
    pub fn leave(
        &self,
        room_id: &str,
        sender: &str,
        user_id: &str,
        membership: &str,
        ts: i64,
    ) -> Result<bool, HubError> {
        // A ban also holds for a user who left or never joined; a leave only for a member.
        let append = match self.membership(room_id, user_id)?.as_deref() {
            Some("join" | "invite") => true,
            Some("leave") | None => membership == "ban",
            _ => false,
        };
        if append {
            let event = member_event(room_id, sender, user_id, membership, ts);
            let head = self.head(room_id)?;
            let mut head = lock(&head);
            if head.chain.hub() != self.server_name {
                return Err(HubError::NotHub { room_id: room_id.to_owned(), hub: head.chain.hub().to_owned() });
            }
            if server_of(sender) != self.server_name && !head.chain.version().hub_signs() {
                return Err(HubError::NotLocalSender { sender: sender.to_owned(), server: self.server_name.clone() });
            }
            let pending = self.append_template(&mut head, event, |_| crate::store::Batch::new())?;
            drop(head);
            pending.wait()?;
        }
        if !self.owes_commit(room_id, user_id)? {
            return Ok(true);
        }
        let Some(committer) = self.local_clients(room_id)?.into_iter().find(|u| u != user_id) else {
            return Ok(false);
        };
        self.commit_remove(room_id, &committer, user_id, ts)?.wait()?;
        Ok(true)
    }

    /// Whether a commit is owed once `user_id` left: their clients are still in the group, or
    /// the participant list does not show the leave yet.
    fn owes_commit(&self, room_id: &str, user_id: &str) -> Result<bool, HubError> {
        let head = self.head(room_id)?;
        let head = lock(&head);
        let Some(mls) = head.mls.as_ref() else { return Ok(false) };
        Ok(mls.view.members().iter().any(|c| c.user_id() == user_id) || mls.view.roster_behind(head.chain.state()))
    }

    /// `update` with proposals from `provider`: each a client of one of its users proposing
    /// its removal, which must take all of that user's clients; those users leave.
    pub fn submit_remote_leave(
        &self,
        room_id: &str,
        provider: &str,
        proposals: &[Vec<u8>],
    ) -> Result<Verdict, HubError> {
        let head = match self.remote_head(room_id)? {
            Ok(head) => head,
            Err(refusal) => return Ok(refusal),
        };
        let mut users = std::collections::BTreeMap::<String, usize>::new();
        {
            let head = lock(&head);
            if let Some(refusal) = self.not_hubbed_here(&head) {
                return Ok(refusal);
            }
            let Some(mls) = head.mls.as_ref() else {
                return Ok(Verdict::NotAllowed("the room is not encrypted".into()));
            };
            // The epoch first: a retry of a leave the hub already took is of an older one, and
            // the follower, told the epoch, finds its client gone once its record follows.
            for proposal in proposals {
                match mls.view.departing(proposal) {
                    Ok(device) => *users.entry(device.user_id().to_owned()).or_default() += 1,
                    Err(MlsCheckError::StaleEpoch { .. } | MlsCheckError::FutureEpoch { .. }) => {
                        return Ok(Verdict::WrongEpoch(mls.view.epoch()));
                    }
                    Err(e @ (MlsCheckError::RemovalNotAllowed { .. } | MlsCheckError::UnsupportedProposal(_))) => {
                        return Ok(Verdict::InvalidProposal(e.to_string()));
                    }
                    Err(e) => return Ok(Verdict::NotAllowed(e.to_string())),
                }
            }
            let members = mls.view.members();
            for (user, proposed) in &users {
                if server_of(user) != provider || provider == self.server_name {
                    return Ok(Verdict::NotAllowed(format!("{provider} does not speak for {user}")));
                }
                if members.iter().filter(|c| c.user_id() == user).count() != *proposed {
                    let why = format!("the proposals remove some of {user}'s clients: only a whole leave is taken");
                    return Ok(Verdict::InvalidProposal(why));
                }
            }
        }
        let timestamp = now_ms();
        for user in users.keys() {
            self.leave(room_id, user, user, "leave", ts(timestamp))?;
        }
        Ok(Verdict::Accepted { timestamp, pending: None, frank: None })
    }

    /// As a follower: `user` (of this server) leaves a room hubbed elsewhere. Their client's
    /// proposal to be removed is queued for the hub's `update`, durable with the client's state
    /// before this returns. `false` if the user has no client in the group.
    pub fn propose_leave(&self, room_id: &str, user: &str) -> Result<bool, HubError> {
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        self.followed(&head)?;
        let Some(member) = head.mls.as_mut().and_then(|mls| mls.members.get_mut(user)) else { return Ok(false) };
        let body = leave_body(member)?;
        let owed =
            Owed { provider: server_of(room_id).to_owned(), endpoint: "update", room_id: room_id.to_owned(), body };
        self.write_for_hub(head, user, crate::store::Batch::new(), Some(owed))?;
        Ok(true)
    }

    /// An `update` with a leave proposal (`body`) the hub answered `wrongEpoch` with `epoch`
    /// (as [`Hub::resubmit`] for messages): the record must reach that epoch first; a client no
    /// longer in the group is out already; else its proposal for the current epoch, durable
    /// with `replace(new_body)` before this returns. An `update` with a commit is
    /// [`Hub::recommit`]'s.
    pub fn repropose(
        &self,
        room_id: &str,
        body: &[u8],
        epoch: u64,
        replace: impl FnOnce(&[u8]) -> crate::store::Batch,
    ) -> Result<Resubmit, HubError> {
        let proposal = match HandshakeBundle::decode(body) {
            Ok(HandshakeBundle::Proposals { proposal, .. }) => proposal,
            Ok(HandshakeBundle::Commit { .. }) => return self.recommit(room_id, body, epoch, replace),
            Err(error) => return Err(HubError::MlsClient(format!("an update to send again: {error}"))),
        };
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        if mls.view.epoch() < epoch {
            return Ok(Resubmit::Behind);
        }
        let Some((user, member)) = mls.members.iter_mut().find(|(_, m)| m.proposed(&proposal)) else {
            return Ok(Resubmit::Accepted);
        };
        let user = user.clone();
        let new_body = leave_body(member)?;
        self.write_for_hub(head, &user, replace(&new_body), None)?;
        tracing::info!(room_id, user, "leave proposed again in the hub's epoch");
        Ok(Resubmit::Body(new_body))
    }
}

/// The `update` body of a client's proposal to be removed (its writes pending in the client).
fn leave_body(member: &mut crate::mls::member::Member) -> Result<Vec<u8>, HubError> {
    let proposal = member.propose_leave().map_err(client_error)?;
    Ok(HandshakeBundle::Proposals { proposal, more: Vec::new() }.encode())
}
