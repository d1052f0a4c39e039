//! Portals in Megolm-encrypted Matrix rooms (`encryption.enabled`): the bridge's device joins
//! them, and members' messages are decrypted before they take the same path as any other; what
//! arrives from MIMI is encrypted by the speaking ghost's own device (`e2ee::ghosts`).
//!
//! An event whose room key has not reached the device yet stays on the intake queue (durable,
//! and holding its room's later events back, so the room's order holds) and is tried again
//! whenever keys arrive; only after [`LATE_KEY_WAIT`] from its sending is it given up, its sender
//! told and the event counted (`undecryptable`), never dropped silently.
//!
//! No room-key requests are sent for it: clients of 2026 (matrix-sdk-crypto, under Element X and
//! Element Web) send `m.room_key_request` to their own user's devices only and accept a forwarded
//! key only from those devices, verified; other users' devices do not answer. The device's owner
//! has this one device, so a request would reach no one who could answer. A late key comes only
//! as the sender's client sent it, and the hold waits for the homeserver to deliver it (its
//! to-device inbox keeps messages while the bridge is down or slow).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use super::bridge::{Bridge, BridgeError};
use super::intake::Queued;
use super::refusal::Refusal;
use crate::e2ee::device::{Readers, Undecrypted};
use crate::e2ee::ghosts::GhostDevices;

/// How long an event may wait for its room key, from its `origin_server_ts`.
pub const LATE_KEY_WAIT: Duration = Duration::from_mins(10);

/// Rooms whose encryption is remembered at most; beyond, it is looked up again.
const MAX_REMEMBERED: usize = 100_000;

/// The ghosts' devices, and which portals they encrypt in.
#[derive(Debug)]
pub struct Ghosts {
    devices: GhostDevices,
    /// A room's `m.room.encryption` content (`None`: unencrypted), as looked up before a ghost
    /// first spoke there or as it arrived since (a room never stops being encrypted).
    encryption: Mutex<BTreeMap<String, Option<Value>>>,
}

impl Ghosts {
    /// The ghosts' devices beside the bridge's `device`.
    pub fn beside(device: &crate::e2ee::Device) -> Self {
        Self { devices: GhostDevices::beside(device), encryption: Mutex::new(BTreeMap::new()) }
    }

