//! `EncryptWithLabel` / `DecryptWithLabel` of RFC 9420 §5.1.3 for what MIMI encrypts to a
//! public key outside a group (the `groupInfo` answer). openmls keeps its own labelled HPKE
//! private; the HPKE itself is its crypto provider's, only the `EncryptContext` is framed here.

use openmls::prelude::OpenMlsProvider as _;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::types::HpkeCiphertext;

use super::CIPHERSUITE;
use crate::mimi::protocol::tls::Writer;

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
#[error("HPKE: {0}")]
pub struct SealError(String);

/// `EncryptContext { opaque label<V> = "MLS 1.0 " + label; opaque context<V>; }`.
fn encrypt_context(label: &str, context: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.opaque(format!("MLS 1.0 {label}").as_bytes());
    w.opaque(context);
    w.out
}

/// `EncryptWithLabel(public_key, label, context, plaintext)` with [`CIPHERSUITE`]'s HPKE:
/// (`kem_output`, `ciphertext`).
pub fn encrypt_with_label(
    public_key: &[u8],
    label: &str,
    context: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let crypto = OpenMlsRustCrypto::default();
    let info = encrypt_context(label, context);
    let sealed = crypto
        .crypto()
        .hpke_seal(CIPHERSUITE.hpke_config(), public_key, &info, &[], plaintext)
        .map_err(|e| SealError(format!("{e:?}")))?;
    Ok((sealed.kem_output.as_slice().to_vec(), sealed.ciphertext.as_slice().to_vec()))
}

/// `DecryptWithLabel(private_key, label, context, kem_output, ciphertext)`.
pub fn decrypt_with_label(
    private_key: &[u8],
    label: &str,
    context: &[u8],
    kem_output: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let crypto = OpenMlsRustCrypto::default();
    let input = HpkeCiphertext { kem_output: kem_output.to_vec().into(), ciphertext: ciphertext.to_vec().into() };
    let info = encrypt_context(label, context);
    crypto
        .crypto()
        .hpke_open(CIPHERSUITE.hpke_config(), &input, private_key, &info, &[])
        .map_err(|e| SealError(format!("{e:?}")))
}

/// A fresh HPKE key pair of [`CIPHERSUITE`]: (private, public).
pub fn key_pair() -> Result<(Vec<u8>, Vec<u8>), SealError> {
    use openmls_traits::random::OpenMlsRand as _;
    let crypto = OpenMlsRustCrypto::default();
    let ikm = crypto.rand().random_vec(32).map_err(|e| SealError(format!("{e:?}")))?;
    let pair = crypto
        .crypto()
        .derive_hpke_keypair(CIPHERSUITE.hpke_config(), &ikm)
        .map_err(|e| SealError(format!("{e:?}")))?;
    Ok((pair.private.as_ref().to_vec(), pair.public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_opens_only_with_its_label_and_context() {
        let (private, public) = key_pair().unwrap();
        let (kem, sealed) = encrypt_with_label(&public, "L", b"room", b"secret").unwrap();
        assert_eq!(decrypt_with_label(&private, "L", b"room", &kem, &sealed).unwrap(), b"secret");
        assert!(decrypt_with_label(&private, "L", b"other room", &kem, &sealed).is_err());
        assert!(decrypt_with_label(&private, "M", b"room", &kem, &sealed).is_err());
        let (other, _) = key_pair().unwrap();
        assert!(decrypt_with_label(&other, "L", b"room", &kem, &sealed).is_err());
    }

    #[test]
    fn the_context_is_framed_as_rfc_9420_says() {
        let mut expected = vec![10];
        expected.extend(b"MLS 1.0 AB");
        expected.extend([2, b'r', b'x']);
        assert_eq!(encrypt_context("AB", b"rx"), expected);
    }
}
