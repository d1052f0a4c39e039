//! Matrix canonical JSON: the one byte form every hash, signature and event ID is computed over.
//!
//! Parsing is strict because two servers must agree on the bytes: duplicate keys are rejected (a
//! lenient parser keeps the last one, a signer may have seen the first), floats and exponents are
//! rejected (so `-0` and `1e10`, which JSON parsers read as floats, are errors — ruma and Synapse
//! decide the same), and integers must lie in ±(2^53−1). Output sorts keys by code point (the
//! byte order of UTF-8), uses no insignificant whitespace and escapes only what the grammar
//! requires; every other character, `/` and U+007F included, is written raw.

use std::collections::BTreeMap;
use std::fmt;

use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// Why some bytes are not canonical-JSON material.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonicalError {
    /// Not JSON at all, or a value the grammar forbids (floats, duplicate keys, big integers).
    /// The message carries `serde_json`'s line and column.
    #[error("{0}")]
    Syntax(String),
    /// Valid JSON, but the top level is not an object.
    #[error("expected a JSON object at the top level")]
    NotAnObject,
}

/// Parses untrusted bytes as canonical-JSON material (any whitespace or key order is accepted;
/// the grammar's value rules are enforced).
pub fn parse_value(bytes: &[u8]) -> Result<CanonicalJsonValue, CanonicalError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de).map_err(|e| CanonicalError::Syntax(e.to_string()))?;
    de.end().map_err(|e| CanonicalError::Syntax(e.to_string()))?;
    Ok(value)
}

/// Parses untrusted bytes that must hold one JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<CanonicalJsonObject, CanonicalError> {
    match parse_value(bytes)? {
        CanonicalJsonValue::Object(object) => Ok(object),
        _ => Err(CanonicalError::NotAnObject),
    }
}

/// The canonical bytes of a value.
///
/// ```
/// use mimi_bridge::event::canonical::{parse_value, to_bytes};
///
/// let value = parse_value(br#"{"b": "2", "a": {"\u65e5": 1, "z": null}}"#).unwrap();
/// assert_eq!(to_bytes(&value), r#"{"a":{"z":null,"日":1},"b":"2"}"#.as_bytes());
/// assert!(parse_value(br#"{"a": -0}"#).unwrap_err().to_string().contains("float"));
/// ```
pub fn to_bytes(value: &CanonicalJsonValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// The canonical bytes of an object.
pub fn object_to_bytes(object: &CanonicalJsonObject) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_object(&mut out, object);
    out
}

/// The canonical bytes of an object without some top-level keys (the usual first step of
/// hashing and signing), without cloning the object.
pub fn object_to_bytes_without(object: &CanonicalJsonObject, skip: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_entries(&mut out, object.iter().filter(|(key, _)| !skip.contains(&key.as_str())));
    out
}

/// The canonical bytes of an object whose top-level entries pass through `edit` first: `None`
/// drops an entry, `Some` writes the given value in its place. Hashing and signing need the
/// same object minus or with a few replaced keys; this writes that form without cloning it.
pub fn object_to_bytes_edited<'a>(
    object: &'a CanonicalJsonObject,
    mut edit: impl FnMut(&str, &'a CanonicalJsonValue) -> Option<std::borrow::Cow<'a, CanonicalJsonValue>>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    let mut first = true;
    for (key, value) in object {
        let Some(value) = edit(key, value) else { continue };
        if !first {
            out.push(b',');
        }
        first = false;
        write_string(&mut out, key);
        out.push(b':');
        write_value(&mut out, &value);
    }
    out.push(b'}');
    out
}

fn write_value(out: &mut Vec<u8>, value: &CanonicalJsonValue) {
    match value {
        CanonicalJsonValue::Null => out.extend_from_slice(b"null"),
        CanonicalJsonValue::Bool(true) => out.extend_from_slice(b"true"),
        CanonicalJsonValue::Bool(false) => out.extend_from_slice(b"false"),
        CanonicalJsonValue::Integer(int) => out.extend_from_slice(i64::from(*int).to_string().as_bytes()),
        CanonicalJsonValue::String(s) => write_string(out, s),
        CanonicalJsonValue::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        CanonicalJsonValue::Object(object) => write_object(out, object),
    }
}

