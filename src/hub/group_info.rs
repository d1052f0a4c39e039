//! `groupInfo` as a room's hub: the current group, for a new client of a participant to join
//! by external commit (draft-ietf-mimi-protocol-06 §5.5).
//!
//! The requester proves possession of the key its credential names (`GroupInfoRequestTBS`,
//! Ed25519, strict); the credential's user must be a participant of the room (joined) and a
//! user of the provider asking. This hub issues no joining codes: a request with one is not
//! authorized. The answer is encrypted to the requester's HPKE key (label `"GroupInfo and
//! ratchet_tree encryption"`, context the room URI) and signed by the hub as the group's external
//! sender. An unknown room and a room not hubbed here are both `noSuchRoom`.
//!
//! The GroupInfo is the one the room's latest commit (or its create event) declared, signed by
//! that committer with the ratchet tree in its extension: the hub, not a member, cannot sign
//! one without it, so it goes as it is, and the tree once more as `full` beside it. The hub
//! holds no proposals: `pending_proposals` is empty.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};

use crate::event::meta::server_of;
use crate::mimi::protocol::common::sign_content;
use crate::mimi::protocol::group_info::{
    ENCRYPTION_LABEL, GroupInfoRefusal, GroupInfoSuccess, REQUEST_LABEL, RESPONSE_LABEL,
};
use crate::mimi::protocol::{GroupInfoRatchetTree, GroupInfoRequest, GroupInfoResponse, RatchetTreeOption, Wire as _};
use crate::mls::events::RoomEncryption;
use crate::mls::identity::DeviceCredential;
use crate::mls::public::MlsCheckError;
use crate::store::{RoomSeq, StoreError};

use super::{Hub, HubError, RoomHead, lock, trusted_pdu};

/// The `MLSMessage` header (version mls10, wire format `group_info`) of a `GroupInfo`.
pub const GROUP_INFO_MESSAGE: [u8; 4] = [0, 1, 0, 4];

impl Hub {
    /// Answers `provider`'s `groupInfo` request for `room_id` (see the module documentation).
    pub fn group_info_for(
        &self,
        room_id: &str,
        provider: &str,
        request: &GroupInfoRequest,
    ) -> Result<GroupInfoResponse, HubError> {
        let room_uri = crate::translate::uri::room_uri_of(room_id).unwrap_or_else(|_| room_id.to_owned());
        let refuse = |refusal| Ok(GroupInfoResponse { room_id: room_uri.clone(), result: Err(refusal) });
        let head = match self.head(room_id) {
            Ok(head) => head,
            Err(HubError::UnknownRoom(_)) => return refuse(GroupInfoRefusal::NoSuchRoom),
            Err(error) => return Err(error),
        };
        let head = lock(&head);
        if self.not_hubbed_here(&head).is_some() || head.mls.is_none() {
            return refuse(GroupInfoRefusal::NoSuchRoom);
        }
        if let Err(why) = authorized(&head, provider, request) {
            tracing::info!(room_id, provider, why, "groupInfo not authorized");
            return refuse(GroupInfoRefusal::NotAuthorized);
        }
        let group_info = self.current_group_info(&head)?;
        drop(head);
        let tree = crate::mls::public::ratchet_tree(&group_info)
            .ok_or_else(|| MlsCheckError::Malformed("the room's GroupInfo has no ratchet tree".into()))?;
        let plaintext = GroupInfoRatchetTree {
            group_info: group_info.get(GROUP_INFO_MESSAGE.len()..).unwrap_or_default().to_vec(),
            ratchet_tree: RatchetTreeOption::Full(tree),
            pending_proposals: Vec::new(),
        };
        let (kem_output, ciphertext) = crate::mls::seal::encrypt_with_label(
            &request.group_info_public_key,
            ENCRYPTION_LABEL,
            room_uri.as_bytes(),
            &plaintext.encode(),
        )
        .map_err(|e| HubError::MlsClient(e.to_string()))?;
        let key = self.key.verifying_key().to_bytes();
        let hub_credential = crate::mls::hub_credential(&self.server_name)
            .tls_serialize_detached()
            .map_err(|e| HubError::MlsClient(e.to_string()))?;
        let success = GroupInfoSuccess {
            cipher_suite: crate::mls::CIPHERSUITE as u16,
            hub_signature_key: key.to_vec(),
            hub_credential,
            kem_output,
            ciphertext,
            signature: Vec::new(),
        };
        let mut response = GroupInfoResponse { room_id: room_uri, result: Ok(success) };
        let to_be_signed = response.to_be_signed().unwrap_or_default();
        if let Ok(success) = response.result.as_mut() {
            success.signature = self.key.sign_raw(&sign_content(RESPONSE_LABEL, &to_be_signed)).to_vec();
        }
        Ok(response)
    }

    /// The GroupInfo (TLS `MlsMessage`) the room's latest commit, or its create event, declared.
    fn current_group_info(&self, head: &RoomHead) -> Result<Vec<u8>, HubError> {
        let (short, version) = (head.short, head.chain.version());
        if let Some((group_info, _)) = self.latest_declared(short, self.store.latest_commit(short)?, version)? {
            return Ok(group_info);
        }
        let create = self.store.pdu_at(RoomSeq { room: short, seq: 0 })?;
        let create =
            trusted_pdu(&create.ok_or_else(|| StoreError::corrupt("a room without its create event"))?, Some(version))?;
        let encryption = RoomEncryption::from_create(create.content()).map_err(MlsCheckError::from)?;
        Ok(encryption.ok_or(MlsCheckError::NotEncrypted)?.group_info)
    }
}

/// Why `provider`'s request is not authorized, if it is not.
fn authorized(head: &RoomHead, provider: &str, request: &GroupInfoRequest) -> Result<(), String> {
    if request.cipher_suite != crate::mls::CIPHERSUITE as u16 {
        return Err(format!("ciphersuite {:#06x} is not the room's", request.cipher_suite));
    }
    if !request.joining_code.is_empty() {
        return Err("this hub issues no joining codes".into());
    }
    if !crate::mimi::protocol::common::verify_with_label(
        &request.signature_key,
        REQUEST_LABEL,
        &request.to_be_signed(),
        &request.signature,
    ) {
        return Err("the request's signature does not verify with its key".into());
    }
    let credential = openmls::prelude::Credential::tls_deserialize_exact(&request.credential)
        .map_err(|e| format!("requestingCredential: {e}"))?;
    let device = DeviceCredential::from_leaf(&credential, &request.signature_key).map_err(|e| e.to_string())?;
    let user = device.user_id();
    if server_of(user) != provider {
        return Err(format!("{provider} does not speak for {user}"));
    }
    match head.chain.state().membership(user) {
        Some("join") => Ok(()),
        other => Err(format!("{user} is not a participant (membership {other:?})")),
    }
}
