//! Why the hub refused an append.

use crate::event::{ChainError, EventError};
use crate::store::StoreError;

/// An append was refused or could not be made durable.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// The event itself is malformed, unauthentic or too large.
    #[error("{0}")]
    Event(#[from] EventError),
    /// The event is not a valid next entry of the room's log.
    #[error("{0}")]
    Chain(#[from] ChainError),
    /// Storage failed; nothing was acknowledged.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// No such room here.
    #[error("unknown room {0}")]
    UnknownRoom(String),
    /// The room already exists here.
    #[error("room {0} already exists")]
    RoomExists(String),
    /// An LPDU for a room this server is not the hub of.
    #[error("this server is not the hub of {room_id} (its hub is {hub})")]
    NotHub {
        /// The room.
        room_id: String,
        /// Its hub.
        hub: String,
    },
    /// A room another server starts here that none of this server's users is invited to or
    /// joined in (within the same transaction): its history is not this server's to keep.
    #[error("no user of {server} is invited to or joined in {room_id}; its history is not stored here")]
    RoomNotWanted {
        /// The room.
        room_id: String,
        /// This server.
        server: String,
    },
    /// The sending server has started its quota of new rooms here for today.
    #[error("{0}")]
    Quota(String),
    /// A different public key is already trusted under this server's key ID.
    #[error("{server} already has a different key {key_id}; a key ID never changes its key (generate a new key ID)")]
    KeyConflict {
        /// The server.
        server: String,
        /// The key ID.
        key_id: String,
    },
    /// An MLS event broke the room's MLS rules.
    #[error("MLS: {0}")]
    Mls(crate::mls::public::MlsCheckError),
    /// This server's MLS client failed.
    #[error("MLS client: {0}")]
    MlsClient(String),
    /// The user has no MLS device here, or it is not in the room's group.
    #[error("{user} has no MLS device in this room's group here")]
    NoMlsDevice {
        /// The user.
        user: String,
    },
    /// A commit of the user's client is with the room's hub: the next waits until it is back.
    #[error("a commit of {user}'s client is still with the room's hub")]
    CommitPending {
        /// The user.
        user: String,
    },
    /// An object whose sender is not a user of the server that sent it.
    #[error("sender {sender} is not a user of the origin {origin}")]
    WrongOrigin {
        /// The server that sent it.
        origin: String,
        /// The event's sender.
        sender: String,
    },
    /// A locally authored event whose sender is not a user of this server.
    #[error("sender {sender} is not a user of this server ({server}); remote users send LPDUs")]
    NotLocalSender {
        /// The sender.
        sender: String,
        /// This server.
        server: String,
    },
}

impl From<crate::mls::public::MlsCheckError> for HubError {
    fn from(error: crate::mls::public::MlsCheckError) -> Self {
        Self::Mls(error)
    }
}

/// An LPDU the hub rejected, reported under the LPDU's reference ID (as `/send`'s
/// `failed_pdus` does).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("LPDU {lpdu_id} rejected: {error}")]
pub struct LpduRejection {
    /// The LPDU's reference ID.
    pub lpdu_id: String,
    /// Why.
    pub error: HubError,
}
