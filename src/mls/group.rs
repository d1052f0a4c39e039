//! [`RoomGroup`]: the MLS group of one MIMI room, as the bridge's client in that room sees it.
//!
//! The group ID is the room ID's UTF-8 bytes. Commits go out as `PublicMessage` (see
//! [`group_create_config`](super::group_create_config)) and take effect only once the hub has
//! appended them: [`RoomGroup::add_members`] stages a commit without merging it; merge it with
//! [`RoomGroup::merge_pending_commit`] once the hub accepted it, or drop it with
//! [`RoomGroup::discard_pending_commit`] if the hub rejected it. Other members' commits arrive
//! through [`RoomGroup::apply_commit`]. Application messages carry MIMI content framed as
//! `ApplicationFraming` with media type `application/mimi-content` ([`super::framing`]).
//!
//! # Persistence
//!
//! Every operation here writes its state changes through the provider's
//! [`RocksStorage`](super::RocksStorage), which holds them in memory. The caller makes them
//! durable: `provider.storage().persist()`, or [`take_batch`](super::RocksStorage::take_batch)
//! into the batch that carries the event the operation produced. **The state must be durable
//! before the ciphertext, commit or Welcome leaves the process** (persist, or wait for the
//! batch): otherwise a crash would bring back the old ratchet state and the next message would
//! reuse a key and nonce, or the group would lose the epoch its own commit created. After an
//! operation fails the caller may call [`discard_pending`](super::RocksStorage::discard_pending)
//! (it drops every write since the last take, so persist what came before first).

use openmls::framing::errors::MessageDecryptionError;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, CredentialWithKey, GroupId, KeyPackage, MlsGroup, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut,
    OpenMlsProvider as _, ProcessMessageError, ProcessedMessageContent, ProtocolMessage, ValidationError,
};
use openmls_traits::signatures::Signer;

use openmls::messages::group_info::GroupInfo;

mod frank;
mod join;
mod stage;

pub use join::{group_info_request, open_group_info};

use super::framing::{self, FramingError, MIMI_CONTENT_TYPE};
use super::{MlsProvider, group_create_config};

/// A commit of ours, staged until the hub appends it: what goes into the `m.mls.commit` and,
/// when it adds members, their Welcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedOut {
    /// The commit (TLS `MlsMessage`, a `PublicMessage`).
    pub commit: Vec<u8>,
    /// The group after the commit (TLS `MlsMessage`, a `GroupInfo` with the ratchet tree).
    pub group_info: Vec<u8>,
    /// The Welcome for added members.
    pub welcome: Option<Vec<u8>>,
}

/// Why a group operation failed. No operation panics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The message is from an epoch the group has left (its secrets are gone): a commit that lost
    /// the race at the hub, or an application message sent before a commit both sides applied.
    #[error("message from epoch {message} but the group is at epoch {group}")]
    StaleEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// The message is from an epoch the group has not reached yet (a commit is missing).
    #[error("message from epoch {message} but the group is only at epoch {group}")]
    FutureEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// A commit of ours awaits the hub's verdict: merge or discard it first.
    #[error("a commit of ours is pending: merge or discard it first")]
    PendingCommit,
    /// There is no pending commit to merge.
    #[error("no commit of ours is pending")]
    NoPendingCommit,
    /// The ciphertext's key is gone: the message was already decrypted (keys are deleted for
    /// forward secrecy), or its generation is behind the window kept for late messages.
    #[error("message already processed or too old (replay)")]
    Replay,
    /// [`RoomGroup::decrypt`] got something other than an application message.
    #[error("not an application message")]
    NotApplication,
    /// [`RoomGroup::apply_commit`] got something other than a commit.
    #[error("not a commit")]
    NotCommit,
    /// The message is for another group.
    #[error("message is for another group")]
    WrongGroup,
    /// The application message's content is not `application/mimi-content`.
    #[error("media type {0:?} is not application/mimi-content")]
    WrongMediaType(String),
    /// The application message is not a well-formed `ApplicationFraming`.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The bytes are not a well-formed MLS message.
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    /// The sender's credential is not a basic credential.
    #[error("sender credential is not a basic credential")]
    Credential,
    /// A commit's room-state change breaks the room's rules.
    #[error(transparent)]
    RoomState(#[from] super::room_data::RoomDataError),
    /// The group's state could not be read from storage.
    #[error("MLS storage: {0}")]
    Storage(#[from] super::MlsStorageError),
    /// openmls refused the operation.
    #[error("openmls: {0}")]
    Openmls(String),
}

/// A decrypted application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The sender's basic-credential identity (its MIMI client or user URI).
    pub sender_identity: Vec<u8>,
    /// The epoch the message was sent in.
    pub epoch: u64,
    /// The MIMI content (CBOR), unframed.
    pub mimi_cbor: Vec<u8>,
    /// The franking tag the sender put in the Safe AAD (checked against the content).
    pub frank_tag: Option<[u8; 32]>,
}

