//! Users added to a room by a follower's commit.
//!
//! In a room hubbed elsewhere this server's user invites someone by having their client commit
//! the add — the invitee's devices and the participant list naming them — and sending it to the
//! hub's `update` from the outbox. The commit stays pending in the client until the hub's
//! fan-out brings it back; the key packages it adds are kept, by the commit's hash, with the
//! queued request, so that an answer naming another epoch leads to the same add committed again
//! in that epoch once the record reached it ([`Hub::recommit`]), never to a lost invite.
//!
//! At the hub the participant list is where such an add shows, and the log's membership must
//! say the same: before the commit the hub appends each newcomer's invite (by the committer)
//! and join (which it vouches for, as for any user of another provider whose provider handed
//! out key material for the room: each must have a device added by the commit) — but only once
//! the commit has been checked against the state those events make, so that a refused commit
//! leaves nothing behind.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{KeyPackage, KeyPackageIn, ProtocolVersion};

use crate::event::meta::server_of;
use crate::event::state::StateEvent;
use crate::event::{EventTemplate, build_local};
use crate::mimi::protocol::{GroupInfoOption, HandshakeBundle, RatchetTreeOption, WELCOME_MESSAGE, Wire as _};
use crate::mls::identity::NamedClient;
use crate::mls::member::ciphertext_hash;
use crate::mls::public::{MlsCheckError, Step};
use crate::mls::room_data::{ROLE_PARTICIPANT, participant};
use crate::store::Batch;

use super::mls::client_error;
use super::remote::verdict;
use super::{GROUP_INFO_MESSAGE, Hub, HubError, Owed, PendingAppend, Resubmit, RoomHead, Verdict, lock, member_event};

impl Hub {
    /// As hub: appends the invite and join of each of `newcomers` (users a commit by `committer`
    /// lists as participants who are not joined) ahead of that commit (`commit`, its event),
    /// once the commit passes against the state they make. A newcomer of this server must be
    /// among `claimed`, its users whose devices the commit's Welcome is for by key packages the
    /// committer's provider claimed here. `Err` holds the answer when the commit does not pass,
    /// or when a newcomer cannot be one; nothing is appended then.
    pub(super) fn append_newcomers(
        &self,
        head: &mut RoomHead,
        committer: &str,
        (newcomers, claimed): (&[String], &[(String, String)]),
        commit: &EventTemplate,
    ) -> Result<Result<Vec<PendingAppend>, Verdict>, HubError> {
        let mut state = head.chain.state().clone();
        for user in newcomers {
            if server_of(user) == self.server_name && !claimed.iter().any(|(claimed, _)| claimed == user) {
                let why =
                    format!("{user}: the commit adds no device of theirs whose key package its provider claimed here");
                return Ok(Err(Verdict::InvalidProposal(why)));
            }
            if state.membership(user) == Some("ban") {
                return Ok(Err(Verdict::NotAllowed(format!("{user} is banned from the room"))));
            }
            let invite = member_event(&commit.room_id, committer, user, "invite", commit.origin_server_ts);
            if let Err(error) = super::append::authorize(&head.chain, &invite) {
                return Ok(Err(Verdict::NotAllowed(error.to_string())));
            }
            state.insert("m.room.member".into(), user.clone(), joined(user));
        }
        let (version, prev) = (head.chain.version(), head.chain.prev_events());
        let pdu = build_local(version, commit.clone(), &[], &prev, &self.key, &self.server_name)?;
        let added = match self.check_mls_in(head, &pdu, &state) {
            Ok(Step::Commit(checked)) => checked.added().to_vec(),
            Ok(_) => Vec::new(),
            Err(error) => return Ok(Err(verdict(Err(error), 0, head.mls.as_ref().map_or(0, |m| m.view.epoch())))),
        };
        // Their provider handing out a device's key material is their consent.
        if let Some(user) = newcomers.iter().find(|user| !added.iter().any(|d| d.user_id() == user.as_str())) {
            let why = format!("{user} is listed as a participant but no device of theirs is added");
            return Ok(Err(Verdict::InvalidProposal(why)));
        }
        let (room_id, ts) = (commit.room_id.as_str(), commit.origin_server_ts);
        let mut appended = Vec::new();
        for user in newcomers {
            if head.chain.state().membership(user) != Some("invite") {
                let invite = member_event(room_id, committer, user, "invite", ts);
                appended.push(self.append_template(head, invite, |_| Batch::new())?);
            }
            appended.push(self.append_template(head, member_event(room_id, user, user, "join", ts), |_| Batch::new())?);
        }
        Ok(Ok(appended))
    }

