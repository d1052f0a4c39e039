//! The recovery key (`encryption.recovery_key_file`): the cross-signing keys of the bridge's
//! Matrix users — the device's owner and every ghost that holds a device — kept in each user's
//! secret storage (`m.secret_storage`, account data on the homeserver), encrypted with one key
//! that the admin keeps in a file.
//!
//! Why: the private cross-signing keys live in the data directory. Were it lost, new keys would
//! be an identity reset, which clients show ("identity changed") to everyone who verified one
//! of those users, and which voids those verifications. With the file, a bridge on a new store
//! takes each user's keys back from secret storage and signs its new devices with them.
//!
//! The file is written (owner-readable, synced, renamed into place) before anything is
//! encrypted with its key, and is never overwritten: without it, the first start makes one. It
//! names the key as Matrix clients do (`m.secret_storage.key.<id>`), so an admin can also open a
//! user's secret storage with any client that asks for a recovery key.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use matrix_sdk_crypto::secret_storage::{AesHmacSha2EncryptedData, SecretStorageKey};
use matrix_sdk_crypto::store::types::CrossSigningKeyExport;
use ruma::events::secret::request::SecretName;
use ruma::events::secret_storage::key::{
    SecretStorageEncryptionAlgorithm, SecretStorageKeyEventContent, SecretStorageV1AesHmacSha2Properties,
};
use ruma::serde::Base64;
use serde_json::{Value, json};

use super::E2eeError;

/// The account data naming a user's default secret-storage key.
pub(super) const DEFAULT_KEY: &str = "m.secret_storage.default_key";

/// The secrets kept, by the names clients read them under, in [`CrossSigningKeyExport`]'s order.
const SECRETS: [SecretName; 3] =
    [SecretName::CrossSigningMasterKey, SecretName::CrossSigningSelfSigningKey, SecretName::CrossSigningUserSigningKey];

const HEADER: &str = "\
# mimi-bridge's recovery key. It opens the secret storage (m.secret_storage) of the bridge's
# Matrix users, which holds their cross-signing keys: a bridge whose data directory was lost
# keeps its users' identities with it. Keep a copy away from that directory.
";

/// The key of the bridge's users' secret storage, as the file holds it.
pub struct RecoveryKey {
    key: SecretStorageKey,
    file: PathBuf,
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryKey").field("file", &self.file).field("key_id", &self.key_id()).finish_non_exhaustive()
    }
}

impl RecoveryKey {
    /// The key in `file`; a new one, written there first, when the file does not exist.
    pub fn open_or_create(file: &Path) -> Result<Self, E2eeError> {
        if file.as_os_str().is_empty() {
            return Err(E2eeError::Recovery("expected the path of a file".into()));
        }
        match std::fs::read_to_string(file) {
            Ok(text) => Self::parse(&text, file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self { key: SecretStorageKey::new(), file: file.to_owned() };
                key.write().map_err(|e| recovery(file, "", &format!("cannot be written: {e}")))?;
                tracing::info!(file = %file.display(), key_id = key.key_id(), "a new recovery key was written");
                Ok(key)
            }
            Err(e) => Err(recovery(file, "", &format!("cannot be read: {e}"))),
        }
    }

