//! Attachments of encrypted rooms. A Matrix client encrypts a file before uploading it
//! (AES-256-CTR with a fresh key, the key, IV and SHA-256 in the event's `file` instead of a
//! `url`), so the homeserver holds only ciphertext and the key travels inside the Megolm-encrypted
//! event. The bridge does the same for what it brings from MIMI into an encrypted portal, and
//! undoes it for what members send, before the file is encrypted again for MIMI.

use std::io::Read;

use matrix_sdk_crypto::{AttachmentDecryptor, AttachmentEncryptor, MediaEncryptionInfo};
use serde_json::Value;

use super::E2eeError;

/// The file of an event's `file` (`{url, key, iv, hashes, v}`), given its ciphertext; refused
/// if the hash does not match.
pub fn decrypt(ciphertext: &[u8], file: &Value) -> Result<Vec<u8>, E2eeError> {
    let malformed = |e: &dyn std::fmt::Display| E2eeError::Malformed(format!("encrypted attachment: {e}"));
    let info: MediaEncryptionInfo = serde_json::from_value(file.clone()).map_err(|e| malformed(&e))?;
    let mut input = ciphertext;
    let mut decryptor = AttachmentDecryptor::new(&mut input, info).map_err(|e| malformed(&e))?;
    let mut plaintext = Vec::with_capacity(ciphertext.len());
    decryptor.read_to_end(&mut plaintext).map_err(|e| malformed(&e))?;
    Ok(plaintext)
}

/// The ciphertext to upload, and the `file` object (without its `url`) that opens it.
pub fn encrypt(plaintext: &[u8]) -> Result<(Vec<u8>, Value), E2eeError> {
    let mut input = plaintext;
    let mut encryptor = AttachmentEncryptor::new(&mut input);
    let mut ciphertext = Vec::with_capacity(plaintext.len());
    encryptor.read_to_end(&mut ciphertext).map_err(|e| E2eeError::Machine(e.to_string()))?;
    let file = serde_json::to_value(encryptor.finish()).map_err(E2eeError::Json)?;
    Ok((ciphertext, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encrypted_decrypts_and_a_changed_byte_is_refused() {
        let plaintext = b"an image, say".to_vec();
        let (mut ciphertext, mut file) = encrypt(&plaintext).unwrap();
        assert_ne!(ciphertext, plaintext);
        assert_eq!(file["v"], "v2");
        file["url"] = "mxc://hs.test/abc".into();
        assert_eq!(decrypt(&ciphertext, &file).unwrap(), plaintext);
        ciphertext[0] ^= 1;
        assert!(decrypt(&ciphertext, &file).is_err());
    }
}
