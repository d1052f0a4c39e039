//! How a ratchet tree and a GroupInfo travel beside a commit or a Welcome
//! (draft-mahy-mls-ratchet-tree-options-03, which -06 imports): `RatchetTreeOption`,
//! `PartialGroupInfo`, and -06's own `GroupInfoOption`.

use super::common::code;
use super::embedded::{self, Kind};
use super::tls::{Reader, Wire, WireError, Writer};

/// `RatchetTreeOption`, by `RatchetTreeRepresentation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatchetTreeOption {
    /// `full(1)`: `Node ratchet_tree<V>`, the vector's contents as encoded.
    Full(Vec<u8>),
    /// `httpsUri(2)`: where to fetch it, and its signature.
    HttpsUri {
        /// `opaque ratchet_tree_url<V>`.
        url: String,
        /// `opaque tree_signature<V>`.
        signature: Vec<u8>,
    },
    /// `outOfBand(3)`: `opaque tree_signature<V>`.
    OutOfBand(Vec<u8>),
    /// `distributionService(4)`: the hub rebuilds it from the handshakes.
    DistributionService,
}

impl Wire for RatchetTreeOption {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match code(r, "ratchetTreeOption.representation", |c| (1..=4).contains(&c).then_some(c))? {
            1 => Self::Full(r.opaque("ratchetTreeOption.ratchet_tree")?.to_vec()),
            2 => Self::HttpsUri {
                url: r.text("ratchetTreeOption.ratchet_tree_url")?,
                signature: r.opaque("ratchetTreeOption.tree_signature")?.to_vec(),
            },
            3 => Self::OutOfBand(r.opaque("ratchetTreeOption.tree_signature")?.to_vec()),
            _ => Self::DistributionService,
        })
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Self::Full(tree) => {
                w.u8(1);
                w.opaque(tree);
            }
            Self::HttpsUri { url, signature } => {
                w.u8(2);
                w.opaque(url.as_bytes());
                w.opaque(signature);
            }
            Self::OutOfBand(signature) => {
                w.u8(3);
                w.opaque(signature);
            }
            Self::DistributionService => w.u8(4),
        }
    }
}

/// `PartialGroupInfo`: what the hub cannot rebuild of a GroupInfo itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialGroupInfo {
    /// `RatchetTreePresence ratchet_tree_presence` (0 none, 1 present, 2 removed, 3 added).
    pub ratchet_tree_presence: u8,
    /// `Extension group_info_extensions<V>`, the vector's contents as encoded.
    pub extensions: Vec<u8>,
    /// `opaque signature<V>`.
    pub signature: Vec<u8>,
}

/// `GroupInfoOption`, by `GroupInfoRepresentation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupInfoOption {
    /// `full(1)`: a GroupInfo (without its tree), as encoded.
    Full(Vec<u8>),
    /// `partial(2)`.
    Partial(PartialGroupInfo),
}

impl Wire for GroupInfoOption {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match code(r, "groupInfoOption.representation", |c| (1..=2).contains(&c).then_some(c))? {
            1 => Self::Full(embedded::read(r, Kind::GroupInfo, "groupInfoOption.groupInfo")?),
            _ => Self::Partial(PartialGroupInfo {
                ratchet_tree_presence: code(r, "partialGroupInfo.ratchet_tree_presence", |c| (c <= 3).then_some(c))?,
                extensions: r.opaque("partialGroupInfo.group_info_extensions")?.to_vec(),
                signature: r.opaque("partialGroupInfo.signature")?.to_vec(),
            }),
        })
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Self::Full(group_info) => {
                w.u8(1);
                w.raw(group_info);
            }
            Self::Partial(p) => {
                w.u8(2);
                w.u8(p.ratchet_tree_presence);
                w.opaque(&p.extensions);
                w.opaque(&p.signature);
            }
        }
    }
}