/// The MLS group of one room (see the module documentation).
#[derive(Debug)]
pub struct RoomGroup {
    group: MlsGroup,
}

fn openmls_error(error: impl std::fmt::Display) -> GroupError {
    GroupError::Openmls(error.to_string())
}

fn serialize(message: &MlsMessageOut) -> Result<Vec<u8>, GroupError> {
    message.to_bytes().map_err(openmls_error)
}

fn staged_out(
    commit: &MlsMessageOut,
    welcome: Option<&MlsMessageOut>,
    group_info: Option<GroupInfo>,
) -> Result<StagedOut, GroupError> {
    let group_info = group_info.ok_or_else(|| GroupError::Openmls("commit without a group info".into()))?;
    Ok(StagedOut {
        commit: serialize(commit)?,
        group_info: serialize(&MlsMessageOut::from(group_info))?,
        welcome: welcome.map(serialize).transpose()?,
    })
}

impl RoomGroup {
    /// Creates the room's group with us as its only member (epoch 0), with the `GroupContext`
    /// `extensions` of a MIMI room if given ([`super::room_data::new_room_extensions`]). Fails if
    /// the group exists.
    pub fn create(
        provider: &MlsProvider,
        signer: &impl Signer,
        credential_with_key: CredentialWithKey,
        room_id: &str,
        extensions: Option<openmls::prelude::Extensions<openmls::prelude::GroupContext>>,
    ) -> Result<Self, GroupError> {
        let group = MlsGroup::new_with_group_id(
            provider,
            signer,
            &extensions.map_or_else(group_create_config, super::hubbed_group_config),
            GroupId::from_slice(room_id.as_bytes()),
            credential_with_key,
        )
        .map_err(openmls_error)?;
        Ok(Self { group })
    }

    /// The room's group from storage, if we are in it.
    pub fn load(provider: &MlsProvider, room_id: &str) -> Result<Option<Self>, GroupError> {
        let group = MlsGroup::load(provider.storage(), &GroupId::from_slice(room_id.as_bytes()))?;
        Ok(group.map(|group| Self { group }))
    }

    /// Wraps a group joined from a Welcome (or otherwise built with openmls).
    pub fn from_group(group: MlsGroup) -> Self {
        Self { group }
    }

