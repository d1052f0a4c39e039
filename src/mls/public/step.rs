//! One event's effect on a room's group, as the hub (before queueing the event), followers and
//! `log verify` all compute it: check first, apply once the event is in the log.

use super::{CheckedCommit, MlsCheckError, PublicView};
use crate::event::KeyRing;
use crate::event::state::RoomState;
use crate::mls::events::{CommitContent, EncryptedContent};
use crate::mls::identity::DeviceDirectory;

/// What an event does to a room's group, once [`check_event`] passed it.
#[derive(Debug)]
pub enum Step {
    /// Nothing: not an MLS event.
    None,
    /// The create event of an encrypted room: the group at epoch 0 (or a follower's record
    /// starting again from a Welcome: the group as it was joined).
    Create(Box<PublicView>),
    /// An application message to remember (replays are refused).
    Encrypted(EncryptedContent),
    /// A commit to apply.
    Commit(CheckedCommit),
}

/// The MLS checks for the event at `position` of a room whose group is `view` (`None` before
/// the create event and in rooms without MLS), against the room's `state` before the event.
/// `verify_franks`: check the frank an `m.room.encrypted` carries (the hub skips the franks it
/// made itself; `log verify` checks them all).
pub fn check_event(
    view: Option<&PublicView>,
    position: u64,
    pdu: &crate::event::Pdu,
    state: &RoomState,
    devices: Option<(&dyn DeviceDirectory, &KeyRing)>,
    verify_franks: bool,
) -> Result<Step, MlsCheckError> {
    let meta = pdu.meta();
    if position == 0 {
        let record =
            crate::event::chain::create_version(meta, pdu.content()).is_ok_and(crate::event::RoomVersion::is_record);
        return match crate::mls::events::RoomEncryption::from_create(pdu.content())? {
            Some(encryption) if view.is_none() && record => Ok(Step::Create(Box::new(PublicView::for_record(
                &encryption.group_info,
                &meta.room_id,
                pdu.event_id(),
            )?))),
            Some(encryption) if view.is_none() => Ok(Step::Create(Box::new(PublicView::for_create(
                &encryption.group_info,
                &meta.room_id,
                &meta.sender,
                pdu.event_id(),
            )?))),
            _ => Ok(Step::None),
        };
    }
    if let Some(view) = view.filter(|v| v.is_record()) {
        return match (meta.event_type.as_str(), &meta.state_key) {
            (crate::mls::events::FANOUT, None) => {
                let content = crate::mls::events::FanoutContent::parse(pdu.content())?;
                view.check_fanout(&content, &meta.room_id, pdu.event_id())
            }
            (_, Some(_)) => Ok(Step::None),
            (other, None) => Err(MlsCheckError::NotAFanout { event_type: other.to_owned() }),
        };
    }
    let (commit, encrypted) =
        (meta.event_type == crate::mls::events::COMMIT, meta.event_type == crate::mls::events::ENCRYPTED);
    if !commit && !encrypted {
        // Encryption is chosen at creation and never changes: in an encrypted room every message
        // event is ciphertext or a commit; only state events (membership, rules) are plaintext.
        if view.is_some() && meta.state_key.is_none() {
            return Err(MlsCheckError::PlaintextInEncryptedRoom { event_type: meta.event_type.clone() });
        }
        return Ok(Step::None);
    }
    let view = view.ok_or(MlsCheckError::NotEncrypted)?;
    if encrypted {
        let content = EncryptedContent::parse(pdu.content())?;
        view.check_encrypted(&content)?;
        if verify_franks {
            let accepted = u64::try_from(meta.origin_server_ts).unwrap_or_default();
            view.check_logged_frank(&content, &meta.sender, accepted)?;
        }
        return Ok(Step::Encrypted(content));
    }
    let content = CommitContent::parse(pdu.content())?;
    Ok(Step::Commit(view.check_commit(&meta.sender, &content, state, devices)?))
}

/// Applies a checked [`Step`] to the room's group.
pub fn apply_step(view: &mut Option<PublicView>, step: Step, event_id: &str) -> Result<(), MlsCheckError> {
    match step {
        Step::None => {}
        Step::Create(created) => *view = Some(*created),
        Step::Encrypted(content) => view.as_mut().ok_or(MlsCheckError::NotEncrypted)?.note_encrypted(&content),
        Step::Commit(checked) => view.as_mut().ok_or(MlsCheckError::NotEncrypted)?.apply(checked, event_id)?,
    }
    Ok(())
}
