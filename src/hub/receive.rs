//! The one entry point for what another server sends: the hub decides what the object is and
//! which role this server plays for its room, so the federation endpoints only authenticate
//! and report.
//!
//! An LPDU (it names a `hub_server` and has no `prev_events`) must come from its sender's server
//! and is completed here if this server is its room's hub; a PDU must come from its room's hub
//! (the server of the create event's sender) and extends this server's copy.

use ruma::CanonicalJsonObject;

use crate::event::meta::server_of;
use crate::event::room_version::LINEARIZED_02;
use crate::event::{UnverifiedLpdu, UnverifiedPdu};

use super::{Hub, HubError, PendingAppend};

/// A received object refused, under the ID `failed_pdus` reports it by (the LPDU's reference ID
/// or the PDU's event ID).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{id} refused: {error}")]
pub struct Refused {
    /// The object's ID.
    pub id: String,
    /// Why.
    pub error: HubError,
}

impl Hub {
    /// Takes in one object `origin` (authenticated by the caller) sent; see the module
    /// documentation. May load a cold room and verify signatures: call it from a blocking thread.
    pub fn receive(&self, origin: &str, object: CanonicalJsonObject) -> Result<PendingAppend, Box<Refused>> {
        let is_lpdu = object.contains_key("hub_server") && !object.contains_key("prev_events");
        if is_lpdu {
            let lpdu = UnverifiedLpdu::from_object(object)
                .map_err(|e| Box::new(Refused { id: String::new(), error: HubError::Event(e) }))?;
            if server_of(&lpdu.meta().sender) != origin {
                let id = lpdu.reference_id(&LINEARIZED_02);
                let error = HubError::WrongOrigin { origin: origin.to_owned(), sender: lpdu.meta().sender.clone() };
                return Err(Box::new(Refused { id, error }));
            }
            return self.submit_lpdu(lpdu).map_err(|r| Box::new(Refused { id: r.lpdu_id, error: r.error }));
        }
        let pdu = UnverifiedPdu::from_object(object)
            .map_err(|e| Box::new(Refused { id: String::new(), error: HubError::Event(e) }))?;
        let id = pdu.event_id(&LINEARIZED_02);
        let meta = pdu.meta();
        let room_hub = match self.room_hub(&meta.room_id) {
            Some(room_hub) => room_hub,
            None if meta.event_type == "m.room.create" => server_of(&meta.sender).to_owned(),
            None => String::new(),
        };
        if room_hub != origin {
            let error = HubError::NotHub { room_id: meta.room_id.clone(), hub: room_hub };
            return Err(Box::new(Refused { id, error }));
        }
        self.submit_followed(pdu).map_err(|error| Box::new(Refused { id, error }))
    }
}
