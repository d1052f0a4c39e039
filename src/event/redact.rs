//! Redaction: the part of an event that signatures and reference hashes cover.
//!
//! Signing the redacted form is what lets a server still verify an event whose content was later
//! redacted; the content itself stays protected through the content hash, which the redacted form
//! keeps. `content` is always present after redaction, possibly `{}`.

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::room_version::{ContentKeep, RoomVersion};

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
    let content = match (event.get("content"), rules.content_keep(event_type)) {
        (Some(CanonicalJsonValue::Object(content)), ContentKeep::All) => content.clone(),
        (Some(CanonicalJsonValue::Object(content)), ContentKeep::Keys(keys)) => content
            .iter()
            .filter(|(k, _)| keys.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
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
        assert_eq!(
            redacted(&LINEARIZED_02, pl),
            r#"{"content":{"ban":50,"invite":0},"type":"m.room.power_levels"}"#
        );
        assert_eq!(
            redacted(&V1, pl),
            r#"{"content":{"ban":50},"type":"m.room.power_levels"}"#
        );
        let create = r#"{"type":"m.room.create","content":{"room_version":"x","creator":"@a:b"}}"#;
        assert_eq!(
            redacted(&LINEARIZED_02, create),
            r#"{"content":{"creator":"@a:b","room_version":"x"},"type":"m.room.create"}"#
        );
        assert_eq!(
            redacted(&V1, create),
            r#"{"content":{"creator":"@a:b"},"type":"m.room.create"}"#
        );
    }

    #[test]
    fn content_is_always_present() {
        assert_eq!(
            redacted(&LINEARIZED_02, r#"{"type":"x"}"#),
            r#"{"content":{},"type":"x"}"#
        );
        assert_eq!(
            redacted(&LINEARIZED_02, r#"{"type":"x","content":"not an object"}"#),
            r#"{"content":{},"type":"x"}"#
        );
    }
}
