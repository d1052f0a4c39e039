//! Redaction: the part of an event that signatures and reference hashes cover.
//!
//! Signing the redacted form is what lets a server still verify an event whose content was later
//! redacted; the content itself stays protected through the content hash, which the redacted form
//! keeps. `content` is always present after redaction, possibly `{}`.

use std::borrow::Cow;

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::canonical::{object_to_bytes_edited, object_to_bytes_without};
use super::hash::{UNSIGNED_KEYS, lpdu_hash_field};
use super::room_version::{ContentKeep, RoomVersion};

/// Which form of an event to redact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactForm {
    /// The event as it is.
    AsIs,
    /// The LPDU its origin signed: without `auth_events`/`prev_events`, `hashes` reduced to
    /// `lpdu`.
    Lpdu,
}

/// The bytes signatures and reference hashes cover: the redacted event without `signatures`
/// and `unsigned`, in canonical JSON. Written directly, without building the redacted copy.
pub fn redacted_signing_bytes(version: &RoomVersion, event: &CanonicalJsonObject, form: RedactForm) -> Vec<u8> {
    let Some(CanonicalJsonValue::Object(content)) = event.get("content") else {
        // Redaction must add an empty content; take the slow path for such odd objects.
        let base = match form {
            RedactForm::AsIs => event.clone(),
            RedactForm::Lpdu => super::hash::lpdu_form(event),
        };
        return object_to_bytes_without(&redact(version, &base), &UNSIGNED_KEYS);
    };
    let rules = &version.redaction;
    let event_type = match event.get("type") {
        Some(CanonicalJsonValue::String(t)) => t.as_str(),
        _ => "",
    };
    let lpdu_hashes = match (form, lpdu_hash_field(event)) {
        (RedactForm::Lpdu, Some(lpdu)) => {
            Some(CanonicalJsonValue::Object(CanonicalJsonObject::from([("lpdu".to_owned(), lpdu.clone())])))
        }
        _ => None,
    };
    object_to_bytes_edited(event, |key, value| {
        if !rules.top_level.contains(&key) || UNSIGNED_KEYS.contains(&key) {
            return None;
        }
        match (key, form) {
            ("auth_events" | "prev_events", RedactForm::Lpdu) => None,
            ("hashes", RedactForm::Lpdu) => lpdu_hashes.clone().map(Cow::Owned),
            ("content", _) => {
                Some(Cow::Owned(CanonicalJsonValue::Object(redact_content(rules.content_keep(event_type), content))))
            }
            _ => Some(Cow::Borrowed(value)),
        }
    })
}

fn redact_content(keep: ContentKeep, content: &CanonicalJsonObject) -> CanonicalJsonObject {
    match keep {
        ContentKeep::All => content.clone(),
        ContentKeep::Keys(keys) => {
            content.iter().filter(|(k, _)| keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
    }
}

/// The redacted copy of an event under `version`'s rules.
pub fn redact(version: &RoomVersion, event: &CanonicalJsonObject) -> CanonicalJsonObject {
    let rules = &version.redaction;
    let event_type = match event.get("type") {
        Some(CanonicalJsonValue::String(t)) => t.as_str(),
        _ => "",
    };
    let mut out = CanonicalJsonObject::new();
    for (key, value) in event {
        if key == "content" || !rules.top_level.contains(&key.as_str()) {
            continue;
        }
        out.insert(key.clone(), value.clone());
    }
    let content = match event.get("content") {
        Some(CanonicalJsonValue::Object(content)) => redact_content(rules.content_keep(event_type), content),
        _ => CanonicalJsonObject::new(),
    };
    out.insert("content".to_owned(), CanonicalJsonValue::Object(content));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::canonical::{object_to_bytes, parse_object};
    use crate::event::room_version::{LINEARIZED_02, V1};

    fn redacted(version: &RoomVersion, input: &str) -> String {
        let obj = parse_object(input.as_bytes()).unwrap();
        String::from_utf8(object_to_bytes(&redact(version, &obj))).unwrap()
    }

    #[test]
    fn lm_keeps_hub_server_and_drops_unknown_keys() {
        let out = redacted(
            &LINEARIZED_02,
            r#"{"type":"m.room.message","hub_server":"h","origin":"o","depth":1,"unsigned":{},"content":{"body":"x"}}"#,
        );
        assert_eq!(out, r#"{"content":{},"hub_server":"h","type":"m.room.message"}"#);
    }

    #[test]
    fn content_keep_lists_apply_per_type() {
        let pl = r#"{"type":"m.room.power_levels","content":{"ban":50,"invite":0,"notifications":{"room":50}}}"#;
        assert_eq!(redacted(&LINEARIZED_02, pl), r#"{"content":{"ban":50,"invite":0},"type":"m.room.power_levels"}"#);
        assert_eq!(redacted(&V1, pl), r#"{"content":{"ban":50},"type":"m.room.power_levels"}"#);
        let create = r#"{"type":"m.room.create","content":{"room_version":"x","creator":"@a:b"}}"#;
        assert_eq!(
            redacted(&LINEARIZED_02, create),
            r#"{"content":{"creator":"@a:b","room_version":"x"},"type":"m.room.create"}"#
        );
        assert_eq!(redacted(&V1, create), r#"{"content":{"creator":"@a:b"},"type":"m.room.create"}"#);
    }

    #[test]
    fn streaming_signing_bytes_equal_redact_then_serialize() {
        for input in [
            r#"{"type":"m.room.message","hub_server":"h","origin":"o","content":{"body":"x"},"signatures":{"h":{}},"unsigned":{}}"#,
            r#"{"type":"m.room.member","content":{"membership":"join","displayname":"A"},"auth_events":["$a"],"prev_events":["$p"],"hashes":{"lpdu":{"sha256":"L"},"sha256":"S"}}"#,
            r#"{"type":"m.room.create","content":{"room_version":"x","extra":1}}"#,
            r#"{"type":"x"}"#,
        ] {
            let obj = parse_object(input.as_bytes()).unwrap();
            for version in [&LINEARIZED_02, &V1] {
                let slow = object_to_bytes_without(&redact(version, &obj), &UNSIGNED_KEYS);
                assert_eq!(redacted_signing_bytes(version, &obj, RedactForm::AsIs), slow, "{input}");
                let slow_lpdu =
                    object_to_bytes_without(&redact(version, &crate::event::hash::lpdu_form(&obj)), &UNSIGNED_KEYS);
                assert_eq!(redacted_signing_bytes(version, &obj, RedactForm::Lpdu), slow_lpdu, "{input}");
            }
        }
    }

    #[test]
    fn content_is_always_present() {
        assert_eq!(redacted(&LINEARIZED_02, r#"{"type":"x"}"#), r#"{"content":{},"type":"x"}"#);
        assert_eq!(
            redacted(&LINEARIZED_02, r#"{"type":"x","content":"not an object"}"#),
            r#"{"content":{},"type":"x"}"#
        );
    }
}
