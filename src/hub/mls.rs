//! MLS in the log: the hub's checks on `m.mls.commit` and `m.room.encrypted`, and this server's
//! clients, which follow the log under the room's lock.
//!
//! Every append runs [`PublicView`]'s checks before its batch is queued (as hub with the device
//! directory; as follower and in `log verify` without), and every local client observes the
//! event into the same batch. So a commit is merged, a Welcome released and a plaintext kept
//! exactly when the event is durable, and a message is encrypted under the lock that appends it,
//! which keeps its `commit_event_id` current.

use std::collections::BTreeMap;
use std::sync::Arc;

use openmls::prelude::{KeyPackage, OpenMlsProvider as _};

use crate::event::state::RoomState;
use crate::event::{EventTemplate, Pdu, UnverifiedLpdu, build_lpdu};
use crate::mls::events::{COMMIT, ENCRYPTED, EncryptedContent, RoomEncryption};
use crate::mls::identity::DeviceDirectory;
use crate::mls::member::{Member, Seen, Welcome, ciphertext_hash, parse_welcome};
use crate::mls::public::{MlsCheckError, PublicView, Step, apply_step, check_event};
use crate::mls::room_data::roster;
use crate::mls::{Flush, MlsProvider};
use crate::store::Batch;

mod load;

use super::{Hub, HubError, PendingAppend, RoomHead, lock};

/// A room's MLS group as this server holds it.
pub(crate) struct RoomMls {
    pub(super) view: PublicView,
    /// This server's clients in the group, by user.
    pub(super) members: BTreeMap<String, Member>,
    /// The current epoch's application messages: ciphertext hash → acceptance time (ms), so a
    /// provider's resubmission is answered with the first acceptance.
    pub(super) accepted: BTreeMap<[u8; 32], u64>,
}

pub(super) fn client_error(error: impl std::fmt::Display) -> HubError {
    HubError::MlsClient(error.to_string())
}

impl Hub {
    /// The hub's checks (see the module documentation); nothing changes until `apply_mls`.
    pub(super) fn check_mls(&self, head: &RoomHead, pdu: &Pdu) -> Result<Step, HubError> {
        self.check_mls_in(head, pdu, head.chain.state())
    }

    /// [`check_mls`](Self::check_mls) against `state` instead of the room's current state.
    pub(super) fn check_mls_in(&self, head: &RoomHead, pdu: &Pdu, state: &RoomState) -> Result<Step, HubError> {
        // Only the hub holds the device directory; a follower checks what the log itself shows.
        let keys = (pdu.meta().event_type == COMMIT && head.chain.hub() == self.server_name)
            .then(|| self.directories.trusted_keys());
        let own = OwnUsers { inner: self.directories.devices(), server: &self.server_name };
        let directory: &dyn DeviceDirectory =
            if head.chain.version().hub_signs() { &own } else { self.directories.devices() };
        let devices = keys.as_ref().map(|keys| (directory, keys));
        let view = head.mls.as_ref().map(|m| &m.view);
        // In a MIMI room the hub makes every event's content; elsewhere its own users' alone.
        let made_here =
            head.chain.version().hub_signs() || crate::event::meta::server_of(&pdu.meta().sender) == self.server_name;
        Ok(check_event(view, head.chain.next_position(), pdu, state, devices, !made_here)?)
    }

    /// Lets this server's clients observe the event into `batch` and takes their MLS writes.
    pub(super) fn observe_mls(
        head: &mut RoomHead,
        pdu: &Pdu,
        position: u64,
        step: &Step,
        batch: &mut Batch,
    ) -> Vec<(Arc<MlsProvider>, Flush)> {
        if matches!(step, Step::Commit(_)) {
            batch.set_latest_commit(head.short, position);
        }
        let record = head.chain.version().is_record();
        let Some(mls) = head.mls.as_mut() else { return Vec::new() };
        let meta = pdu.meta();
        let mut flushes = Vec::with_capacity(mls.members.len());
        let mut removed = Vec::new();
        for (user, member) in &mut mls.members {
            match member.observe(&meta.event_type, &meta.sender, pdu.content(), pdu.event_id(), batch) {
                Seen::Failed(reason) => {
                    tracing::warn!(event_id = pdu.event_id(), %reason, "MLS client skipped an event");
                }
                Seen::Removed => {
                    tracing::info!(event_id = pdu.event_id(), user, "MLS client removed from the group");
                    removed.push(user.clone());
                }
                _ => {}
            }
            flushes.push((Arc::clone(member.provider()), member.take_batch(batch)));
        }
        // A follower's portal learns here who the hub removed (this server's users left the
        // portal themselves in a room hubbed here).
        if record && !removed.is_empty() {
            batch.put_removed(pdu.event_id(), &removed);
        }
        flushes
    }

