//! Server signing keys and the public keys of other servers.
//!
//! Keys are stored in Synapse's signing-key file format (`ed25519 <version> <unpadded base64
//! seed>`), so an admin can reuse tooling and habits they already have. The seed never appears in
//! `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Standard base64 that accepts input with or without padding (Matrix asks receivers to), but
/// never stray trailing bits: one encoding per byte string.
pub const B64_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_encode_padding(false).with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Seeds in key files decode leniently: the Matrix spec's own test seed ends in a character
/// with non-zero trailing bits, and Synapse (Python's base64) ignores them.
const SEED_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// What is wrong with a key, a key file or a `--key` argument.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file does not have the `ed25519 <version> <seed>` shape.
    #[error("line {line}: expected `ed25519 <version> <unpadded base64 seed>`, found {found:?}")]
    FileFormat {
        /// 1-based line number.
        line: usize,
        /// The offending text (never a seed: only the first word or the shape).
        found: String,
    },
    /// A key version with characters outside `[A-Za-z0-9_]`.
    #[error("key version {0:?} must match [A-Za-z0-9_]+")]
    BadVersion(String),
    /// The seed or public key is not base64 of 32 bytes.
    #[error("{what} must be base64 of 32 bytes")]
    BadKeyBytes {
        /// Which value.
        what: &'static str,
    },
    /// The file holds no key.
    #[error("the key file holds no key")]
    Empty,
    /// The operating system's random number generator failed.
    #[error("the system random number generator is unavailable")]
    NoRandomness,
    /// A `--key` argument that is not `SERVER=ed25519:ID=PUBKEY`.
    #[error("expected SERVER=ed25519:ID=PUBKEY, found {0:?}")]
    BadKeyArgument(String),
    /// The key file cannot be opened or read.
    #[error("{path}: cannot read: {message}")]
    Unreadable {
        /// The key file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// The path names something other than a regular file (a FIFO, a device, a directory).
    #[error("{path} is {kind}, not a regular file: expected a signing key file written by `mimi-bridge keygen`")]
    NotAFile {
        /// The path.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than any key file.
    #[error(
        "{path} holds {size} bytes or more, more than a signing key file can ({MAX_KEY_FILE} at most): expected a \
         key file written by `mimi-bridge keygen`"
    )]
    TooLarge {
        /// The key file.
        path: String,
        /// Its size (or the bytes read before giving up).
        size: u64,
    },
    /// The key file's content is wrong.
    #[error("{path}: {source}")]
    InFile {
        /// The key file.
        path: String,
        /// What is wrong.
        source: Box<KeyError>,
    },
}

/// The largest signing-key file read: a key line is ~60 bytes; a few keys and comments fit.
pub const MAX_KEY_FILE: u64 = 4096;

/// Reads a signing-key file, refusing what cannot be one before reading it: a FIFO (reading it
/// would wait for a writer forever), a device such as `/dev/zero` (endless), a directory, or a
/// file over [`MAX_KEY_FILE`]; at most that many bytes (+1) are ever read. Returns the key and,
/// when the file is open to group or others (any of the mode bits `0o077`, as OpenSSH judges
/// private keys: read lets them sign as this server, write lets them replace its identity), a
/// warning to log.
fn read_key_file(path: &std::path::Path) -> Result<(ServerKey, Option<String>), KeyError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| KeyError::Unreadable { path: shown.clone(), message: e.to_string() };
    let check = |meta: &std::fs::Metadata| -> Result<(), KeyError> {
        if !meta.is_file() {
            return Err(KeyError::NotAFile { path: shown.clone(), kind: file_kind(meta.file_type()) });
        }
        if meta.len() > MAX_KEY_FILE {
            return Err(KeyError::TooLarge { path: shown.clone(), size: meta.len() });
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(unreadable)?)?;
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // Again on what was opened, in case the path was replaced in between.
    let meta = file.metadata().map_err(unreadable)?;
    check(&meta)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_KEY_FILE {
        return Err(KeyError::TooLarge { path: shown, size: read });
    }
    let in_file = |e: KeyError| KeyError::InFile { path: shown.clone(), source: Box::new(e) };
    let text = String::from_utf8(bytes)
        .map_err(|_| in_file(KeyError::FileFormat { line: 0, found: "bytes that are not UTF-8".into() }))?;
    let key = ServerKey::parse_synapse(&text).map_err(in_file)?;
    Ok((key, loose_permissions(&meta, &shown)))
}

