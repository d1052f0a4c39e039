//! Extension keys 3 (`senderTimestamp`) and 4 (`externalMessageId`) of
//! draft-mimi-content-more-extensions-00: where a message's Matrix origin can travel. The numbers
//! are the draft's suggestions, not yet assigned by IANA, so a bridge emits them only when its
//! admin asks for it, and reads them leniently: a malformed one is ignored, like any unknown key.

use super::cbor::Value;
use super::{ExtensionKey, MimiContent};

/// `senderTimestamp`: `{1: unix seconds, ? -3: ms | -6: µs | -9: ns}`.
pub const SENDER_TIMESTAMP: i64 = 3;
/// `externalMessageId`: `[bstr id, scope]`, the scope a domain, a URI or an IANA PEN.
pub const EXTERNAL_MESSAGE_ID: i64 = 4;

impl MimiContent {
    /// Extension 3 in milliseconds since the epoch (finer fractions truncated).
    pub fn sender_timestamp_ms(&self) -> Option<u64> {
        let Some(Value::Map(entries)) = self.extension(SENDER_TIMESTAMP) else { return None };
        let mut seconds = None;
        let mut millis = 0;
        for (key, value) in entries {
            let Value::Unsigned(n) = value else { return None };
            match key {
                Value::Unsigned(1) => seconds = Some(*n),
                Value::Negative(2) if *n < 1_000 => millis = *n,
                Value::Negative(5) if *n < 1_000_000 => millis = n / 1_000,
                Value::Negative(8) if *n < 1_000_000_000 => millis = n / 1_000_000,
                _ => return None,
            }
        }
        seconds?.checked_mul(1000)?.checked_add(millis)
    }

    /// Sets extension 3 from milliseconds since the epoch.
    pub fn set_sender_timestamp_ms(&mut self, ms: u64) {
        let value = Value::Map(vec![
            (Value::Unsigned(1), Value::Unsigned(ms / 1000)),
            (Value::Negative(2), Value::Unsigned(ms % 1000)),
        ]);
        self.set_extension(ExtensionKey::Int(SENDER_TIMESTAMP), value);
    }

    /// Extension 4: the ID and its scope when the scope is a domain or URI.
    pub fn external_message_id(&self) -> Option<(&[u8], &str)> {
        match self.extension(EXTERNAL_MESSAGE_ID)? {
            Value::Array(items) => match items.as_slice() {
                [Value::Bytes(id), Value::Text(scope)] if !id.is_empty() && !scope.is_empty() => {
                    Some((id.as_slice(), scope.as_str()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Sets extension 4.
    pub fn set_external_message_id(&mut self, id: &[u8], scope: &str) {
        let value = Value::Array(vec![Value::Bytes(id.to_vec()), Value::Text(scope.to_owned())]);
        self.set_extension(ExtensionKey::Int(EXTERNAL_MESSAGE_ID), value);
    }

    fn extension(&self, key: i64) -> Option<&Value> {
        self.extensions.iter().find_map(|(k, v)| (*k == ExtensionKey::Int(key)).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mimi::{Disposition, NestedPart, Part};

    fn content() -> MimiContent {
        MimiContent {
            salt: [0; 16],
            replaces: None,
            topic_id: Vec::new(),
            expires: None,
            in_reply_to: None,
            extensions: Vec::new(),
            body: NestedPart { disposition: Disposition::RENDER, language: String::new(), part: Part::Null },
        }
    }

    #[test]
    fn timestamp_and_external_id_round_trip_through_cbor() {
        let mut c = content();
        c.set_sender_timestamp_ms(1_700_000_000_123);
        c.set_external_message_id(b"$abc", "hs.test");
        let decoded = MimiContent::decode(&c.encode()).unwrap();
        assert_eq!(decoded.sender_timestamp_ms(), Some(1_700_000_000_123));
        assert_eq!(decoded.external_message_id(), Some((&b"$abc"[..], "hs.test")));
        // {3: {1: 1700000000, -3: 123}}: key 3, a map of two, 1 → seconds, 0x22 (-3) → 123.
        let encoded = decoded.encode();
        let ts = [0x03, 0xa2, 0x01, 0x1a, 0x65, 0x53, 0xf1, 0x00, 0x22, 0x18, 0x7b];
        assert!(encoded.windows(ts.len()).any(|w| w == ts), "{encoded:02x?}");
    }

    #[test]
    fn finer_fractions_are_truncated_and_malformed_values_ignored() {
        let mut c = content();
        let micros =
            Value::Map(vec![(Value::Unsigned(1), Value::Unsigned(5)), (Value::Negative(5), Value::Unsigned(250_999))]);
        c.set_extension(ExtensionKey::Int(SENDER_TIMESTAMP), micros);
        assert_eq!(c.sender_timestamp_ms(), Some(5_250));
        c.set_extension(ExtensionKey::Int(SENDER_TIMESTAMP), Value::Text("yesterday".into()));
        assert_eq!(c.sender_timestamp_ms(), None);
        c.set_extension(ExtensionKey::Int(EXTERNAL_MESSAGE_ID), Value::Array(vec![Value::Bytes(Vec::new())]));
        assert_eq!(c.external_message_id(), None);
    }
}
