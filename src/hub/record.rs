//! Following a MIMI room hubbed at another provider: the record this server keeps of it.
//!
//! The room's hub fans out (`notify`) every message it accepted; this server appends each, as
//! received, to its record of the room (room version
//! [`MIMI_RECORD_1`](crate::event::room_version::MIMI_RECORD_1)): one `m.mimi.fanout` event
//! per message, sent by the record's keeper, signed by this server, with the hub's timestamp.
//! The record's public view checks each (see `mls::public::record`) and this server's clients
//! apply it in the same batch, so a commit is merged and a message decrypted exactly when its
//! record entry is durable.
//!
//! A record begins with a Welcome for one of this server's clients, routed by the KeyPackageRef
//! the hub claimed: its create event carries the group as that client joined it. Until then
//! there is nothing to keep: a message for a room no client of ours is in is acknowledged and
//! dropped. What the record already holds (a repeat: the hub's order is fixed, so anything of an
//! older epoch or seen in this one came before) is acknowledged once; an epoch ahead of the
//! record is a gap, refused, never skipped.

use openmls::prelude::OpenMlsProvider as _;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use crate::event::meta::server_of;
use crate::event::room_version::MIMI_RECORD_1;
use crate::event::{Chain, EventTemplate, build_local};
use crate::mimi::protocol::{FanoutExtra, FanoutMessage, SubmitMessageRequest, Wire as _};
use crate::mls::events::{FANOUT, FanoutContent, RoomEncryption};
use crate::mls::group::RoomGroup;
use crate::mls::member::{Member, ciphertext_hash};
use crate::mls::public::{MlsCheckError, PublicView};
use crate::store::Batch;

use super::mls::{RoomMls, client_error};
use super::{Hub, HubError, Owed, PendingAppend, RoomHead, lock, member_event};

/// The localpart of the user that keeps this server's records (`@_mimi_record:<server>`).
pub const KEEPER: &str = "_mimi_record";

/// What became of one fanned-out message.
#[derive(Debug)]
pub enum Recorded {
    /// Appended to the record (durable once `pending` is); `joined` are this server's users whose
    /// clients joined from it (a Welcome).
    Appended {
        /// The append.
        pending: Box<PendingAppend>,
        /// Users whose clients joined.
        joined: Vec<String>,
    },
    /// Already in the record (a repeat), or for a room no client of ours is in: nothing to do.
    Nothing,
}

impl Hub {
    /// The user that keeps this server's records.
    pub fn keeper(&self) -> String {
        format!("@{KEEPER}:{}", self.server_name)
    }

    /// Records one message `hub` (authenticated by the caller) fanned out for `room_id`. Blocks
    /// on writes: call it from a blocking thread, one notify at a time per room.
    pub fn record_fanout(&self, room_id: &str, hub: &str, fanout: &FanoutMessage) -> Result<Recorded, HubError> {
        if server_of(room_id) != hub || hub == self.server_name {
            return Err(HubError::NotHub { room_id: room_id.to_owned(), hub: server_of(room_id).to_owned() });
        }
        let head = match self.head(room_id) {
            Ok(head) => head,
            Err(HubError::UnknownRoom(_)) => return self.open_record(room_id, hub, fanout),
            Err(e) => return Err(e),
        };
        let welcomed = match &fanout.extra {
            FanoutExtra::Welcome(_) => self.welcomed(hub, &fanout.message)?,
            _ => Vec::new(),
        };
        // A Welcome whose clients here are all in the group already is a repeat.
        if !welcomed.is_empty() && welcomed.iter().all(|user| self.in_group(room_id, user).unwrap_or(false)) {
            return Ok(Recorded::Nothing);
        }
        let mut head = lock(&head);
        if !head.chain.version().is_record() {
            return Err(HubError::NotHub { room_id: room_id.to_owned(), hub: head.chain.hub().to_owned() });
        }
        if !welcomed.is_empty() && head.mls.as_ref().is_some_and(|mls| mls.members.is_empty()) {
            return self.rejoin(head, welcomed, fanout);
        }
        let pending = match self.append_fanout(&mut head, fanout, None) {
            Ok(pending) => pending,
            Err(HubError::Mls(MlsCheckError::StaleEpoch { .. } | MlsCheckError::Replay)) => {
                return Ok(Recorded::Nothing);
            }
            Err(e) => return Err(e),
        };
        drop(head);
        let joined = match &fanout.extra {
            FanoutExtra::Welcome(_) => self.join_welcomed(room_id, hub, &fanout.message)?,
            _ => Vec::new(),
        };
        Ok(Recorded::Appended { pending: Box::new(pending), joined })
    }