    /// Moves the room's group along once the event's batch is queued.
    pub(super) fn apply_mls(head: &mut RoomHead, step: Step, pdu: &Pdu) {
        let (mut view, members, mut accepted) = match head.mls.take() {
            Some(mls) => (Some(mls.view), mls.members, mls.accepted),
            None => (None, BTreeMap::new(), BTreeMap::new()),
        };
        match &step {
            Step::Encrypted(content) => {
                let ts = u64::try_from(pdu.meta().origin_server_ts).unwrap_or_default();
                accepted.insert(ciphertext_hash(&content.ciphertext), ts);
            }
            Step::Commit(_) => accepted.clear(),
            _ => {}
        }
        // The checks passed before the batch was queued; applying cannot refuse the event now.
        if let Err(error) = apply_step(&mut view, step, pdu.event_id()) {
            tracing::error!(event_id = pdu.event_id(), %error, "MLS state not advanced for an appended event");
        }
        head.mls = view.map(|view| RoomMls { view, members, accepted });
        if let Some(mls) = head.mls.as_mut() {
            mls.members.retain(|_, member| member.epoch().is_some());
        }
    }

    /// The client of `user_id`'s device for a new room: the group (epoch 0) and the create
    /// event's `encryption`.
    pub(super) fn new_group(&self, user_id: &str, room_id: &str) -> Result<(Member, RoomEncryption), HubError> {
        let device = self.directories.local_device(user_id)?;
        let provider = Member::provider_for(&self.store, device.credential.user_id(), device.credential.device_id());
        let room_uri = crate::translate::uri::room_uri_of(room_id).unwrap_or_else(|_| room_id.to_owned());
        let key = self.key.verifying_key().to_bytes();
        let extensions = crate::mls::room_data::new_room_extensions(&self.server_name, key, user_id, &room_uri)
            .map_err(client_error)?;
        let (member, group_info) = Member::create(provider, device, room_id, extensions).map_err(client_error)?;
        Ok((member, RoomEncryption { group_info }))
    }

    /// Installs the creator's client before the create event is appended, so that the group's
    /// state lands in the create event's batch.
    pub(super) fn install_group(
        head: &mut RoomHead,
        member: Member,
        create: &Pdu,
        encryption: &RoomEncryption,
    ) -> Result<(), HubError> {
        let meta = create.meta();
        let view = PublicView::for_create(&encryption.group_info, &meta.room_id, &meta.sender, create.event_id())?;
        let members = BTreeMap::from([(meta.sender.clone(), member)]);
        head.mls = Some(RoomMls { view, members, accepted: BTreeMap::new() });
        Ok(())
    }

    /// Runs `build` with the sender's client under the room's lock and appends the event it
    /// returns; undoes the client's changes if the event is refused.
    fn with_member(
        &self,
        room_id: &str,
        sender: &str,
        build: impl FnOnce(&mut Member, &PublicView, &RoomState) -> Result<EventTemplate, HubError>,
        extra: impl FnOnce(&str) -> Batch,
    ) -> Result<PendingAppend, HubError> {
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let room = &mut *head;
        let mls = room.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        let member = mls.members.get_mut(sender).ok_or_else(|| HubError::NoMlsDevice { user: sender.to_owned() })?;
        let template = build(member, &mls.view, room.chain.state());
        let result = template.and_then(|t| self.append_template(&mut head, t, extra));
        if result.is_err()
            && let Some(member) = head.mls.as_mut().and_then(|m| m.members.get_mut(sender))
        {
            member.roll_back(room_id).map_err(client_error)?;
        }
        result
    }

    /// Encrypts MIMI content as `sender` (a user of this server in the room's group) and
    /// appends it as `m.room.encrypted`; the plaintext is stored with the event.
    pub fn send_encrypted(
        &self,
        room_id: &str,
        sender: &str,
        mimi_cbor: &[u8],
        ts: i64,
    ) -> Result<PendingAppend, HubError> {
        self.send_encrypted_with(room_id, sender, mimi_cbor, ts, |_| Batch::new())
    }

