//! [`Member`]: one of this server's clients in one room's group, driven by the room's log.
//!
//! The log is the delivery service: a member changes epoch only when a commit is appended, in
//! log order, and its own commit counts only once the hub appended it (then it merges, and its
//! Welcome is released; a different commit for the same epoch means ours lost, so it is
//! discarded). The room's writer calls [`Member::observe`] for every appended event while it
//! holds the room's lock, with the batch that appends the event, so the member's state change
//! and the plaintext it learnt are durable together with the event, or not at all.
//!
//! MLS deletes a message key once used, so nobody, not even the sender, can decrypt a message
//! twice. The member keeps the plaintext of what it sends until its event comes back
//! ([`Member::encrypt`]; durably, in `ciphertexthash_plaintext`, when it sends to another hub)
//! and of what it decrypts, under the event ID in `eventid_plaintext`.

use std::collections::BTreeMap;
use std::sync::Arc;

use openmls::prelude::{KeyPackage, OpenMlsProvider as _};
use openmls_basic_credential::SignatureKeyPair;
use ruma::CanonicalJsonObject;
use sha2::Digest as _;

use super::events::{COMMIT, CommitContent, ENCRYPTED, EncryptedContent, FANOUT, FanoutContent};
use super::group::{GroupError, RoomGroup, StagedOut};
use super::identity::{DeviceCredential, DeviceObject, LocalDevice, NamedClient};
use super::room_data::Roster;
pub use super::welcome::{Welcome, parse_welcome, welcome_json};
use super::{Flush, MlsProvider, SIGNATURE_SCHEME};
use crate::mimi::protocol::{FanoutExtra, Wire as _};
use crate::store::{Batch, Store, StoreError};

/// Why a member operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// The group refused the operation.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The device's signing key is not in its MLS storage.
    #[error("no signing key stored for {0}")]
    NoSigningKey(String),
    /// This client is not (or no longer) in the room's group.
    #[error("not a member of the room's group")]
    NotInGroup,
}

/// What a member made of an appended event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Nothing for this member (not an MLS event, or from before it joined).
    Nothing,
    /// The MIMI content of an `m.room.encrypted` (stored under the event ID).
    Plaintext(Vec<u8>),
    /// A commit moved the group to this epoch.
    Epoch(u64),
    /// A commit removed this member from the group.
    Removed,
    /// The event could not be processed; the log keeps it, this member skips it.
    Failed(String),
}

/// A commit of ours awaiting the hub, and whom its Welcome is for.
#[derive(Debug)]
struct Pending {
    staged: StagedOut,
    targets: Vec<(String, String)>,
}

/// One client's view of one room's group (see the module documentation).
#[derive(Debug)]
pub struct Member {
    device: LocalDevice,
    provider: Arc<MlsProvider>,
    group: Option<RoomGroup>,
    pending: Option<Pending>,
    /// Plaintexts of ciphertexts sent but not yet seen in the log, by ciphertext SHA-256.
    sent: BTreeMap<[u8; 32], Vec<u8>>,
}

/// The storage namespace of a device's client.
fn client_name(user_id: &str, device_id: &str) -> String {
    format!("{user_id}\u{0}{device_id}")
}

/// The SHA-256 of a ciphertext, its key until its event ID is known.
pub fn ciphertext_hash(ciphertext: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(ciphertext).into()
}

impl Member {
    /// The provider a device's clients use (their MLS state lives in its own namespace).
    pub fn provider_for(store: &Arc<Store>, user_id: &str, device_id: &str) -> MlsProvider {
        MlsProvider::for_client(Arc::clone(store), &client_name(user_id, device_id))
    }

    /// A device from its published object, its signing key read back from its MLS storage.
    pub fn load_device(
        provider: &MlsProvider,
        object: DeviceObject,
        credential: DeviceCredential,
    ) -> Result<LocalDevice, MemberError> {
        let signer = SignatureKeyPair::read(provider.storage(), credential.signature_key(), SIGNATURE_SCHEME)
            .ok_or_else(|| MemberError::NoSigningKey(format!("{} {}", credential.user_id(), credential.device_id())))?;
        let credential_with_key = openmls::prelude::CredentialWithKey {
            credential: credential.to_credential(),
            signature_key: signer.public().into(),
        };
        Ok(LocalDevice { signer, credential, credential_with_key, object })
    }

