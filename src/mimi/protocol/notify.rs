//! `notify/{roomId}` (hub → follower): the room's accepted messages, in order, each with the
//! hub's timestamp; one request may carry several, concatenated. Answered 201 without a body,
//! also for a byte-identical repeat.

use super::embedded::{self, Carries, Kind};
use super::submit::Frank;
use super::tls::{Reader, Wire, WireError, Writer};
use super::tree::RatchetTreeOption;

/// `FanoutMessage`: `uint64 timestamp`, the MLSMessage, then what its kind brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutMessage {
    /// `uint64 timestamp`: the hub's acceptance time (ms).
    pub timestamp: u64,
    /// `MLSMessage message`, as encoded.
    pub message: Vec<u8>,
    /// What follows, by what the message carries.
    pub extra: FanoutExtra,
}

/// The `select (message.wire_format)` part of a `FanoutMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanoutExtra {
    /// An application message: `optional Frank frank`.
    Application(Option<Frank>),
    /// A Welcome: `RatchetTreeOption ratchetTreeOption`.
    Welcome(RatchetTreeOption),
    /// A proposal: `MLSMessage moreProposals<V>`.
    Proposal(Vec<Vec<u8>>),
    /// A commit: `MLSMessage externalProposals<V>` (the hub's replacements, stapled to an
    /// external commit).
    Commit(Vec<Vec<u8>>),
}

impl Wire for FanoutMessage {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let timestamp = r.u64("timestamp")?;
        let at = r.position();
        let message = embedded::read(r, Kind::MlsMessage, "message")?;
        let messages =
            |r: &mut Reader<'_>, field: &str| r.list(field, |r, name| embedded::read(r, Kind::MlsMessage, name));
        let extra = match embedded::carries(&message) {
            Carries::Application => {
                FanoutExtra::Application(if r.present("frank")? { Some(Frank::read(r)?) } else { None })
            }
            Carries::Welcome => FanoutExtra::Welcome(RatchetTreeOption::read(r)?),
            Carries::Proposal => FanoutExtra::Proposal(messages(r, "moreProposals")?),
            Carries::Commit => FanoutExtra::Commit(messages(r, "externalProposals")?),
            Carries::Other => {
                return Err(WireError {
                    offset: at,
                    field: "message".into(),
                    reason: "not an application message, proposal, commit or Welcome".into(),
                });
            }
        };
        Ok(Self { timestamp, message, extra })
    }

    fn write(&self, w: &mut Writer) {
        w.u64(self.timestamp);
        w.raw(&self.message);
        let messages = |w: &mut Writer, list: &[Vec<u8>]| {
            w.vector(|w| {
                for m in list {
                    w.raw(m);
                }
            });
        };
        match &self.extra {
            FanoutExtra::Application(frank) => w.optional(frank.as_ref(), |w, f| f.write(w)),
            FanoutExtra::Welcome(tree) => tree.write(w),
            FanoutExtra::Proposal(list) | FanoutExtra::Commit(list) => messages(w, list),
        }
    }
}

impl FanoutMessage {
    /// Decodes a notify body: one or more messages, back to back.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Self>, WireError> {
        let mut r = Reader::new(bytes);
        let mut out = vec![Self::read(&mut r)?];
        while !r.rest().is_empty() {
            out.push(Self::read(&mut r)?);
        }
        Ok(out)
    }

    /// Encodes messages as one notify body.
    pub fn encode_all(messages: &[Self]) -> Vec<u8> {
        let mut w = Writer::default();
        for m in messages {
            m.write(&mut w);
        }
        w.out
    }
}
