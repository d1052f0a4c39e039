//! Recomputing an event's hashes, signatures and ID: the one place that decides whether an
//! event is authentic. `event check`, the hub's intake, following a hub, `log verify` and
//! `log import` all call it, so they cannot disagree.

use std::collections::BTreeMap;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::error::EventError;
use super::hash::{content_hash, lpdu_content_hash, lpdu_form, reference_hash_of, stored_hash};
use super::keys::KeyRing;
use super::meta::server_of;
use super::redact::{RedactForm, redacted_signing_bytes};
use super::room_version::{EventIdFormat, RoomVersion};
use super::sign::{SigStatus, check_server_signatures, signing_servers};

/// Which form an event object is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// A participant's event on its way to the hub: `hub_server`, no `auth_events`/`prev_events`.
    Lpdu,
    /// A PDU a hub completed from an LPDU (carries `hub_server`).
    HubPdu,
    /// A PDU authored directly by its origin (hub-authored events, Matrix events).
    Pdu,
}

impl Form {
    /// Classifies an object under `version`.
    pub fn of(version: &RoomVersion, event: &CanonicalJsonObject) -> Form {
        let has_hub = version.linearized && event.contains_key("hub_server");
        let has_links = event.contains_key("auth_events") || event.contains_key("prev_events");
        match (has_hub, has_links) {
            (true, false) => Form::Lpdu,
            (true, true) => Form::HubPdu,
            (false, _) => Form::Pdu,
        }
    }
}

/// Everything recomputed about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The form the event was read in.
    pub form: Form,
    /// The event ID (an LPDU's reference ID for an LPDU); for versions whose events carry their
    /// ID, the event's own `event_id` if it has one.
    pub event_id: Option<String>,
    /// The recomputed `hashes.sha256`, when the event carries one.
    pub sha256: Option<String>,
    /// The recomputed `hashes.lpdu.sha256`, when the event carries one.
    pub lpdu_sha256: Option<String>,
    /// Every signature's verdict, by server and key ID.
    pub signatures: BTreeMap<String, BTreeMap<String, SigStatus>>,
    /// The first reason the event is not authentic; `None` when it is.
    pub error: Option<EventError>,
}

impl CheckReport {
    /// Whether every hash present matches and every required signature verifies.
    pub fn valid(&self) -> bool {
        self.error.is_none()
    }
}

/// Recomputes hashes, signatures and the event ID of `event` under `version`.
pub fn inspect(version: &RoomVersion, event: &CanonicalJsonObject, keys: &KeyRing) -> CheckReport {
    let form = Form::of(version, event);
    let mut errors = Vec::new();

    // Hashes: recompute what the event carries; require what its form needs.
    let stored_sha = stored_hash(event, false);
    let stored_lpdu = if version.linearized { stored_hash(event, true) } else { None };
    let sha256 = stored_sha.map(|_| content_hash(version, event));
    let lpdu_sha256 = stored_lpdu.map(|_| match form {
        Form::Lpdu => lpdu_content_hash(event),
        Form::HubPdu | Form::Pdu => lpdu_content_hash(&lpdu_form(event)),
    });
    if version.linearized {
        errors.extend(hashes_shape_error(form, event));
    }
    let needs_sha = form != Form::Lpdu;
    let needs_lpdu = form != Form::Pdu;
    if needs_sha && stored_sha.is_none() {
        errors.push(EventError::field("hashes.sha256", "the content hash (unpadded base64 SHA-256)"));
    }
    if needs_lpdu && stored_lpdu.is_none() {
        errors.push(EventError::field("hashes.lpdu.sha256", "the LPDU content hash (unpadded base64 SHA-256)"));
    }
    if form == Form::Lpdu && stored_sha.is_some() {
        errors.push(EventError::field("hashes.sha256", "absent on an LPDU (the hub adds it)"));
    }
    if form == Form::Pdu && stored_lpdu.is_some() {
        errors.push(EventError::field("hashes.lpdu", "absent on an event without hub_server"));
    }
    for (which, found, computed) in
        [("hashes.sha256", stored_sha, sha256.as_deref()), ("hashes.lpdu.sha256", stored_lpdu, lpdu_sha256.as_deref())]
    {
        if let (Some(found), Some(computed)) = (found, computed)
            && found != computed
        {
            errors.push(EventError::HashMismatch { which, found: found.to_owned(), computed: computed.to_owned() });
        }
    }

    // Signatures: the origin always signs; the hub signs what it completed. Where the hub
    // signs everything, the room's server is every event's origin.
    let origin = match (event.get("sender"), event.get("room_id")) {
        (Some(CanonicalJsonValue::String(sender)), Some(CanonicalJsonValue::String(room)))
            if version.hub_signs() && crate::event::meta::is_user_id(sender) =>
        {
            server_of(room).to_owned()
        }
        (Some(CanonicalJsonValue::String(sender)), _) if crate::event::meta::is_user_id(sender) => {
            server_of(sender).to_owned()
        }
        _ => {
            // Without a sender there is no origin to ask a signature of: say so first.
            errors.insert(0, EventError::field("sender", "a user ID `@localpart:server` (its server signs)"));
            String::new()
        }
    };
    let hub = match event.get("hub_server") {
        Some(CanonicalJsonValue::String(hub)) if form != Form::Pdu => Some(hub.clone()),
        _ => None,
    };
    let pdu_bytes = redacted_signing_bytes(version, event, RedactForm::AsIs);
    let origin_bytes =
        if form == Form::HubPdu { redacted_signing_bytes(version, event, RedactForm::Lpdu) } else { pdu_bytes.clone() };
    let event_id = match version.event_id {
        EventIdFormat::ReferenceHash => Some(format!("${}", reference_hash_of(&pdu_bytes))),
        EventIdFormat::InEvent => match event.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => Some(id.clone()),
            _ => None,
        },
    };
    let mut signatures = BTreeMap::new();
    for server in signing_servers(event) {
        let message = if server == origin { &origin_bytes } else { &pdu_bytes };
        let verdicts = check_server_signatures(event, server, message, keys);
        signatures.insert(server.to_owned(), verdicts.into_iter().collect::<BTreeMap<_, _>>());
    }
    if form == Form::HubPdu && hub.as_deref() == Some(origin.as_str()) {
        errors.push(EventError::field(
            "hub_server",
            "a server other than the origin (a hub's own events carry no hub_server)",
        ));
    }
    for (i, server) in required_signers(form, &origin, hub.as_deref()).iter().enumerate() {
        let role = if i == 0 { "origin" } else { "hub" };
        errors.extend(required_signature_error(&signatures, server, role));
    }

    CheckReport { form, event_id, sha256, lpdu_sha256, signatures, error: errors.into_iter().next() }
}