    /// Creates the room's group (epoch 0, this device alone, with the MIMI room's `GroupContext`
    /// `extensions`); returns the member and the group info for the create event. The state is
    /// pending in the provider until taken.
    pub fn create(
        provider: MlsProvider,
        device: LocalDevice,
        room_id: &str,
        extensions: openmls::prelude::Extensions<openmls::prelude::GroupContext>,
    ) -> Result<(Self, Vec<u8>), MemberError> {
        let credential = device.credential_with_key.clone();
        let group = RoomGroup::create(&provider, &device.signer, credential, room_id, Some(extensions))?;
        let group_info = group.group_info(&provider, &device.signer)?;
        Ok((Self::with(provider, device, Some(group)), group_info))
    }

    /// The group as this client has it: a signed `GroupInfo` with the ratchet tree.
    pub fn group_info(&self) -> Result<Vec<u8>, MemberError> {
        let group = self.group.as_ref().ok_or(MemberError::NotInGroup)?;
        Ok(group.group_info(&self.provider, &self.device.signer)?)
    }

    /// Joins from a Welcome.
    pub fn join(provider: MlsProvider, device: LocalDevice, welcome: &[u8]) -> Result<Self, MemberError> {
        let group = RoomGroup::join(&provider, welcome)?;
        Ok(Self::with(provider, device, Some(group)))
    }

    /// The device's group for `room_id` from storage, if it is in it.
    pub fn load(provider: MlsProvider, device: LocalDevice, room_id: &str) -> Result<Option<Self>, MemberError> {
        let group = RoomGroup::load(&provider, room_id)?;
        Ok(group.filter(RoomGroup::is_active).map(|g| Self::with(provider, device, Some(g))))
    }

    fn with(provider: MlsProvider, device: LocalDevice, group: Option<RoomGroup>) -> Self {
        Self { device, provider: Arc::new(provider), group, pending: None, sent: BTreeMap::new() }
    }

    /// The device.
    pub fn device(&self) -> &LocalDevice {
        &self.device
    }

    /// The provider, whose storage holds this member's pending writes.
    pub fn provider(&self) -> &Arc<MlsProvider> {
        &self.provider
    }

    /// The room (group ID) of the group, if in one.
    pub fn room_id(&self) -> Option<String> {
        let group = self.group.as_ref()?;
        Some(String::from_utf8_lossy(group.mls_group().group_id().as_slice()).into_owned())
    }

