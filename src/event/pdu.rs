//! Trust as types: bytes from outside become `UnverifiedLpdu` or `UnverifiedPdu`; only
//! verification makes a `VerifiedLpdu` (which a hub may complete) or a `Pdu` (which a log may
//! append). There is no conversion that skips verification; the hub's own events become `Pdu`s
//! through `build`, which computes what verification would check.

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::canonical::{object_to_bytes, parse_object};
use super::check::{Form, inspect, required_signers};
use super::error::EventError;
use super::hash::reference_event_id;
use super::keys::KeyRing;
use super::meta::EventMeta;
use super::room_version::RoomVersion;
use super::sign::signing_servers;

/// A completed, signed PDU is at most this many bytes of canonical JSON.
pub const MAX_PDU_BYTES: usize = 65_536;

/// An LPDU as received: shape-checked, nothing verified.
#[derive(Debug, Clone)]
pub struct UnverifiedLpdu {
    object: CanonicalJsonObject,
    meta: EventMeta,
}

/// An LPDU whose origin signature and `hashes.lpdu` verified.
#[derive(Debug, Clone)]
pub struct VerifiedLpdu {
    pub(super) object: CanonicalJsonObject,
    pub(super) meta: EventMeta,
    lpdu_id: String,
}

/// A PDU as received: shape-checked, nothing verified.
#[derive(Debug, Clone)]
pub struct UnverifiedPdu {
    object: CanonicalJsonObject,
    meta: EventMeta,
}

/// A PDU whose hashes and required signatures hold and whose size is within the limit: the
/// only event type a log accepts. Auth rules are the log's to run, against its own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    object: CanonicalJsonObject,
    meta: EventMeta,
    event_id: String,
    bytes: Vec<u8>,
}

fn parse_checked(bytes: &[u8]) -> Result<(CanonicalJsonObject, EventMeta), EventError> {
    if bytes.len() > MAX_PDU_BYTES * 4 {
        return Err(EventError::TooLarge { size: bytes.len(), limit: MAX_PDU_BYTES });
    }
    let object = parse_object(bytes)?;
    let meta = EventMeta::parse(&object)?;
    Ok((object, meta))
}

impl UnverifiedLpdu {
    /// Parses untrusted bytes as an LPDU.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        let (object, meta) = parse_checked(bytes)?;
        Self::from_parts(object, meta)
    }

    /// Shape-checks an object as an LPDU.
    pub fn from_object(object: CanonicalJsonObject) -> Result<Self, EventError> {
        let meta = EventMeta::parse(&object)?;
        Self::from_parts(object, meta)
    }

    fn from_parts(object: CanonicalJsonObject, meta: EventMeta) -> Result<Self, EventError> {
        if meta.hub_server.is_none() {
            return Err(EventError::field("hub_server", "the hub's server name on an LPDU"));
        }
        if meta.prev_events.is_some() || meta.auth_events.is_some() {
            return Err(EventError::field("auth_events/prev_events", "absent on an LPDU (the hub chooses them)"));
        }
        Ok(Self { object, meta })
    }

    /// The JSON object as received.
    pub fn object(&self) -> &CanonicalJsonObject {
        &self.object
    }

    /// The LPDU's reference ID: how rejections of it are reported.
    pub fn reference_id(&self, version: &RoomVersion) -> String {
        reference_event_id(version, &self.object)
    }

    /// The header.
    pub fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// Verifies the origin signature and `hashes.lpdu`.
    pub fn verify(self, version: &RoomVersion, keys: &KeyRing) -> Result<VerifiedLpdu, EventError> {
        self.verify_reporting(version, keys).map_err(|failure| failure.0)
    }

    /// `verify`; a failure comes with the LPDU's reference ID (computed once, by the same pass).
    pub(crate) fn verify_reporting(
        self,
        version: &RoomVersion,
        keys: &KeyRing,
    ) -> Result<VerifiedLpdu, Box<(EventError, String)>> {
        let report = inspect(version, &self.object, keys);
        let lpdu_id = report.event_id.unwrap_or_default();
        if let Some(error) = report.error {
            return Err(Box::new((error, lpdu_id)));
        }
        let object = strip_other_signatures(self.object, &required_signers(Form::Lpdu, self.meta.origin(), None));
        Ok(VerifiedLpdu { object, meta: self.meta, lpdu_id })
    }
}

impl VerifiedLpdu {
    /// The header.
    pub fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// The LPDU's reference ID.
    pub fn lpdu_id(&self) -> &str {
        &self.lpdu_id
    }

    /// The LPDU's content.
    pub fn content(&self) -> &CanonicalJsonObject {
        content_of(&self.object)
    }
}