    /// As a follower: `committer`'s client commits adding the devices of the key packages
    /// `claim` gives, their users listed as participants, and the commit is queued for the hub's
    /// `update`, durable with the client's state and the packages before this returns. While an
    /// earlier commit of that client's is with the hub, nothing is claimed and this fails with
    /// [`HubError::CommitPending`] (to be tried again).
    pub fn add_for_hub(
        &self,
        room_id: &str,
        committer: &str,
        claim: impl FnOnce() -> Result<Vec<KeyPackage>, HubError>,
    ) -> Result<(), HubError> {
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        self.followed(&head)?;
        may_commit(&head, committer)?;
        let staged = stage_for_hub(&mut head, committer, &claim()?)?;
        let mut batch = Batch::new();
        staged.keep(&mut batch);
        let body = staged.body;
        let owed =
            Owed { provider: server_of(room_id).to_owned(), endpoint: "update", room_id: room_id.to_owned(), body };
        self.write_for_hub(head, committer, batch, Some(owed))
    }

    /// As a follower: whether `committer`'s client may commit in a room hubbed elsewhere now
    /// (see [`Hub::add_for_hub`]), before claiming what it would add.
    pub fn may_commit(&self, room_id: &str, committer: &str) -> Result<(), HubError> {
        let head = self.head(room_id)?;
        let head = lock(&head);
        self.followed(&head)?;
        may_commit(&head, committer)
    }

    /// An `update` with a commit (`body`) the hub answered `wrongEpoch` with `epoch` (as
    /// [`Hub::resubmit`] for messages): the record must reach that epoch first; a commit that
    /// came back there was taken; else the same add is committed in the record's epoch (without
    /// devices someone else added meanwhile), durable with `replace(new_body)` before this
    /// returns.
    pub fn recommit(
        &self,
        room_id: &str,
        body: &[u8],
        epoch: u64,
        replace: impl FnOnce(&[u8]) -> Batch,
    ) -> Result<Resubmit, HubError> {
        let Ok(HandshakeBundle::Commit { commit, .. }) = HandshakeBundle::decode(body) else {
            return Err(HubError::MlsClient("an update to commit again that holds no commit".into()));
        };
        let head = self.head(room_id)?;
        let mut head = lock(&head);
        let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
        if mls.view.epoch() < epoch {
            return Ok(Resubmit::Behind);
        }
        let old = ciphertext_hash(&commit);
        let Some(kept) = self.store.sent_plaintext(&old)? else { return Ok(Resubmit::Accepted) };
        let in_group: Vec<_> =
            mls.view.members().iter().map(|c| (c.user_id().to_owned(), c.device_id().to_owned())).collect();
        let packages: Vec<KeyPackage> =
            decode_packages(&kept)?.into_iter().filter(|p| !in_group.contains(&client_of(p))).collect();
        let committer = mls.members.iter().find(|(_, m)| m.proposed(&commit)).map(|(user, _)| user.clone());
        let (Some(committer), false) = (committer, packages.is_empty()) else {
            // Nothing left to add, or no client left to add it.
            let mut batch = Batch::new();
            batch.sent_plaintext(&old, None);
            self.store.write(batch)?;
            return Ok(Resubmit::Accepted);
        };
        let staged = stage_for_hub(&mut head, &committer, &packages)?;
        let mut batch = replace(&staged.body);
        batch.sent_plaintext(&old, None);
        staged.keep(&mut batch);
        self.write_for_hub(head, &committer, batch, None)?;
        tracing::info!(room_id, committer, "add committed again in the hub's epoch");
        Ok(Resubmit::Body(staged.body))
    }
}

