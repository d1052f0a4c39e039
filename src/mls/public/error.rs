//! Why the public view refuses an MLS event: one enum for the hub, followers and `log verify`,
//! so that each names the same rule the same way.

use super::super::events::ContentError;
use super::super::identity::IdentityError;

/// Why an MLS event is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MlsCheckError {
    /// The content lacks a field or has a malformed one.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The bytes are not the MLS structure the field must hold.
    #[error("malformed MLS data: {0}")]
    Malformed(String),
    /// The room has no MLS group (its create event names no encryption).
    #[error("the room is not MLS-encrypted")]
    NotEncrypted,
    /// A message event other than `m.room.encrypted` or `m.mls.commit` in an MLS-encrypted room:
    /// its content would be plaintext where the room promises ciphertext.
    #[error("{event_type} is not allowed in an MLS-encrypted room: messages must be m.room.encrypted")]
    PlaintextInEncryptedRoom {
        /// The refused event's type.
        event_type: String,
    },
    /// The MLS message belongs to another group than the room's.
    #[error("MLS message is for another group than this room's")]
    WrongGroup,
    /// An `m.mls.commit` must hold a commit, as a `PublicMessage` the hub can read.
    #[error("an m.mls.commit must hold a commit as a PublicMessage")]
    NotPublicCommit,
    /// An `m.room.encrypted` must hold an application message as a `PrivateMessage`.
    #[error("an m.room.encrypted must hold an application message as a PrivateMessage")]
    NotApplication,
    /// The message is for an epoch the group has left.
    #[error("message for epoch {message} but the group is at epoch {group} (stale)")]
    StaleEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// The message is for an epoch the group has not reached.
    #[error("message for epoch {message} but the group is only at epoch {group}")]
    FutureEpoch {
        /// The message's epoch.
        message: u64,
        /// The group's epoch.
        group: u64,
    },
    /// An `m.room.encrypted` names another commit than the room's latest.
    #[error("commit_event_id is {found} but the room's latest commit is {latest}")]
    StaleCommit {
        /// The commit it names.
        found: String,
        /// The room's latest commit (the create event before the first).
        latest: String,
    },
    /// Only members commit: external commits are not accepted.
    #[error("commit by a non-member (external commit)")]
    ExternalCommit,
    /// The committing device belongs to another user than the event's sender.
    #[error("commit signed by a device of {committer}, but the event's sender is {sender}")]
    SenderMismatch {
        /// The event's sender.
        sender: String,
        /// The committing device's user.
        committer: String,
    },
    /// A leaf is refused by the identity rules.
    #[error("leaf refused: {0}")]
    Identity(#[from] IdentityError),
    /// A device may be removed only by a sibling device or once its user left.
    #[error("{remover} may not remove a device of {removed}: only a sibling device may, until the user leaves")]
    RemovalNotAllowed {
        /// The committer's user.
        remover: String,
        /// The removed device's user.
        removed: String,
    },
    /// A commit's `AppDataUpdate` proposals change the room state in a way the rules refuse.
    #[error("room state change refused: {0}")]
    RoomState(#[from] crate::mls::room_data::RoomDataError),
    /// After the commit, the room's participant list is not the log's membership.
    #[error("the participant list after the commit ({listed}) is not the log's membership ({log})")]
    ParticipantList {
        /// The list the commit leaves (user=role, …).
        listed: String,
        /// What the log's membership calls for.
        log: String,
    },
    /// A frank in the hub's log does not check out.
    #[error("frank refused: {0}")]
    Frank(String),
    /// A proposal type the bridge's groups do not use.
    #[error("commit carries a {0} proposal, which these groups do not accept")]
    UnsupportedProposal(String),
    /// `public_group_state` does not describe the group after the commit.
    #[error("public_group_state is not the group after the commit")]
    StateMismatch,
    /// The same ciphertext is already in the room's log (in this epoch; older ones are stale).
    #[error("ciphertext replayed: already in the room's log")]
    Replay,
    /// openmls refused the message.
    #[error("MLS validation failed: {0}")]
    Rejected(String),
    /// A follower's record holds the hub's messages as `m.mimi.fanout` events only.
    #[error("{event_type} in a follower's record, which holds m.mimi.fanout events only")]
    NotAFanout {
        /// The refused event's type.
        event_type: String,
    },
}