#[cfg(unix)]
fn file_kind(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn file_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() { "a directory" } else { "not a regular file" }
}

#[cfg(unix)]
fn loose_permissions(meta: &std::fs::Metadata, path: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{path} has mode {mode:03o}: group or others may read or change this server's signing key; run `chmod 600 {path}`"
        )
    })
}

#[cfg(not(unix))]
fn loose_permissions(_: &std::fs::Metadata, _: &str) -> Option<String> {
    None
}

/// `len` uniformly random ASCII letters from the system RNG (rejection sampling, no modulo
/// bias); `None` if the RNG fails.
pub(crate) fn random_letters(len: usize) -> Option<String> {
    const LETTERS: &[u8; 52] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).ok()?;
        // 208 = 4 × 52: bytes at or above it would favour the first letters.
        out.extend(
            buf.iter().filter(|b| **b < 208).map(|b| char::from(LETTERS[usize::from(*b % 52)])).take(len - out.len()),
        );
    }
    Some(out)
}

/// Whether `version` is a valid key version (`[A-Za-z0-9_]+`).
pub fn valid_key_version(version: &str) -> bool {
    !version.is_empty() && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// This server's ed25519 signing key and its key ID.
#[derive(Clone)]
pub struct ServerKey {
    key_id: String,
    signing: SigningKey,
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKey")
            .field("key_id", &self.key_id)
            .field("public", &self.public_b64())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(version: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !valid_key_version(version) {
            return Err(KeyError::BadVersion(version.to_owned()));
        }
        Ok(Self { key_id: format!("ed25519:{version}"), signing: SigningKey::from_bytes(&seed) })
    }

    /// A fresh random key; `version` defaults to `a_` + four random letters, as Synapse does.
    pub fn generate(version: Option<&str>) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| KeyError::NoRandomness)?;
        let default = format!("a_{}", random_letters(4).ok_or(KeyError::NoRandomness)?);
        Self::from_seed(version.unwrap_or(&default), seed)
    }

    /// Parses the first key of a Synapse signing-key file.
    pub fn parse_synapse(text: &str) -> Result<Self, KeyError> {
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some("ed25519"), Some(version), Some(seed), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                let first = line.split_whitespace().next().unwrap_or_default();
                return Err(KeyError::FileFormat {
                    line: index + 1,
                    found: format!("{} word(s) starting with {first:?}", line.split_whitespace().count()),
                });
            };
            let bytes = SEED_B64
                .decode(seed)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(KeyError::BadKeyBytes { what: "the seed" })?;
            return Self::from_seed(version, bytes);
        }
        Err(KeyError::Empty)
    }

    /// Reads a signing-key file: the key, and a warning to log if the file is open to group or
    /// others. See [`MAX_KEY_FILE`] for what is refused before anything is read.
    pub fn read_file(path: &std::path::Path) -> Result<(Self, Option<String>), KeyError> {
        read_key_file(path)
    }

    /// The key as one line of a Synapse signing-key file.
    pub fn to_synapse_line(&self) -> String {
        format!("ed25519 {} {}\n", self.version(), STANDARD_NO_PAD.encode(self.signing.to_bytes()))
    }

    /// `ed25519:<version>`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The version part of the key ID.
    pub fn version(&self) -> &str {
        self.key_id.trim_start_matches("ed25519:")
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key, unpadded base64, as published in key documents.
    pub fn public_b64(&self) -> String {
        STANDARD_NO_PAD.encode(self.signing.verifying_key().as_bytes())
    }

    /// Signs bytes.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD_NO_PAD.encode(self.sign_raw(message))
    }

    /// Signs bytes; the signature's 64 bytes.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.signing.sign(message).to_bytes()
    }

    /// A secret only this key's holder can compute, separate per `label`: HMAC-SHA256 keyed
    /// with the seed (the MIMI hub's franking key, which must outlive restarts).
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.signing.as_bytes()).expect("HMAC takes any key");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Public keys of servers, by server name and key ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRing {
    keys: BTreeMap<String, BTreeMap<String, VerifyingKey>>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) one key.
    pub fn insert(&mut self, server: &str, key_id: &str, key: VerifyingKey) {
        self.keys.entry(server.to_owned()).or_default().insert(key_id.to_owned(), key);
    }

    /// Adds a key given as unpadded base64.
    pub fn insert_b64(&mut self, server: &str, key_id: &str, public: &str) -> Result<(), KeyError> {
        let key = decode_public(public)?;
        self.insert(server, key_id, key);
        Ok(())
    }

    /// Looks a key up.
    pub fn get(&self, server: &str, key_id: &str) -> Option<&VerifyingKey> {
        self.keys.get(server)?.get(key_id)
    }

    /// Every (server, key ID, key), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &VerifyingKey)> {
        self.keys.iter().flat_map(|(s, ks)| ks.iter().map(move |(id, k)| (s.as_str(), id.as_str(), k)))
    }

    /// Whether any key of `server` is known.
    pub fn knows_server(&self, server: &str) -> bool {
        self.keys.get(server).is_some_and(|k| !k.is_empty())
    }

    /// Adds every key of `other`, replacing same-named ones.
    pub fn extend(&mut self, other: &KeyRing) {
        for (server, id, key) in other.iter() {
            self.insert(server, id, *key);
        }
    }

    /// Parses `SERVER=ed25519:ID=PUBKEY` (the `--key` argument) into this ring.
    ///
    /// ```
    /// let mut ring = mimi_bridge::event::KeyRing::new();
    /// ring.add_argument("domain=ed25519:1=XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI").unwrap();
    /// assert!(ring.get("domain", "ed25519:1").is_some());
    /// assert!(ring.add_argument("domain=ed25519:1").is_err());
    /// ```
    pub fn add_argument(&mut self, arg: &str) -> Result<(), KeyError> {
        let bad = || KeyError::BadKeyArgument(arg.to_owned());
        let (server, rest) = arg.split_once('=').ok_or_else(bad)?;
        let (key_id, public) = rest.split_once('=').ok_or_else(bad)?;
        let version = key_id.strip_prefix("ed25519:").ok_or_else(bad)?;
        if server.is_empty() || !valid_key_version(version) {
            return Err(bad());
        }
        self.insert_b64(server, key_id, public.trim_end_matches('='))
    }
}

