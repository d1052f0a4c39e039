//! [`PublicView`]: a room's MLS group as anyone holding the log sees it, without being a member.
//!
//! The hub must police commits without reading messages, and a log must verify offline from
//! public data alone. Both need the same thing: openmls' `PublicGroup` (the ratchet tree and
//! group context, no secrets), started from the epoch-0 group info in the create event and moved
//! along by every `m.mls.commit` in log order. The hub, every follower and `log verify` run the
//! same checks here, so a log the hub accepted verifies, and one it would refuse does not:
//!
//! * a commit is a `PublicMessage` for the room's group at its current epoch (a commit that lost
//!   the race for an epoch is stale) and openmls validates it;
//! * its committer is a device of the event's sender (a member, or the new device of an
//!   external commit);
//! * every leaf it adds, and the joiner of an external commit, is a device of a user whose
//!   membership is `join` (with a directory, also vouched for by that user's server:
//!   [`validate_new_leaf`](super::identity::validate_new_leaf));
//! * a device is removed only by a sibling device, or by anyone once its user is not joined;
//! * path and update leaves keep their owner's credential and signature key;
//! * its `public_group_state` is exactly the group after the commit;
//! * an `m.room.encrypted` is an application `PrivateMessage` of the current epoch and names the
//!   latest commit.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    ContentType, LeafNode, LeafNodeIndex, MlsMessageBodyIn, MlsMessageIn, ProposalStore, ProtocolMessage, PublicGroup,
    Sender, StagedCommit,
};
use std::collections::BTreeSet;

use openmls::messages::group_info::VerifiableGroupInfo;
use openmls_rust_crypto::{MemoryStorage, RustCrypto};

mod error;
mod external;
mod frank;
mod proposal;
mod record;
mod roster;
mod step;

pub use error::MlsCheckError;

pub use step::{Step, apply_step, check_event};

use super::events::{CommitContent, EncryptedContent};
use super::identity::{DeviceCredential, DeviceDirectory, IdentityError};
use crate::event::KeyRing;
use crate::event::state::RoomState;

fn malformed(error: impl std::fmt::Display) -> MlsCheckError {
    MlsCheckError::Malformed(error.to_string())
}

/// A commit that passed the checks, to apply once its event is appended.
#[derive(Debug)]
pub struct CheckedCommit {
    after: After,
    added: Vec<DeviceCredential>,
}

/// A commit read as a `PublicMessage` of the current epoch (see `PublicView::public_commit`).
struct PublicCommit {
    message: ProtocolMessage,
    sender: Sender,
    confirmation_tag: Option<openmls::prelude::ConfirmationTag>,
}

/// How the group moves to the commit's epoch.
#[derive(Debug)]
enum After {
    /// To the group the event's `public_group_state` declares (checked equal to the commit's).
    Declared(Box<PublicView>),
    /// By merging the commit (a follower's record, which has only the commit).
    Staged(Box<StagedCommit>),
}

impl CheckedCommit {
    /// The devices the commit adds (a Welcome goes to their providers).
    pub fn added(&self) -> &[DeviceCredential] {
        &self.added
    }
}

/// The public state of a room's group (see the module documentation).
pub struct PublicView {
    group: PublicGroup,
    /// A follower's record: its events are `m.mimi.fanout`s (see [`record`]).
    record: bool,
    crypto: RustCrypto,
    latest_commit: String,
    /// SHA-256 of every ciphertext of the current epoch.
    ciphertexts: BTreeSet<[u8; 32]>,
}

impl std::fmt::Debug for PublicView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicView")
            .field("epoch", &self.epoch())
            .field("latest_commit", &self.latest_commit)
            .finish_non_exhaustive()
    }
}

/// Parses a TLS `MlsMessage` holding a `GroupInfo` of `room_id`'s group.
fn group_info(bytes: &[u8], room_id: &str) -> Result<VerifiableGroupInfo, MlsCheckError> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(malformed)?;
    let MlsMessageBodyIn::GroupInfo(info) = message.extract() else {
        return Err(MlsCheckError::Malformed("expected a GroupInfo".into()));
    };
    if info.group_id().as_slice() != room_id.as_bytes() {
        return Err(MlsCheckError::WrongGroup);
    }
    if info.ciphersuite() != super::CIPHERSUITE {
        return Err(MlsCheckError::Malformed(format!("ciphersuite {:?} is not the room's", info.ciphersuite())));
    }
    Ok(info)
}