    /// [`send_encrypted`](Self::send_encrypted), with `extra(event_id)` written in the event's
    /// batch (e.g. the Matrix event it came from, mapped, and its intake entry deleted).
    pub fn send_encrypted_with(
        &self,
        room_id: &str,
        sender: &str,
        mimi_cbor: &[u8],
        ts: i64,
        extra: impl FnOnce(&str) -> Batch,
    ) -> Result<PendingAppend, HubError> {
        self.with_member(
            room_id,
            sender,
            |member, view, _| {
                let ciphertext = member.encrypt(mimi_cbor).map_err(client_error)?;
                let accepted = u64::try_from(ts).unwrap_or_default();
                let frank = view
                    .frank(&ciphertext, sender, accepted, &self.key)
                    .map(|f| crate::mimi::protocol::Wire::encode(&f));
                let content = EncryptedContent { ciphertext, commit_event_id: view.latest_commit().to_owned(), frank };
                Ok(template(room_id, sender, ENCRYPTED, content.to_json(), ts))
            },
            extra,
        )
    }

    /// Commits adding the devices of `key_packages` (validated and claimed by the caller) as
    /// `committer`; the Welcome is stored under the commit's event ID once it is appended.
    pub fn commit_add(
        &self,
        room_id: &str,
        committer: &str,
        key_packages: &[KeyPackage],
        ts: i64,
    ) -> Result<PendingAppend, HubError> {
        self.with_member(
            room_id,
            committer,
            |member, _, state| {
                let content = member.stage_add(key_packages, &roster(state)).map_err(client_error)?;
                Ok(template(room_id, committer, COMMIT, content.to_json(), ts))
            },
            |_| Batch::new(),
        )
    }

    /// Commits removing every device of `user_id` as `committer`, with the participant list
    /// brought to the log's membership.
    pub fn commit_remove(
        &self,
        room_id: &str,
        committer: &str,
        user_id: &str,
        ts: i64,
    ) -> Result<PendingAppend, HubError> {
        self.with_member(
            room_id,
            committer,
            |member, _, state| {
                let content = member.stage_remove(user_id, &roster(state)).map_err(client_error)?.ok_or_else(|| {
                    HubError::MlsClient(format!("nothing to commit: {user_id} has no device in the group"))
                })?;
                Ok(template(room_id, committer, COMMIT, content.to_json(), ts))
            },
            |_| Batch::new(),
        )
    }

    /// Joins `user_id`'s device (a user of this server) to a room's group from the Welcome its
    /// server received; events from then on are decrypted as they are appended.
    pub fn join_group(&self, room_id: &str, user_id: &str, welcome: &[u8]) -> Result<(), HubError> {
        let member = self.join_client(user_id, welcome)?;
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        // The Welcome must be for this room and for the epoch the log is at: a member behind
        // the log could never catch up (commits are applied only as they are appended).
        if member.room_id().as_deref() != Some(room_id) || member.epoch() != Some(mls.view.epoch()) {
            member.provider().storage().discard_pending();
            return Err(HubError::MlsClient(format!(
                "the Welcome is for {:?} at epoch {:?}, but {room_id}'s log is at epoch {}; follow the log to the Welcome's commit first",
                member.room_id(),
                member.epoch(),
                mls.view.epoch()
            )));
        }
        let mut batch = Batch::new();
        let flush = member.take_batch(&mut batch);
        // Queued under the lock (the room's later appends queue behind it), synced outside it.
        let ticket = self.store.submit(batch);
        let provider = Arc::clone(member.provider());
        mls.members.insert(user_id.to_owned(), member);
        drop(head);
        ticket.blocking_wait()?;
        provider.storage().mark_durable(flush);
        Ok(())
    }

    /// The client of `user_id`'s device (a user of this server) joined from `welcome`; its
    /// state is pending in its provider until taken.
    pub(super) fn join_client(&self, user_id: &str, welcome: &[u8]) -> Result<Member, HubError> {
        let device = self.directories.local_device(user_id)?;
        let provider = Member::provider_for(&self.store, device.credential.user_id(), device.credential.device_id());
        Member::join(provider, device, welcome).map_err(client_error)
    }

    /// The Welcome a commit appended here produced, and the (user, device) pairs it is for.
    pub fn welcome(&self, commit_event_id: &str) -> Result<Option<Welcome>, HubError> {
        Ok(self.store.welcome(commit_event_id)?.as_deref().and_then(parse_welcome))
    }