    /// The openmls group, for what this wrapper does not cover.
    pub fn mls_group(&self) -> &MlsGroup {
        &self.group
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// Whether a commit of ours awaits the hub's verdict.
    pub fn has_pending_commit(&self) -> bool {
        self.group.pending_commit().is_some()
    }

    /// Stages a commit adding `key_packages`; returns the commit and the Welcome (see
    /// [`stage_add`](Self::stage_add), which also returns the group after the commit).
    pub fn add_members(
        &mut self,
        provider: &MlsProvider,
        signer: &impl Signer,
        key_packages: &[KeyPackage],
    ) -> Result<(Vec<u8>, Vec<u8>), GroupError> {
        let staged = self.stage_add(provider, signer, key_packages)?;
        Ok((staged.commit, staged.welcome.unwrap_or_default()))
    }

    /// Stages a commit adding `key_packages`: the commit for the hub, the group after it and the
    /// Welcome for the new members. The commit is **not** merged: call
    /// [`merge_pending_commit`](Self::merge_pending_commit) once the hub appended it.
    pub fn stage_add(
        &mut self,
        provider: &MlsProvider,
        signer: &impl Signer,
        key_packages: &[KeyPackage],
    ) -> Result<StagedOut, GroupError> {
        if self.has_pending_commit() {
            return Err(GroupError::PendingCommit);
        }
        let (commit, welcome, group_info) =
            self.group.add_members(provider, signer, key_packages).map_err(openmls_error)?;
        staged_out(&commit, Some(&welcome), group_info)
    }

    /// The leaves of `user_id`'s devices.
    pub fn leaves_of(&self, user_id: &str) -> Vec<openmls::prelude::LeafNodeIndex> {
        self.group
            .members()
            .filter(|m| {
                super::identity::NamedClient::from_credential(&m.credential).is_ok_and(|c| c.user_id == user_id)
            })
            .map(|m| m.index)
            .collect()
    }

    /// A proposal (TLS `MlsMessage`, a `PublicMessage`) removing our own leaf, for another
    /// member to commit: MLS lets no client commit its own removal.
    pub fn propose_leave(&mut self, provider: &MlsProvider, signer: &impl Signer) -> Result<Vec<u8>, GroupError> {
        serialize(&self.group.leave_group(provider, signer).map_err(openmls_error)?)
    }

    /// The current group as a signed `GroupInfo` with the ratchet tree (TLS `MlsMessage`): what
    /// a room's create event carries for epoch 0.
    pub fn group_info(&self, provider: &MlsProvider, signer: &impl Signer) -> Result<Vec<u8>, GroupError> {
        serialize(&self.group.export_group_info(provider.crypto(), signer, true).map_err(openmls_error)?)
    }

    /// Whether we are still a member (a commit that removed us makes the group inactive).
    pub fn is_active(&self) -> bool {
        self.group.is_active()
    }

    /// The hub appended our pending commit: move to its epoch.
    pub fn merge_pending_commit(&mut self, provider: &MlsProvider) -> Result<(), GroupError> {
        if !self.has_pending_commit() {
            return Err(GroupError::NoPendingCommit);
        }
        self.group.merge_pending_commit(provider).map_err(openmls_error)
    }

    /// The hub rejected our pending commit: forget it and stay in the current epoch.
    pub fn discard_pending_commit(&mut self, provider: &MlsProvider) -> Result<(), GroupError> {
        self.group.clear_pending_commit(provider.storage()).map_err(openmls_error)
    }

    /// Parses `bytes` as a protocol message of this group in an epoch it can process.
    fn protocol_message(&self, bytes: &[u8]) -> Result<ProtocolMessage, GroupError> {
        let message = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| GroupError::Malformed(e.to_string()))?;
        let message = match message.extract() {
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            _ => return Err(GroupError::Malformed("not a PublicMessage or PrivateMessage".into())),
        };
        if message.group_id() != self.group.group_id() {
            return Err(GroupError::WrongGroup);
        }
        let (message_epoch, group) = (message.epoch().as_u64(), self.epoch());
        if message_epoch < group {
            return Err(GroupError::StaleEpoch { message: message_epoch, group });
        }
        if message_epoch > group {
            return Err(GroupError::FutureEpoch { message: message_epoch, group });
        }
        Ok(message)
    }

