//! Content hashes and reference hashes.
//!
//! Three hashes protect a Linearized Matrix event. The LPDU hash covers what the origin wrote
//! (everything but `signatures`, `unsigned` and `hashes`), so the origin's signature over the
//! redacted LPDU still protects the full content. The PDU content hash additionally keeps
//! `hashes.lpdu` and covers the hub's additions (`auth_events`, `prev_events`). The reference
//! hash, over the redacted event, is the event ID.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use sha2::{Digest, Sha256};

use std::borrow::Cow;

use super::canonical::{object_to_bytes_edited, object_to_bytes_without};
use super::redact::{RedactForm, redacted_signing_bytes};
use super::room_version::RoomVersion;

/// Keys never covered by hashes or signatures.
pub const UNSIGNED_KEYS: [&str; 2] = ["signatures", "unsigned"];

fn sha256_b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(Sha256::digest(bytes))
}

/// The `hashes.lpdu` value of an event, if it carries one.
pub fn lpdu_hash_field(event: &CanonicalJsonObject) -> Option<&CanonicalJsonValue> {
    match event.get("hashes") {
        Some(CanonicalJsonValue::Object(hashes)) => hashes.get("lpdu"),
        _ => None,
    }
}

/// `hashes.<name>` (`sha256`) or `hashes.lpdu.sha256` as a string, if present.
pub fn stored_hash(event: &CanonicalJsonObject, lpdu: bool) -> Option<&str> {
    let CanonicalJsonValue::Object(hashes) = event.get("hashes")? else {
        return None;
    };
    let holder = if lpdu {
        let CanonicalJsonValue::Object(l) = hashes.get("lpdu")? else {
            return None;
        };
        l
    } else {
        hashes
    };
    match holder.get("sha256")? {
        CanonicalJsonValue::String(s) => Some(s),
        _ => None,
    }
}

/// The LPDU content hash: SHA-256 over the event without `signatures`, `unsigned`, `hashes`.
pub fn lpdu_content_hash(event: &CanonicalJsonObject) -> String {
    sha256_b64(&object_to_bytes_without(event, &["hashes", "signatures", "unsigned"]))
}

/// The PDU content hash under `version`: like Matrix's, except that a linearized version keeps
/// `hashes.lpdu` (and only it) in the hashed form.
pub fn content_hash(version: &RoomVersion, event: &CanonicalJsonObject) -> String {
    let lpdu = if version.linearized { lpdu_hash_field(event) } else { None };
    match lpdu {
        None => sha256_b64(&object_to_bytes_without(event, &["hashes", "signatures", "unsigned"])),
        Some(lpdu) => {
            let hashes = CanonicalJsonValue::Object(CanonicalJsonObject::from([("lpdu".to_owned(), lpdu.clone())]));
            sha256_b64(&object_to_bytes_edited(event, |key, value| match key {
                "signatures" | "unsigned" => None,
                "hashes" => Some(Cow::Borrowed(&hashes)),
                _ => Some(Cow::Borrowed(value)),
            }))
        }
    }
}

/// The reference hash of an event (unpadded URL-safe base64), over its redacted form.
pub fn reference_hash(version: &RoomVersion, event: &CanonicalJsonObject) -> String {
    reference_hash_of(&redacted_signing_bytes(version, event, RedactForm::AsIs))
}

/// The reference hash from already computed redacted signing bytes.
pub fn reference_hash_of(redacted_signing_bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(redacted_signing_bytes))
}

/// The event ID of a reference-hash room version: `$` + reference hash.
pub fn reference_event_id(version: &RoomVersion, event: &CanonicalJsonObject) -> String {
    format!("${}", reference_hash(version, event))
}

/// The LPDU form of a hub-completed PDU: what its origin signed (no `auth_events` or
/// `prev_events`; `hashes` reduced to `lpdu`).
pub fn lpdu_form(pdu: &CanonicalJsonObject) -> CanonicalJsonObject {
    let mut form: CanonicalJsonObject = pdu
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "auth_events" | "prev_events" | "hashes"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(lpdu) = lpdu_hash_field(pdu) {
        let hashes = CanonicalJsonObject::from([("lpdu".to_owned(), lpdu.clone())]);
        form.insert("hashes".to_owned(), CanonicalJsonValue::Object(hashes));
    }
    form
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::canonical::{object_to_bytes, parse_object};
    use crate::event::room_version::{LINEARIZED_02, V1};

    fn obj(s: &str) -> CanonicalJsonObject {
        parse_object(s.as_bytes()).unwrap()
    }

    #[test]
    fn content_hash_without_lpdu_equals_matrix_hash() {
        let event =
            obj(r#"{"type":"x","content":{},"hashes":{"sha256":"old"},"signatures":{"a":{}},"unsigned":{"age":1}}"#);
        assert_eq!(content_hash(&LINEARIZED_02, &event), content_hash(&V1, &event));
        assert_eq!(content_hash(&LINEARIZED_02, &event), sha256_b64(br#"{"content":{},"type":"x"}"#));
    }

    #[test]
    fn pdu_hash_keeps_only_the_lpdu_hash() {
        let event = obj(r#"{"type":"x","hashes":{"lpdu":{"sha256":"L"},"sha256":"S"}}"#);
        assert_eq!(
            content_hash(&LINEARIZED_02, &event),
            sha256_b64(br#"{"hashes":{"lpdu":{"sha256":"L"}},"type":"x"}"#)
        );
        // The LPDU hash drops `hashes` entirely; v1 knows no `hashes.lpdu`.
        assert_eq!(lpdu_content_hash(&event), sha256_b64(br#"{"type":"x"}"#));
        assert_eq!(content_hash(&V1, &event), sha256_b64(br#"{"type":"x"}"#));
    }

    #[test]
    fn reference_hash_is_url_safe_and_ignores_signatures_and_redacted_content() {
        let a =
            obj(r#"{"type":"m.room.message","room_id":"!r:h","content":{"body":"a"},"signatures":{"h":{"k":"s"}}}"#);
        let b = obj(r#"{"type":"m.room.message","room_id":"!r:h","content":{"body":"b"}}"#);
        let id = reference_event_id(&LINEARIZED_02, &a);
        assert_eq!(id, reference_event_id(&LINEARIZED_02, &b));
        assert_eq!(id.len(), 44);
        assert!(!id.contains('+') && !id.contains('/') && !id.contains('='));
    }

    #[test]
    fn lpdu_form_strips_hub_additions() {
        let pdu = obj(
            r#"{"type":"x","auth_events":["$a"],"prev_events":["$p"],"hashes":{"lpdu":{"sha256":"L"},"sha256":"S"},"hub_server":"h"}"#,
        );
        assert_eq!(
            object_to_bytes(&lpdu_form(&pdu)),
            br#"{"hashes":{"lpdu":{"sha256":"L"}},"hub_server":"h","type":"x"}"#
        );
        assert_eq!(stored_hash(&pdu, true), Some("L"));
        assert_eq!(stored_hash(&pdu, false), Some("S"));
    }
}