    /// As a participant: encrypts MIMI content as `sender` for a room hubbed elsewhere and
    /// returns the signed LPDU to send to the hub. The ratchet state and the plaintext are
    /// durable before this returns, so the ciphertext may leave the process. If the hub refuses
    /// it as stale, follow the hub's log and call this again with the same content.
    pub fn encrypt_lpdu(
        &self,
        room_id: &str,
        sender: &str,
        mimi_cbor: &[u8],
        ts: i64,
    ) -> Result<UnverifiedLpdu, HubError> {
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let (version, hub) = (head.chain.version(), head.chain.hub().to_owned());
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        let member = mls.members.get_mut(sender).ok_or_else(|| HubError::NoMlsDevice { user: sender.to_owned() })?;
        let ciphertext = member.encrypt(mimi_cbor).map_err(client_error)?;
        let mut batch = Batch::new();
        batch.sent_plaintext(&ciphertext_hash(&ciphertext), Some(mimi_cbor));
        let flush = member.take_batch(&mut batch);
        // Queued under the lock, synced outside it: the LPDU leaves only once this is durable.
        let ticket = self.store.submit(batch);
        let provider = Arc::clone(member.provider());
        let content =
            EncryptedContent { ciphertext, commit_event_id: mls.view.latest_commit().to_owned(), frank: None };
        drop(head);
        ticket.blocking_wait()?;
        provider.storage().mark_durable(flush);
        Ok(build_lpdu(
            version,
            template(room_id, sender, ENCRYPTED, content.to_json(), ts),
            &hub,
            &self.key,
            &self.server_name,
        )?)
    }

    /// Whether `user_id` (a user of this server) has a client in the room's group here.
    pub fn in_group(&self, room_id: &str, user_id: &str) -> Result<bool, HubError> {
        let head = self.head(room_id)?;
        let in_group = lock(&head).mls.as_ref().is_some_and(|m| m.members.contains_key(user_id));
        Ok(in_group)
    }

    /// This server's users with a client in the room's group.
    pub fn local_clients(&self, room_id: &str) -> Result<Vec<String>, HubError> {
        let head = self.head(room_id)?;
        let users = lock(&head).mls.as_ref().map(|m| m.members.keys().cloned().collect()).unwrap_or_default();
        Ok(users)
    }

    /// Whether the room's log here is a follower's record of a room hubbed elsewhere.
    pub fn is_record(&self, room_id: &str) -> Result<bool, HubError> {
        let head = self.head(room_id)?;
        let record = lock(&head).chain.version().is_record();
        Ok(record)
    }

    /// Whether `user_id` (of any provider) has a client in the room's group.
    pub fn has_clients(&self, room_id: &str, user_id: &str) -> Result<bool, HubError> {
        let head = self.head(room_id)?;
        let found = lock(&head).mls.as_ref().is_some_and(|m| m.view.members().iter().any(|c| c.user_id() == user_id));
        Ok(found)
    }

    /// The epoch of a room's group as this server's log has it.
    pub fn mls_epoch(&self, room_id: &str) -> Result<Option<u64>, HubError> {
        let head = self.head(room_id)?;
        let epoch = lock(&head).mls.as_ref().map(|m| m.view.epoch());
        Ok(epoch)
    }
}

/// In a MIMI room the hub's directory speaks only for this server's users: users of other
/// providers publish no device objects, and their provider vouched for their joining.
struct OwnUsers<'a> {
    inner: &'a dyn DeviceDirectory,
    server: &'a str,
}

impl DeviceDirectory for OwnUsers<'_> {
    fn device(&self, user_id: &str, device_id: &str) -> Option<crate::mls::identity::DeviceObject> {
        self.inner.device(user_id, device_id)
    }

    fn vouches_for(&self, user_id: &str) -> bool {
        crate::event::meta::server_of(user_id) == self.server
    }
}

pub(super) fn template(
    room_id: &str,
    sender: &str,
    event_type: &str,
    content: ruma::CanonicalJsonObject,
    ts: i64,
) -> EventTemplate {
    EventTemplate {
        room_id: room_id.to_owned(),
        event_type: event_type.to_owned(),
        sender: sender.to_owned(),
        state_key: None,
        content,
        origin_server_ts: ts,
    }
}