    /// Maps openmls' processing errors onto ours.
    fn process_error<E: std::fmt::Display>(&self, error: ProcessMessageError<E>, message_epoch: u64) -> GroupError {
        match error {
            ProcessMessageError::ValidationError(ValidationError::WrongEpoch | ValidationError::NoPastEpochData) => {
                GroupError::StaleEpoch { message: message_epoch, group: self.epoch() }
            }
            // openmls does not export `SecretTreeError`; its Debug form names the variant.
            ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(
                MessageDecryptionError::SecretTreeError(e),
            )) if matches!(format!("{e:?}").as_str(), "SecretReuseError" | "TooDistantInThePast") => GroupError::Replay,
            other => openmls_error(other),
        }
    }

    /// Processes and merges another member's commit (as the hub delivered it). A commit from a
    /// past epoch (it lost the race at the hub) is [`GroupError::StaleEpoch`]. With a commit of
    /// ours pending this is [`GroupError::PendingCommit`]: the hub delivering another commit for
    /// our epoch means ours was rejected, so discard it first (or merge it if this is our own).
    pub fn apply_commit(&mut self, provider: &MlsProvider, commit: &[u8]) -> Result<(), GroupError> {
        let message = self.protocol_message(commit)?;
        if self.has_pending_commit() {
            return Err(GroupError::PendingCommit);
        }
        let epoch = message.epoch().as_u64();
        let processed = self.group.process_message(provider, message).map_err(|e| self.process_error(e, epoch))?;
        let staged = self.staged(provider, processed)?;
        self.group.merge_staged_commit(provider, *staged).map_err(openmls_error)
    }

    /// Encrypts MIMI content (CBOR) as an application message (`PrivateMessage`), framed as
    /// `application/mimi-content`. Refused while a commit of ours is pending, and for content
    /// longer than [`framing::MAX_INNER_LEN`] (receivers would refuse it). Persist the
    /// storage before the returned bytes leave the process (module documentation).
    pub fn encrypt(
        &mut self,
        provider: &MlsProvider,
        signer: &impl Signer,
        mimi_cbor: &[u8],
    ) -> Result<Vec<u8>, GroupError> {
        if self.has_pending_commit() {
            return Err(GroupError::PendingCommit);
        }
        framing::check_inner_len(mimi_cbor.len())?;
        let framed = framing::frame_mimi(mimi_cbor);
        self.commit_to_content(&framed, mimi_cbor)?;
        let message = self.group.create_message(provider, signer, &framed).map_err(openmls_error)?;
        serialize(&message)
    }

    /// Decrypts an application message and unframes its MIMI content. A message from an epoch
    /// the group has left is [`GroupError::StaleEpoch`] (groups keep no past epochs' secrets:
    /// `max_past_epochs` is 0 in [`group_create_config`]); one already decrypted is
    /// [`GroupError::Replay`]; other content types are [`GroupError::WrongMediaType`].
    pub fn decrypt(&mut self, provider: &MlsProvider, ciphertext: &[u8]) -> Result<Decrypted, GroupError> {
        let message = self.protocol_message(ciphertext)?;
        if !matches!(message, ProtocolMessage::PrivateMessage(_)) {
            return Err(GroupError::NotApplication);
        }
        let epoch = message.epoch().as_u64();
        let processed = self.group.process_message(provider, message).map_err(|e| self.process_error(e, epoch))?;
        let sender_identity = BasicCredential::try_from(processed.credential().clone())
            .map_err(|_| GroupError::Credential)?
            .identity()
            .to_vec();
        let frank_tag = processed.safe_aad_item(crate::mimi::frank::FRANK_AAD).map(<[u8]>::to_vec);
        let ProcessedMessageContent::ApplicationMessage(application) = processed.into_content() else {
            return Err(GroupError::NotApplication);
        };
        let framed = application.into_bytes();
        let (media_type, mimi_cbor) = framing::unframe(&framed)?;
        if media_type != MIMI_CONTENT_TYPE {
            return Err(GroupError::WrongMediaType(media_type));
        }
        // A tag must be the content's: the sender cannot disown what its frank will bind.
        let frank_tag = match frank_tag {
            None => None,
            Some(tag) => {
                let expected = frank::tag_of(&framed, &mimi_cbor);
                if expected.is_none_or(|e| e[..] != tag[..]) {
                    return Err(GroupError::Malformed("the franking tag is not the content's".into()));
                }
                expected
            }
        };
        Ok(Decrypted { sender_identity, epoch, mimi_cbor, frank_tag })
    }
}
