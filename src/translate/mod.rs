//! Matrix event content ⇄ MIMI content (specs/mimi-mls.md §9.2).
//!
//! The bridge speaks to the homeserver as an appservice and to MIMI rooms as a provider, so every
//! message crosses this module twice: [`to_mimi`] when a Matrix user writes in a portal room and
//! [`to_matrix`] when a MIMI member does. Both sides are kept as what actually travels — event
//! JSON as the homeserver delivers it, [`MimiContent`] as the codec decodes it — so the appservice
//! and MLS layers add no third model, and each translation can be checked field by field.
//!
//! Why the pieces look the way they do:
//! - Matrix points replies, edits, reactions and redactions at event IDs, MIMI at message IDs
//!   that are hashes of the encoded message. The bridge's store owns that table; the translation
//!   only asks it through [`IdMap`] (with [`MemoryIdMap`] for tests), so it stays pure.
//! - Both protocols point an edit at the *original* message, so edits map one to one; a Matrix
//!   edit of an edit is invalid there and cannot be expressed in MIMI, so it is dropped.
//! - Text goes to MIMI as a `chooseOne` of GFM-MIMI markdown (the only rich format every MIMI
//!   client must read), sanitised HTML (for clients that prefer it and for a lossless way back)
//!   and the plain body. The HTML parser and markdown writer are our own ([`html`], [`sanitize`], [`markdown`]):
//!   Matrix's HTML is a small allow-list, and one tree serves sanitising, markdown and mentions.
//! - Portal rooms are unencrypted on the Matrix side (the bridge cannot read Megolm), while MIMI
//!   attachments are AEAD-encrypted blobs; [`media`] does that re-encryption and builds the parts.
//!   Fetching and uploading is the appservice's job, so media events come out as "pending".
//! - Matrix-only meaning rides in private-use extension keys, which other MIMI clients ignore:
//!   [`MSGTYPE_KEY`] (`"m.msgtype"`) carries `m.notice` and `m.emote`. Emotes also get a
//!   `* localpart ` prefix in every part, so readers without the key still see an emote.
//!
//! # What cannot map
//! Each of these is dropped on purpose and reported as an [`Outcome::Dropped`] or
//! [`MatrixOut::Dropped`] with its [`DropReason`], for the bridge to count:
//! - typing notifications ([`DropReason::Typing`]) and presence ([`DropReason::Presence`]):
//!   MIMI has no ephemeral messages yet;
//! - private read receipts and `m.fully_read` ([`DropReason::PrivateReceipt`]): private by
//!   definition; public receipts' `thread_id` is lost silently;
//! - `@room` mentions, `m.mentions.room` ([`DropReason::RoomMention`]): no MIMI equivalent (the
//!   message itself is still sent);
//! - redaction reasons ([`DropReason::RedactionReason`]; the delete itself is sent);
//! - redactions of edits ([`DropReason::RedactedEdit`]): MIMI cannot undo one edit;
//! - moderator redactions of others' messages ([`DropReason::ModeratorRedaction`]): MIMI
//!   receivers reject deletes from non-senders; the hub-retraction path comes later;
//! - polls, calls, widgets and pinned events ([`DropReason::Poll`], [`DropReason::Call`],
//!   [`DropReason::Widget`], [`DropReason::PinnedEvents`]); encrypted events
//!   ([`DropReason::Encrypted`]); state events, which map to MIMI room state elsewhere
//!   ([`DropReason::State`]); anything else ([`DropReason::Unsupported`]);
//! - MIMI delivery statuses other than `read` ([`DropReason::StatusWithoutEquivalent`]), expiry
//!   ([`DropReason::Expiry`]), vendor content types ([`DropReason::UnsupportedContent`]),
//!   profile/icon/session/preview parts ([`DropReason::UnsupportedPart`]) and non-text reactions
//!   ([`DropReason::NonTextReaction`]).
//!
//! Lossy but not dropped: locations and stickers become text and images, `m.mentions` user IDs
//! without a pill in the HTML, HTML the allow-list removes, `<img>` (its alt text stays),
//! formatted captions, media dimensions, durations, thumbnails and blurhashes, and the Matrix
//! fallback texts of replies (stripped) and edits (ignored: `m.new_content` is what counts).

pub mod html;
pub mod ids;
pub mod markdown;
pub mod media;
#[cfg(test)]
mod properties;
pub mod receipts;
pub mod sanitize;
mod text;
mod to_matrix;
mod to_mimi;
pub mod uri;

