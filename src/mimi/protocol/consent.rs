//! `requestConsent/{targetDomain}` and `updateConsent/{requesterDomain}`: one user asks
//! another, across providers, for consent to be contacted (in one room or any), and the answer
//! (grant, possibly with KeyPackages, or revoke) travels back. Both carry a `ConsentEntry`.

use super::common::{AppDataDictionary, code};
use super::embedded::{self, Kind};
use super::tls::{Reader, Wire, WireError, Writer};

/// `ConsentOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentOperation {
    /// `cancel(0)`: the requester withdraws a request.
    Cancel = 0,
    /// `request(1)`.
    Request = 1,
    /// `grant(2)`.
    Grant = 2,
    /// `revoke(3)`.
    Revoke = 3,
}

impl ConsentOperation {
    fn from_u8(v: u8) -> Option<Self> {
        [Self::Cancel, Self::Request, Self::Grant, Self::Revoke].into_iter().find(|o| *o as u8 == v)
    }
}

/// `ConsentEntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEntry {
    /// `ConsentOperation consentOperation`.
    pub operation: ConsentOperation,
    /// `IdentifierUri requesterUri`.
    pub requester_uri: String,
    /// `IdentifierUri targetUri`.
    pub target_uri: String,
    /// `optional<RoomId> roomId`: consent for this room only; none = any room.
    pub room_id: Option<String>,
    /// `KeyPackage clientKeyPackages<V>` (grant only), each as encoded.
    pub key_packages: Vec<Vec<u8>>,
    /// `AppDataDictionary consent_extensions` (new in -06).
    pub extensions: AppDataDictionary,
}

impl Wire for ConsentEntry {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let operation = code(r, "consentOperation", ConsentOperation::from_u8)?;
        let requester_uri = r.text("requesterUri")?;
        let target_uri = r.text("targetUri")?;
        let room_id = if r.present("roomId")? { Some(r.text("roomId")?) } else { None };
        let key_packages = if operation == ConsentOperation::Grant {
            r.list("clientKeyPackages", |r, name| embedded::read(r, Kind::KeyPackage, name))?
        } else {
            Vec::new()
        };
        let extensions = AppDataDictionary::read(r, "consent_extensions")?;
        Ok(Self { operation, requester_uri, target_uri, room_id, key_packages, extensions })
    }

    fn write(&self, w: &mut Writer) {
        w.u8(self.operation as u8);
        w.opaque(self.requester_uri.as_bytes());
        w.opaque(self.target_uri.as_bytes());
        w.optional(self.room_id.as_ref(), |w, room| w.opaque(room.as_bytes()));
        if self.operation == ConsentOperation::Grant {
            w.vector(|w| {
                for kp in &self.key_packages {
                    w.raw(kp);
                }
            });
        }
        self.extensions.write(w);
    }
}
