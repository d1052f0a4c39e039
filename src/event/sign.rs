//! Signing and strict verification of JSON objects and events.
//!
//! Verification is `verify_strict`: it refuses small-order keys and non-canonical signatures, so
//! one message has one valid signature encoding per key — a log replayed elsewhere must reach the
//! same verdict bit for bit. Signatures decode from base64 with or without padding but never with
//! stray trailing bits, for the same reason.

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::canonical::object_to_bytes_without;
use super::hash::UNSIGNED_KEYS;
use super::hash::reference_hash_of;
use super::keys::{B64_ANY_PAD, KeyRing, ServerKey};
use super::redact::{RedactForm, redacted_signing_bytes};
use super::room_version::RoomVersion;

/// The verdict on one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigStatus {
    /// Verified with the known key.
    Ok,
    /// The key is known and the signature does not verify (or is not a signature at all).
    Bad,
    /// No key with this ID is known for this server.
    UnknownKey,
}

impl SigStatus {
    /// The word used in `event check` output.
    pub fn as_str(self) -> &'static str {
        match self {
            SigStatus::Ok => "ok",
            SigStatus::Bad => "bad",
            SigStatus::UnknownKey => "unknown_key",
        }
    }
}

/// The bytes a signature covers: the object without `signatures` and `unsigned`.
pub fn signing_bytes(object: &CanonicalJsonObject) -> Vec<u8> {
    object_to_bytes_without(object, &UNSIGNED_KEYS)
}

/// Signs an object and stores the signature at `signatures[server][key_id]`.
pub fn sign_json(key: &ServerKey, server: &str, object: &mut CanonicalJsonObject) {
    let signature = key.sign(&signing_bytes(object));
    add_signature(object, server, key.key_id(), signature);
}

/// Signs an event: redact under `version`'s rules, sign that, store the signature in the event.
/// Returns the reference-hash event ID, which covers the very bytes just signed.
pub fn sign_event(version: &RoomVersion, key: &ServerKey, server: &str, event: &mut CanonicalJsonObject) -> String {
    let message = redacted_signing_bytes(version, event, RedactForm::AsIs);
    let signature = key.sign(&message);
    add_signature(event, server, key.key_id(), signature);
    format!("${}", reference_hash_of(&message))
}

fn add_signature(object: &mut CanonicalJsonObject, server: &str, key_id: &str, signature: String) {
    let signatures =
        object.entry("signatures".to_owned()).or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()));
    if !matches!(signatures, CanonicalJsonValue::Object(_)) {
        *signatures = CanonicalJsonValue::Object(CanonicalJsonObject::new());
    }
    if let CanonicalJsonValue::Object(by_server) = signatures {
        let entry = by_server
            .entry(server.to_owned())
            .or_insert_with(|| CanonicalJsonValue::Object(CanonicalJsonObject::new()));
        if !matches!(entry, CanonicalJsonValue::Object(_)) {
            *entry = CanonicalJsonValue::Object(CanonicalJsonObject::new());
        }
        if let CanonicalJsonValue::Object(by_key) = entry {
            by_key.insert(key_id.to_owned(), CanonicalJsonValue::String(signature));
        }
    }
}

/// Verifies one base64 signature over `message` with `key`, strictly.
pub fn verify_bytes(key: &VerifyingKey, signature_b64: &str, message: &[u8]) -> bool {
    let Ok(bytes) = B64_ANY_PAD.decode(signature_b64) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

/// The signatures an object carries for one server: (key ID, signature) pairs. A value that is
/// not a string counts as a signature that cannot verify.
pub fn signatures_of<'a>(object: &'a CanonicalJsonObject, server: &str) -> Vec<(&'a str, Option<&'a str>)> {
    let Some(CanonicalJsonValue::Object(by_server)) = object.get("signatures") else {
        return Vec::new();
    };
    let Some(CanonicalJsonValue::Object(by_key)) = by_server.get(server) else {
        return Vec::new();
    };
    by_key
        .iter()
        .map(|(id, sig)| match sig {
            CanonicalJsonValue::String(s) => (id.as_str(), Some(s.as_str())),
            _ => (id.as_str(), None),
        })
        .collect()
}

/// Every server that signed the object.
pub fn signing_servers(object: &CanonicalJsonObject) -> Vec<&str> {
    match object.get("signatures") {
        Some(CanonicalJsonValue::Object(by_server)) => by_server.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Checks every signature `server` put on `signed` (the object that carries them) against
/// `message` (the bytes they should cover).
pub fn check_server_signatures(
    signed: &CanonicalJsonObject,
    server: &str,
    message: &[u8],
    keys: &KeyRing,
) -> Vec<(String, SigStatus)> {
    signatures_of(signed, server)
        .into_iter()
        .map(|(key_id, sig)| {
            let status = match keys.get(server, key_id) {
                None => SigStatus::UnknownKey,
                Some(key) => match sig {
                    Some(sig) if verify_bytes(key, sig, message) => SigStatus::Ok,
                    _ => SigStatus::Bad,
                },
            };
            (key_id.to_owned(), status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::canonical::parse_object;

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = ServerKey::generate(Some("t")).unwrap();
        let mut ring = KeyRing::new();
        ring.insert("s", key.key_id(), key.verifying_key());
        let mut obj = parse_object(br#"{"a":1,"unsigned":{"x":1}}"#).unwrap();
        sign_json(&key, "s", &mut obj);
        let msg = signing_bytes(&obj);
        assert_eq!(check_server_signatures(&obj, "s", &msg, &ring), vec![("ed25519:t".to_owned(), SigStatus::Ok)]);
        let tampered = signing_bytes(&parse_object(br#"{"a":2}"#).unwrap());
        assert_eq!(check_server_signatures(&obj, "s", &tampered, &ring)[0].1, SigStatus::Bad);
        assert_eq!(check_server_signatures(&obj, "s", &msg, &KeyRing::new())[0].1, SigStatus::UnknownKey);
    }

    #[test]
    fn non_canonical_base64_signatures_are_refused() {
        let key = ServerKey::generate(Some("t")).unwrap();
        let sig = key.sign(b"m");
        assert!(verify_bytes(&key.verifying_key(), &sig, b"m"));
        assert!(verify_bytes(&key.verifying_key(), &format!("{sig}=="), b"m"));
        // The last of 86 characters carries 2 unused bits; setting them must not verify.
        let mut chars: Vec<char> = sig.chars().collect();
        let last = chars.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let index = alphabet.find(last).unwrap();
        let sibling = alphabet.chars().nth(index ^ 1).unwrap();
        let altered: String = chars.into_iter().chain([sibling]).collect();
        assert!(!verify_bytes(&key.verifying_key(), &altered, b"m"));
    }
}
