//! Portals: a Matrix room on the homeserver joined to a MIMI room hubbed by this bridge.
//!
//! A user makes one by inviting the bot or a ghost. The bridge joins as the guest; with
//! `encryption.enabled` its Matrix device's owner joins too (`encrypted`), in any room, so that
//! members who turn encryption on later share their keys with it from the first message;
//! without a device a room with `m.room.encryption` is refused with a notice. Then it
//! creates the MIMI room with the inviter as creator (the create event carries the MLS group the
//! inviter's device starts), invites the ghost's MIMI user if a ghost was invited, and records
//! the portal in the batch that deletes the invite from the intake queue. Every other local
//! user who speaks in the portal is joined to the MIMI room and their device added to the group
//! by the creator's client first.

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError, off_runtime};
use std::sync::Arc;

use crate::hub::{Admission, HubError, RoomPreset, member_event};
use crate::store::Batch;

/// The MLS device every local user's client uses (one per user).
pub const DEVICE_ID: &str = "MIMIBRIDGE";

pub(super) fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Test hook for the kill -9 tests of each step of opening a portal: with
/// `MIMI_BRIDGE_CRASH_AT=<step>` the process aborts right after that step is durable.
pub(super) fn crash_point(step: &str) {
    if std::env::var("MIMI_BRIDGE_CRASH_AT").is_ok_and(|at| at == step) {
        tracing::warn!(step, "MIMI_BRIDGE_CRASH_AT: aborting");
        std::process::abort();
    }
}

impl Bridge {
    /// Handles an invite of the bot or a ghost into `room` by `inviter`.
    pub(super) async fn open_portal(
        &self,
        seq: u64,
        room: &str,
        inviter: &str,
        guest: &str,
    ) -> Result<(), BridgeError> {
        // Only this homeserver's users open portals (they become the MIMI room's creator).
        if self.mimi_user(inviter).is_none() {
            return self.drop_event(seq, "invite_from_another_server").await;
        }
        let as_user = (guest != self.settings.bot()).then_some(guest);
        // Only a ghost some MIMI user maps to is registered (see `ghost::GhostTemplate::remote_of`).
        if as_user.is_some() && self.settings.ghosts.remote_of(guest).is_none() {
            return self.drop_event(seq, "not_a_ghost").await;
        }
        if let Some(localpart) = super::ghost::GhostTemplate::localpart_of(guest).filter(|_| as_user.is_some()) {
            self.homeserver.register_ghost(localpart).await?;
        }
        self.homeserver.join(room, as_user).await?;
        if let Some(mimi_room) = self.store().portal_of(room)? {
            return match self.settings.ghosts.remote_of(guest).filter(|_| as_user.is_some()) {
                Some(remote) => self.invite_remote(seq, &mimi_room, inviter, &remote).await,
                None => self.drop_event(seq, "already_a_portal").await,
            };
        }
        if self.e2ee.is_some() {
            // Into every portal, not only encrypted ones: members who turn encryption on later
            // share their first room key with the device too.
            self.join_device(room, as_user).await?;
        } else if self.homeserver.room_state_event(room, "m.room.encryption", "", as_user).await?.is_some() {
            let notice = "This room is end-to-end encrypted, and this bridge has no Matrix device to read it with \
                          (its administrator can set encryption.enabled). Invite me to an unencrypted room to bridge it.";
            let txn = format!("refuse-{seq}");
            let content = json!({"msgtype": "m.notice", "body": notice});
            self.homeserver.send_event(room, "m.room.message", &txn, &content, as_user, None).await?;
            self.homeserver.leave(room, as_user).await?;
            return self.drop_event(seq, "encrypted_matrix_room").await;
        }
        let remote = self.settings.ghosts.remote_of(guest);
        self.create_portal(room, inviter, remote.as_deref(), Some(seq)).await
    }

