//! Commits of this server's clients, and other members' commits as they arrive, with the room
//! state they change ([`crate::mls::room_data`]): every commit of ours brings the participant
//! list to the log's membership, and a commit carrying `AppDataUpdate` proposals is staged only
//! once the room's rules resolved them, as the hub resolves them.

use openmls::prelude::{
    KeyPackage, LeafNodeIndex, OpenMlsProvider as _, ProcessedMessage, ProcessedMessageContent, StagedCommit,
};
use openmls_traits::signatures::Signer;

use super::{GroupError, RoomGroup, StagedOut, openmls_error, staged_out};
use crate::mls::{MlsProvider, room_data};

impl RoomGroup {
    /// Stages a commit adding `key_packages`, removing `removals` and bringing the room's
    /// participant list to `roster` (user → role; ignored in a room without a list). `None`
    /// when there is nothing to commit. Merged only once the hub appended it.
    pub fn stage_change(
        &mut self,
        provider: &MlsProvider,
        signer: &impl Signer,
        key_packages: &[KeyPackage],
        removals: &[LeafNodeIndex],
        roster: &room_data::Roster,
    ) -> Result<Option<StagedOut>, GroupError> {
        if self.has_pending_commit() {
            return Err(GroupError::PendingCommit);
        }
        let list = room_data::list_change(self.group.extensions(), roster)?;
        if key_packages.is_empty() && removals.is_empty() && list.is_none() {
            return Ok(None);
        }
        let mut stage = self
            .group
            .commit_builder()
            .propose_adds(key_packages.iter().cloned())
            .propose_removals(removals.iter().copied())
            .add_proposals(list)
            .force_self_update(!key_packages.is_empty())
            .load_psks(provider.storage())
            .map_err(openmls_error)?;
        let changes = room_data::resolve(stage.app_data_dictionary_updater(), stage.app_data_update_proposals())?;
        stage.with_app_data_dictionary_updates(changes);
        let bundle = stage
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .map_err(openmls_error)?
            .stage_commit(provider)
            .map_err(openmls_error)?;
        let welcome = bundle.to_welcome_msg();
        let (commit, _, group_info) = bundle.into_contents();
        staged_out(&commit, welcome.as_ref(), group_info).map(Some)
    }

    /// The staged commit of another member's processed commit, its room-state changes resolved.
    pub(super) fn staged(
        &self,
        provider: &MlsProvider,
        processed: ProcessedMessage,
    ) -> Result<Box<StagedCommit>, GroupError> {
        match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => Ok(staged),
            ProcessedMessageContent::UnresolvedAppDataCommit(unresolved) => {
                let changes = room_data::resolve(
                    self.group.app_data_dictionary_updater(),
                    unresolved.app_data_update_proposals(),
                )?;
                let staged = self.group.stage_app_data_commit(provider, *unresolved, changes).map_err(openmls_error)?;
                Ok(Box::new(staged))
            }
            _ => Err(GroupError::NotCommit),
        }
    }
}
