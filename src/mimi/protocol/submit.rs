//! `submitMessage` (follower → hub): an application message for a room, and the hub's answer,
//! which carries its timestamp and, in franked rooms, the hub's frank.

use super::common::{MLS10, code, protocol};
use super::embedded::{self, Kind};
use super::tls::{Reader, Wire, WireError, Writer};

/// `SubmitMessageRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitMessageRequest {
    /// `MLSMessage appMessage`: a PrivateMessage, as received.
    pub app_message: Vec<u8>,
    /// `IdentifierUri sendingUri`: the sending user, a participant of the room.
    pub sending_uri: String,
}

impl Wire for SubmitMessageRequest {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        protocol(r)?;
        let app_message = embedded::read(r, Kind::MlsMessage, "appMessage")?;
        let sending_uri = r.text("sendingUri")?;
        Ok(Self { app_message, sending_uri })
    }

    fn write(&self, w: &mut Writer) {
        w.u8(MLS10);
        w.raw(&self.app_message);
        w.opaque(self.sending_uri.as_bytes());
    }
}

/// `Frank`: the hub's franking of an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frank {
    /// `opaque server_frank[32]`.
    pub server_frank: [u8; 32],
    /// `CipherSuite franking_signature_ciphersuite`.
    pub ciphersuite: u16,
    /// `opaque franking_integrity_signature<V>`.
    pub signature: Vec<u8>,
}

impl Wire for Frank {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut server_frank = [0u8; 32];
        server_frank.copy_from_slice(r.take(32, "frank.server_frank")?);
        let ciphersuite = r.u16("frank.franking_signature_ciphersuite")?;
        let signature = r.opaque("frank.franking_integrity_signature")?.to_vec();
        Ok(Self { server_frank, ciphersuite, signature })
    }

    fn write(&self, w: &mut Writer) {
        w.raw(&self.server_frank);
        w.u16(self.ciphersuite);
        w.opaque(&self.signature);
    }
}

/// `SubmitMessageResponse`, by `SubmitResponseCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitMessageResponse {
    /// `accepted(0)`: the hub's timestamp (ms) and, in franked rooms, its frank. The presence
    /// byte of the frank is always written (and required on input).
    Accepted {
        /// `uint64 accepted_timestamp`.
        timestamp: u64,
        /// `optional<Frank> frank`.
        frank: Option<Frank>,
    },
    /// `notAllowed(1)`.
    NotAllowed,
    /// `epochTooOld(2)`: the room's current epoch.
    EpochTooOld {
        /// `uint64 current_epoch`.
        current_epoch: u64,
    },
}

impl Wire for SubmitMessageResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        protocol(r)?;
        Ok(match code(r, "statusCode", |c| (c <= 2).then_some(c))? {
            0 => {
                let timestamp = r.u64("accepted_timestamp")?;
                let frank = if r.present("frank")? { Some(Frank::read(r)?) } else { None };
                Self::Accepted { timestamp, frank }
            }
            1 => Self::NotAllowed,
            _ => Self::EpochTooOld { current_epoch: r.u64("current_epoch")? },
        })
    }

    fn write(&self, w: &mut Writer) {
        w.u8(MLS10);
        match self {
            Self::Accepted { timestamp, frank } => {
                w.u8(0);
                w.u64(*timestamp);
                w.optional(frank.as_ref(), |w, f| f.write(w));
            }
            Self::NotAllowed => w.u8(1),
            Self::EpochTooOld { current_epoch } => {
                w.u8(2);
                w.u64(*current_epoch);
            }
        }
    }
}
