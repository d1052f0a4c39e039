//! Room versions as values: which keys survive redaction, how content hashes treat `hashes.lpdu`,
//! where an event's ID comes from, and whether the version's auth rules are implemented here.
//!
//! Everything that differs between versions is a field, so code paths never branch on a version
//! string. Two versions exist: the Linearized Matrix test version every LM implementation speaks,
//! and Matrix room version 1, whose redaction and hashing the Matrix spec's signing vectors use.

/// Which content keys a redaction keeps for one event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKeep {
    /// Keep the whole content (LM keeps all of `m.room.create`).
    All,
    /// Keep only these keys.
    Keys(&'static [&'static str]),
}

/// The redaction algorithm of a room version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedactionRules {
    /// Top-level keys kept; everything else is removed.
    pub top_level: &'static [&'static str],
    /// Per event type, the content keys kept; types not listed keep an empty content.
    pub content: &'static [(&'static str, ContentKeep)],
}

impl RedactionRules {
    /// What a redaction keeps of the content of an event of this type.
    pub fn content_keep(&self, event_type: &str) -> ContentKeep {
        self.content.iter().find(|(t, _)| *t == event_type).map_or(ContentKeep::Keys(&[]), |(_, keep)| *keep)
    }
}

/// Where an event's ID comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventIdFormat {
    /// `$` + URL-safe unpadded base64 of the reference hash (Matrix v4+, LM).
    ReferenceHash,
    /// The event carries its own `event_id` (Matrix v1 and v2).
    InEvent,
}

/// The rules of one room version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomVersion {
    /// The version string as it appears in `m.room.create` and on the wire.
    pub id: &'static str,
    /// The redaction algorithm, used before signing and for reference hashes.
    pub redaction: RedactionRules,
    /// Where event IDs come from.
    pub event_id: EventIdFormat,
    /// Events may be LPDUs completed by a hub: `hub_server` and `hashes.lpdu` exist, the PDU
    /// content hash keeps `hashes.lpdu`, and the hub signs beside the origin.
    pub linearized: bool,
    /// This crate implements the version's auth rules, so rooms of this version can be logged.
    pub loggable: bool,
    /// Whose log it is: a Matrix room's, a MIMI hub's or a MIMI follower's record.
    pub log: LogKind,
}

/// Whose log a room version's rooms are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// Every event is signed by its sender's server (and a hub that completed it).
    Matrix,
    /// A MIMI room at its hub: the hub (the server of the room ID) signs every event, whoever
    /// sent it, and no event is an LPDU. Participants at other providers reach the hub over the
    /// MIMI protocol (mutual TLS, MLS signatures), which has no per-event server signature.
    MimiHub,
    /// A follower's record of a MIMI room hubbed elsewhere: the room ID names the hub, but the
    /// record is created and written by its keeper at the follower (the create event's server
    /// need not be the room's), and its MLS checks are the transcript's alone.
    MimiRecord,
}

/// `org.matrix.i-d.ralston-mimi-linearized-matrix.02`: the LM test version that eigen-server
/// and Synapse's prototype speak (draft-ralston-mimi-linearized-matrix §"Room Versions").
pub const LINEARIZED_02: RoomVersion = RoomVersion {
    id: "org.matrix.i-d.ralston-mimi-linearized-matrix.02",
    redaction: RedactionRules {
        top_level: &[
            "auth_events",
            "content",
            "hashes",
            "hub_server",
            "origin_server_ts",
            "prev_events",
            "room_id",
            "sender",
            "signatures",
            "state_key",
            "type",
        ],
        content: &[
            ("m.room.create", ContentKeep::All),
            ("m.room.member", ContentKeep::Keys(&["membership"])),
            ("m.room.join_rules", ContentKeep::Keys(&["join_rule"])),
            (
                "m.room.power_levels",
                ContentKeep::Keys(&[
                    "ban",
                    "events",
                    "events_default",
                    "invite",
                    "kick",
                    "redact",
                    "state_default",
                    "users",
                    "users_default",
                ]),
            ),
            ("m.room.history_visibility", ContentKeep::Keys(&["history_visibility"])),
        ],
    },
    event_id: EventIdFormat::ReferenceHash,
    linearized: true,
    loggable: true,
    log: LogKind::Matrix,
};

