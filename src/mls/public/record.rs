//! A follower's record of a room hubbed elsewhere, as its public view checks it.
//!
//! The record starts with the group as this follower's first client joined it (its create event
//! carries that GroupInfo) and then holds every message the hub fanned out, verbatim. Anyone
//! with the record can replay the room's MLS transcript from there without a secret: each commit
//! must be a `PublicMessage` of a member for the current epoch that openmls accepts (signature,
//! membership tag, path) and moves the group on; each application message must be a
//! `PrivateMessage` of the current epoch, never repeated. The room's Matrix-side rules (who is
//! joined) are the hub's to enforce: the record has no such state to check them against.
//!
//! An epoch behind the record's is a repeat of what the hub already sent (its order is fixed, so
//! whatever belonged to an older epoch came before the commit that closed it); an epoch ahead
//! is a gap.
//!
//! When every client of this server has left, the hub sends this server nothing more; a later
//! Welcome for one of its users then brings a group some epochs on. That Welcome's entry carries
//! the group as the welcomed client joined it, and the record goes on from there: the epochs
//! between were none of this server's, and the record says so rather than pretend to hold them.

use openmls::prelude::Sender;

use super::{After, CheckedCommit, MlsCheckError, PublicView, malformed};
use crate::mimi::protocol::{FanoutExtra, FanoutMessage, Wire as _};
use crate::mls::events::{EncryptedContent, FanoutContent};

use super::step::Step;

impl PublicView {
    /// The group of a follower's record: as its first client joined it (`group_info`, with the
    /// ratchet tree), at whatever epoch that was.
    pub fn for_record(group_info: &[u8], room_id: &str, create_event_id: &str) -> Result<Self, MlsCheckError> {
        let mut view = Self::from_group_info(group_info, room_id, create_event_id)?;
        view.record = true;
        Ok(view)
    }

    /// Whether this is a follower's record.
    pub fn is_record(&self) -> bool {
        self.record
    }

    /// Checks one fanned-out message, the `m.mimi.fanout` `event_id` of `room_id` with
    /// `content`; see the module documentation.
    pub fn check_fanout(&self, content: &FanoutContent, room_id: &str, event_id: &str) -> Result<Step, MlsCheckError> {
        let fanout = FanoutMessage::decode(&content.fanout).map_err(malformed)?;
        if let Some(group_info) = &content.rejoined {
            if !matches!(fanout.extra, FanoutExtra::Welcome(_)) {
                return Err(MlsCheckError::Malformed("only a Welcome brings a record's group back".into()));
            }
            let rejoined = Self::for_record(group_info, room_id, event_id)?;
            if rejoined.epoch() <= self.epoch() {
                let (rejoined, record) = (rejoined.epoch(), self.epoch());
                let why =
                    format!("a Welcome brings the group back at epoch {rejoined}, not past the record's {record}");
                return Err(MlsCheckError::Malformed(why));
            }
            return Ok(Step::Create(Box::new(rejoined)));
        }
        match fanout.extra {
            FanoutExtra::Application(_) => {
                let content = EncryptedContent {
                    ciphertext: fanout.message,
                    commit_event_id: self.latest_commit.clone(),
                    frank: None,
                };
                self.check_encrypted(&content)?;
                Ok(Step::Encrypted(content))
            }
            FanoutExtra::Commit(_) => Ok(Step::Commit(self.check_fanned_commit(&fanout.message)?)),
            // A Welcome changes nothing public; proposals wait for the commit that takes them.
            FanoutExtra::Welcome(_) | FanoutExtra::Proposal(_) => Ok(Step::None),
        }
    }

    fn check_fanned_commit(&self, commit: &[u8]) -> Result<CheckedCommit, MlsCheckError> {
        let message = self.public_commit(commit)?.message;
        let processed =
            self.group.process_message(&self.crypto, message).map_err(|e| MlsCheckError::Rejected(e.to_string()))?;
        if !matches!(processed.sender(), Sender::Member(_) | Sender::NewMemberCommit) {
            return Err(MlsCheckError::ExternalCommit);
        }
        let staged = self.staged(processed)?;
        let mut added = Vec::new();
        for add in staged.add_proposals() {
            added.push(super::device(add.add_proposal().key_package().leaf_node())?);
        }
        Ok(CheckedCommit { after: After::Staged(staged), added })
    }
}
