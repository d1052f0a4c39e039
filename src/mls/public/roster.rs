//! The room state in the `GroupContext` as the public view checks it: a commit's `AppDataUpdate`
//! proposals are resolved by the room's rules ([`room_data::resolve`]) before openmls stages the
//! commit, and, where the log's membership is known, the participant list after the commit must
//! be exactly what the membership calls for ([`room_data::roster`]).

use openmls::prelude::{ProcessedMessage, ProcessedMessageContent, StagedCommit};

use super::{MlsCheckError, PublicCommit, PublicView};
use crate::event::state::RoomState;
use crate::mimi::protocol::ParticipantList;
use crate::mls::room_data;

fn show(list: &room_data::Roster) -> String {
    let entries: Vec<_> = list.iter().map(|(user, role)| format!("{}={role}", String::from_utf8_lossy(user))).collect();
    entries.join(", ")
}

/// A room's participant list, if it has one, is `expected`.
fn same(listed: Option<ParticipantList>, expected: &room_data::Roster) -> Result<(), MlsCheckError> {
    match listed.map(|list| list.roles()) {
        Some(listed) if listed != *expected => {
            Err(MlsCheckError::ParticipantList { listed: show(&listed), log: show(expected) })
        }
        _ => Ok(()),
    }
}

impl PublicView {
    /// The staged commit of a processed `PublicMessage` commit, its room-state changes resolved.
    pub(super) fn staged(&self, processed: ProcessedMessage) -> Result<Box<StagedCommit>, MlsCheckError> {
        match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => Ok(staged),
            ProcessedMessageContent::UnresolvedAppDataCommit(unresolved) => {
                let changes = room_data::resolve(
                    self.group.app_data_dictionary_updater(),
                    unresolved.app_data_update_proposals(),
                )?;
                let staged = self
                    .group
                    .stage_app_data_commit(&self.crypto, *unresolved, changes)
                    .map_err(|e| MlsCheckError::Rejected(e.to_string()))?;
                Ok(Box::new(staged))
            }
            _ => Err(MlsCheckError::NotPublicCommit),
        }
    }

    /// In a room with a participant list, the list after `staged` must be the log's membership
    /// (`state`, before the commit).
    pub(super) fn check_roster(staged: &StagedCommit, state: &RoomState) -> Result<(), MlsCheckError> {
        same(room_data::participants(staged.group_context().extensions())?, &room_data::roster(state))
    }

    /// A new room's participant list, if it has one, lists its creator alone, as a participant.
    pub(super) fn check_created_by(&self, creator: &str) -> Result<(), MlsCheckError> {
        let expected = room_data::Roster::from([(room_data::participant(creator), room_data::ROLE_PARTICIPANT)]);
        same(room_data::participants(self.group.group_context().extensions())?, &expected)
    }

    /// Whether the room has a participant list that is not (yet) the log's membership.
    pub fn roster_behind(&self, state: &RoomState) -> bool {
        let listed = room_data::participants(self.group.group_context().extensions());
        matches!(listed, Ok(Some(list)) if list.roles() != room_data::roster(state))
    }

    /// The room's participant list as user URI → role (`None` in a room without one).
    pub fn listed(&self) -> Option<room_data::Roster> {
        room_data::participants(self.group.group_context().extensions()).ok().flatten().map(|list| list.roles())
    }

    /// The users a commit (a `PublicMessage` of the current epoch) lists as participants whom
    /// the log's membership (`state`) does not show joined: a hub appends their invite and
    /// join before the commit, so that the list and the log's membership agree again.
    pub fn newcomers(&self, commit: &[u8], state: &RoomState) -> Result<Vec<String>, MlsCheckError> {
        let PublicCommit { message, .. } = self.public_commit(commit)?;
        let processed =
            self.group.process_message(&self.crypto, message).map_err(|e| MlsCheckError::Rejected(e.to_string()))?;
        let staged = self.staged(processed)?;
        let Some(listed) = room_data::participants(staged.group_context().extensions())? else { return Ok(Vec::new()) };
        let joined = room_data::roster(state);
        let mut newcomers = Vec::new();
        for (user, role) in listed.roles() {
            if role != room_data::ROLE_PARTICIPANT || joined.get(&user) == Some(&room_data::ROLE_PARTICIPANT) {
                continue;
            }
            let uri = String::from_utf8_lossy(&user).into_owned();
            let user_id = crate::translate::uri::matrix_user_id(&uri)
                .map_err(|_| MlsCheckError::Malformed(format!("participant {uri} is not a user URI")))?;
            newcomers.push(user_id);
        }
        Ok(newcomers)
    }
}
