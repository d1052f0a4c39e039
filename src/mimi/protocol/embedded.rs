//! MLS objects inside protocol bodies: carried inline, without a length of their own, so their
//! end is found by parsing them (openmls). The bytes are kept exactly as received; what they
//! mean is checked where they are used (a key package on claim, a message by the group).

use openmls::messages::Welcome;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{Capabilities, Credential, KeyPackageIn, MlsMessageIn, RequiredCapabilitiesExtension};

use super::tls::{Reader, WireError};

/// The kinds of embedded object.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    MlsMessage,
    KeyPackage,
    Credential,
    Capabilities,
    RequiredCapabilities,
    Welcome,
    GroupInfo,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::MlsMessage => "an MLSMessage",
            Self::KeyPackage => "a KeyPackage",
            Self::Credential => "a Credential",
            Self::Capabilities => "Capabilities",
            Self::RequiredCapabilities => "RequiredCapabilities",
            Self::Welcome => "a Welcome",
            Self::GroupInfo => "a GroupInfo",
        }
    }

    /// How many bytes at the start of `bytes` the object takes, if it parses.
    fn length(self, bytes: &[u8]) -> Option<usize> {
        let mut rest = bytes;
        // A parser panicking on hostile bytes must not take the listener down.
        let parsed = std::panic::catch_unwind(move || {
            let ok = match self {
                Self::MlsMessage => MlsMessageIn::tls_deserialize(&mut rest).is_ok(),
                Self::KeyPackage => KeyPackageIn::tls_deserialize(&mut rest).is_ok(),
                Self::Credential => Credential::tls_deserialize(&mut rest).is_ok(),
                Self::Capabilities => Capabilities::tls_deserialize(&mut rest).is_ok(),
                Self::RequiredCapabilities => RequiredCapabilitiesExtension::tls_deserialize(&mut rest).is_ok(),
                Self::Welcome => Welcome::tls_deserialize(&mut rest).is_ok(),
                Self::GroupInfo => VerifiableGroupInfo::tls_deserialize(&mut rest).is_ok(),
            };
            ok.then_some(rest.len())
        });
        parsed.ok().flatten().map(|left| bytes.len() - left)
    }
}

/// Reads one embedded object, returning its bytes.
pub(super) fn read(r: &mut Reader<'_>, kind: Kind, field: &str) -> Result<Vec<u8>, WireError> {
    let rest = r.rest();
    let Some(len) = kind.length(rest) else {
        return Err(r.error(field, format!("expected {}", kind.name())));
    };
    let bytes = rest[..len].to_vec();
    r.advance(len);
    Ok(bytes)
}

/// What an MLSMessage carries, as far as the protocol's `select`s care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carries {
    /// An application message (PrivateMessage).
    Application,
    /// A proposal (PublicMessage or PrivateMessage).
    Proposal,
    /// A commit.
    Commit,
    /// A Welcome.
    Welcome,
    /// A GroupInfo or KeyPackage: nothing the protocol frames.
    Other,
}

/// Reads an MLSMessage's header (RFC 9420 §6): `version`, `wire_format`, then for a
/// PublicMessage `group_id<V>`, `epoch`, `sender`, `authenticated_data<V>`, `content_type`, and
/// for a PrivateMessage `group_id<V>`, `epoch`, `content_type`. `message` already parsed whole.
pub(super) fn carries(message: &[u8]) -> Carries {
    let mut r = Reader::new(message);
    let header = |r: &mut Reader<'_>| -> Result<Carries, WireError> {
        r.u16("version")?;
        let wire_format = r.u16("wire_format")?;
        let content_type = match wire_format {
            1 => {
                r.opaque("group_id")?;
                r.u64("epoch")?;
                // member(1) and external(2) name an index; new members do not.
                if matches!(r.u8("sender_type")?, 1 | 2) {
                    r.u32("sender")?;
                }
                r.opaque("authenticated_data")?;
                r.u8("content_type")?
            }
            2 => {
                r.opaque("group_id")?;
                r.u64("epoch")?;
                r.u8("content_type")?
            }
            3 => return Ok(Carries::Welcome),
            _ => return Ok(Carries::Other),
        };
        Ok(match content_type {
            1 => Carries::Application,
            2 => Carries::Proposal,
            3 => Carries::Commit,
            _ => Carries::Other,
        })
    };
    header(&mut r).unwrap_or(Carries::Other)
}