    /// Creates the MIMI room for the Matrix room `room` with `inviter` as creator, invites
    /// `remote` there if given, and records the portal (with the deletion of intake entry `seq`).
    ///
    /// Each step is durable before the next and resumable: the intent (with the MIMI room ID
    /// chosen for it) is recorded first, so a retry after a crash at any point opens that same
    /// room, completing whatever it lacks, and never a second one.
    pub(super) async fn create_portal(
        &self,
        room: &str,
        inviter: &str,
        remote: Option<&str>,
        seq: Option<u64>,
    ) -> Result<(), BridgeError> {
        let intent = self.portal_intent(room, inviter, remote).await?;
        crash_point("portal-intent");
        let field = |name: &'static str| intent[name].as_str().map(str::to_owned).ok_or(BridgeError::Malformed(name));
        let (mimi_room, creator) = (field("mimi_room")?, field("creator")?);
        let (hub, room_id, room_creator) = (Arc::clone(&self.hub), mimi_room.clone(), creator.clone());
        let remote_user = intent["remote"].as_str().map(str::to_owned);
        // With the MIMI provider side, rooms take users of other MIMI providers; without it, only
        // Linearized Matrix peers, whose events their own servers sign.
        let version = if self.outbox.is_some() {
            &crate::event::room_version::MIMI_HUB_1
        } else {
            &crate::event::room_version::LINEARIZED_02
        };
        // Device registration and room creation wait on synced writes: a blocking thread's work.
        off_runtime(move || {
            hub.directories().register_device(&room_creator, DEVICE_ID)?;
            let preset = RoomPreset { encrypted: true, version, ..RoomPreset::default() };
            hub.open_room_blocking(&room_id, &room_creator, &preset, now_ms())?;
            crash_point("portal-room");
            if let Some(remote) = remote_user.filter(|r| hub.membership(&room_id, r).ok().flatten().is_none()) {
                hub.submit_local(member_event(&room_id, &room_creator, &remote, "invite", now_ms()))?.wait()?;
            }
            crash_point("portal-invite");
            Ok(())
        })
        .await?;
        if let Some(remote) = intent["remote"]
            .as_str()
            .filter(|r| self.outbox.is_some() && crate::event::meta::server_of(r) != self.hub.server_name())
        {
            self.admit_remote(&mimi_room, &creator, remote).await?;
        }
        let record =
            json!({"matrix_room": room, "mimi_room": mimi_room, "creator": creator, "opener": intent["opener"]});
        let mut batch = Batch::new();
        batch.portal(room, &mimi_room, record.to_string().as_bytes());
        batch.portal_intent(room, None);
        if let Some(seq) = seq {
            batch.intake(seq, None);
        }
        self.store().submit(batch).wait().await?;
        // Whatever the room's log already holds is bridged from position 0.
        if let Some(short) = self.hub.short_room(&mimi_room)? {
            self.advances.mark(short, 0);
        }
        tracing::info!(matrix_room = room, mimi_room, "portal opened");
        Ok(())
    }

    /// The recorded intent to open a portal for `room`, recorded now if there is none yet.
    async fn portal_intent(&self, room: &str, inviter: &str, remote: Option<&str>) -> Result<Value, BridgeError> {
        if let Some(bytes) = self.store().portal_intent(room)? {
            tracing::info!(matrix_room = room, "resuming a portal whose opening was interrupted");
            return serde_json::from_slice(&bytes).map_err(|_| BridgeError::Malformed("portal intent"));
        }
        // Who of the bridge's users is in the Matrix room and can invite ghosts: the ghost that
        // was invited, or the bot.
        let opener = remote.and_then(|r| self.settings.ghosts.ghost_of(r)).unwrap_or_else(|| self.settings.bot());
        let creator = self.mimi_user(inviter).ok_or(BridgeError::Malformed("inviter"))?;
        let intent =
            json!({"mimi_room": self.hub.new_room_id()?, "creator": creator, "remote": remote, "opener": opener});
        let mut batch = Batch::new();
        batch.portal_intent(room, Some(intent.to_string().as_bytes()));
        self.store().submit(batch).wait().await?;
        Ok(intent)
    }

