//! Franks as the public view sees them: the hub reads the sender's franking tag from the
//! message's Safe AAD (which travels in the clear) and stamps it; `log verify` checks that each
//! frank in the hub's log is signed by the room's franking agent for the event's sender, the
//! room and the event's time. Only the hub can recompute a `server_frank` (its key is secret),
//! and only a member can check the tag against the content.

use openmls::framing::SafeAad;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};

use super::{MlsCheckError, PublicView, malformed};
use crate::event::ServerKey;
use crate::mimi::frank::{self, FRANK_AAD};
use crate::mimi::protocol::{Frank, Wire as _};
use crate::mls::events::EncryptedContent;
use crate::mls::room_data::franking_agent;

/// The label the hub's franking secret is derived under from its server key.
const HUB_KEY_LABEL: &str = "mimi-bridge franking hub_key v1";

impl PublicView {
    /// The franking tag in an application message's Safe AAD, if it has one.
    fn franking_tag(ciphertext: &[u8]) -> Option<[u8; 32]> {
        let message = MlsMessageIn::tls_deserialize_exact(ciphertext).ok()?;
        let MlsMessageBodyIn::PrivateMessage(private) = message.extract() else { return None };
        let safe = SafeAad::tls_deserialize(&mut private.aad()).ok()?;
        safe.get(FRANK_AAD)?.try_into().ok()
    }

    fn room_uri(&self) -> String {
        let room_id = String::from_utf8_lossy(self.group.group_id().as_slice()).into_owned();
        crate::translate::uri::room_uri_of(&room_id).unwrap_or(room_id)
    }

    /// The hub's frank (signed with `key`) of an application message `sender` sent and the hub
    /// accepted at `accepted` (ms): when the room names `key` as its franking agent and the
    /// message carries a franking tag.
    pub fn frank(&self, ciphertext: &[u8], sender: &str, accepted: u64, key: &ServerKey) -> Option<Frank> {
        let agent = franking_agent(self.group.group_context().extensions())?;
        if agent.key != key.verifying_key().to_bytes() {
            return None;
        }
        let tag = Self::franking_tag(ciphertext)?;
        let sender_uri = crate::translate::uri::user_uri(sender).ok()?;
        let room_uri = self.room_uri();
        let context = frank::Context { sender_uri: &sender_uri, room_uri: &room_uri, accepted_timestamp: accepted };
        let ciphersuite = u16::from(super::super::CIPHERSUITE);
        Some(frank::stamp(&key.derive_secret(HUB_KEY_LABEL), |m| key.sign_raw(m), &tag, ciphersuite, &context))
    }

    /// Checks the frank an `m.room.encrypted` of the hub's log carries, if any: the room's
    /// franking agent signed it for `sender`, this room and `accepted`, over a tagged message.
    pub fn check_logged_frank(
        &self,
        content: &EncryptedContent,
        sender: &str,
        accepted: u64,
    ) -> Result<(), MlsCheckError> {
        let Some(bytes) = &content.frank else { return Ok(()) };
        let refused = |why: &dyn std::fmt::Display| MlsCheckError::Frank(why.to_string());
        let agent = franking_agent(self.group.group_context().extensions())
            .ok_or_else(|| refused(&"a frank in a room without a franking agent"))?;
        Self::franking_tag(&content.ciphertext).ok_or_else(|| refused(&"a frank for a message without a tag"))?;
        let frank = Frank::decode(bytes).map_err(malformed)?;
        let sender_uri = crate::translate::uri::user_uri(sender).map_err(|e| refused(&e))?;
        let room_uri = self.room_uri();
        let bound = frank::Context { sender_uri: &sender_uri, room_uri: &room_uri, accepted_timestamp: accepted };
        frank::verify(&frank, &agent, u16::from(super::super::CIPHERSUITE), &bound).map_err(|e| refused(&e))
    }
}
