//! Portals: a Matrix room on the homeserver joined to a MIMI room hubbed by this bridge.
//!
//! A user makes one by inviting the bot or a ghost. The bridge joins as the guest and refuses
//! rooms with `m.room.encryption` (it cannot read Megolm) with a notice to the room. Otherwise it
//! creates the MIMI room with the inviter as creator (the create event carries the MLS group the
//! inviter's device starts), invites the ghost's MIMI user if a ghost was invited, and records
//! the portal in the batch that deletes the invite from the intake queue. Every other local
//! user who speaks in the portal is joined to the MIMI room and their device added to the group
//! by the creator's client first.

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError};
use crate::hub::RoomPreset;
use crate::store::Batch;

/// The MLS device every local user's client uses (one per user).
pub const DEVICE_ID: &str = "MIMIBRIDGE";

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn member_event(room: &str, sender: &str, target: &str, membership: &str) -> crate::event::EventTemplate {
    let value = ruma::CanonicalJsonValue::String(membership.to_owned());
    crate::event::EventTemplate {
        room_id: room.to_owned(),
        event_type: "m.room.member".into(),
        sender: sender.to_owned(),
        state_key: Some(target.to_owned()),
        content: ruma::CanonicalJsonObject::from([("membership".to_owned(), value)]),
        origin_server_ts: now_ms(),
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
        if let Some(localpart) = super::ghost::GhostTemplate::localpart_of(guest).filter(|_| as_user.is_some()) {
            self.homeserver.register_ghost(localpart).await?;
        }
        self.homeserver.join(room, as_user).await?;
        if self.hub.store().portal_of(room)?.is_some() {
            return self.drop_event(seq, "already_a_portal").await;
        }
        if self.homeserver.room_state_event(room, "m.room.encryption", "", as_user).await?.is_some() {
            let notice = "This room is end-to-end encrypted with Megolm, which the MIMI bridge cannot read. \
                          Invite me to an unencrypted room to bridge it.";
            let txn = format!("refuse-{seq}");
            let content = json!({"msgtype": "m.notice", "body": notice});
            self.homeserver.send_event(room, "m.room.message", &txn, &content, as_user, None).await?;
            self.homeserver.leave(room, as_user).await?;
            return self.drop_event(seq, "encrypted_matrix_room").await;
        }
        let remote = self.settings.ghosts.mimi_user_of(guest);
        self.create_portal(room, inviter, remote.as_deref(), Some(seq)).await
    }

    /// Creates the MIMI room for the Matrix room `room` with `inviter` as creator, invites
    /// `remote` there if given, and records the portal (with the deletion of intake entry `seq`).
    pub(super) async fn create_portal(
        &self,
        room: &str,
        inviter: &str,
        remote: Option<&str>,
        seq: Option<u64>,
    ) -> Result<(), BridgeError> {
        // Who of the bridge's users is in the Matrix room and can invite ghosts: the ghost that
        // was invited, or the bot.
        let opener = remote.and_then(|r| self.settings.ghosts.ghost_of(r)).unwrap_or_else(|| self.settings.bot());
        let creator = self.mimi_user(inviter).ok_or(BridgeError::Malformed("inviter"))?;
        self.hub.register_device(&creator, DEVICE_ID)?;
        let preset = RoomPreset { encrypted: true, ..RoomPreset::default() };
        let (mimi_room, _) = self.hub.create_room(&creator, &preset, now_ms()).await?;
        if let Some(remote) = remote {
            self.hub.submit_local(member_event(&mimi_room, &creator, remote, "invite"))?.durable().await?;
        }
        let record = json!({"matrix_room": room, "mimi_room": mimi_room, "creator": creator, "cursor": 0,
                            "opener": opener});
        let mut batch = Batch::new();
        batch.portal(room, &mimi_room, record.to_string().as_bytes());
        if let Some(seq) = seq {
            batch.intake(seq, None);
        }
        self.hub.store().submit(batch).wait().await?;
        tracing::info!(matrix_room = room, mimi_room, "portal opened");
        Ok(())
    }

    /// Makes a local user a joined member of the MIMI room with a device in its group.
    pub(super) async fn ensure_member(&self, mimi_room: &str, user: &str) -> Result<(), BridgeError> {
        let hub = &self.hub;
        if hub.in_group(mimi_room, user)? {
            return Ok(());
        }
        let record = self.portal_record(mimi_room)?;
        let creator = record.get("creator").and_then(Value::as_str).ok_or(BridgeError::Malformed("portal creator"))?;
        if hub.membership(mimi_room, user)?.as_deref() != Some("join") {
            hub.submit_local(member_event(mimi_room, creator, user, "invite"))?.durable().await?;
            hub.submit_local(member_event(mimi_room, user, user, "join"))?.durable().await?;
        }
        // A crash after the commit adding the device but before its client joined: join from
        // the stored Welcome (the device is already in the group and cannot be added again).
        for (_, json) in hub.store().welcomes()? {
            let Some(welcome) = crate::mls::member::parse_welcome(&json) else { continue };
            if welcome.targets.iter().any(|(u, d)| u == user && d == DEVICE_ID)
                && hub.join_group(mimi_room, user, &welcome.message).is_ok()
            {
                return Ok(());
            }
        }
        hub.register_device(user, DEVICE_ID)?;
        hub.publish_key_packages(user, 1)?;
        let claimed = hub.claim_key_package(user, DEVICE_ID)?.ok_or(BridgeError::Malformed("key package"))?;
        let package = hub.check_key_package(&claimed, user, DEVICE_ID)?;
        let commit = hub.commit_add(mimi_room, creator, &[package], now_ms())?.durable().await?;
        let welcome = hub.welcome(&commit.event_id)?.ok_or(BridgeError::Malformed("welcome"))?;
        hub.join_group(mimi_room, user, &welcome.message)?;
        Ok(())
    }

    fn portal_record(&self, mimi_room: &str) -> Result<Value, BridgeError> {
        let portals = self.hub.store().portals()?;
        let bytes = portals.into_iter().find(|(room, _)| room == mimi_room).map(|(_, b)| b);
        bytes.and_then(|b| serde_json::from_slice(&b).ok()).ok_or(BridgeError::Malformed("portal record"))
    }
}
