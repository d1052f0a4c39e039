//! Portals of MIMI rooms hubbed at other providers: when a room's hub welcomes a client of one
//! of this homeserver's users, the room's record begins (`hub::record`) and the portal follower,
//! woken by that append, finds a record without a portal. The bot then opens a Matrix room; the
//! follower invites each user whose client a Welcome in the record brought in, when it passes
//! that Welcome (so they read from their Welcome on), and bridges every message of the record
//! as its sender's ghost.
//!
//! The portal is recorded once the homeserver created the room. A crash between the two leaves
//! an empty room the bot created and opens another: Matrix has no idempotent room creation.

use std::sync::Arc;

use serde_json::json;

use super::bridge::{Bridge, BridgeError, off_runtime};
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
        let body = json!({
            "preset": "private_chat",
            "name": format!("MIMI room at {hub_domain}"),
            "initial_state": [visibility],
        });
        let matrix_room = self.homeserver.create_room(None, &body).await?;
        let opener = self.settings.bot();
        let record = json!({"matrix_room": matrix_room, "mimi_room": mimi_room, "creator": first, "opener": opener});
        let mut batch = Batch::new();
        batch.portal(&matrix_room, mimi_room, record.to_string().as_bytes());
        self.store().submit(batch).wait().await?;
        tracing::info!(matrix_room, mimi_room, hub = hub_domain, "portal opened for a room hubbed elsewhere");
        Ok(true)
    }
}
