//! How a client enters a room's group: from a Welcome (the usual way: a member added it), or by
//! external commit, as a new client of a participant does from the GroupInfo the room's hub gave
//! (`groupInfo`): the signed request with a fresh HPKE key, the answer opened and checked (signed
//! by the group's external sender), the commit.

use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    CredentialWithKey, LeafNodeParameters, MlsGroup, MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider as _,
    RatchetTreeIn, StagedWelcome,
};
use openmls_traits::signatures::Signer;

use super::{GroupError, RoomGroup, StagedOut, openmls_error, staged_out};
use crate::mimi::protocol::common::{sign_content, verify_with_label};
use crate::mimi::protocol::group_info::{ENCRYPTION_LABEL, REQUEST_LABEL, RESPONSE_LABEL};
use crate::mimi::protocol::{GroupInfoRatchetTree, GroupInfoRequest, GroupInfoResponse, Wire as _};
use crate::mls::{CIPHERSUITE, MlsProvider, group_join_config, key_package, seal};

/// A `groupInfo` request for `credential`'s client, signed with `signer`, and the HPKE private
/// key its answer is encrypted to (keep it only until the answer is opened).
pub fn group_info_request(
    signer: &impl Signer,
    credential: &CredentialWithKey,
) -> Result<(GroupInfoRequest, Vec<u8>), GroupError> {
    let (private, public) = seal::key_pair().map_err(openmls_error)?;
    let mut request = GroupInfoRequest {
        cipher_suite: CIPHERSUITE as u16,
        signature_key: credential.signature_key.as_slice().to_vec(),
        credential: credential.credential.tls_serialize_detached().map_err(openmls_error)?,
        group_info_public_key: public,
        joining_code: Vec::new(),
        signature: Vec::new(),
    };
    request.signature = signer
        .sign(&sign_content(REQUEST_LABEL, &request.to_be_signed()))
        .map_err(|e| GroupError::Openmls(format!("signing: {e:?}")))?;
    Ok((request, private))
}

/// What a `groupInfo` answer holds, opened with `private_key`. Its signature must verify with
/// the key it names, and that key (with the credential beside it) must be the group's external
/// sender, its hub.
pub fn open_group_info(response: &GroupInfoResponse, private_key: &[u8]) -> Result<GroupInfoRatchetTree, GroupError> {
    let success = response.result.as_ref().map_err(|refusal| GroupError::Openmls(format!("groupInfo: {refusal:?}")))?;
    let signed = response.to_be_signed().unwrap_or_default();
    if !verify_with_label(&success.hub_signature_key, RESPONSE_LABEL, &signed, &success.signature) {
        return Err(GroupError::Malformed("the groupInfo answer's signature does not verify".into()));
    }
    let plaintext = seal::decrypt_with_label(
        private_key,
        ENCRYPTION_LABEL,
        response.room_id.as_bytes(),
        &success.kem_output,
        &success.ciphertext,
    )
    .map_err(openmls_error)?;
    let opened = GroupInfoRatchetTree::decode(&plaintext).map_err(|e| GroupError::Malformed(e.to_string()))?;
    let info = VerifiableGroupInfo::tls_deserialize_exact(&opened.group_info)
        .map_err(|e| GroupError::Malformed(e.to_string()))?;
    let mut hub = crate::mimi::protocol::tls::Writer::default();
    hub.opaque(&success.hub_signature_key);
    hub.raw(&success.hub_credential);
    let senders = info.group_context().extensions().external_senders();
    let named = senders.is_some_and(|s| s.iter().any(|s| s.tls_serialize_detached().is_ok_and(|b| b == hub.out)));
    if !named {
        return Err(GroupError::Malformed("the groupInfo answer is not signed by the group's hub".into()));
    }
    Ok(opened)
}

impl RoomGroup {
    /// Joins a group from a Welcome (TLS `MlsMessage`); the key package it names must be in
    /// `provider`'s storage. A group this client was removed from (a user who left and is
    /// invited again) is replaced; one it is still in is not.
    pub fn join(provider: &MlsProvider, welcome: &[u8]) -> Result<Self, GroupError> {
        let message = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|e| GroupError::Malformed(e.to_string()))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(GroupError::Malformed("not a Welcome".into()));
        };
        let mut join =
            StagedWelcome::build_from_welcome(provider, &group_join_config(), welcome).map_err(openmls_error)?;
        let group_id = join.processed_welcome().unverified_group_info().group_id().clone();
        if MlsGroup::load(provider.storage(), &group_id)?.is_some_and(|old| !old.is_active()) {
            join = join.replace_old_group();
        }
        let group = join.build().map_err(openmls_error)?.into_group(provider).map_err(openmls_error)?;
        Ok(Self { group })
    }

    /// The `KeyPackageRef`s a Welcome (TLS `MlsMessage`) is for: whose packages it uses.
    pub fn welcome_targets(welcome: &[u8]) -> Result<Vec<Vec<u8>>, GroupError> {
        let message = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|e| GroupError::Malformed(e.to_string()))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(GroupError::Malformed("not a Welcome".into()));
        };
        Ok(welcome.secrets().iter().map(|s| s.new_member().as_slice().to_vec()).collect())
    }

    /// Joins the group `group_info` (a TLS `GroupInfo`, with the ratchet tree in its extension
    /// or given as `tree`, the encoded nodes) describes, by an external commit of
    /// `credential`'s client: the group at the commit's epoch, and the commit for the hub.
    /// openmls merges an external commit at once: if the hub refuses it, drop the group
    /// (discard the provider's pending writes).
    pub fn join_external(
        provider: &MlsProvider,
        signer: &impl Signer,
        credential: CredentialWithKey,
        group_info: &[u8],
        tree: Option<&[u8]>,
    ) -> Result<(Self, StagedOut), GroupError> {
        let info =
            VerifiableGroupInfo::tls_deserialize_exact(group_info).map_err(|e| GroupError::Malformed(e.to_string()))?;
        let mut builder = MlsGroup::external_commit_builder().with_config(group_join_config());
        if let Some(tree) = tree {
            let mut vector = crate::mimi::protocol::tls::Writer::default();
            vector.opaque(tree);
            let tree =
                RatchetTreeIn::tls_deserialize_exact(&vector.out).map_err(|e| GroupError::Malformed(e.to_string()))?;
            builder = builder.with_ratchet_tree(tree);
        }
        let leaf = LeafNodeParameters::builder().with_capabilities(key_package::capabilities()).build();
        let (group, bundle) = builder
            .build_group(provider, info, credential)
            .map_err(openmls_error)?
            .leaf_node_parameters(leaf)
            .load_psks(provider.storage())
            .map_err(openmls_error)?
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .map_err(openmls_error)?
            .finalize(provider)
            .map_err(openmls_error)?;
        // An external commit adds nobody: no Welcome.
        let (commit, _, group_info) = bundle.into_contents();
        let staged = staged_out(&commit, None, group_info)?;
        Ok((Self::from_group(group), staged))
    }
}
