//! How the device's crypto state lies in `cryptokey_value` (`schemas/storage.md`): one record
//! per object the library names (a kind, then the object's IDs, separated by `0x00`; the value
//! is the library's own serde JSON, pickles included), so a change rewrites only what changed and
//! a delete is a RocksDB delete (a spent Olm session or a withdrawn key goes away).

use std::collections::BTreeMap;
use std::sync::Arc;

use matrix_sdk_crypto::olm::{
    InboundGroupSession, OlmMessageHash, OutboundGroupSession, PickledAccount, PickledCrossSigningIdentity,
    PickledInboundGroupSession, PickledOutboundGroupSession, PickledSession, PrivateCrossSigningIdentity, Session,
};
use matrix_sdk_crypto::store::types::{Changes, SecretsInboxItem, StoredRoomKeyBundleData};
use matrix_sdk_crypto::{Account, DeviceData, GossipRequest, UserIdentityData};
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::E2eeError;

/// A stored record: key and value.
pub(super) type Record = (Vec<u8>, Vec<u8>);

/// A write of one record: `Some` puts, `None` deletes.
pub(super) type Write = (Vec<u8>, Option<Vec<u8>>);

/// Whose records a key belongs to: none for the bridge's device (records as schema 7 wrote them),
/// a ghost's user ID and `0x00` for that ghost's device. A user ID starts with `@`, which no
/// record kind does, so the bridge device's records are told apart without a prefix of their own.
pub(super) fn namespace(ghost: Option<&str>) -> Vec<u8> {
    ghost.map_or_else(Vec::new, |user| [user.as_bytes(), b"\0"].concat())
}

/// The records of one device (`namespace`), their keys without the namespace.
pub(super) fn of_device(store: &crate::store::Store, namespace: &[u8]) -> Result<Vec<Record>, E2eeError> {
    let records = store.crypto_records(namespace)?.into_iter();
    Ok(records
        .filter(|(key, _)| !namespace.is_empty() || !key.starts_with(b"@"))
        .map(|(key, value)| (key[namespace.len()..].to_vec(), value))
        .collect())
}

/// The key of a record: its kind and the object's IDs.
pub(super) fn key(kind: &str, ids: &[&str]) -> Vec<u8> {
    let mut key = kind.as_bytes().to_vec();
    for id in ids {
        key.push(0);
        key.extend_from_slice(id.as_bytes());
    }
    key
}

/// A record's value.
pub(super) fn value(object: &impl Serialize) -> Result<Vec<u8>, E2eeError> {
    serde_json::to_vec(object).map_err(E2eeError::Json)
}

fn put(kind: &str, ids: &[&str], object: &impl Serialize) -> Result<Write, E2eeError> {
    Ok((key(kind, ids), Some(value(object)?)))
}