impl UnverifiedPdu {
    /// Parses untrusted bytes as a PDU.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        let (object, meta) = parse_checked(bytes)?;
        Self::from_parts(object, meta)
    }

    /// Shape-checks an object as a PDU.
    pub fn from_object(object: CanonicalJsonObject) -> Result<Self, EventError> {
        let meta = EventMeta::parse(&object)?;
        Self::from_parts(object, meta)
    }

    fn from_parts(object: CanonicalJsonObject, meta: EventMeta) -> Result<Self, EventError> {
        if meta.prev_events.is_none() {
            return Err(EventError::field("prev_events", "an array of event IDs on a PDU"));
        }
        if meta.auth_events.is_none() {
            return Err(EventError::field("auth_events", "an array of event IDs on a PDU"));
        }
        Ok(Self { object, meta })
    }

    /// The header.
    pub fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// The content.
    pub fn content(&self) -> &CanonicalJsonObject {
        content_of(&self.object)
    }

    /// The JSON object as received.
    pub fn object(&self) -> &CanonicalJsonObject {
        &self.object
    }

    /// Re-reads an event from this server's own store, where only verified events are written.
    /// This is the one path that skips verification; `log verify` re-checks stored bytes.
    #[cfg(feature = "store")]
    pub(crate) fn into_stored(self, version: &RoomVersion) -> Result<Pdu, EventError> {
        Pdu::from_trusted_parts(version, self.object, self.meta)
    }

    /// The reference-hash event ID (computed without verifying anything).
    pub fn event_id(&self, version: &RoomVersion) -> String {
        reference_event_id(version, &self.object)
    }

    /// Verifies hashes and the origin's (and, if completed by a hub, the hub's) signatures,
    /// drops signatures of any other server, and checks the size limit.
    pub fn verify(self, version: &RoomVersion, keys: &KeyRing) -> Result<Pdu, EventError> {
        self.verify_with_bytes(version, keys, None).map_err(|failure| failure.0)
    }

    /// `verify`, given the object's canonical bytes when the caller already has them; a failure
    /// comes with the event ID, for reporting.
    pub(crate) fn verify_with_bytes(
        self,
        version: &RoomVersion,
        keys: &KeyRing,
        canonical: Option<Vec<u8>>,
    ) -> Result<Pdu, Box<(EventError, Option<String>)>> {
        if !version.linearized || !version.loggable {
            return Err(Box::new((EventError::UnsupportedRoomVersion(version.id.to_owned()), None)));
        }
        let report = inspect(version, &self.object, keys);
        if let Some(error) = report.error {
            return Err(Box::new((error, report.event_id)));
        }
        let signers = required_signers(report.form, version.signer(&self.meta), self.meta.hub_server.as_deref());
        let before = signing_servers(&self.object).len();
        let had_unsigned = self.object.contains_key("unsigned");
        let object = strip_other_signatures(self.object, &signers);
        let unchanged = signing_servers(&object).len() == before && !had_unsigned;
        let event_id = report.event_id.unwrap_or_default();
        Pdu::from_signed_parts(object, self.meta, event_id.clone(), canonical.filter(|_| unchanged))
            .map_err(|error| Box::new((error, Some(event_id))))
    }
}

impl Pdu {
    /// Wraps an object re-read from this server's own store.
    #[cfg(feature = "store")]
    fn from_trusted_parts(
        version: &RoomVersion,
        object: CanonicalJsonObject,
        meta: EventMeta,
    ) -> Result<Self, EventError> {
        let event_id = reference_event_id(version, &object);
        Self::from_signed_parts(object, meta, event_id, None)
    }

    /// Wraps an object whose event ID is already known; `bytes`, when given, must be its
    /// canonical JSON (saves re-encoding bytes that were just checked to be canonical).
    pub(super) fn from_signed_parts(
        object: CanonicalJsonObject,
        meta: EventMeta,
        event_id: String,
        bytes: Option<Vec<u8>>,
    ) -> Result<Self, EventError> {
        let bytes = bytes.unwrap_or_else(|| object_to_bytes(&object));
        if bytes.len() > MAX_PDU_BYTES {
            return Err(EventError::TooLarge { size: bytes.len(), limit: MAX_PDU_BYTES });
        }
        Ok(Self { object, meta, event_id, bytes })
    }

    /// The event ID.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The header.
    pub fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// The canonical JSON bytes, exactly as stored and sent.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The JSON object.
    pub fn object(&self) -> &CanonicalJsonObject {
        &self.object
    }

    /// The content.
    pub fn content(&self) -> &CanonicalJsonObject {
        content_of(&self.object)
    }
}

fn content_of(object: &CanonicalJsonObject) -> &CanonicalJsonObject {
    static EMPTY: CanonicalJsonObject = CanonicalJsonObject::new();
    match object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => content,
        _ => &EMPTY,
    }
}

/// Signatures from servers other than the required ones are ignored by every receiver, and
/// `unsigned` is covered by no hash or signature; dropping both keeps accepted events free of
/// bytes nobody verified.
fn strip_other_signatures(mut object: CanonicalJsonObject, signers: &[String]) -> CanonicalJsonObject {
    object.remove("unsigned");
    if let Some(CanonicalJsonValue::Object(by_server)) = object.get_mut("signatures") {
        by_server.retain(|server, _| signers.iter().any(|s| s == server));
    }
    object
}