    fn append_fanout(
        &self,
        head: &mut RoomHead,
        fanout: &FanoutMessage,
        rejoined: Option<Vec<u8>>,
    ) -> Result<PendingAppend, HubError> {
        let template = EventTemplate {
            room_id: head.chain.room_id().to_owned(),
            event_type: FANOUT.to_owned(),
            sender: self.keeper(),
            state_key: None,
            content: FanoutContent { fanout: fanout.encode(), rejoined }.to_json(),
            origin_server_ts: i64::try_from(fanout.timestamp).unwrap_or(i64::MAX),
        };
        self.append_template(head, template, |_| Batch::new())
    }

    /// This server's users a Welcome is for, by the `KeyPackageRef`s `hub` claimed.
    fn welcomed(&self, hub: &str, welcome: &[u8]) -> Result<Vec<String>, HubError> {
        Ok(self.welcomed_devices(hub, welcome)?.into_iter().map(|(user, _)| user).collect())
    }

    /// This server's devices (user, device) a Welcome is for, by the `KeyPackageRef`s
    /// `provider` claimed.
    pub(super) fn welcomed_devices(&self, provider: &str, welcome: &[u8]) -> Result<Vec<(String, String)>, HubError> {
        let mut devices = Vec::new();
        for reference in RoomGroup::welcome_targets(welcome).map_err(client_error)? {
            let Some(record) = self.store.key_package_claim(&reference, provider)? else { continue };
            let record: serde_json::Value = serde_json::from_slice(&record).unwrap_or_default();
            if let (Some(user), Some(device)) = (record["user"].as_str(), record["device"].as_str())
                && server_of(user) == self.server_name
            {
                devices.push((user.to_owned(), device.to_owned()));
            }
        }
        Ok(devices)
    }