/// `committer` has a client in the room's group and no commit of its is with the hub.
fn may_commit(head: &RoomHead, committer: &str) -> Result<(), HubError> {
    match head.mls.as_ref().and_then(|mls| mls.members.get(committer)) {
        None => Err(HubError::NoMlsDevice { user: committer.to_owned() }),
        Some(member) if member.has_pending_commit() => Err(HubError::CommitPending { user: committer.to_owned() }),
        Some(_) => Ok(()),
    }
}

/// The state slot of a user joined.
fn joined(user: &str) -> StateEvent {
    let membership = ruma::CanonicalJsonValue::String("join".into());
    StateEvent {
        event_id: String::new(),
        sender: user.to_owned(),
        content: ruma::CanonicalJsonObject::from([("membership".to_owned(), membership)]),
    }
}

/// A follower's add, staged in its committer's client.
struct Staged {
    /// The `update` body.
    body: Vec<u8>,
    /// The commit's hash.
    hash: [u8; 32],
    /// The key packages it adds (TLS), kept to commit them again.
    packages: Vec<u8>,
}

impl Staged {
    /// Keeps the packages under the commit's hash in `batch`.
    fn keep(&self, batch: &mut Batch) {
        batch.sent_plaintext(&self.hash, Some(&self.packages));
    }
}

/// `committer`'s client stages the add.
fn stage_for_hub(head: &mut RoomHead, committer: &str, key_packages: &[KeyPackage]) -> Result<Staged, HubError> {
    let mls = head.mls.as_mut().ok_or(MlsCheckError::NotEncrypted)?;
    let mut roster = mls.view.listed().unwrap_or_default();
    for package in key_packages {
        roster.entry(participant(&client_of(package).0)).or_insert(ROLE_PARTICIPANT);
    }
    let member = mls.members.get_mut(committer).ok_or_else(|| HubError::NoMlsDevice { user: committer.to_owned() })?;
    let content = member.stage_add(key_packages, &roster).map_err(client_error)?;
    // `update` carries the bare Welcome.
    let welcome = member.pending_welcome().map(|w| w.strip_prefix(&WELCOME_MESSAGE[..]).unwrap_or(w).to_vec());
    let group_info = &content.public_group_state;
    let ratchet_tree = crate::mls::public::ratchet_tree(group_info)
        .map_or(RatchetTreeOption::DistributionService, RatchetTreeOption::Full);
    let body = HandshakeBundle::Commit {
        commit: content.message.clone(),
        welcome,
        group_info: GroupInfoOption::Full(group_info.get(GROUP_INFO_MESSAGE.len()..).unwrap_or_default().to_vec()),
        ratchet_tree,
    };
    Ok(Staged {
        body: body.encode(),
        hash: ciphertext_hash(&content.message),
        packages: encode_packages(key_packages)?,
    })
}

/// The (user, device) a key package is for (empty if its credential names none).
fn client_of(package: &KeyPackage) -> (String, String) {
    NamedClient::from_credential(package.leaf_node().credential()).map(|c| (c.user_id, c.device_id)).unwrap_or_default()
}

fn encode_packages(packages: &[KeyPackage]) -> Result<Vec<u8>, HubError> {
    packages.to_vec().tls_serialize_detached().map_err(client_error)
}

fn decode_packages(bytes: &[u8]) -> Result<Vec<KeyPackage>, HubError> {
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let packages = Vec::<KeyPackageIn>::tls_deserialize_exact(bytes).map_err(client_error)?;
    packages.into_iter().map(|p| p.validate(&crypto, ProtocolVersion::Mls10).map_err(client_error)).collect()
}
