//! A user leaving a room hubbed here: their membership, then their clients out of the group.
//!
//! MLS has no way for a client to commit its own removal, so another client of this server
//! commits it, as the room's rules allow once the user is no longer joined. Both steps are
//! durable before the next and each is skipped when done, so a retry after a crash finishes
//! the leave; with no other client of this server in the group the removal waits for the next
//! commit of this server's (the departed clients can still decrypt until then).

use crate::event::meta::server_of;

use super::{Hub, HubError, lock, member_event};

impl Hub {
    /// `user_id` (of any provider) leaves the room: `sender` is the user themselves, or a user
    /// of this server with the power to kick them. Returns whether the clients are out.
    pub fn leave(&self, room_id: &str, sender: &str, user_id: &str, ts: i64) -> Result<bool, HubError> {
        if matches!(self.membership(room_id, user_id)?.as_deref(), Some("join" | "invite")) {
            let event = member_event(room_id, sender, user_id, "leave", ts);
            let head = self.head(room_id)?;
            let mut head = lock(&head);
            if head.chain.hub() != self.server_name {
                return Err(HubError::NotHub { room_id: room_id.to_owned(), hub: head.chain.hub().to_owned() });
            }
            let pending = if server_of(sender) == self.server_name || head.chain.version().hub_signs() {
                self.append_template(&mut head, event, |_| crate::store::Batch::new())?
            } else {
                return Err(HubError::NotLocalSender { sender: sender.to_owned(), server: self.server_name.clone() });
            };
            drop(head);
            pending.wait()?;
        }
        if !self.has_clients(room_id, user_id)? {
            return Ok(true);
        }
        let Some(committer) = self.local_clients(room_id)?.into_iter().find(|u| u != user_id) else {
            return Ok(false);
        };
        self.commit_remove(room_id, &committer, user_id, ts)?.wait()?;
        Ok(true)
    }
}