/// `org.mimi-bridge.mimi-hub.1`: a MIMI room as its hub logs it. Linearized Matrix 02 in every
/// rule but one: the room's server signs every event ([`LogKind::MimiHub`]), so users of
/// other MIMI providers are members under their own IDs (`schemas/mimi-protocol.md`).
pub const MIMI_HUB_1: RoomVersion =
    RoomVersion { id: "org.mimi-bridge.mimi-hub.1", log: LogKind::MimiHub, ..LINEARIZED_02 };

/// `org.mimi-bridge.mimi-record.1`: a follower's record of a MIMI room hubbed elsewhere
/// ([`LogKind::MimiRecord`]): its keeper's create event and join, then one `m.mimi.fanout` per
/// message the hub fanned out, verbatim, in hub order (`schemas/mimi-protocol.md`).
pub const MIMI_RECORD_1: RoomVersion =
    RoomVersion { id: "org.mimi-bridge.mimi-record.1", log: LogKind::MimiRecord, ..LINEARIZED_02 };

/// Matrix room version 1 (redaction, hashing and signing only).
pub const V1: RoomVersion = RoomVersion {
    id: "1",
    redaction: RedactionRules {
        top_level: &[
            "auth_events",
            "content",
            "depth",
            "event_id",
            "hashes",
            "membership",
            "origin",
            "origin_server_ts",
            "prev_events",
            "prev_state",
            "room_id",
            "sender",
            "signatures",
            "state_key",
            "type",
        ],
        content: &[
            ("m.room.create", ContentKeep::Keys(&["creator"])),
            ("m.room.member", ContentKeep::Keys(&["membership"])),
            ("m.room.join_rules", ContentKeep::Keys(&["join_rule"])),
            (
                "m.room.power_levels",
                ContentKeep::Keys(&[
                    "ban",
                    "events",
                    "events_default",
                    "kick",
                    "redact",
                    "state_default",
                    "users",
                    "users_default",
                ]),
            ),
            ("m.room.aliases", ContentKeep::Keys(&["aliases"])),
            ("m.room.history_visibility", ContentKeep::Keys(&["history_visibility"])),
        ],
    },
    event_id: EventIdFormat::InEvent,
    linearized: false,
    loggable: false,
    log: LogKind::Matrix,
};

/// Every version this crate knows.
pub const KNOWN: &[RoomVersion] = &[LINEARIZED_02, MIMI_HUB_1, MIMI_RECORD_1, V1];

impl RoomVersion {
    /// Looks a version up by its ID string.
    pub fn from_id(id: &str) -> Option<&'static RoomVersion> {
        KNOWN.iter().find(|v| v.id == id)
    }

    /// The server whose signature makes an event of `meta` authentic (beside the hub's, for an
    /// LPDU a hub completed): its sender's, or in versions where the hub signs everything, the
    /// room's.
    pub fn signer<'a>(&self, meta: &'a super::EventMeta) -> &'a str {
        if self.hub_signs() { super::meta::server_of(&meta.room_id) } else { meta.origin() }
    }

    /// The room's hub signs every event ([`LogKind::MimiHub`]).
    pub fn hub_signs(&self) -> bool {
        self.log == LogKind::MimiHub
    }

    /// A follower's record ([`LogKind::MimiRecord`]).
    pub fn is_record(&self) -> bool {
        self.log == LogKind::MimiRecord
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_id() {
        assert_eq!(RoomVersion::from_id(LINEARIZED_02.id), Some(&LINEARIZED_02));
        assert_eq!(RoomVersion::from_id("1"), Some(&V1));
        assert_eq!(RoomVersion::from_id("10"), None);
    }

    #[test]
    fn lm_keeps_hub_server_and_v1_keeps_origin() {
        assert!(LINEARIZED_02.redaction.top_level.contains(&"hub_server"));
        assert!(!LINEARIZED_02.redaction.top_level.contains(&"origin"));
        assert!(V1.redaction.top_level.contains(&"origin"));
        assert_eq!(LINEARIZED_02.redaction.content_keep("m.room.create"), ContentKeep::All);
        assert_eq!(LINEARIZED_02.redaction.content_keep("m.room.message"), ContentKeep::Keys(&[]));
    }
}