use serde_json::Value as Json;

use crate::mimi::id::IdError;
use crate::mimi::{IdDraft, MessageId, MimiContent, message_id};

pub use ids::{EventKind, IdMap, MappedEvent, MemoryIdMap};
pub use to_matrix::{PendingUpload, to_matrix};
pub use to_mimi::{OutboundContext, PendingMedia, Salt, to_mimi};

/// Private-use text extension key that carries a Matrix `msgtype` other than `m.text`.
pub const MSGTYPE_KEY: &str = "m.msgtype";
/// Content type of plain text parts.
pub const TEXT_PLAIN: &str = "text/plain;charset=utf-8";
/// Content type of markdown parts (GFM-MIMI: no raw HTML).
pub const TEXT_MARKDOWN: &str = "text/markdown;variant=GFM-MIMI";
/// Content type of HTML parts.
pub const TEXT_HTML: &str = "text/html;charset=utf-8";
/// Content type of message-status reports nested in a message (as phnx-im and nexun do).
pub const MESSAGE_STATUS: &str = "application/mimi-message-status";

/// Why an event or message could not be translated at all (as opposed to a deliberate drop).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TranslateError {
    /// A field the event type requires is absent.
    #[error("missing field {0}")]
    MissingField(String),
    /// A field has the wrong JSON type.
    #[error("field {field} must be {expected}")]
    WrongType {
        /// Dotted path of the field.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A Matrix user ID that is not `@localpart:server`.
    #[error("not a Matrix user ID: {0:?}")]
    BadUserId(String),
    /// A MIMI URI that is not a `mimi://server/u/…` (or `/r/…`) URI.
    #[error("not a MIMI user or room URI: {0:?}")]
    BadUri(String),
    /// MIMI content without extension 1 (sender URI): it cannot be attributed to anyone.
    #[error("MIMI content has no sender URI (extension 1)")]
    NoSender,
    /// A nested message-status report failed to decode.
    #[error("message status report: {0}")]
    Status(#[from] crate::mimi::cbor::DecodeError),
    /// The message ID cannot be computed (URI too long).
    #[error("{0}")]
    Id(#[from] IdError),
    /// The operating system's random number generator failed.
    #[error("no randomness available for a salt or key")]
    Random,
    /// A media operation on a part that is not an ExternalPart.
    #[error("not an ExternalPart")]
    NotExternal,
    /// An ExternalPart encrypted with an AEAD other than AES-128-GCM (1) or none (0).
    #[error("unsupported encryption algorithm {0}")]
    UnsupportedCipher(u16),
    /// An ExternalPart hashed with anything but SHA-256 (1).
    #[error("unsupported hash algorithm {0}")]
    UnsupportedHash(u8),
    /// Key or nonce of the wrong length for the algorithm.
    #[error("key or nonce has the wrong length for AES-128-GCM")]
    KeyLength,
    /// The downloaded bytes do not hash to the part's contentHash.
    #[error("content hash mismatch: the downloaded bytes are not the ones the sender described")]
    HashMismatch,
    /// The AEAD tag did not verify (wrong key, nonce or aad, or tampered bytes).
    #[error("decryption failed: authentication tag mismatch")]
    Decrypt,
    /// The plaintext is not the size the part announced.
    #[error("plaintext is {actual} bytes, the part announced {expected}")]
    SizeMismatch {
        /// The part's size field.
        expected: u64,
        /// What decrypted.
        actual: u64,
    },
}

/// Why something was deliberately not translated (see "What cannot map" above). Each has a
/// stable [`counter_name`](DropReason::counter_name) for the drop metric.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// `m.typing`: no MIMI construct.
    Typing,
    /// `m.presence`: no MIMI construct.
    Presence,
    /// `m.read.private` or `m.fully_read`: private by definition.
    PrivateReceipt,
    /// `m.mentions.room` (`@room`): no MIMI equivalent; the message itself is still sent.
    RoomMention,
    /// A redaction's reason: MIMI deletes carry none; the delete itself is still sent.
    RedactionReason,
    /// An edit whose target is itself an edit: invalid in Matrix, inexpressible in MIMI.
    EditOfEdit,
    /// An edit by someone other than the original sender: invalid in both protocols.
    ForeignEdit,
    /// A redaction of an edit event: MIMI cannot roll back one edit.
    RedactedEdit,
    /// A redaction of another user's message: MIMI receivers would reject it.
    ModeratorRedaction,
    /// The event or message referred to is not known to the bridge: a reaction, edit or
    /// redaction is dropped whole; for a reply only the reply relation is lost.
    UnknownTarget,
    /// The thread root (or topic ID) is not known: the message is posted unthreaded.
    UnknownThread,
    /// Polls (`m.poll.*`, MSC3381).
    Poll,
    /// Voice and video calls (`m.call.*`, Matrix RTC).
    Call,
    /// Widgets.
    Widget,
    /// `m.room.pinned_events`.
    PinnedEvents,
    /// `m.room.encrypted`: portals are unencrypted; the bridge holds no Megolm keys.
    Encrypted,
    /// A state event: membership, names and power levels map to MIMI room state elsewhere.
    State,
    /// Any other event type (named).
    Unsupported(String),
    /// A MIMI message status other than `read` (named): Matrix has no such receipt.
    StatusWithoutEquivalent(&'static str),
    /// MIMI `expires`: Matrix has no self-destructing messages; the message is still posted.
    Expiry,
    /// A MIMI content type with no Matrix rendering (named).
    UnsupportedContent(String),
    /// A MIMI part with disposition profile, icon, session or preview.
    UnsupportedPart,
    /// A MIMI reaction that is not text (Matrix reactions are text keys).
    NonTextReaction,
}

impl DropReason {
    /// A stable `snake_case` label (no event types in it: bounded metric cardinality).
    pub fn counter_name(&self) -> &'static str {
        match self {
            Self::Typing => "typing",
            Self::Presence => "presence",
            Self::PrivateReceipt => "private_receipt",
            Self::RoomMention => "room_mention",
            Self::RedactionReason => "redaction_reason",
            Self::EditOfEdit => "edit_of_edit",
            Self::ForeignEdit => "foreign_edit",
            Self::RedactedEdit => "redacted_edit",
            Self::ModeratorRedaction => "moderator_redaction",
            Self::UnknownTarget => "unknown_target",
            Self::UnknownThread => "unknown_thread",
            Self::Poll => "poll",
            Self::Call => "call",
            Self::Widget => "widget",
            Self::PinnedEvents => "pinned_events",
            Self::Encrypted => "encrypted",
            Self::State => "state",
            Self::Unsupported(_) => "unsupported_event",
            Self::StatusWithoutEquivalent(_) => "status_without_equivalent",
            Self::Expiry => "expiry",
            Self::UnsupportedContent(_) => "unsupported_content",
            Self::UnsupportedPart => "unsupported_part",
            Self::NonTextReaction => "non_text_reaction",
        }
    }
}

/// One result of translating a Matrix event (an event may give several: a message and the
/// parts of it that were dropped, or one status report per receipting user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A MIMI message ready to encode, hash and send.
    Message(Box<MimiContent>),
    /// An attachment: fetch the `mxc://` file, encrypt and upload it, then
    /// [`PendingMedia::finish`].
    Media(Box<PendingMedia>),
    /// Deliberately not translated.
    Dropped(DropReason),
}

