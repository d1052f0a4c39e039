//! A device's identity in its two spellings: the client URI MIMI credentials carry, and the
//! Linearized Matrix triple of older leaves and of device objects. Both are parsed strictly, so
//! that one device has exactly one encoding of each kind and byte equality is identity equality.

use openmls::prelude::{BasicCredential, Credential, CredentialType};

use super::{CREDENTIAL_KEY_PREFIX, IdentityError, malformed};
use crate::event::meta::is_user_id;
use crate::translate::uri::{client_uri, parse_client_uri};

/// Length of an Ed25519 public key.
const SIGNATURE_KEY_LEN: usize = 32;

/// Whether `id` is a valid device ID: `[A-Za-z0-9_]+`.
pub fn is_device_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One MLS client of a user and its Ed25519 signature key: a device as the hub knows it.
///
/// Its credential is written as the client URI ([`to_credential`](Self::to_credential)); the LM
/// triple ([`to_triple`](Self::to_triple)) is what device objects carry, in this layout
/// (TLS-style, all lengths big-endian `u16`):
///
/// ```text
/// u16 len ‖ user_id (UTF-8) ‖ u16 len ‖ device_id (ASCII) ‖ u16 len (= 32) ‖ Ed25519 public key
/// ```
///
/// Parsing is strict (no trailing bytes, a valid user ID, a `[A-Za-z0-9_]+` device ID, a 32-byte
/// key; a client URI only in the one spelling [`client_uri`] gives it), so one device has exactly
/// one encoding of each kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceCredential {
    user_id: String,
    device_id: String,
    signature_key: Vec<u8>,
}

impl DeviceCredential {
    /// A credential, checked as [`from_triple`](Self::from_triple) checks.
    pub fn new(user_id: &str, device_id: &str, signature_key: &[u8]) -> Result<Self, IdentityError> {
        check_names(user_id, device_id)?;
        if signature_key.len() != SIGNATURE_KEY_LEN {
            return Err(malformed(format!(
                "signature key has {} bytes, expected {SIGNATURE_KEY_LEN}",
                signature_key.len()
            )));
        }
        Ok(Self { user_id: user_id.to_owned(), device_id: device_id.to_owned(), signature_key: signature_key.to_vec() })
    }

    /// The user ID.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The device ID.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The Ed25519 public signature key (32 bytes).
    pub fn signature_key(&self) -> &[u8] {
        &self.signature_key
    }

    /// The client URI, `mimi://<user's server>/d/<localpart>/<device>`.
    pub fn client_uri(&self) -> String {
        // `new` checked both names, so the URI always forms.
        client_uri(&self.user_id, &self.device_id).unwrap_or_default()
    }

