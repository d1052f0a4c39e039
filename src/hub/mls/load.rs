//! Loading a room's group when its head is loaded: the public view (from the latest declared
//! group state, or for a follower's record by replaying its commits) and this server's clients.

use std::collections::BTreeMap;

use crate::event::Pdu;
use crate::mls::events::{CommitContent, ENCRYPTED, EncryptedContent, RoomEncryption};
use crate::mls::member::{Member, ciphertext_hash};
use crate::mls::public::{MlsCheckError, PublicView, apply_step};
use crate::store::{RoomSeq, ShortRoomId, StoreError};

use super::super::{Hub, HubError, trusted_pdu};
use super::{RoomMls, client_error};

impl Hub {
    /// The group of a room being loaded: the view from its latest commit (or create event), and
    /// the clients of this server's devices that are in the group.
    pub(in crate::hub) fn load_mls(
        &self,
        short: ShortRoomId,
        create: &Pdu,
        version: &'static crate::event::RoomVersion,
        state: &crate::event::state::RoomState,
    ) -> Result<Option<RoomMls>, HubError> {
        let Some(encryption) = RoomEncryption::from_create(create.content()).map_err(MlsCheckError::from)? else {
            return Ok(None);
        };
        let room_id = &create.meta().room_id;
        let latest_commit = self.store.latest_commit(short)?;
        if version.is_record() {
            return self.load_record(short, create, &encryption).map(Some);
        }
        let mut view = match self.latest_declared(short, latest_commit, version)? {
            None => PublicView::from_group_info(&encryption.group_info, room_id, create.event_id())?,
            Some((group_info, event_id)) => PublicView::from_group_info(&group_info, room_id, &event_id)?,
        };
        let mut accepted = BTreeMap::new();
        for item in self.store.pdus(short, latest_commit.unwrap_or(0))? {
            let (_, bytes) = item?;
            let pdu = trusted_pdu(&bytes, Some(version))?;
            if pdu.meta().event_type == ENCRYPTED
                && let Ok(content) = EncryptedContent::parse(pdu.content())
            {
                let ts = u64::try_from(pdu.meta().origin_server_ts).unwrap_or_default();
                accepted.insert(ciphertext_hash(&content.ciphertext), ts);
                view.note_encrypted(&content);
            }
        }
        // Only users with a membership in the room can have a client in its group.
        let members = self.load_members(room_id, |user| state.membership(user).is_some())?;
        Ok(Some(RoomMls { view, members, accepted }))
    }

    /// The group the room's latest commit (at `latest_commit`) declared, its
    /// `public_group_state`, and that commit's event ID; `None` before the first commit.
    pub(in crate::hub) fn latest_declared(
        &self,
        short: ShortRoomId,
        latest_commit: Option<u64>,
        version: &'static crate::event::RoomVersion,
    ) -> Result<Option<(Vec<u8>, String)>, HubError> {
        let Some(seq) = latest_commit else { return Ok(None) };
        let bytes = self
            .store
            .pdu_at(RoomSeq { room: short, seq })?
            .ok_or_else(|| StoreError::corrupt("latest commit position without its PDU"))?;
        let commit = trusted_pdu(&bytes, Some(version))?;
        let content = CommitContent::parse(commit.content()).map_err(MlsCheckError::from)?;
        Ok(Some((content.public_group_state, commit.event_id().to_owned())))
    }

    /// A follower's record: its group has no declared state to start from but the create
    /// event's, so the public view replays every recorded commit from there.
    fn load_record(&self, short: ShortRoomId, create: &Pdu, encryption: &RoomEncryption) -> Result<RoomMls, HubError> {
        let room_id = &create.meta().room_id;
        let mut view = Some(PublicView::for_record(&encryption.group_info, room_id, create.event_id())?);
        for item in self.store.pdus(short, 1)? {
            let (_, bytes) = item?;
            let pdu = trusted_pdu(&bytes, Some(&crate::event::room_version::MIMI_RECORD_1))?;
            if pdu.meta().event_type != crate::mls::events::FANOUT {
                continue;
            }
            let Some(current) = view.as_ref() else { break };
            let content = crate::mls::events::FanoutContent::parse(pdu.content()).map_err(MlsCheckError::from)?;
            let step = current.check_fanout(&content, room_id, pdu.event_id())?;
            apply_step(&mut view, step, pdu.event_id())?;
        }
        let view = view.ok_or(MlsCheckError::NotEncrypted)?;
        // Records hold no membership of the room's users: any local client in the group.
        let members = self.load_members(room_id, |_| true)?;
        Ok(RoomMls { view, members, accepted: BTreeMap::new() })
    }

    /// This server's clients in the room's group, among users `wanted` admits.
    fn load_members(&self, room_id: &str, wanted: impl Fn(&str) -> bool) -> Result<BTreeMap<String, Member>, HubError> {
        let mut members = BTreeMap::new();
        for (user_id, device) in self.directories.local_devices(wanted)? {
            let provider =
                Member::provider_for(&self.store, device.credential.user_id(), device.credential.device_id());
            if let Some(member) = Member::load(provider, device, room_id).map_err(client_error)? {
                members.insert(user_id, member);
            }
        }
        Ok(members)
    }
}