/// Decodes a base64 public key, rejecting byte strings that are not a valid curve point.
pub fn decode_public(public: &str) -> Result<VerifyingKey, KeyError> {
    let bad = KeyError::BadKeyBytes { what: "the public key" };
    let bytes = B64_ANY_PAD.decode(public).map_err(|_| bad.clone())?;
    let bytes = <[u8; 32]>::try_from(bytes).map_err(|_| bad.clone())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SEED: &str = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";

    #[test]
    fn synapse_key_file_round_trips_and_derives_the_spec_public_key() {
        let key = ServerKey::parse_synapse(&format!("ed25519 1 {SPEC_SEED}\n")).unwrap();
        assert_eq!(key.key_id(), "ed25519:1");
        assert_eq!(key.public_b64(), "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI");
        // Re-encoding clears the seed's stray trailing bits; the key is the same.
        let again = ServerKey::parse_synapse(&key.to_synapse_line()).unwrap();
        assert_eq!(again.public_b64(), key.public_b64());
        assert!(!format!("{key:?}").contains(SPEC_SEED));
    }

    #[test]
    fn generated_keys_have_a_synapse_style_version() {
        let key = ServerKey::generate(None).unwrap();
        assert!(key.version().starts_with("a_") && key.version().len() == 6, "{}", key.version());
        let again = ServerKey::parse_synapse(&key.to_synapse_line()).unwrap();
        assert_eq!(again.public_b64(), key.public_b64());
        assert!(matches!(ServerKey::generate(Some("bad-id")), Err(KeyError::BadVersion(_))));
    }

    #[test]
    fn malformed_key_files_are_rejected_without_echoing_the_seed() {
        let err = ServerKey::parse_synapse(&format!("ed448 1 {SPEC_SEED}")).unwrap_err();
        assert!(matches!(err, KeyError::FileFormat { line: 1, .. }));
        assert!(!err.to_string().contains(SPEC_SEED));
        assert!(matches!(ServerKey::parse_synapse("ed25519 1 AAAA"), Err(KeyError::BadKeyBytes { .. })));
        assert!(matches!(ServerKey::parse_synapse("\n# nothing\n"), Err(KeyError::Empty)));
    }

    #[test]
    fn key_arguments() {
        let mut ring = KeyRing::new();
        ring.add_argument("domain=ed25519:1=XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI").unwrap();
        assert!(ring.get("domain", "ed25519:1").is_some());
        for bad in [
            "domain",
            "domain=ed25519:1",
            "domain=curve:1=XGX0",
            "=ed25519:1=XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI",
        ] {
            assert!(ring.add_argument(bad).is_err(), "{bad}");
        }
    }
}