    /// This server's users an `m.mimi.fanout` (its content) welcomes, if it is a Welcome.
    pub fn welcomed_in(&self, room_id: &str, content: &CanonicalJsonObject) -> Result<Vec<String>, HubError> {
        let Ok(fanout) = FanoutContent::parse(content) else { return Ok(Vec::new()) };
        match FanoutMessage::decode(&fanout.fanout) {
            Ok(FanoutMessage { message, extra: FanoutExtra::Welcome(_), .. }) => {
                self.welcomed(server_of(room_id), &message)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Joins this server's clients a Welcome in the record is for (those not in the group yet).
    fn join_welcomed(&self, room_id: &str, hub: &str, welcome: &[u8]) -> Result<Vec<String>, HubError> {
        let mut joined = Vec::new();
        for user in self.welcomed(hub, welcome)? {
            if self.in_group(room_id, &user)? {
                continue;
            }
            match self.join_group(room_id, &user, welcome) {
                Ok(()) => joined.push(user),
                Err(error) => tracing::warn!(room_id, user, %error, "a Welcome for a client here could not be used"),
            }
        }
        Ok(joined)
    }

    /// Opens the record of a room with the Welcome of its first client here: the create event
    /// (the group as that client joined it), the keeper's join, then the Welcome itself.
    fn open_record(&self, room_id: &str, hub: &str, fanout: &FanoutMessage) -> Result<Recorded, HubError> {
        if !matches!(fanout.extra, FanoutExtra::Welcome(_)) {
            tracing::info!(room_id, hub, "a fanned-out message for a room no client here is in: nothing to record");
            return Ok(Recorded::Nothing);
        }
        let Some(user) = self.welcomed(hub, &fanout.message)?.into_iter().next() else {
            tracing::info!(room_id, hub, "a Welcome for no client of this provider");
            return Ok(Recorded::Nothing);
        };
        let member = self.join_client(&user, &fanout.message)?;
        let group_info = member.group_info().map_err(client_error)?;
        let keeper = self.keeper();
        let content: CanonicalJsonObject = [
            ("room_version".to_owned(), CanonicalJsonValue::String(MIMI_RECORD_1.id.to_owned())),
            ("encryption".to_owned(), RoomEncryption { group_info: group_info.clone() }.to_json()),
            ("mimi_hub".to_owned(), CanonicalJsonValue::String(hub.to_owned())),
        ]
        .into();
        let template = EventTemplate {
            room_id: room_id.to_owned(),
            event_type: "m.room.create".into(),
            sender: keeper.clone(),
            state_key: Some(String::new()),
            content,
            origin_server_ts: i64::try_from(fanout.timestamp).unwrap_or(i64::MAX),
        };
        let create = build_local(&MIMI_RECORD_1, template, &[], &[], &self.key, &self.server_name)?;
        let chain = Chain::for_create(&create)?;
        let head = self.insert_head(room_id, RoomHead::new(self.store.allocate_short_room(), chain))?;
        let mut head = lock(&head);
        let view = PublicView::for_record(&group_info, room_id, create.event_id())?;
        let members = std::collections::BTreeMap::from([(user.clone(), member)]);
        head.mls = Some(RoomMls { view, members, accepted: std::collections::BTreeMap::new() });
        // The client's joined state lands in the create event's batch.
        self.append_built(&mut head, &create, None, Batch::new())?.wait()?;
        let join = member_event(room_id, &keeper, &keeper, "join", create.meta().origin_server_ts);
        self.append_template(&mut head, join, |_| Batch::new())?.wait()?;
        let pending = self.append_fanout(&mut head, fanout, None)?;
        drop(head);
        tracing::info!(room_id, hub, user, "following a room hubbed elsewhere");
        let mut joined = vec![user];
        joined.extend(self.join_welcomed(room_id, hub, &fanout.message)?);
        Ok(Recorded::Appended { pending: Box::new(pending), joined })
    }
}

impl Hub {
    /// A Welcome for `users` into a room none of this server's clients is in any more: they
    /// join, and if the Welcome is for a later epoch than the record's (the hub sent nothing
    /// while no client was here), the record starts again from the group as they joined it.
    fn rejoin(
        &self,
        mut head: std::sync::MutexGuard<'_, RoomHead>,
        users: Vec<String>,
        fanout: &FanoutMessage,
    ) -> Result<Recorded, HubError> {
        let room_id = head.chain.room_id().to_owned();
        let mut joined = std::collections::BTreeMap::new();
        for user in users {
            match self.join_client(&user, &fanout.message) {
                Ok(member) if member.room_id().as_deref() == Some(room_id.as_str()) => {
                    joined.insert(user, member);
                }
                Ok(member) => member.provider().storage().discard_pending(),
                Err(error) => tracing::warn!(room_id, user, %error, "a Welcome for a client here could not be used"),
            }
        }
        let epoch = head.mls.as_ref().map_or(0, |mls| mls.view.epoch());
        let joined_at = joined.values().next().and_then(Member::epoch);
        if joined_at.is_none_or(|at| at < epoch) {
            // Nobody joined, or for an epoch the record has passed: kept as it came, no more.
            for member in joined.values() {
                member.provider().storage().discard_pending();
            }
            let pending = self.append_fanout(&mut head, fanout, None)?;
            return Ok(Recorded::Appended { pending: Box::new(pending), joined: Vec::new() });
        }
        let rejoined = match joined_at {
            Some(at) if at > epoch => {
                let first = joined.values().next().ok_or(MlsCheckError::NotEncrypted)?;
                Some(first.group_info().map_err(client_error)?)
            }
            _ => None,
        };
        let users: Vec<String> = joined.keys().cloned().collect();
        // The clients' joined state lands in the Welcome's batch.
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        mls.members.extend(joined);
        let appended = self.append_fanout(&mut head, fanout, rejoined);
        if appended.is_err()
            && let Some(mls) = head.mls.as_mut()
        {
            for user in &users {
                if let Some(member) = mls.members.remove(user) {
                    member.provider().storage().discard_pending();
                }
            }
        }
        tracing::info!(room_id, ?users, from = epoch, to = ?joined_at, "back in a followed room's group");
        Ok(Recorded::Appended { pending: Box::new(appended?), joined: users })
    }
}

/// What to do about a message the hub found too old (`epochTooOld`).
#[derive(Debug, PartialEq, Eq)]
pub enum Resubmit {
    /// The record has not reached the hub's epoch yet: ask again later.
    Behind,
    /// The message came back in the record: the hub accepted it before (its answer was lost).
    Accepted,
    /// Send this `submitMessage` body instead: the same plaintext, encrypted in the record's
    /// epoch (durable, with the new ciphertext's plaintext kept, before this returns).
    Body(Vec<u8>),
}

impl Hub {
    /// As a follower: encrypts MIMI content as `sender` (a user of this server with a client
    /// in the room) and queues the `submitMessage` to the room's hub, in one batch with the
    /// client's ratchet state, the plaintext (kept until the message comes back in the record)
    /// and `extra`. Blocks until durable.
    pub fn submit_to_hub(&self, room_id: &str, sender: &str, mimi_cbor: &[u8], extra: Batch) -> Result<(), HubError> {
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        self.followed(&head)?;
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        let member = mls.members.get_mut(sender).ok_or_else(|| HubError::NoMlsDevice { user: sender.to_owned() })?;
        let ciphertext = member.encrypt(mimi_cbor).map_err(client_error)?;
        let mut batch = extra;
        batch.sent_plaintext(&ciphertext_hash(&ciphertext), Some(mimi_cbor));
        let owed = Owed {
            provider: server_of(room_id).to_owned(),
            endpoint: "submitMessage",
            room_id: room_id.to_owned(),
            body: submit_body(sender, ciphertext)?,
        };
        self.write_for_hub(head, sender, batch, Some(owed))
    }

    /// The outbox to a room's hub, if `head` is a followed room's record (and this bridge has
    /// a provider side).
    pub(super) fn followed(&self, head: &RoomHead) -> Result<&std::sync::Arc<dyn super::RequestQueue>, HubError> {
        let room_id = head.chain.room_id();
        if !head.chain.version().is_record() {
            return Err(HubError::NotHub { room_id: room_id.to_owned(), hub: head.chain.hub().to_owned() });
        }
        self.outbox.get().ok_or_else(|| HubError::NotHub {
            room_id: room_id.to_owned(),
            hub: format!("{} (this bridge has no MIMI provider side)", server_of(room_id)),
        })
    }

    /// Writes `batch` with the pending MLS writes of `user`'s client, and queues `owed` for the
    /// room's hub in the same batch if given, under the room's lock (so the hub gets a client's
    /// messages in ratchet order); blocks until durable.
    pub(super) fn write_for_hub(
        &self,
        mut head: std::sync::MutexGuard<'_, RoomHead>,
        user: &str,
        mut batch: Batch,
        owed: Option<Owed>,
    ) -> Result<(), HubError> {
        let outbox = owed.as_ref().map(|_| self.followed(&head).map(std::sync::Arc::clone)).transpose()?;
        let member = head.mls.as_mut().and_then(|mls| mls.members.get_mut(user));
        let member = member.ok_or_else(|| HubError::NoMlsDevice { user: user.to_owned() })?;
        let flush = member.take_batch(&mut batch);
        let provider = std::sync::Arc::clone(member.provider());
        let (ticket, woken) = match (outbox, owed) {
            (Some(outbox), Some(owed)) => {
                let (ticket, keys) = outbox.submit(batch, vec![owed]);
                (ticket, Some((outbox, keys)))
            }
            _ => (self.store.submit(batch), None),
        };
        drop(head);
        ticket.blocking_wait()?;
        provider.storage().mark_durable(flush);
        if let Some((outbox, keys)) = woken {
            outbox.wake(&keys);
        }
        Ok(())
    }

    /// A `submitMessage` (`body`) the hub answered `epochTooOld` with `epoch` (see
    /// [`Resubmit`]). `replace(new_body)` gives the writes that make the new body the one
    /// queued, put in the batch that keeps the new ciphertext's plaintext.
    pub fn resubmit(
        &self,
        room_id: &str,
        body: &[u8],
        epoch: u64,
        replace: impl FnOnce(&[u8]) -> Batch,
    ) -> Result<Resubmit, HubError> {
        let request = SubmitMessageRequest::decode(body).map_err(|e| HubError::MlsClient(e.to_string()))?;
        let sender = crate::translate::uri::matrix_user_id(&request.sending_uri)
            .map_err(|e| HubError::MlsClient(e.to_string()))?;
        let old = ciphertext_hash(&request.app_message);
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        if mls.view.epoch() < epoch {
            return Ok(Resubmit::Behind);
        }
        // Everything of the epochs before the hub's is in the record: a message of ours that
        // was accepted has come back, and its kept plaintext moved to its record entry.
        let Some(plaintext) = self.store.sent_plaintext(&old)? else { return Ok(Resubmit::Accepted) };
        let member = mls.members.get_mut(&sender).ok_or_else(|| HubError::NoMlsDevice { user: sender.clone() })?;
        let ciphertext = member.encrypt(&plaintext).map_err(client_error)?;
        let new_body = submit_body(&sender, ciphertext.clone())?;
        let mut batch = replace(&new_body);
        batch.sent_plaintext(&old, None);
        batch.sent_plaintext(&ciphertext_hash(&ciphertext), Some(&plaintext));
        self.write_for_hub(head, &sender, batch, None)?;
        Ok(Resubmit::Body(new_body))
    }
}

fn submit_body(sender: &str, app_message: Vec<u8>) -> Result<Vec<u8>, HubError> {
    let sending_uri = crate::translate::uri::user_uri(sender).map_err(|e| HubError::MlsClient(e.to_string()))?;
    Ok(SubmitMessageRequest { app_message, sending_uri }.encode())
}
