//! External commits: a new client of a participant joins by itself (after `groupInfo`), as the
//! draft has a user's new device do. The joiner is the leaf its commit's path brings; it is
//! admitted like an added client (its user joined; with a directory, a device its user's server
//! vouches for), and may remove only its own user's clients (a resync).

use openmls::prelude::{LeafNode, Sender, StagedCommit};

use super::{MlsCheckError, PublicView, device};
use crate::event::KeyRing;
use crate::event::state::RoomState;
use crate::mls::identity::{DeviceCredential, DeviceDirectory, IdentityError, validate_new_leaf};

impl PublicView {
    /// The device committing an external commit (`NewMemberCommit`), read before the commit is
    /// checked, to name the event's sender.
    pub(super) fn external_committer(&self, commit: &[u8]) -> Result<DeviceCredential, MlsCheckError> {
        let message = self.public_commit(commit)?.message;
        let processed =
            self.group.process_message(&self.crypto, message).map_err(|e| MlsCheckError::Rejected(e.to_string()))?;
        if !matches!(processed.sender(), Sender::NewMemberCommit) {
            return Err(MlsCheckError::ExternalCommit);
        }
        device(joining_leaf(&*self.staged(processed)?)?)
    }

    /// The joiner of an external commit, admitted as an added client would be.
    pub(super) fn joiner(
        staged: &StagedCommit,
        state: &RoomState,
        devices: Option<(&dyn DeviceDirectory, &KeyRing)>,
    ) -> Result<DeviceCredential, MlsCheckError> {
        admitted(joining_leaf(staged)?, state, devices)
    }
}

fn joining_leaf(staged: &StagedCommit) -> Result<&LeafNode, MlsCheckError> {
    staged.update_path_leaf_node().ok_or_else(|| MlsCheckError::Malformed("an external commit without a path".into()))
}

/// A leaf joining the group (added, or by external commit): its user must be joined; with
/// `devices`, a device its user's server vouches for must also have a device object that server
/// signed.
pub(super) fn admitted(
    leaf: &LeafNode,
    state: &RoomState,
    devices: Option<(&dyn DeviceDirectory, &KeyRing)>,
) -> Result<DeviceCredential, MlsCheckError> {
    let device = device(leaf)?;
    if let Some((directory, keys)) = devices.filter(|(d, _)| d.vouches_for(device.user_id())) {
        return Ok(validate_new_leaf(leaf.credential(), leaf.signature_key().as_slice(), state, directory, keys)?);
    }
    let membership = state.membership(device.user_id());
    if membership != Some("join") {
        let user = device.user_id().to_owned();
        return Err(IdentityError::NotJoined { user, membership: membership.map(str::to_owned) }.into());
    }
    Ok(device)
}