    fn parse(text: &str, file: &Path) -> Result<Self, E2eeError> {
        let mut fields = std::collections::BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(recovery(file, line, "expected `field: value` lines"));
            };
            if !["recovery_key", "key_id", "iv", "mac"].contains(&name) {
                return Err(recovery(file, name, "is not a field of a recovery key file"));
            }
            fields.insert(name, value.trim());
        }
        let field = |name: &str| fields.get(name).copied().ok_or_else(|| recovery(file, name, "is missing"));
        let base64 =
            |name: &str| Base64::parse(field(name)?).map_err(|_| recovery(file, name, "expected unpadded base64"));
        let properties = SecretStorageV1AesHmacSha2Properties::new(Some(base64("iv")?), Some(base64("mac")?));
        let content = SecretStorageKeyEventContent::new(
            field("key_id")?.to_owned(),
            SecretStorageEncryptionAlgorithm::V1AesHmacSha2(properties),
        );
        let key = SecretStorageKey::from_account_data(field("recovery_key")?, content)
            .map_err(|e| recovery(file, "recovery_key", &format!("does not match key_id, iv and mac: {e}")))?;
        Ok(Self { key, file: file.to_owned() })
    }

    fn render(&self) -> String {
        let content = serde_json::to_value(self.key.event_content()).unwrap_or_default();
        let text = |name: &str| content.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (iv, mac) = (text("iv"), text("mac"));
        format!("{HEADER}recovery_key: {}\nkey_id: {}\niv: {iv}\nmac: {mac}\n", self.key.to_base58(), self.key_id())
    }

    /// A temporary file beside the target, synced, renamed into place, the directory synced.
    fn write(&self) -> std::io::Result<()> {
        let mut name = std::ffi::OsString::from(".");
        name.push(self.file.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?);
        name.push(".tmp");
        let tmp = self.file.with_file_name(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&tmp)?;
        out.write_all(self.render().as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.file)?;
        let dir = self.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()
    }

    /// The key's ID, as secret storage names it.
    pub fn key_id(&self) -> &str {
        self.key.key_id()
    }

    /// The account data, type and content, that make this key a user's default secret storage
    /// holding `keys`.
    pub(super) fn secret_storage(&self, keys: &CrossSigningKeyExport) -> Result<Vec<(String, Value)>, E2eeError> {
        let description = serde_json::to_value(self.key.event_content()).map_err(E2eeError::Json)?;
        let mut data = vec![
            (format!("m.secret_storage.key.{}", self.key_id()), description),
            (DEFAULT_KEY.to_owned(), json!({ "key": self.key_id() })),
        ];
        let secrets = [&keys.master_key, &keys.self_signing_key, &keys.user_signing_key];
        for (name, secret) in SECRETS.into_iter().zip(secrets) {
            let Some(secret) = secret else { continue };
            let encrypted = self.key.encrypt(secret.as_bytes().to_vec(), &name);
            let encrypted = serde_json::to_value(encrypted).map_err(E2eeError::Json)?;
            data.push((name.to_string(), json!({ "encrypted": { self.key_id(): encrypted } })));
        }
        Ok(data)
    }

    /// The cross-signing keys in a user's secret storage, given each secret's account data
    /// (`read(type)`), if this key encrypted them.
    pub(super) fn open(&self, mut read: impl FnMut(&str) -> Option<Value>) -> Result<CrossSigningKeyExport, String> {
        let mut secrets = Vec::new();
        for name in SECRETS {
            let Some(content) = read(name.as_str()) else {
                secrets.push(None);
                continue;
            };
            let encrypted = content.pointer(&format!("/encrypted/{}", self.key_id())).cloned();
            let encrypted = encrypted.ok_or_else(|| format!("{name} is not encrypted with key {}", self.key_id()))?;
            let encrypted: AesHmacSha2EncryptedData =
                serde_json::from_value(encrypted).map_err(|e| format!("{name}: {e}"))?;
            let clear = self.key.decrypt(&encrypted, &name).map_err(|e| format!("{name}: {e}"))?;
            secrets.push(Some(String::from_utf8(clear).map_err(|e| format!("{name}: {e}"))?));
        }
        let mut secrets = secrets.into_iter();
        let mut next = || secrets.next().flatten();
        Ok(CrossSigningKeyExport { master_key: next(), self_signing_key: next(), user_signing_key: next() })
    }
}

fn recovery(file: &Path, field: &str, what: &str) -> E2eeError {
    let file = file.display();
    E2eeError::Recovery(if field.is_empty() { format!("{file}: {what}") } else { format!("{file}: {field} {what}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_reads_back_and_opens_what_it_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recovery-key.txt");
        let made = RecoveryKey::open_or_create(&file).unwrap();
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions()) & 0o777,
            0o600
        );
        let read = RecoveryKey::open_or_create(&file).unwrap();
        assert_eq!(read.key_id(), made.key_id());
        let keys = CrossSigningKeyExport {
            master_key: Some("bWFzdGVy".into()),
            self_signing_key: Some("c2VsZg".into()),
            user_signing_key: None,
        };
        let data: std::collections::BTreeMap<String, Value> = made.secret_storage(&keys).unwrap().into_iter().collect();
        assert_eq!(data[DEFAULT_KEY]["key"], made.key_id());
        let opened = read.open(|name| data.get(name).cloned()).unwrap();
        assert_eq!(opened.master_key, keys.master_key);
        assert_eq!(opened.self_signing_key, keys.self_signing_key);
        assert_eq!(opened.user_signing_key, None);
        // Another key opens nothing.
        let other = RecoveryKey::open_or_create(&dir.path().join("other")).unwrap();
        assert!(other.open(|name| data.get(name).cloned()).unwrap_err().contains("not encrypted with key"));
    }

    #[test]
    fn a_bad_file_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        let good = std::fs::read_to_string({
            RecoveryKey::open_or_create(&file).unwrap();
            &file
        })
        .unwrap();
        for (text, expected) in [
            (good.replace("key_id:", "kid:"), "kid is not a field"),
            (good.lines().filter(|l| !l.starts_with("mac")).collect::<Vec<_>>().join("\n"), "mac is missing"),
            (good.replace("recovery_key: E", "recovery_key: F"), "recovery_key does not match"),
            (good.replace("iv: ", "iv: %"), "iv expected unpadded base64"),
        ] {
            std::fs::write(&file, text).unwrap();
            let message = RecoveryKey::open_or_create(&file).unwrap_err().to_string();
            assert!(message.contains(&file.display().to_string()) && message.contains(expected), "{message}");
        }
    }
}