/// One result of translating a MIMI message for the homeserver.
#[derive(Debug, Clone, PartialEq)]
pub enum MatrixOut {
    /// Send this event as `sender` (the Matrix form of the MIMI sender URI).
    Event {
        /// Matrix user ID to send as.
        sender: String,
        /// Event type, e.g. `m.room.message`.
        event_type: String,
        /// Event content.
        content: Json,
    },
    /// An attachment: fetch, verify and decrypt the blob, upload it, then
    /// [`PendingUpload::finish`].
    Media(Box<PendingUpload>),
    /// Redact `redacts` as `sender` (a MIMI delete or unlike).
    Redaction {
        /// Matrix user ID to redact as.
        sender: String,
        /// The event to redact.
        redacts: String,
    },
    /// A public read receipt (`m.read`) by `sender` on `event_id`.
    ReadReceipt {
        /// Matrix user ID.
        sender: String,
        /// The event read.
        event_id: String,
    },
    /// Deliberately not translated.
    Dropped(DropReason),
}

/// Encodes `content` and computes its -08 message ID from its own sender and room URIs
/// (extensions 1 and 2), as the bridge does before sending and storing the mapping.
pub fn encode_with_id(content: &MimiContent) -> Result<(Vec<u8>, MessageId), TranslateError> {
    let bytes = content.encode();
    let sender = content.sender_uri().ok_or(TranslateError::NoSender)?;
    let id = message_id(IdDraft::V08, sender, content.room_uri().unwrap_or(""), &bytes, &content.salt)?;
    Ok((bytes, id))
}