/// The records `changes` writes, pickling what the library keeps as live objects.
pub(super) async fn of_changes(changes: &Changes) -> Result<Vec<Write>, E2eeError> {
    let mut writes = Vec::new();
    if let Some(identity) = &changes.private_identity {
        writes.push(put("identity", &[], &identity.pickle().await)?);
    }
    for session in &changes.sessions {
        let pickle = session.pickle().await;
        writes.push(put("session", &[&pickle.sender_key.to_base64(), session.session_id()], &pickle)?);
    }
    for session in &changes.inbound_group_sessions {
        writes.push(inbound(session).await?);
    }
    for session in &changes.outbound_group_sessions {
        writes.push(put("outbound", &[session.room_id().as_str()], &session.pickle().await)?);
    }
    for device in changes.devices.new.iter().chain(&changes.devices.changed) {
        writes.push(put("device", &[device.user_id().as_str(), device.device_id().as_str()], device)?);
    }
    for device in &changes.devices.deleted {
        writes.push((key("device", &[device.user_id().as_str(), device.device_id().as_str()]), None));
    }
    for identity in changes.identities.new.iter().chain(&changes.identities.changed) {
        writes.push(put("useridentity", &[identity.user_id().as_str()], identity)?);
    }
    for hash in &changes.message_hashes {
        writes.push(put("olmhash", &[&hash.sender_key, &hash.hash], hash)?);
    }
    for request in &changes.key_requests {
        writes.push(put("keyrequest", &[request.request_id.as_str()], request)?);
    }
    if let Some(key) = &changes.backup_decryption_key {
        writes.push(put("backupkey", &[], key)?);
    }
    if let Some(version) = &changes.backup_version {
        writes.push(put("backupversion", &[], version)?);
    }
    if let Some(key) = &changes.dehydrated_device_pickle_key {
        writes.push(put("dehydratedkey", &[], key)?);
    }
    for secret in &changes.secrets {
        // Named by a hash of the secret: the same secret received twice is one record.
        let id = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.secret.as_bytes()));
        writes.push(put("secret", &[secret.secret_name.as_str(), &id], &*secret.secret)?);
    }
    for (room, sessions) in &changes.withheld_session_info {
        for (session, entry) in sessions {
            writes.push(put("withheld", &[room.as_str(), session], entry)?);
        }
    }
    if let Some(token) = &changes.next_batch_token {
        writes.push(put("nextbatch", &[], token)?);
    }
    for (room, settings) in &changes.room_settings {
        writes.push(put("roomsettings", &[room.as_str()], settings)?);
    }
    for bundle in &changes.received_room_key_bundles {
        writes.push(put("bundle", &[bundle.bundle_data.room_id.as_str(), bundle.sender_user.as_str()], bundle)?);
    }
    for room in &changes.room_key_backups_fully_downloaded {
        writes.push(put("backupdownloaded", &[room.as_str()], &true)?);
    }
    for (room, details) in &changes.rooms_pending_key_bundle {
        let record = key("pendingbundle", &[room.as_str()]);
        writes.push((record, details.as_ref().map(value).transpose()?));
    }
    Ok(writes)
}

/// The record of an inbound group session (its backup version, if any, is a record of its own).
pub(super) async fn inbound(session: &InboundGroupSession) -> Result<Write, E2eeError> {
    put("inbound", &[session.room_id().as_str(), session.session_id()], &session.pickle().await)
}

/// What the records hold, as the library's objects, for the in-memory copy.
#[derive(Default)]
pub(super) struct Loaded {
    pub account: Option<Account>,
    pub changes: Changes,
    /// Inbound group sessions backed up, by backup version.
    pub backed_up: BTreeMap<String, Vec<InboundGroupSession>>,
    pub tracked: Vec<(OwnedUserId, bool)>,
    pub custom: Vec<(String, Vec<u8>)>,
}

fn parse<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T, E2eeError> {
    serde_json::from_slice(bytes).map_err(|e| E2eeError::Corrupt(format!("a `{kind}` record: {e}")))
}

fn unpickled<T, E: std::fmt::Display>(kind: &str, result: Result<T, E>) -> Result<T, E2eeError> {
    result.map_err(|e| E2eeError::Corrupt(format!("a `{kind}` record does not unpickle: {e}")))
}