/// The ratchet tree a GroupInfo (TLS `MlsMessage`) carries in its extension: the encoded nodes
/// of `Node ratchet_tree<V>`, without the vector's length.
pub fn ratchet_tree(group_info_bytes: &[u8]) -> Option<Vec<u8>> {
    use openmls::prelude::tls_codec::Serialize as _;
    let message = MlsMessageIn::tls_deserialize_exact(group_info_bytes).ok()?;
    let MlsMessageBodyIn::GroupInfo(info) = message.extract() else { return None };
    let encoded = info.extensions().ratchet_tree()?.ratchet_tree().tls_serialize_detached().ok()?;
    let mut reader = crate::mimi::protocol::tls::Reader::new(&encoded);
    reader.opaque("ratchet_tree").ok().map(<[u8]>::to_vec)
}

fn device(leaf: &LeafNode) -> Result<DeviceCredential, MlsCheckError> {
    Ok(DeviceCredential::from_leaf(leaf.credential(), leaf.signature_key().as_slice())?)
}

/// A leaf that must keep its owner: the same device, signing with the same key.
fn same_owner(leaf: &LeafNode, owner: &DeviceCredential) -> Result<(), MlsCheckError> {
    let credential = device(leaf)?;
    if &credential == owner {
        return Ok(());
    }
    let reason = if (credential.user_id(), credential.device_id()) == (owner.user_id(), owner.device_id()) {
        "a leaf changes its device's signature key"
    } else {
        "a leaf changes its device's credential"
    };
    let (user, device) = (credential.user_id().to_owned(), credential.device_id().to_owned());
    Err(IdentityError::CredentialMismatch { user, device, reason }.into())
}

impl PublicView {
    /// The group as `group_info` (a TLS `MlsMessage` with a `GroupInfo` and its ratchet tree)
    /// describes it; `latest_commit` is the event that opened this epoch.
    pub fn from_group_info(group_info_bytes: &[u8], room_id: &str, latest_commit: &str) -> Result<Self, MlsCheckError> {
        let info = group_info(group_info_bytes, room_id)?;
        let tree = info
            .extensions()
            .ratchet_tree()
            .ok_or_else(|| MlsCheckError::Malformed("group info without the ratchet tree".into()))?
            .ratchet_tree()
            .clone();
        let (crypto, storage) = (RustCrypto::default(), MemoryStorage::default());
        let (group, _) =
            PublicGroup::from_external(&crypto, &storage, tree, info, ProposalStore::new()).map_err(malformed)?;
        Ok(Self { group, record: false, crypto, latest_commit: latest_commit.to_owned(), ciphertexts: BTreeSet::new() })
    }