    fn encryption(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<Value>>> {
        self.encryption.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `room`'s `m.room.encryption` content (`None`: unencrypted).
    pub(super) fn remember(&self, room: &str, content: Option<&Value>) {
        let mut rooms = self.encryption();
        if rooms.len() >= MAX_REMEMBERED {
            rooms.clear();
        }
        rooms.insert(room.to_owned(), content.cloned());
    }
}

impl Bridge {
    /// The decrypted form of an `m.room.encrypted` intake entry; [`BridgeError::KeyMissing`]
    /// while its key may still come.
    pub(super) async fn decrypted(&self, queued: &Queued, room: &str) -> Result<Queued, BridgeError> {
        let Some(device) = &self.e2ee else {
            return Err(undecryptable("the bridge has no Matrix device (encryption.enabled is off)"));
        };
        // The sender's devices and cross-signing identity, known before their trust is judged
        // (queried the first time; kept current by device-list changes after).
        // A failure the homeserver may recover from is retried; another is no reason to lose
        // the message (the library judges trust without them, refusing what it must).
        if let Some(sender) = queued.event.get("sender").and_then(Value::as_str)
            && let Err(error) = device.track(&[sender.to_owned()]).await
        {
            if crate::queue::Retryable::is_retryable(&error) {
                return Err(error.into());
            }
            tracing::warn!(%error, sender, "the sender's devices could not be tracked; decrypting without them");
        }
        match device.decrypt(room, &queued.event).await {
            Ok(mut event) => {
                // Relations stay outside the ciphertext (the room's clients and server read them).
                if let Some(relation) = queued.event.pointer("/content/m.relates_to")
                    && event["content"].get("m.relates_to").is_none()
                    && event["content"].is_object()
                {
                    event["content"]["m.relates_to"] = relation.clone();
                }
                self.metrics.decrypted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(Queued { seq: queued.seq, event })
            }
            Err(Undecrypted::KeyMissing) if !waited_too_long(&queued.event) => Err(BridgeError::KeyMissing),
            Err(Undecrypted::KeyMissing) => Err(undecryptable(&format!(
                "its room key did not reach the bridge within {} minutes",
                LATE_KEY_WAIT.as_secs() / 60
            ))),
            Err(Undecrypted::Never(why)) => Err(undecryptable(&why)),
        }
    }

    /// Waits until room keys arrive, or `most` passed.
    pub(super) async fn wait_for_keys(&self, most: Duration) {
        if let Some(device) = &self.e2ee {
            let _ = tokio::time::timeout(most, device.keys_arrived()).await;
        }
    }

    /// Makes the bridge's device a member of `room` (invited by `by`, the bridge user that is in
    /// it), so that members' clients share their room keys with it.
    pub(super) async fn join_device(&self, room: &str, by: Option<&str>) -> Result<(), BridgeError> {
        let Some(device) = &self.e2ee else { return Ok(()) };
        let owner = device.owner();
        let member = self.homeserver.room_state_event(room, "m.room.member", owner, by).await?;
        let membership = member.as_ref().and_then(|m| m.get("membership")).and_then(Value::as_str);
        if membership != Some("join") {
            if membership != Some("invite") {
                self.homeserver.invite(room, by, owner).await?;
            }
            self.homeserver.join(room, Some(owner)).await?;
        }
        Ok(())
    }
}

impl Bridge {
    /// Sends a message into `room` as `ghost`: in an encrypted room (with `encryption.enabled`)
    /// Megolm-encrypted by the ghost's device for the room's [`readers`](Self::readers); as it is
    /// otherwise. Returns the event's ID.
    pub(super) async fn send_as_ghost(
        &self,
        (room, ghost, txn_id): (&str, &str, &str),
        event_type: &str,
        content: &Value,
    ) -> Result<String, BridgeError> {
        if let Some(ghosts) = &self.ghosts
            && let Some(encryption) = self.encryption_of(ghosts, room, ghost).await?
        {
            // The room's readers looked up while the device takes in what waits for it.
            let device = async { Ok::<_, BridgeError>(ghosts.devices.ready(ghost).await?) };
            let (readers, device) = tokio::try_join!(self.readers(room, ghost, encryption), device)?;
            let event = (event_type, content);
            return Ok(device.send_encrypted((room, txn_id), &readers, event).await?);
        }
        Ok(self.homeserver.send_event(room, event_type, txn_id, content, Some(ghost), None).await?)
    }

    /// Sends the bridge's own notice `content` into `room`: in an encrypted room (with
    /// `encryption.enabled`) Megolm-encrypted by the bridge's device, whose owner is a member of
    /// every portal, so that no clear event breaks into an encrypted room; as the portal's
    /// opener otherwise. Returns the event's ID.
    pub(super) async fn send_notice_content(
        &self,
        room: &str,
        txn_id: &str,
        content: &Value,
    ) -> Result<String, BridgeError> {
        if let (Some(device), Some(ghosts)) = (&self.e2ee, &self.ghosts)
            && let Some(encryption) = self.encryption_of(ghosts, room, device.owner()).await?
        {
            let readers = self.readers(room, device.owner(), encryption).await?;
            let event = ("m.room.message", content);
            return Ok(device.send_encrypted((room, txn_id), &readers, event).await?);
        }
        let opener = self.opener_of(room)?;
        let as_user = (opener != self.settings.bot()).then_some(opener.as_str());
        Ok(self.homeserver.send_event(room, "m.room.message", txn_id, content, as_user, None).await?)
    }

    /// Who reads what the bridge encrypts in `room` (looked up as `member`), whose
    /// `m.room.encryption` content is `encryption`: as clients share room keys (matrix-sdk), its
    /// joined members and, unless its history is for joined members only, those invited; the
    /// bridge's own users left out (they read nothing).
    async fn readers(&self, room: &str, member: &str, encryption: Value) -> Result<Readers, BridgeError> {
        let history = self.homeserver.room_state_event(room, "m.room.history_visibility", "", Some(member));
        let (history, members) = tokio::try_join!(history, self.homeserver.members(room, Some(member)))?;
        let history = history.and_then(|h| Some(h.get("history_visibility")?.as_str()?.to_owned()));
        let invited_read = history.as_deref() != Some("joined");
        let reads = |membership: &str| membership == "join" || (invited_read && membership == "invite");
        let users = members.into_iter().filter(|(user, m)| reads(m) && !self.settings.is_ours(user));
        Ok(Readers { users: users.map(|(user, _)| user).collect(), encryption, history })
    }

    /// Whether what `ghost` sends into `room` is encrypted (an encrypted room, with
    /// `encryption.enabled`).
    pub(super) async fn encrypts(&self, room: &str, ghost: &str) -> Result<bool, BridgeError> {
        match &self.ghosts {
            Some(ghosts) => Ok(self.encryption_of(ghosts, room, ghost).await?.is_some()),
            None => Ok(false),
        }
    }

    /// `room`'s `m.room.encryption` content, remembered or looked up as `member`.
    async fn encryption_of(&self, ghosts: &Ghosts, room: &str, member: &str) -> Result<Option<Value>, BridgeError> {
        if let Some(known) = ghosts.encryption().get(room) {
            return Ok(known.clone());
        }
        let content = self.homeserver.room_state_event(room, "m.room.encryption", "", Some(member)).await?;
        ghosts.remember(room, content.as_ref());
        Ok(content)
    }
}

fn waited_too_long(event: &Value) -> bool {
    let sent = event.get("origin_server_ts").and_then(Value::as_u64).unwrap_or(0);
    let now = super::portal::now_ms().try_into().unwrap_or(0u64);
    now.saturating_sub(sent) > u64::try_from(LATE_KEY_WAIT.as_millis()).unwrap_or(u64::MAX)
}

fn undecryptable(why: &str) -> BridgeError {
    BridgeError::Refused(Refusal {
        reason: "undecryptable",
        notice: format!("Your encrypted message was not bridged: the bridge could not decrypt it ({why})."),
    })
}