/// Reads every record (`records`: key order) back into the library's objects.
pub(super) fn load(records: &[Record]) -> Result<Loaded, E2eeError> {
    let mut loaded = Loaded::default();
    let split = |key: &[u8]| -> Result<(String, Vec<String>), E2eeError> {
        let text = std::str::from_utf8(key).map_err(|_| E2eeError::Corrupt("a record key is not UTF-8".into()))?;
        let mut parts = text.split('\0').map(str::to_owned);
        let kind = parts.next().unwrap_or_default();
        Ok((kind, parts.collect()))
    };
    // The account first: sessions are unpickled against its keys.
    if let Some((_, bytes)) = records.iter().find(|(k, _)| k.as_slice() == b"account") {
        let pickle: PickledAccount = parse("account", bytes)?;
        loaded.account = Some(unpickled("account", Account::from_pickle(pickle))?);
    }
    let mut backup_versions: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut inbound = Vec::new();
    let changes = &mut loaded.changes;
    for (record, bytes) in records {
        let (kind, ids) = split(record)?;
        let id = |n: usize| ids.get(n).cloned().ok_or_else(|| E2eeError::Corrupt(format!("a `{kind}` key lacks IDs")));
        match kind.as_str() {
            "account" => {}
            "identity" => {
                let pickle: PickledCrossSigningIdentity = parse(&kind, bytes)?;
                changes.private_identity = Some(unpickled(&kind, PrivateCrossSigningIdentity::from_pickle(pickle))?);
            }
            "session" => {
                let account =
                    loaded.account.as_ref().ok_or(E2eeError::Corrupt("Olm sessions without an account".into()))?;
                let pickle: PickledSession = parse(&kind, bytes)?;
                changes.sessions.push(unpickled(&kind, Session::from_pickle(account.device_keys(), pickle))?);
            }
            "inbound" => {
                let pickle: PickledInboundGroupSession = parse(&kind, bytes)?;
                inbound.push(unpickled(&kind, InboundGroupSession::from_pickle(pickle))?);
            }
            "backedup" => {
                backup_versions.insert((id(0)?, id(1)?), parse(&kind, bytes)?);
            }
            "outbound" => {
                let account =
                    loaded.account.as_ref().ok_or(E2eeError::Corrupt("Megolm sessions without an account".into()))?;
                let pickle: PickledOutboundGroupSession = parse(&kind, bytes)?;
                let keys = Arc::new(account.identity_keys());
                let device = account.device_id().to_owned();
                changes
                    .outbound_group_sessions
                    .push(unpickled(&kind, OutboundGroupSession::from_pickle(device, keys, pickle))?);
            }
            "device" => changes.devices.new.push(parse::<DeviceData>(&kind, bytes)?),
            "useridentity" => changes.identities.new.push(parse::<UserIdentityData>(&kind, bytes)?),
            "olmhash" => changes.message_hashes.push(parse::<OlmMessageHash>(&kind, bytes)?),
            "keyrequest" => changes.key_requests.push(parse::<GossipRequest>(&kind, bytes)?),
            "backupkey" => changes.backup_decryption_key = Some(parse(&kind, bytes)?),
            "backupversion" => changes.backup_version = Some(parse(&kind, bytes)?),
            "dehydratedkey" => changes.dehydrated_device_pickle_key = Some(parse(&kind, bytes)?),
            "secret" => {
                let secret: String = parse(&kind, bytes)?;
                changes.secrets.push(SecretsInboxItem { secret_name: id(0)?.as_str().into(), secret: secret.into() });
            }
            "withheld" => {
                let room = OwnedRoomId::try_from(id(0)?).map_err(|e| E2eeError::Corrupt(format!("withheld: {e}")))?;
                changes.withheld_session_info.entry(room).or_default().insert(id(1)?, parse(&kind, bytes)?);
            }
            "nextbatch" => changes.next_batch_token = Some(parse(&kind, bytes)?),
            "roomsettings" => {
                let room =
                    OwnedRoomId::try_from(id(0)?).map_err(|e| E2eeError::Corrupt(format!("room settings: {e}")))?;
                changes.room_settings.insert(room, parse(&kind, bytes)?);
            }
            "bundle" => changes.received_room_key_bundles.push(parse::<StoredRoomKeyBundleData>(&kind, bytes)?),
            "backupdownloaded" => {
                let room = OwnedRoomId::try_from(id(0)?).map_err(|e| E2eeError::Corrupt(format!("backups: {e}")))?;
                changes.room_key_backups_fully_downloaded.insert(room);
            }
            "pendingbundle" => {
                let room = OwnedRoomId::try_from(id(0)?).map_err(|e| E2eeError::Corrupt(format!("bundles: {e}")))?;
                changes.rooms_pending_key_bundle.insert(room, Some(parse(&kind, bytes)?));
            }
            "tracked" => {
                let user = OwnedUserId::try_from(id(0)?).map_err(|e| E2eeError::Corrupt(format!("tracked: {e}")))?;
                loaded.tracked.push((user, parse(&kind, bytes)?));
            }
            "custom" => loaded.custom.push((id(0)?, bytes.clone())),
            other => return Err(E2eeError::Corrupt(format!("a record of unknown kind `{other}`"))),
        }
    }
    for session in inbound {
        match backup_versions.get(&(session.room_id().to_string(), session.session_id().to_owned())) {
            Some(version) => loaded.backed_up.entry(version.clone()).or_default().push(session),
            None => loaded.changes.inbound_group_sessions.push(session),
        }
    }
    Ok(loaded)
}