    /// The group of a new room: epoch 0 with one member, a device of the room's creator.
    pub fn for_create(
        group_info: &[u8],
        room_id: &str,
        creator: &str,
        create_event_id: &str,
    ) -> Result<Self, MlsCheckError> {
        let view = Self::from_group_info(group_info, room_id, create_event_id)?;
        let members: Vec<_> = view.group.members().collect();
        if view.epoch() != 0 || members.len() != 1 {
            return Err(MlsCheckError::Malformed("a new room's group must be at epoch 0 with one member".into()));
        }
        let owner = DeviceCredential::from_leaf(&members[0].credential, &members[0].signature_key)?;
        if owner.user_id() != creator {
            return Err(MlsCheckError::SenderMismatch {
                sender: creator.to_owned(),
                committer: owner.user_id().to_owned(),
            });
        }
        view.check_created_by(creator)?;
        Ok(view)
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// The event that opened the current epoch.
    pub fn latest_commit(&self) -> &str {
        &self.latest_commit
    }

    /// The credentials of the current members.
    pub fn members(&self) -> Vec<DeviceCredential> {
        self.group.members().filter_map(|m| DeviceCredential::from_leaf(&m.credential, &m.signature_key).ok()).collect()
    }

    fn check_epoch(&self, message: &ProtocolMessage) -> Result<(), MlsCheckError> {
        if message.group_id() != self.group.group_id() {
            return Err(MlsCheckError::WrongGroup);
        }
        let (message, group) = (message.epoch().as_u64(), self.epoch());
        match message.cmp(&group) {
            std::cmp::Ordering::Less => Err(MlsCheckError::StaleEpoch { message, group }),
            std::cmp::Ordering::Greater => Err(MlsCheckError::FutureEpoch { message, group }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    fn leaf_owner(&self, index: LeafNodeIndex) -> Result<DeviceCredential, MlsCheckError> {
        let leaf = self.group.leaf(index).ok_or_else(|| MlsCheckError::Rejected(format!("no leaf {index:?}")))?;
        device(leaf)
    }

    /// The device that signed a commit (a `PublicMessage` for the current epoch), read before
    /// the commit is checked, to name the event's sender.
    pub fn committer(&self, commit: &[u8]) -> Result<DeviceCredential, MlsCheckError> {
        match self.public_commit(commit)?.sender {
            Sender::Member(leaf) => self.leaf_owner(leaf),
            Sender::NewMemberCommit => self.external_committer(commit),
            _ => Err(MlsCheckError::ExternalCommit),
        }
    }

    /// A commit (TLS `MlsMessage`) as a `PublicMessage` of this group's current epoch, with what
    /// checking it needs from the public message before openmls takes it.
    fn public_commit(&self, commit: &[u8]) -> Result<PublicCommit, MlsCheckError> {
        let message = MlsMessageIn::tls_deserialize_exact(commit).map_err(malformed)?;
        let MlsMessageBodyIn::PublicMessage(public) = message.extract() else {
            return Err(MlsCheckError::NotPublicCommit);
        };
        let (sender, confirmation_tag) = (public.sender().clone(), public.confirmation_tag().cloned());
        let message = ProtocolMessage::from(public);
        if message.content_type() != ContentType::Commit {
            return Err(MlsCheckError::NotPublicCommit);
        }
        self.check_epoch(&message)?;
        Ok(PublicCommit { message, sender, confirmation_tag })
    }

    /// The epoch of an application message (a `PrivateMessage` for this group).
    pub fn message_epoch(&self, ciphertext: &[u8]) -> Result<u64, MlsCheckError> {
        let message = MlsMessageIn::tls_deserialize_exact(ciphertext).map_err(malformed)?;
        let MlsMessageBodyIn::PrivateMessage(private) = message.extract() else {
            return Err(MlsCheckError::NotApplication);
        };
        let message = ProtocolMessage::from(private);
        if message.group_id() != self.group.group_id() {
            return Err(MlsCheckError::WrongGroup);
        }
        Ok(message.epoch().as_u64())
    }

    /// Checks an `m.mls.commit` by `sender` against the room's `state` before it (see the module
    /// documentation). With `devices`, added leaves must also have device objects their users'
    /// servers signed (the hub's check); without, their users must be joined (replay).
    pub fn check_commit(
        &self,
        sender: &str,
        content: &CommitContent,
        state: &RoomState,
        devices: Option<(&dyn DeviceDirectory, &KeyRing)>,
    ) -> Result<CheckedCommit, MlsCheckError> {
        let PublicCommit { message, confirmation_tag, .. } = self.public_commit(&content.message)?;
        let processed =
            self.group.process_message(&self.crypto, message).map_err(|e| MlsCheckError::Rejected(e.to_string()))?;
        let member = match processed.sender() {
            Sender::Member(leaf) => Some(self.leaf_owner(*leaf)?),
            Sender::NewMemberCommit => None,
            _ => return Err(MlsCheckError::ExternalCommit),
        };
        let staged = self.staged(processed)?;
        let committer = match member {
            Some(member) => member,
            None => Self::joiner(&staged, state, devices)?,
        };
        if committer.user_id() != sender {
            return Err(MlsCheckError::SenderMismatch {
                sender: sender.to_owned(),
                committer: committer.user_id().to_owned(),
            });
        }
        let added = self.check_proposals(&staged, &committer, state, devices)?;
        Self::check_roster(&staged, state)?;
        // The declared group after the commit must load on its own (signature, ratchet tree
        // matching the tree hash: a restart reloads from it) and be exactly the group the commit
        // produces, down to the confirmation tag, which the public state cannot recompute.
        let room_id = String::from_utf8_lossy(self.group.group_id().as_slice()).into_owned();
        let after = Self::from_group_info(&content.public_group_state, &room_id, &self.latest_commit)?;
        if after.group.group_context() != staged.group_context()
            || Some(after.group.confirmation_tag()) != confirmation_tag.as_ref()
        {
            return Err(MlsCheckError::StateMismatch);
        }
        Ok(CheckedCommit { after: After::Declared(Box::new(after)), added })
    }

    fn check_proposals(
        &self,
        staged: &StagedCommit,
        committer: &DeviceCredential,
        state: &RoomState,
        devices: Option<(&dyn DeviceDirectory, &KeyRing)>,
    ) -> Result<Vec<DeviceCredential>, MlsCheckError> {
        for queued in staged.queued_proposals() {
            let kind = queued.proposal().proposal_type();
            if !matches!(
                kind,
                openmls::prelude::ProposalType::Add
                    | openmls::prelude::ProposalType::Remove
                    | openmls::prelude::ProposalType::Update
                    | openmls::prelude::ProposalType::AppDataUpdate
                    | openmls::prelude::ProposalType::ExternalInit
            ) {
                return Err(MlsCheckError::UnsupportedProposal(format!("{kind:?}")));
            }
        }
        let mut added = Vec::new();
        for add in staged.add_proposals() {
            added.push(external::admitted(add.add_proposal().key_package().leaf_node(), state, devices)?);
        }
        for remove in staged.remove_proposals() {
            let removed = self.leaf_owner(remove.remove_proposal().removed())?;
            let joined = state.membership(removed.user_id()) == Some("join");
            if removed.user_id() != committer.user_id() && joined {
                return Err(MlsCheckError::RemovalNotAllowed {
                    remover: committer.user_id().to_owned(),
                    removed: removed.user_id().to_owned(),
                });
            }
        }
        for update in staged.update_proposals() {
            let Sender::Member(index) = update.sender() else { return Err(MlsCheckError::ExternalCommit) };
            same_owner(update.update_proposal().leaf_node(), &self.leaf_owner(*index)?)?;
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            same_owner(leaf, committer)?;
        }
        Ok(added)
    }

    /// Moves the group to the epoch `commit` opens; `event_id` is its event.
    /// The group becomes the one the commit's group info describes (checked equal to what the
    /// commit produces), as a reload from that group info would.
    pub fn apply(&mut self, commit: CheckedCommit, event_id: &str) -> Result<(), MlsCheckError> {
        match commit.after {
            After::Declared(after) => *self = *after,
            After::Staged(staged) => {
                self.group.merge_commit(&MemoryStorage::default(), *staged).map_err(malformed)?;
                self.ciphertexts.clear();
            }
        }
        event_id.clone_into(&mut self.latest_commit);
        Ok(())
    }

    /// Records an appended `m.room.encrypted` of the current epoch, so a replay is refused.
    pub fn note_encrypted(&mut self, content: &EncryptedContent) {
        self.ciphertexts.insert(super::member::ciphertext_hash(&content.ciphertext));
    }

    /// Checks an `m.room.encrypted`: an application `PrivateMessage` of the current epoch that
    /// names the latest commit.
    pub fn check_encrypted(&self, content: &EncryptedContent) -> Result<(), MlsCheckError> {
        let message = MlsMessageIn::tls_deserialize_exact(&content.ciphertext).map_err(malformed)?;
        let MlsMessageBodyIn::PrivateMessage(private) = message.extract() else {
            return Err(MlsCheckError::NotApplication);
        };
        let message = ProtocolMessage::from(private);
        if message.content_type() != ContentType::Application {
            return Err(MlsCheckError::NotApplication);
        }
        self.check_epoch(&message)?;
        if self.ciphertexts.contains(&super::member::ciphertext_hash(&content.ciphertext)) {
            return Err(MlsCheckError::Replay);
        }
        if content.commit_event_id != self.latest_commit {
            return Err(MlsCheckError::StaleCommit {
                found: content.commit_event_id.clone(),
                latest: self.latest_commit.clone(),
            });
        }
        Ok(())
    }
}