/// `hashes` must hold exactly what the form calls for: anything else would be signed by one
/// party and reshaped by the next (the origin's LPDU form keeps only `hashes.lpdu`).
fn hashes_shape_error(form: Form, event: &CanonicalJsonObject) -> Option<EventError> {
    let (expected_keys, expected): (&[&str], &'static str) = match form {
        Form::Lpdu => (&["lpdu"], "exactly {\"lpdu\": {\"sha256\": …}} on an LPDU"),
        Form::HubPdu => {
            (&["lpdu", "sha256"], "exactly {\"lpdu\": {\"sha256\": …}, \"sha256\": …} on a hub-completed PDU")
        }
        Form::Pdu => (&["sha256"], "exactly {\"sha256\": …} on an event without hub_server"),
    };
    let Some(CanonicalJsonValue::Object(hashes)) = event.get("hashes") else {
        return Some(EventError::field("hashes", expected));
    };
    let lpdu_ok = match hashes.get("lpdu") {
        None => true,
        Some(CanonicalJsonValue::Object(lpdu)) => {
            lpdu.len() == 1 && matches!(lpdu.get("sha256"), Some(CanonicalJsonValue::String(_)))
        }
        Some(_) => false,
    };
    let keys_ok = hashes.len() == expected_keys.len() && expected_keys.iter().all(|k| hashes.contains_key(*k));
    let sha_ok = hashes.get("sha256").is_none_or(|v| matches!(v, CanonicalJsonValue::String(_)));
    (!(keys_ok && lpdu_ok && sha_ok)).then(|| EventError::field("hashes", expected))
}

fn required_signature_error(
    signatures: &BTreeMap<String, BTreeMap<String, SigStatus>>,
    server: &str,
    role: &'static str,
) -> Option<EventError> {
    let Some(verdicts) = signatures.get(server).filter(|v| !v.is_empty()) else {
        return Some(EventError::MissingSignature { server: server.to_owned(), role });
    };
    verdicts.iter().find_map(|(key_id, status)| match status {
        SigStatus::Ok => None,
        SigStatus::Bad => Some(EventError::BadSignature { server: server.to_owned(), key_id: key_id.clone(), role }),
        SigStatus::UnknownKey => {
            Some(EventError::UnknownKey { server: server.to_owned(), key_id: key_id.clone(), role })
        }
    })
}

/// The servers whose signatures an event in `form` must carry (origin first).
pub fn required_signers(form: Form, origin: &str, hub: Option<&str>) -> Vec<String> {
    let mut out = vec![origin.to_owned()];
    if let (Form::HubPdu, Some(hub)) = (form, hub)
        && hub != origin
    {
        out.push(hub.to_owned());
    }
    out
}