    /// The group's epoch, if in the group.
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(RoomGroup::epoch)
    }

    /// Encrypts MIMI content for the current epoch and keeps the plaintext until its event is
    /// observed. The ratchet state is pending until taken: it must be durable before the
    /// ciphertext leaves the process.
    pub fn encrypt(&mut self, mimi_cbor: &[u8]) -> Result<Vec<u8>, MemberError> {
        let (provider, signer) = (Arc::clone(&self.provider), &self.device.signer);
        let group = self.group.as_mut().ok_or(MemberError::NotInGroup)?;
        let ciphertext = group.encrypt(&provider, signer, mimi_cbor)?;
        self.sent.insert(ciphertext_hash(&ciphertext), mimi_cbor.to_vec());
        Ok(ciphertext)
    }

    /// Stages a commit adding `key_packages` and bringing the participant list to `roster`
    /// ([`room_data::roster`](super::room_data::roster) of the log; merged when its event is
    /// observed).
    pub fn stage_add(&mut self, key_packages: &[KeyPackage], roster: &Roster) -> Result<CommitContent, MemberError> {
        let targets = key_packages
            .iter()
            .filter_map(|kp| NamedClient::from_credential(kp.leaf_node().credential()).ok())
            .map(|c| (c.user_id, c.device_id))
            .collect();
        let provider = Arc::clone(&self.provider);
        let group = self.group.as_mut().ok_or(MemberError::NotInGroup)?;
        let staged = group.stage_change(&provider, &self.device.signer, key_packages, &[], roster)?;
        let staged = staged.ok_or(MemberError::Group(GroupError::Openmls("nothing to commit".into())))?;
        Ok(self.hold(staged, targets))
    }

    /// Stages a commit removing every device of `user_id` and bringing the participant list to
    /// `roster`; `None` when there is nothing to change.
    pub fn stage_remove(&mut self, user_id: &str, roster: &Roster) -> Result<Option<CommitContent>, MemberError> {
        let provider = Arc::clone(&self.provider);
        let signer = &self.device.signer;
        let group = self.group.as_mut().ok_or(MemberError::NotInGroup)?;
        let leaves = group.leaves_of(user_id);
        Ok(group.stage_change(&provider, signer, &[], &leaves, roster)?.map(|staged| self.hold(staged, Vec::new())))
    }

    /// A proposal removing this client, for the room's hub to have committed (pending writes
    /// until taken, like [`encrypt`](Self::encrypt)'s).
    pub fn propose_leave(&mut self) -> Result<Vec<u8>, MemberError> {
        let (provider, signer) = (Arc::clone(&self.provider), &self.device.signer);
        let group = self.group.as_mut().ok_or(MemberError::NotInGroup)?;
        Ok(group.propose_leave(&provider, signer)?)
    }

    /// Whether a handshake message (TLS `MlsMessage`) was sent from this client's leaf (leaves
    /// keep their index while their client is in the group).
    pub fn proposed(&self, message: &[u8]) -> bool {
        use openmls::prelude::tls_codec::Deserialize as _;
        let Some(group) = &self.group else { return false };
        let Ok(message) = openmls::prelude::MlsMessageIn::tls_deserialize_exact(message) else { return false };
        let openmls::prelude::MlsMessageBodyIn::PublicMessage(public) = message.extract() else { return false };
        *public.sender() == openmls::prelude::Sender::Member(group.mls_group().own_leaf_index())
    }

    /// Whether a commit of this client's waits to be appended (staged here, or before a restart).
    pub fn has_pending_commit(&self) -> bool {
        self.group.as_ref().is_some_and(RoomGroup::has_pending_commit)
    }

    /// The Welcome of the commit this client staged and has not seen appended yet, if it adds
    /// devices (a TLS `MlsMessage`).
    pub fn pending_welcome(&self) -> Option<&[u8]> {
        self.pending.as_ref()?.staged.welcome.as_deref()
    }

    fn hold(&mut self, staged: StagedOut, targets: Vec<(String, String)>) -> CommitContent {
        let content = CommitContent { message: staged.commit.clone(), public_group_state: staged.group_info.clone() };
        self.pending = Some(Pending { staged, targets });
        content
    }

    /// Undoes an operation whose event was not appended: forgets the pending writes and staged
    /// commit and reloads the group from the state before them.
    pub fn roll_back(&mut self, room_id: &str) -> Result<(), MemberError> {
        self.provider.storage().discard_pending();
        self.pending = None;
        self.sent.clear();
        self.group = RoomGroup::load(&self.provider, room_id)?;
        Ok(())
    }

    /// Moves this member's pending MLS writes into `batch`.
    pub fn take_batch(&self, batch: &mut Batch) -> Flush {
        self.provider.storage().take_batch(batch)
    }

    /// Processes an appended event (see the module documentation), adding what must be durable
    /// with it to `batch`. Never fails: an event this member cannot process stays in the log.
    pub fn observe(
        &mut self,
        event_type: &str,
        sender: &str,
        content: &CanonicalJsonObject,
        event_id: &str,
        batch: &mut Batch,
    ) -> Seen {
        let malformed = |e: &dyn std::fmt::Display| MemberError::from(GroupError::Malformed(e.to_string()));
        let seen = match event_type {
            COMMIT => CommitContent::parse(content)
                .map_err(|e| malformed(&e))
                .and_then(|commit| self.observe_commit(&commit.message, event_id, batch)),
            ENCRYPTED => EncryptedContent::parse(content)
                .map_err(|e| malformed(&e))
                .and_then(|message| self.observe_message(Some(sender), &message.ciphertext, None, event_id, batch)),
            // A follower's record: what the hub fanned out, the sender named inside the content.
            FANOUT => match FanoutContent::parse(content)
                .map_err(|e| malformed(&e))
                .and_then(|c| crate::mimi::protocol::FanoutMessage::decode(&c.fanout).map_err(|e| malformed(&e)))
            {
                Ok(fanout) => match fanout.extra {
                    FanoutExtra::Commit(_) => self.observe_commit(&fanout.message, event_id, batch),
                    FanoutExtra::Application(frank) => {
                        let fanned = Some((frank.as_ref(), fanout.timestamp));
                        self.observe_message(None, &fanout.message, fanned, event_id, batch)
                    }
                    FanoutExtra::Welcome(_) | FanoutExtra::Proposal(_) => Ok(Seen::Nothing),
                },
                Err(e) => Err(e),
            },
            _ => Ok(Seen::Nothing),
        };
        seen.unwrap_or_else(|e| Seen::Failed(e.to_string()))
    }

    /// A commit this client cannot apply leaves it behind the log for good: it leaves the room's
    /// clients (its user can be added again).
    fn observe_commit(&mut self, commit: &[u8], event_id: &str, batch: &mut Batch) -> Result<Seen, MemberError> {
        self.apply_logged_commit(commit, event_id, batch).inspect_err(|_| self.group = None)
    }

    fn apply_logged_commit(&mut self, commit: &[u8], event_id: &str, batch: &mut Batch) -> Result<Seen, MemberError> {
        // Ours: staged here, or (after a restart, for a hub that appends it later) signed by
        // this client's leaf while a commit of ours is pending.
        let pending = self.pending.take();
        let ours = pending.as_ref().map_or_else(|| self.proposed(commit), |p| p.staged.commit == commit);
        let Some(group) = self.group.as_mut() else { return Ok(Seen::Nothing) };
        if group.has_pending_commit() {
            if ours {
                group.merge_pending_commit(&self.provider)?;
                // What was kept to commit it again is no longer needed.
                batch.sent_plaintext(&ciphertext_hash(commit), None);
                if let Some(Pending { staged: StagedOut { welcome: Some(welcome), .. }, targets }) = &pending {
                    batch.put_welcome(event_id, &welcome_json(welcome, event_id, targets));
                }
                return Ok(Seen::Epoch(group.epoch()));
            }
            // Another commit took the epoch: ours is void.
            group.discard_pending_commit(&self.provider)?;
        }
        match group.apply_commit(&self.provider, commit) {
            Ok(()) if !group.is_active() => {
                self.group = None;
                Ok(Seen::Removed)
            }
            Ok(()) => Ok(Seen::Epoch(group.epoch())),
            // A commit from before we joined.
            Err(GroupError::StaleEpoch { .. }) => Ok(Seen::Nothing),
            Err(e) => Err(e.into()),
        }
    }

    /// An application message, sent by a device of `sender` (the event's sender; for a record,
    /// the sender its MIMI content names).
    fn observe_message(
        &mut self,
        sender: Option<&str>,
        ciphertext: &[u8],
        fanned: Option<(Option<&crate::mimi::protocol::Frank>, u64)>,
        event_id: &str,
        batch: &mut Batch,
    ) -> Result<Seen, MemberError> {
        let hash = ciphertext_hash(ciphertext);
        if let Some(plaintext) = self.sent.remove(&hash) {
            batch.put_plaintext(event_id, &plaintext);
            batch.sent_plaintext(&hash, None);
            return Ok(Seen::Plaintext(plaintext));
        }
        let Some(group) = self.group.as_mut() else { return Ok(Seen::Nothing) };
        // Decrypt first even when a plaintext is stored under this hash: another client of this
        // server may have sent it, and this client must consume (and so delete) its key.
        match group.decrypt(&self.provider, ciphertext) {
            // The MLS sender must be a device of the event's sender: otherwise one user's
            // ciphertext could be relayed as another's message.
            Ok(decrypted)
                if NamedClient::from_identity(&decrypted.sender_identity).ok().map(|c| c.user_id)
                    != sender.map(str::to_owned).or_else(|| content_sender(&decrypted.mimi_cbor)) =>
            {
                Err(GroupError::Malformed("the MLS sender is not a device of the event's sender".into()).into())
            }
            Ok(decrypted) => {
                // A fanned-out message's frank must be the hub's, for this content and sender.
                if let Some((frank, accepted)) = fanned {
                    group.check_frank(&decrypted, frank, accepted)?;
                }
                batch.put_plaintext(event_id, &decrypted.mimi_cbor);
                Ok(Seen::Plaintext(decrypted.mimi_cbor))
            }
            // Sent before we joined.
            Err(GroupError::StaleEpoch { .. }) => Ok(Seen::Nothing),
            // Our own message (MLS cannot decrypt it), sent before a restart: its plaintext was
            // made durable before the ciphertext left.
            Err(error) => match self.provider.storage().store().sent_plaintext(&hash)? {
                Some(plaintext) => {
                    batch.put_plaintext(event_id, &plaintext);
                    batch.sent_plaintext(&hash, None);
                    Ok(Seen::Plaintext(plaintext))
                }
                None => Err(error.into()),
            },
        }
    }
}

/// The user (`@name:provider`) a MIMI content's `senderUri` names.
fn content_sender(mimi_cbor: &[u8]) -> Option<String> {
    let content = crate::mimi::MimiContent::decode(mimi_cbor).ok()?;
    crate::translate::uri::matrix_user_id(content.sender_uri()?).ok()
}
