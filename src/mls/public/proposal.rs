//! A proposal a follower provider sends its hub with `update`, as the public view reads it.
//!
//! A client cannot commit its own removal, so a user of another provider who leaves sends a
//! Remove proposal for their own client; the hub checks it here (a `PublicMessage` of the
//! current epoch that openmls validates: the proposer's signature and membership tag) and has a
//! client of its own commit the removal. Nothing else is taken as a standalone proposal: the
//! hub holds no proposals for a later committer.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    ContentType, MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, Proposal, ProtocolMessage, Sender,
};

use super::{MlsCheckError, PublicView, malformed};
use crate::mls::identity::DeviceCredential;

impl PublicView {
    /// The device a proposal (TLS `MlsMessage`) asks to remove, when its proposer is that
    /// device or another device of the same user.
    pub fn departing(&self, proposal: &[u8]) -> Result<DeviceCredential, MlsCheckError> {
        let message = MlsMessageIn::tls_deserialize_exact(proposal).map_err(malformed)?;
        let MlsMessageBodyIn::PublicMessage(public) = message.extract() else {
            return Err(MlsCheckError::UnsupportedProposal("non-public".into()));
        };
        let message = ProtocolMessage::from(public);
        if message.content_type() != ContentType::Proposal {
            return Err(MlsCheckError::UnsupportedProposal("non-proposal".into()));
        }
        self.check_epoch(&message)?;
        let processed =
            self.group.process_message(&self.crypto, message).map_err(|e| MlsCheckError::Rejected(e.to_string()))?;
        let Sender::Member(proposer) = *processed.sender() else {
            return Err(MlsCheckError::ExternalCommit);
        };
        let proposer = self.leaf_owner(proposer)?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            return Err(MlsCheckError::UnsupportedProposal("non-proposal".into()));
        };
        let Proposal::Remove(remove) = queued.proposal() else {
            return Err(MlsCheckError::UnsupportedProposal(format!("{:?}", queued.proposal().proposal_type())));
        };
        let departing = self.leaf_owner(remove.removed())?;
        if departing.user_id() != proposer.user_id() {
            return Err(MlsCheckError::RemovalNotAllowed {
                remover: proposer.user_id().to_owned(),
                removed: departing.user_id().to_owned(),
            });
        }
        Ok(departing)
    }
}
