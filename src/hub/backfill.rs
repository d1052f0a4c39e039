//! Healing a follower's gap from this hub's log.
//!
//! A follower refuses a `notify` for an epoch its record has not reached (it would have to skip
//! what it missed) and says which epoch it is at. The outbox then sends it, from this hub's
//! log, what the hub owed it from that epoch on — exactly what [`Hub::owed`] computed when
//! each message was accepted: the messages of the epochs in which it had a client in the group,
//! and the Welcomes of commits that added its clients — before the request it refused. The
//! follower takes what it already holds as repeats. Nothing else ever leaves: a follower cannot
//! obtain messages of epochs it was not in by claiming an old epoch.
//!
//! The log is read in pages (a [`Backfill`] says where the next begins), so an epoch of any
//! length is healed in bounded requests.

use crate::event::meta::server_of;
use crate::mimi::protocol::{FanoutMessage, Wire as _};
use crate::mls::events::{COMMIT, CommitContent, ENCRYPTED, EncryptedContent, RoomEncryption};
use crate::mls::member::parse_welcome;
use crate::mls::public::{MlsCheckError, PublicView};

use super::fanout::{application, commit, welcome_of};
use super::{Hub, HubError, lock, trusted_pdu};

/// Where a follower's backfill stands: the epoch it asked from, and the next page's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    from_epoch: u64,
    next: u64,
    epoch: u64,
    present: bool,
}

impl Backfill {
    /// A backfill of what was owed from `epoch` on.
    pub fn from_epoch(epoch: u64) -> Self {
        Self { from_epoch: epoch, next: 0, epoch: 0, present: false }
    }
}

impl Hub {
    /// The next page of what this hub owed `dest` in `room_id` (a room hubbed here) since the
    /// backfill's epoch: at most `max_messages`, and no more than `max_bytes` once encoded
    /// (unless one message alone is larger). Empty once the log's tail is reached.
    pub fn backfill(
        &self,
        room_id: &str,
        dest: &str,
        at: &mut Backfill,
        max_messages: usize,
        max_bytes: usize,
    ) -> Result<Vec<FanoutMessage>, HubError> {
        let head = self.head(room_id)?;
        let (short, version) = {
            let head = lock(&head);
            if head.chain.hub() != self.server_name || !head.chain.version().hub_signs() {
                return Err(HubError::NotHub { room_id: room_id.to_owned(), hub: head.chain.hub().to_owned() });
            }
            (head.short, head.chain.version())
        };
        let (mut out, mut size) = (Vec::new(), 0);
        for item in self.store.pdus(short, at.next)? {
            let (position, bytes) = item?;
            let pdu = trusted_pdu(&bytes, Some(version))?;
            let (mut after, mut page) = (*at, Vec::new());
            self.owed_then(&pdu, room_id, dest, &mut after, &mut page)?;
            let grown: usize = page.iter().map(|m| m.encode().len()).sum();
            if !out.is_empty() && (out.len() + page.len() > max_messages || size + grown > max_bytes) {
                break;
            }
            // This event is taken: the next page starts after it.
            *at = Backfill { next: position + 1, ..after };
            size += grown;
            out.extend(page);
        }
        Ok(out)
    }
}

impl Hub {
    /// What `pdu` owed `dest` (into `page`) and where the backfill stands after it (`at`).
    fn owed_then(
        &self,
        pdu: &crate::event::Pdu,
        room_id: &str,
        dest: &str,
        at: &mut Backfill,
        page: &mut Vec<FanoutMessage>,
    ) -> Result<(), HubError> {
        let timestamp = u64::try_from(pdu.meta().origin_server_ts).unwrap_or_default();
        let owed = at.epoch >= at.from_epoch;
        match pdu.meta().event_type.as_str() {
            "m.room.create" => {
                if let Some(encryption) = RoomEncryption::from_create(pdu.content()).map_err(MlsCheckError::from)? {
                    let view = PublicView::from_group_info(&encryption.group_info, room_id, pdu.event_id())?;
                    at.epoch = view.epoch();
                    at.present = has_client(&view, dest);
                }
            }
            ENCRYPTED if owed && at.present => {
                let content = EncryptedContent::parse(pdu.content()).map_err(MlsCheckError::from)?;
                page.push(application(timestamp, &content));
            }
            COMMIT => {
                let content = CommitContent::parse(pdu.content()).map_err(MlsCheckError::from)?;
                if owed && at.present {
                    page.push(commit(timestamp, content.message.clone()));
                }
                let welcome = self.store.welcome(pdu.event_id())?.as_deref().and_then(parse_welcome);
                if let Some(welcome) = welcome.filter(|w| owed && w.targets.iter().any(|(u, _)| server_of(u) == dest)) {
                    page.push(welcome_of(timestamp, welcome.message, pdu));
                }
                at.epoch += 1;
                if at.epoch >= at.from_epoch {
                    let view = PublicView::from_group_info(&content.public_group_state, room_id, pdu.event_id())?;
                    at.present = has_client(&view, dest);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn has_client(view: &PublicView, dest: &str) -> bool {
    view.members().iter().any(|client| server_of(client.user_id()) == dest)
}
