//! What several bodies share: the protocol version byte, URIs and the `*_extensions`
//! dictionaries added in -06.

use super::tls::{Reader, WireError, Writer};

/// `SignContent` of RFC 9420 §5.1.2: what `SignWithLabel` signs.
pub fn sign_content(label: &str, content: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.opaque(format!("MLS 1.0 {label}").as_bytes());
    w.opaque(content);
    w.out
}

/// Verifies an Ed25519 `SignWithLabel` signature strictly.
pub fn verify_with_label(key: &[u8], label: &str, content: &[u8], signature: &[u8]) -> bool {
    let (Ok(key), Ok(signature)) = (<[u8; 32]>::try_from(key), <[u8; 64]>::try_from(signature)) else { return false };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key) else { return false };
    key.verify_strict(&sign_content(label, content), &ed25519_dalek::Signature::from_bytes(&signature)).is_ok()
}

/// `enum { reserved(0), mls10(1), (255) } Protocol`: the only version there is.
pub const MLS10: u8 = 1;

/// Reads the `Protocol` byte, refusing any but `mls10`.
pub(super) fn protocol(r: &mut Reader<'_>) -> Result<(), WireError> {
    let at = r.position();
    match r.u8("protocol")? {
        MLS10 => Ok(()),
        other => Err(WireError {
            offset: at,
            field: "protocol".into(),
            reason: format!("unknown protocol {other}, expected mls10 (1)"),
        }),
    }
}

/// Reads a one-byte enum, refusing values `known` does not accept, naming the field.
pub(super) fn code<T>(r: &mut Reader<'_>, field: &str, known: impl Fn(u8) -> Option<T>) -> Result<T, WireError> {
    let at = r.position();
    let value = r.u8(field)?;
    known(value).ok_or_else(|| WireError { offset: at, field: field.into(), reason: format!("unknown value {value}") })
}

/// `ComponentData { uint16 component_id; opaque data<V>; }`, the entries of an
/// `AppDataDictionary` (`ComponentData component_data<V>`): sorted by ID, one entry per ID.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppDataDictionary(pub Vec<(u16, Vec<u8>)>);

impl AppDataDictionary {
    pub(super) fn read(r: &mut Reader<'_>, field: &str) -> Result<Self, WireError> {
        let mut last: Option<u16> = None;
        let entries = r.list(field, |r, name| {
            let at = r.position();
            let id = r.u16(&format!("{name}.component_id"))?;
            if last.is_some_and(|l| l >= id) {
                return Err(WireError {
                    offset: at,
                    field: format!("{name}.component_id"),
                    reason: "not above the previous entry's".into(),
                });
            }
            last = Some(id);
            Ok((id, r.opaque(&format!("{name}.data"))?.to_vec()))
        })?;
        Ok(Self(entries))
    }

    pub(super) fn write(&self, w: &mut Writer) {
        w.vector(|w| {
            for (id, data) in &self.0 {
                w.u16(*id);
                w.opaque(data);
            }
        });
    }
}
