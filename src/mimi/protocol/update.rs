//! `update/{roomId}` (follower → hub): a commit or proposals changing the room, and the hub's
//! answer. The request is the `HandshakeBundle` alone (`UpdateRequest` adds no field for MLS).

use super::common::code;
use super::embedded::{self, Carries, Kind};
use super::tls::{Reader, Wire, WireError, Writer};
use super::tree::{GroupInfoOption, RatchetTreeOption};

/// `HandshakeBundle`, by what `proposalOrCommit` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeBundle {
    /// A commit, with what the hub needs to route and keep the group's state.
    Commit {
        /// `MLSMessage proposalOrCommit`, as encoded.
        commit: Vec<u8>,
        /// `optional<Welcome> welcome`: a Welcome as encoded (one peer wraps it in an
        /// MLSMessage; both are accepted and kept as received).
        welcome: Option<Vec<u8>>,
        /// `GroupInfoOption groupInfoOption`.
        group_info: GroupInfoOption,
        /// `RatchetTreeOption ratchetTreeOption`.
        ratchet_tree: RatchetTreeOption,
    },
    /// Proposals: the first, then `MLSMessage moreProposals<V>`.
    Proposals {
        /// `MLSMessage proposalOrCommit`, as encoded.
        proposal: Vec<u8>,
        /// `moreProposals`, each as encoded.
        more: Vec<Vec<u8>>,
    },
}

/// The MLSMessage header of a Welcome (version mls10, wire format welcome).
pub const WELCOME_MESSAGE: [u8; 4] = [0, 1, 0, 3];

impl Wire for HandshakeBundle {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let at = r.position();
        let message = embedded::read(r, Kind::MlsMessage, "proposalOrCommit")?;
        match embedded::carries(&message) {
            Carries::Commit => {
                let welcome = if r.present("welcome")? {
                    let kind = if r.rest().starts_with(&WELCOME_MESSAGE) { Kind::MlsMessage } else { Kind::Welcome };
                    Some(embedded::read(r, kind, "welcome")?)
                } else {
                    None
                };
                let group_info = GroupInfoOption::read(r)?;
                let ratchet_tree = RatchetTreeOption::read(r)?;
                Ok(Self::Commit { commit: message, welcome, group_info, ratchet_tree })
            }
            Carries::Proposal => {
                let more = r.list("moreProposals", |r, name| embedded::read(r, Kind::MlsMessage, name))?;
                Ok(Self::Proposals { proposal: message, more })
            }
            _ => Err(WireError {
                offset: at,
                field: "proposalOrCommit".into(),
                reason: "neither a proposal nor a commit".into(),
            }),
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Self::Commit { commit, welcome, group_info, ratchet_tree } => {
                w.raw(commit);
                w.optional(welcome.as_ref(), |w, welcome| w.raw(welcome));
                group_info.write(w);
                ratchet_tree.write(w);
            }
            Self::Proposals { proposal, more } => {
                w.raw(proposal);
                w.vector(|w| {
                    for p in more {
                        w.raw(p);
                    }
                });
            }
        }
    }
}

/// `UpdateRoomResponse`, by `UpdateResponseCode`; each carries `string errorDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRoomResponse {
    /// The code and what comes with it.
    pub outcome: UpdateOutcome,
    /// `string errorDescription` (UTF-8; empty on success).
    pub error_description: String,
}

/// What an update came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// `success(0)`: `uint64 accepted_timestamp` (ms).
    Success(u64),
    /// `wrongEpoch(1)`: `uint64 currentEpoch`.
    WrongEpoch(u64),
    /// `notAllowed(2)`.
    NotAllowed,
    /// `invalidProposal(3)`: `ProposalRef invalidProposals<V>`.
    InvalidProposal(Vec<Vec<u8>>),
}

impl Wire for UpdateRoomResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let response_code = code(r, "responseCode", |c| (c <= 3).then_some(c))?;
        let error_description = r.text("errorDescription")?;
        let outcome = match response_code {
            0 => UpdateOutcome::Success(r.u64("accepted_timestamp")?),
            1 => UpdateOutcome::WrongEpoch(r.u64("currentEpoch")?),
            2 => UpdateOutcome::NotAllowed,
            _ => UpdateOutcome::InvalidProposal(r.list("invalidProposals", |r, name| Ok(r.opaque(name)?.to_vec()))?),
        };
        Ok(Self { outcome, error_description })
    }

    fn write(&self, w: &mut Writer) {
        let response_code = match &self.outcome {
            UpdateOutcome::Success(_) => 0,
            UpdateOutcome::WrongEpoch(_) => 1,
            UpdateOutcome::NotAllowed => 2,
            UpdateOutcome::InvalidProposal(_) => 3,
        };
        w.u8(response_code);
        w.opaque(self.error_description.as_bytes());
        match &self.outcome {
            UpdateOutcome::Success(t) | UpdateOutcome::WrongEpoch(t) => w.u64(*t),
            UpdateOutcome::NotAllowed => {}
            UpdateOutcome::InvalidProposal(refs) => w.vector(|w| {
                for reference in refs {
                    w.opaque(reference);
                }
            }),
        }
    }
}