    /// The LM identity triple (layout in the type's documentation).
    pub fn to_triple(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(6 + self.user_id.len() + self.device_id.len() + self.signature_key.len());
        for field in [self.user_id.as_bytes(), self.device_id.as_bytes(), &self.signature_key] {
            // Every field is shorter than 2^16 bytes: `new` checks it (user IDs by their limit).
            let len = u16::try_from(field.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Parses an LM identity triple, strictly.
    pub fn from_triple(bytes: &[u8]) -> Result<Self, IdentityError> {
        let mut rest = bytes;
        let user = take_field(&mut rest, "user_id")?;
        let device = take_field(&mut rest, "device_id")?;
        let key = take_field(&mut rest, "signature_key")?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing byte(s) after the credential identity", rest.len())));
        }
        let user = std::str::from_utf8(user).map_err(|_| malformed("user_id is not UTF-8"))?;
        let device = std::str::from_utf8(device).map_err(|_| malformed("device_id is not UTF-8"))?;
        Self::new(user, device, key)
    }

    /// The MLS credential: a `BasicCredential` whose identity is the client URI.
    pub fn to_credential(&self) -> Credential {
        BasicCredential::new(self.client_uri().into_bytes()).into()
    }

    /// The credential leaves carried before schema 5: a `BasicCredential` with the LM triple.
    pub fn to_triple_credential(&self) -> Credential {
        BasicCredential::new(self.to_triple()).into()
    }

    /// The device of a leaf (or KeyPackage leaf) with `credential` that signs with
    /// `signature_key`; a credential in the LM spelling must name that same key.
    pub fn from_leaf(credential: &Credential, signature_key: &[u8]) -> Result<Self, IdentityError> {
        let named = NamedClient::from_credential(credential)?;
        if named.signature_key.as_deref().is_some_and(|key| key != signature_key) {
            return Err(IdentityError::SignatureKeyMismatch { user: named.user_id, device: named.device_id });
        }
        Self::new(&named.user_id, &named.device_id, signature_key)
    }

    /// The `keys` entry name of this device in a device object.
    pub fn key_name(&self) -> String {
        format!("{CREDENTIAL_KEY_PREFIX}{}", self.device_id)
    }
}

fn check_names(user_id: &str, device_id: &str) -> Result<(), IdentityError> {
    if !is_user_id(user_id) {
        return Err(malformed(format!("user ID {user_id:?} is not @localpart:server")));
    }
    if !is_device_id(device_id) || u16::try_from(device_id.len()).is_err() {
        return Err(malformed(format!("device ID {device_id:?} must match [A-Za-z0-9_]+")));
    }
    Ok(())
}

/// What a `BasicCredential`'s identity names: a user's device, and its signature key when the
/// identity is an LM triple (a client URI names none: the leaf's key is the client's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedClient {
    /// The device's user (a Matrix user ID; the URI's provider is its server).
    pub user_id: String,
    /// The device ID.
    pub device_id: String,
    /// The key an LM triple names.
    pub signature_key: Option<Vec<u8>>,
}

impl NamedClient {
    /// Parses identity bytes: a client URI, or an LM triple.
    pub fn from_identity(bytes: &[u8]) -> Result<Self, IdentityError> {
        if !bytes.starts_with(b"mimi://") {
            let triple = DeviceCredential::from_triple(bytes)?;
            return Ok(Self {
                signature_key: Some(triple.signature_key),
                user_id: triple.user_id,
                device_id: triple.device_id,
            });
        }
        let uri = std::str::from_utf8(bytes).map_err(|_| malformed("client URI is not UTF-8"))?;
        let bad = || malformed(format!("{uri:?} is not a client URI mimi://<provider>/d/<user>/<device>"));
        let (user_id, device_id) = parse_client_uri(uri).map_err(|_| bad())?;
        check_names(&user_id, &device_id)?;
        if client_uri(&user_id, &device_id).ok().as_deref() != Some(uri) {
            return Err(malformed(format!("client URI {uri:?} is not spelled canonically")));
        }
        Ok(Self { user_id, device_id, signature_key: None })
    }

    /// Reads a credential: it must be a `BasicCredential` whose identity parses.
    pub fn from_credential(credential: &Credential) -> Result<Self, IdentityError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(malformed(format!("credential type {:?} is not basic", credential.credential_type())));
        }
        Self::from_identity(credential.serialized_content())
    }
}

/// Splits one `u16`-BE length-prefixed field off the front of `rest`.
fn take_field<'a>(rest: &mut &'a [u8], name: &str) -> Result<&'a [u8], IdentityError> {
    let Some((len, tail)) = rest.split_first_chunk::<2>() else {
        return Err(malformed(format!("credential identity ends before the length of {name}")));
    };
    let len = usize::from(u16::from_be_bytes(*len));
    if tail.len() < len {
        return Err(malformed(format!("{name} needs {len} bytes, {} left", tail.len())));
    }
    let (field, tail) = tail.split_at(len);
    *rest = tail;
    Ok(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_u16_big_endian_length_prefixed() {
        let credential = DeviceCredential::new("@a:h", "D", &[9; 32]).unwrap();
        let mut expected = vec![0, 4];
        expected.extend_from_slice(b"@a:h");
        expected.extend_from_slice(&[0, 1, b'D', 0, 32]);
        expected.extend_from_slice(&[9; 32]);
        assert_eq!(credential.to_triple(), expected);
        assert_eq!(DeviceCredential::from_triple(&expected).unwrap(), credential);
    }

    #[test]
    fn a_length_beyond_the_input_is_refused() {
        let mut rest: &[u8] = &[0xff, 0xff, 1, 2];
        assert!(matches!(take_field(&mut rest, "x"), Err(IdentityError::Malformed { .. })));
        let mut rest: &[u8] = &[0];
        assert!(matches!(take_field(&mut rest, "x"), Err(IdentityError::Malformed { .. })));
        let mut rest: &[u8] = &[0, 0, 7];
        assert_eq!(take_field(&mut rest, "x").unwrap(), b"");
        assert_eq!(rest, [7]);
    }
}
