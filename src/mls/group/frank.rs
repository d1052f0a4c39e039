//! Franking as a client of the room's group ([`crate::mimi::frank`]): every message of ours in
//! a room with a franking agent commits to its content in the Safe AAD, and a fanned-out
//! message's frank is checked against what was decrypted before the message is delivered.

use openmls::framing::SafeAadItem;

use super::{Decrypted, GroupError, RoomGroup};
use crate::mimi::MimiContent;
use crate::mimi::frank::{self, FRANK_AAD};
use crate::mimi::protocol::Frank;
use crate::mls::room_data::franking_agent;

fn frank_error(reason: impl std::fmt::Display) -> GroupError {
    GroupError::Malformed(format!("frank: {reason}"))
}

/// The franking tag of framed MIMI content, if the content has a salt (all MIMI content does).
pub(super) fn tag_of(framed: &[u8], mimi_cbor: &[u8]) -> Option<[u8; 32]> {
    MimiContent::decode(mimi_cbor).ok().map(|content| frank::franking_tag(&content.salt, framed))
}

impl RoomGroup {
    /// Puts the franking tag of `framed` (holding `mimi_cbor`) into the next message's Safe
    /// AAD, in a room with a franking agent.
    pub(super) fn commit_to_content(&mut self, framed: &[u8], mimi_cbor: &[u8]) -> Result<(), GroupError> {
        if franking_agent(self.group.extensions()).is_none() {
            return Ok(());
        }
        if let Some(tag) = tag_of(framed, mimi_cbor) {
            self.group.set_safe_aad(vec![SafeAadItem::new(FRANK_AAD, tag.to_vec())]).map_err(frank_error)?;
        }
        Ok(())
    }

    /// Checks the hub's `frank` of a decrypted message it accepted at `accepted_timestamp`: signed
    /// by the room's franking agent for this sender, room and time, over the tag the sender put
    /// in the message (checked against the content when decrypting). A room without a franking
    /// agent, or a message without a tag, has nothing to check; a tagged message's frank may be
    /// missing (the draft has the hub attempt to frank).
    pub fn check_frank(
        &self,
        decrypted: &Decrypted,
        frank: Option<&Frank>,
        accepted_timestamp: u64,
    ) -> Result<(), GroupError> {
        let (Some(agent), Some(frank)) = (franking_agent(self.group.extensions()), frank) else { return Ok(()) };
        if decrypted.frank_tag.is_none() {
            return Err(frank_error("a frank for a message without a franking tag"));
        }
        let content = MimiContent::decode(&decrypted.mimi_cbor).map_err(frank_error)?;
        let sender_uri = content.sender_uri().ok_or_else(|| frank_error("the content names no sender"))?;
        let room_uri = content.room_uri().ok_or_else(|| frank_error("the content names no room"))?;
        let group_room = String::from_utf8_lossy(self.group.group_id().as_slice()).into_owned();
        if crate::translate::uri::room_uri_of(&group_room).ok().as_deref() != Some(room_uri) {
            return Err(frank_error("the content names another room"));
        }
        let sender =
            super::super::identity::NamedClient::from_identity(&decrypted.sender_identity).map_err(frank_error)?;
        if crate::translate::uri::user_uri(&sender.user_id).ok().as_deref() != Some(sender_uri) {
            return Err(frank_error("the content's sender is not the MLS sender"));
        }
        let bound = frank::Context { sender_uri, room_uri, accepted_timestamp };
        frank::verify(frank, &agent, u16::from(super::super::CIPHERSUITE), &bound).map_err(frank_error)
    }
}