fn write_object(out: &mut Vec<u8>, object: &CanonicalJsonObject) {
    write_entries(out, object.iter());
}

// BTreeMap<String, _> iterates in byte order of the UTF-8 keys, which is code-point order.
fn write_entries<'a>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'a String, &'a CanonicalJsonValue)>) {
    out.push(b'{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A deserialize seed that builds a `CanonicalJsonValue` while enforcing the grammar.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = CanonicalJsonValue;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = CanonicalJsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a canonical JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Int::new(v)
            .map(CanonicalJsonValue::Integer)
            .ok_or_else(|| E::custom(format_args!("integer {v} is outside ±(2^53-1)")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .ok()
            .and_then(Int::new)
            .map(CanonicalJsonValue::Integer)
            .ok_or_else(|| E::custom(format_args!("integer {v} is outside ±(2^53-1)")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Err(E::custom(format_args!(
            "float {v} is not allowed in canonical JSON (only integers; `-0` and exponents count as floats)"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(CanonicalJsonValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(CanonicalJsonValue::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(input: &str) -> String {
        String::from_utf8(to_bytes(&parse_value(input.as_bytes()).unwrap())).unwrap()
    }

    #[test]
    fn sorts_keys_by_code_point_at_every_level() {
        assert_eq!(canon(r#"{"b":{"z":1,"a":2},"a":[{"y":0,"x":1}]}"#), r#"{"a":[{"x":1,"y":0}],"b":{"a":2,"z":1}}"#);
        // U+E000 sorts before U+1F600 by code point, though not by UTF-16 unit.
        assert_eq!(canon("{\"\u{1F600}\":1,\"\u{E000}\":2}"), "{\"\u{E000}\":2,\"\u{1F600}\":1}");
    }

    #[test]
    fn escapes_only_what_the_grammar_requires() {
        assert_eq!(
            canon(r#"{"a":"\u0001\b\f\n\r\t\"\\/\u007f\u00e9"}"#),
            "{\"a\":\"\\u0001\\b\\f\\n\\r\\t\\\"\\\\/\u{7f}\u{e9}\"}"
        );
        assert_eq!(canon(r#"{"a":"\u001F"}"#), r#"{"a":"\u001f"}"#);
    }

    #[test]
    fn floats_and_negative_zero_are_rejected() {
        for input in [r#"{"a":-0}"#, r#"{"b":1e10}"#, r#"{"a":1.5}"#, r#"{"a":1.0}"#, r#"{"a":-0.0}"#] {
            let err = parse_value(input.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("float"), "{input}: {err}");
        }
    }

    #[test]
    fn integer_range_is_plus_minus_2_pow_53_minus_1() {
        assert_eq!(
            canon(r#"{"a":9007199254740991,"b":-9007199254740991}"#),
            r#"{"a":9007199254740991,"b":-9007199254740991}"#
        );
        for input in [r#"{"a":9007199254740992}"#, r#"{"a":-9007199254740992}"#, r#"{"a":18446744073709551615}"#] {
            let err = parse_value(input.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("outside"), "{input}: {err}");
        }
        // Beyond u64 serde_json reads a float: still rejected.
        assert!(parse_value(br#"{"a":184467440737095516150}"#).is_err());
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        for input in [r#"{"a":1,"a":1}"#, r#"{"x":{"a":1,"b":2,"a":3}}"#, r#"[{"k":1,"k":2}]"#] {
            let err = parse_value(input.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{input}: {err}");
        }
    }

    #[test]
    fn syntax_errors_carry_a_position_and_trailing_garbage_is_an_error() {
        let err = parse_value(b"{\n \"a\": tru }").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_value(b"{} {}").is_err());
        assert_eq!(parse_object(b"[1]"), Err(CanonicalError::NotAnObject));
    }

    #[test]
    fn skipping_keys_matches_removing_them() {
        let object = parse_object(br#"{"a":1,"signatures":{},"unsigned":{"x":1},"z":"q"}"#).unwrap();
        let mut removed = object.clone();
        removed.remove("signatures");
        removed.remove("unsigned");
        assert_eq!(object_to_bytes_without(&object, &["signatures", "unsigned"]), object_to_bytes(&removed));
    }
}