    /// A ghost invited into a portal that exists: its MIMI user is invited to the room by the
    /// inviter (who gets a client in the group first) and, if it is a user of another MIMI
    /// provider, brought in (`remote`).
    async fn invite_remote(&self, seq: u64, mimi_room: &str, inviter: &str, remote: &str) -> Result<(), BridgeError> {
        let inviter = self.mimi_user(inviter).ok_or(BridgeError::Malformed("inviter"))?;
        self.ensure_member(mimi_room, &inviter).await.map_err(super::refusal::refusing)?;
        let (hub, room, sponsor, user) =
            (Arc::clone(&self.hub), mimi_room.to_owned(), inviter.clone(), remote.to_owned());
        let followed = off_runtime(move || {
            // A room hubbed elsewhere: the add goes to its hub (`add_remote_for_hub`).
            if hub.is_record(&room)? {
                return Ok(true);
            }
            if !matches!(hub.membership(&room, &user)?.as_deref(), Some("invite" | "join")) {
                hub.submit_local(member_event(&room, &sponsor, &user, "invite", now_ms()))?.wait()?;
            }
            Ok(false)
        })
        .await?;
        if followed {
            self.add_remote_for_hub(mimi_room, &inviter, remote).await?;
        } else if self.outbox.is_some() && crate::event::meta::server_of(remote) != self.hub.server_name() {
            self.admit_remote(mimi_room, &inviter, remote).await?;
        }
        self.finish(seq, Batch::new()).await
    }

    /// A membership change in a portal: a user leaving, kicked or banned leaves the MIMI room
    /// and their clients are removed from its group. In a room hubbed here that is anyone (a
    /// ghost's user too: a kick or ban of a ghost removes that user of another provider); in a
    /// room hubbed elsewhere only this homeserver's users' own leaves are ours to pass on (their
    /// clients propose their removal to the hub), and their invites of each other (the
    /// inviter's client commits the add, `invite_for_hub`). Other changes are not bridged.
    pub(super) async fn membership_change(
        &self,
        queued: &super::intake::Queued,
        mimi_room: &str,
    ) -> Result<(), BridgeError> {
        let event = &queued.event;
        let field = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (membership, target, sender) = (field("/content/membership"), field("/state_key"), field("/sender"));
        let user = match self.settings.ghosts.remote_of(&target) {
            Some(remote) => Some(remote),
            None if self.settings.is_ours(&target) => None,
            None => self.mimi_user(&target),
        };
        let (Some(user), Some(by)) = (user, self.mimi_user(&sender)) else {
            return self.drop_event(queued.seq, "membership").await;
        };
        let hubbed_here = crate::event::meta::server_of(mimi_room) == self.hub.server_name();
        let local = crate::event::meta::server_of(&user) == self.hub.server_name();
        let passed_on = match membership.as_str() {
            "leave" | "ban" if hubbed_here => true,
            "leave" => local && by == user,
            "invite" if !hubbed_here && local => return self.invite_for_hub(queued.seq, mimi_room, &by, &user).await,
            _ => false,
        };
        if !passed_on {
            return self.drop_event(queued.seq, "membership").await;
        }
        let (hub, room) = (Arc::clone(&self.hub), mimi_room.to_owned());
        let out = off_runtime(move || {
            Ok(if hubbed_here {
                hub.leave(&room, &by, &user, &membership, now_ms())?
            } else {
                hub.propose_leave(&room, &user)?
            })
        });
        if !out.await.map_err(super::refusal::refusing)? {
            tracing::info!(mimi_room, target, "left; no client of theirs removed yet (or none in the group)");
        }
        self.finish(queued.seq, Batch::new()).await
    }

    /// Makes a local user a joined member of the MIMI room with a device in its group (the
    /// hub's admission, on a blocking thread: it waits on several synced writes).
    pub(super) async fn ensure_member(&self, mimi_room: &str, user: &str) -> Result<(), BridgeError> {
        let record = self.portal_record(mimi_room)?;
        let sponsor =
            record.get("creator").and_then(Value::as_str).ok_or(BridgeError::Malformed("portal creator"))?.to_owned();
        let (hub, room, user) = (Arc::clone(&self.hub), mimi_room.to_owned(), user.to_owned());
        off_runtime(move || {
            // In a room hubbed elsewhere only the hub adds clients (a Welcome brings them).
            if hub.is_record(&room)? {
                return if hub.in_group(&room, &user)? { Ok(()) } else { Err(HubError::NoMlsDevice { user }.into()) };
            }
            let admission =
                Admission { room_id: &room, user_id: &user, device_id: DEVICE_ID, sponsor: &sponsor, ts: now_ms() };
            Ok(hub.admit_local_user(&admission)?)
        })
        .await
    }

    fn portal_record(&self, mimi_room: &str) -> Result<Value, BridgeError> {
        let bytes = self.store().portal_record(mimi_room)?;
        bytes.and_then(|b| serde_json::from_slice(&b).ok()).ok_or(BridgeError::Malformed("portal record"))
    }
}
