//! Attachments: plain `mxc://` files on the Matrix side, AES-128-GCM blobs on the MIMI side.
//!
//! Portal rooms are unencrypted on Matrix (the bridge cannot read Megolm), so a Matrix file is
//! plaintext behind the homeserver's media repository. MIMI members must be able to fetch an
//! ExternalPart from a URL they do not trust, so the bridge encrypts with AES-128-GCM (the
//! algorithm MIMI makes mandatory, IANA AEAD 1) under a fresh random key and nonce, empty aad,
//! and publishes the SHA-256 of the *ciphertext* (the bytes at the URL). Receiving, the hash is
//! checked before anything is decrypted, then the tag. Fetching and uploading are the
//! appservice's job; this module only turns bytes and parts into each other.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::mimi::{Disposition, ExternalPart, NestedPart, Part};

use super::TranslateError;
use super::text::{base_type, str_at};

/// IANA AEAD identifier of AES-128-GCM.
pub const AES_128_GCM: u16 = 1;
/// IANA named-information identifier of SHA-256.
pub const SHA_256: u8 = 1;

/// An encrypted attachment, ready to upload.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedBlob {
    /// Ciphertext with the 16-byte tag appended: the bytes to upload.
    pub ciphertext: Vec<u8>,
    /// The AES-128 key.
    pub key: [u8; 16],
    /// The GCM nonce.
    pub nonce: [u8; 12],
    /// SHA-256 of `ciphertext`.
    pub sha256: [u8; 32],
    /// Size of the plaintext.
    pub plaintext_len: u64,
}

impl std::fmt::Debug for EncryptedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedBlob")
            .field("ciphertext_len", &self.ciphertext.len())
            .field("sha256", &hex::encode(self.sha256))
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// Encrypts `plaintext` under a fresh random key and nonce.
pub fn encrypt_for_mimi(plaintext: &[u8]) -> Result<EncryptedBlob, TranslateError> {
    let mut key = [0u8; 16];
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut key).map_err(|_| TranslateError::Random)?;
    getrandom::fill(&mut nonce).map_err(|_| TranslateError::Random)?;
    encrypt_with(plaintext, key, nonce)
}

/// Encrypts `plaintext` under the given key and nonce (known-answer tests; never reuse a pair).
pub fn encrypt_with(plaintext: &[u8], key: [u8; 16], nonce: [u8; 12]) -> Result<EncryptedBlob, TranslateError> {
    let cipher = Aes128Gcm::new(&key.into());
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: &[] })
        .map_err(|_| TranslateError::Decrypt)?;
    let sha256 = Sha256::digest(&ciphertext).into();
    Ok(EncryptedBlob { ciphertext, key, nonce, sha256, plaintext_len: plaintext.len() as u64 })
}

/// Checks the downloaded bytes against `part`'s hash, then decrypts and checks the size.
pub fn decrypt_from_mimi(downloaded: &[u8], part: &ExternalPart) -> Result<Vec<u8>, TranslateError> {
    if part.hash_alg != SHA_256 {
        return Err(TranslateError::UnsupportedHash(part.hash_alg));
    }
    if Sha256::digest(downloaded).as_slice() != part.content_hash.as_slice() {
        return Err(TranslateError::HashMismatch);
    }
    let plaintext = match part.enc_alg {
        0 => downloaded.to_vec(),
        AES_128_GCM => {
            let cipher = Aes128Gcm::new_from_slice(&part.key).map_err(|_| TranslateError::KeyLength)?;
            let nonce = Nonce::try_from(part.nonce.as_slice()).map_err(|_| TranslateError::KeyLength)?;
            cipher.decrypt(&nonce, Payload { msg: downloaded, aad: &part.aad }).map_err(|_| TranslateError::Decrypt)?
        }
        other => return Err(TranslateError::UnsupportedCipher(other)),
    };
    if part.size != 0 && part.size != plaintext.len() as u64 {
        return Err(TranslateError::SizeMismatch { expected: part.size, actual: plaintext.len() as u64 });
    }
    Ok(plaintext)
}

