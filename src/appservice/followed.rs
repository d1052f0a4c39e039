//! Portals of MIMI rooms hubbed at other providers: when a room's hub welcomes a client of one
//! of this homeserver's users, the room's record begins (`hub::record`) and the portal follower,
//! woken by that append, finds a record without a portal. The bot then opens a Matrix room; the
//! follower invites each user whose client a Welcome in the record brought in, when it passes
//! that Welcome (so they read from their Welcome on), and bridges every message of the record
//! as its sender's ghost.
//!
//! With `encryption.enabled` the room is created encrypted and the bridge's device joins it.
//!
//! The portal is recorded once the homeserver created the room (and the device joined it). A
//! crash or failure between the two leaves an empty room the bot created and opens another:
//! Matrix has no idempotent room creation.
//!
//! A user of this homeserver invited into such a portal by one who has a client in the group is
//! added by the inviter's client, through the hub (`hub::adds`): when the hub's fan-out brings
//! the commit and its Welcome back, the invitee's client joins from that Welcome and reads from
//! there on, like a user the hub's side added.

use std::sync::Arc;

use serde_json::json;

use super::bridge::{Bridge, BridgeError, off_runtime};
use super::portal::DEVICE_ID;
use crate::store::Batch;

impl Bridge {
    /// Opens the Matrix side of the followed room `mimi_room` if one of this homeserver's users
    /// has a client in it. Returns whether there is a portal now.
    pub(super) async fn open_followed_portal(&self, mimi_room: &str) -> Result<bool, BridgeError> {
        let (hub, room) = (Arc::clone(&self.hub), mimi_room.to_owned());
        let users =
            off_runtime(move || Ok(if hub.is_record(&room)? { hub.local_clients(&room)? } else { Vec::new() })).await?;
        let Some(first) = users.first() else { return Ok(false) };
        let hub_domain = crate::event::meta::server_of(mimi_room);
        // Each user is invited when the record reaches their Welcome, and reads from there on.
        let visibility = json!({"type": "m.room.history_visibility", "content": {"history_visibility": "invited"}});
        let mut initial_state = vec![visibility];
        if self.e2ee.is_some() {
            // As end-to-end encrypted on the homeserver as the MIMI room is: its users' clients
            // and the bridge's devices hold the keys, the homeserver ciphertext only.
            let algorithm = "m.megolm.v1.aes-sha2";
            initial_state.push(json!({"type": "m.room.encryption", "content": {"algorithm": algorithm}}));
        }
        let body = json!({"preset": "private_chat", "name": format!("MIMI room at {hub_domain}"), "initial_state": initial_state});
        let matrix_room = self.homeserver.create_room(None, &body).await?;
        self.join_device(&matrix_room, None).await?;
        let opener = self.settings.bot();
        let record = json!({"matrix_room": matrix_room, "mimi_room": mimi_room, "creator": first, "opener": opener});
        let mut batch = Batch::new();
        batch.portal(&matrix_room, mimi_room, record.to_string().as_bytes());
        self.store().submit(batch).wait().await?;
        tracing::info!(matrix_room, mimi_room, hub = hub_domain, "portal opened for a room hubbed elsewhere");
        Ok(true)
    }

    /// `sponsor` invited `invitee` (both users of this homeserver) into the portal of
    /// `mimi_room`, hubbed elsewhere: the sponsor's client commits adding a device of the
    /// invitee's (registered now if they have none), its key package claimed for the hub so that
    /// the Welcome is recognised when it comes back. Done already (the invitee in the group) is
    /// done; while another commit of the sponsor's is with the hub, this is tried again later.
    pub(super) async fn invite_for_hub(
        &self,
        seq: u64,
        mimi_room: &str,
        sponsor: &str,
        invitee: &str,
    ) -> Result<(), BridgeError> {
        let (hub, room) = (Arc::clone(&self.hub), mimi_room.to_owned());
        let (sponsor, invitee) = (sponsor.to_owned(), invitee.to_owned());
        off_runtime(move || {
            if hub.in_group(&room, &invitee)? {
                return Ok(());
            }
            let hub_domain = crate::event::meta::server_of(&room).to_owned();
            let directories = hub.directories();
            hub.add_for_hub(&room, &sponsor, || {
                let at = crate::queue::now_ms();
                let record =
                    json!({"provider": hub_domain, "user": invitee, "device": DEVICE_ID, "at": at}).to_string();
                Ok(vec![directories.fresh_key_package(&invitee, DEVICE_ID, Some((&hub_domain, record.as_bytes())))?])
            })?;
            tracing::info!(mimi_room = room, sponsor, invitee, "add committed; sent to the room's hub");
            Ok(())
        })
        .await?;
        self.finish(seq, Batch::new()).await
    }
}