/// The ExternalPart for Matrix media `content` (`m.image`, `m.file`, `m.video`, `m.audio`,
/// `m.sticker`) whose encrypted blob is at `url`. Images and stickers are inline, files
/// attachments, audio and video render. A `body` that differs from `filename` is a caption and
/// becomes the description; a sticker's body is its description.
pub fn external_part_for(content: &Json, url: &str, blob: &EncryptedBlob) -> Result<NestedPart, TranslateError> {
    let msgtype = str_at(content, &["msgtype"]).unwrap_or("m.file");
    let body = str_at(content, &["body"]).unwrap_or("");
    let (filename, description) = match (msgtype, str_at(content, &["filename"])) {
        ("m.sticker", name) => (name.unwrap_or(""), body),
        (_, Some(name)) if name != body => (name, body),
        _ => (body, ""),
    };
    let disposition = match msgtype {
        "m.image" | "m.sticker" => Disposition::INLINE,
        "m.video" | "m.audio" => Disposition::RENDER,
        _ => Disposition::ATTACHMENT,
    };
    let part = ExternalPart {
        content_type: str_at(content, &["info", "mimetype"]).unwrap_or("application/octet-stream").to_owned(),
        url: url.to_owned(),
        expires: 0,
        size: blob.plaintext_len,
        enc_alg: AES_128_GCM,
        key: blob.key.to_vec(),
        nonce: blob.nonce.to_vec(),
        aad: Vec::new(),
        hash_alg: SHA_256,
        content_hash: blob.sha256.to_vec(),
        description: description.to_owned(),
        filename: filename.to_owned(),
    };
    Ok(NestedPart { disposition, language: String::new(), part: Part::External(Box::new(part)) })
}

/// The Matrix media content for an ExternalPart whose decrypted file was uploaded as `mxc_url`:
/// `m.file` for attachments, otherwise by media type; a description that differs from the file
/// name becomes the caption (`body`, with `filename` beside it).
pub fn matrix_file_content(part: &NestedPart, mxc_url: &str) -> Result<Json, TranslateError> {
    let Part::External(e) = &part.part else { return Err(TranslateError::NotExternal) };
    let base = base_type(&e.content_type);
    let msgtype = match base.split('/').next().unwrap_or("") {
        _ if part.disposition == Disposition::ATTACHMENT => "m.file",
        "image" => "m.image",
        "video" => "m.video",
        "audio" => "m.audio",
        _ => "m.file",
    };
    let caption = !e.description.is_empty() && e.description != e.filename;
    let body = match (caption, e.filename.is_empty()) {
        (true, _) => e.description.as_str(),
        (false, false) => e.filename.as_str(),
        (false, true) => "attachment",
    };
    let mut info = Map::new();
    if !e.content_type.is_empty() {
        info.insert("mimetype".into(), e.content_type.clone().into());
    }
    if e.size > 0 {
        info.insert("size".into(), e.size.into());
    }
    let mut c = Map::new();
    c.insert("msgtype".into(), msgtype.into());
    c.insert("body".into(), body.into());
    if !e.filename.is_empty() {
        c.insert("filename".into(), e.filename.clone().into());
    }
    c.insert("url".into(), mxc_url.into());
    c.insert("info".into(), Json::Object(info));
    Ok(Json::Object(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part_of(blob: &EncryptedBlob) -> ExternalPart {
        let content = serde_json::json!({"msgtype": "m.file", "body": "a.bin", "info": {"mimetype": "x/y"}});
        match external_part_for(&content, "https://e.org/a", blob).unwrap().part {
            Part::External(e) => *e,
            _ => unreachable!(),
        }
    }

    #[test]
    fn gcm_known_answer() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 2.
        let blob = encrypt_with(&[0; 16], [0; 16], [0; 12]).unwrap();
        assert_eq!(hex::encode(&blob.ciphertext), "0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf");
        assert_eq!(blob.sha256.as_slice(), Sha256::digest(&blob.ciphertext).as_slice());
    }

    #[test]
    fn round_trip_and_refusals() {
        let plaintext = b"a file".repeat(100);
        let blob = encrypt_for_mimi(&plaintext).unwrap();
        let part = part_of(&blob);
        assert_eq!(decrypt_from_mimi(&blob.ciphertext, &part).unwrap(), plaintext);
        let mut tampered = blob.ciphertext.clone();
        tampered[3] ^= 1;
        assert_eq!(decrypt_from_mimi(&tampered, &part), Err(TranslateError::HashMismatch));
        let mut wrong_key = part.clone();
        wrong_key.key[0] ^= 1;
        assert_eq!(decrypt_from_mimi(&blob.ciphertext, &wrong_key), Err(TranslateError::Decrypt));
        let mut short_nonce = part.clone();
        short_nonce.nonce.pop();
        assert_eq!(decrypt_from_mimi(&blob.ciphertext, &short_nonce), Err(TranslateError::KeyLength));
        let mut wrong_size = part;
        wrong_size.size += 1;
        assert!(matches!(decrypt_from_mimi(&blob.ciphertext, &wrong_size), Err(TranslateError::SizeMismatch { .. })));
        assert_ne!(encrypt_for_mimi(&plaintext).unwrap().key, blob.key);
    }
}
