//! MIMI franking (draft-ietf-mimi-protocol-06 §"Message Franking"): the hub stamps each accepted
//! message without reading it, so that a receiver can later prove to the hub (an abuse report)
//! that this sender sent this content in this room at that time.
//!
//! The sender commits to its content with `franking_tag = HMAC-SHA256(salt, application_data)`
//! in the message's Safe AAD (`frank_aad`); the hub binds the tag to the sender, the room and its
//! acceptance time with an HMAC under a key only it holds (`server_frank`) and signs that binding
//! with the key the room's `GroupContext` names (`franking_agent`); a receiver checks the signature
//! and recomputes the tag from the decrypted content. Pure functions: no MLS, no store.

use hmac::{KeyInit as _, Mac as _};

use super::protocol::Frank;
use super::protocol::common::{sign_content, verify_with_label};
use super::protocol::tls::{Reader, Wire, WireError, Writer};

/// Safe AAD component carrying the sender's franking tag.
pub const FRANK_AAD: u16 = 0x0020;
/// `GroupContext` component naming the hub's franking key.
pub const FRANKING_AGENT: u16 = 0x0021;
/// The `SignWithLabel` label of the hub's signature.
pub const LABEL: &str = "FrankingIntegrityTBS";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The sender's commitment to its message: `HMAC-SHA256(salt, application_data)`, where
/// `application_data` is the framed content as it is encrypted.
pub fn franking_tag(salt: &[u8; 16], application_data: &[u8]) -> [u8; 32] {
    hmac(salt, &[application_data])
}

/// `FrankingAgentData { SignaturePublicKey franking_signature_key; Credential credential; }`,
/// with a basic credential (type 1) naming the hub (`mimi://<domain>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrankingAgent {
    /// The hub's signature public key (Ed25519, the room's ciphersuite's scheme).
    pub key: Vec<u8>,
    /// The basic credential's identity.
    pub identity: Vec<u8>,
}

/// The MLS credential type `basic`.
const BASIC: u16 = 1;

impl Wire for FrankingAgent {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let key = r.opaque("franking_signature_key")?.to_vec();
        let at = r.position();
        if r.u16("credential.credential_type")? != BASIC {
            return Err(WireError {
                offset: at,
                field: "credential.credential_type".into(),
                reason: "only basic credentials (1) name a franking agent here".into(),
            });
        }
        Ok(Self { key, identity: r.opaque("credential.identity")?.to_vec() })
    }

    fn write(&self, w: &mut Writer) {
        w.opaque(&self.key);
        w.u16(BASIC);
        w.opaque(&self.identity);
    }
}

/// `ServerFrankingContext`: who sent what where, when the hub accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context<'a> {
    /// The sender's user URI.
    pub sender_uri: &'a str,
    /// The room's URI.
    pub room_uri: &'a str,
    /// The hub's acceptance time (ms).
    pub accepted_timestamp: u64,
}

impl Context<'_> {
    fn write(&self, w: &mut Writer) {
        w.opaque(self.sender_uri.as_bytes());
        w.opaque(self.room_uri.as_bytes());
        w.u64(self.accepted_timestamp);
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.out
    }
}

/// `FrankingIntegrityTBS { server_frank; franking_signature_ciphersuite; context; }`.
fn integrity_tbs(server_frank: &[u8; 32], ciphersuite: u16, context: &Context<'_>) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(server_frank);
    w.u16(ciphersuite);
    context.write(&mut w);
    w.out
}

/// The hub's frank of a message whose sender committed to `tag`: `hub_key` is the hub's secret,
/// `sign` its franking agent's Ed25519 signature. Deterministic, so a resubmission is answered
/// with the same frank.
pub fn stamp(
    hub_key: &[u8; 32],
    sign: impl Fn(&[u8]) -> [u8; 64],
    tag: &[u8; 32],
    ciphersuite: u16,
    context: &Context<'_>,
) -> Frank {
    let server_frank = hmac(hub_key, &[tag, &context.encode()]);
    let signature = sign(&sign_content(LABEL, &integrity_tbs(&server_frank, ciphersuite, context))).to_vec();
    Frank { server_frank, ciphersuite, signature }
}

/// Why a frank does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrankError {
    /// Signed for another ciphersuite than the room's.
    #[error("frank for ciphersuite {found:#06x}, the room's is {room:#06x}")]
    Ciphersuite {
        /// The frank's.
        found: u16,
        /// The room's.
        room: u16,
    },
    /// The signature does not verify under the franking agent's key.
    #[error("the frank's signature does not verify under the room's franking agent")]
    Signature,
    /// The content does not carry what the frank binds (sender URI, room URI, salt and tag).
    #[error("the content does not match its frank: {0}")]
    Content(&'static str),
}

/// Checks a frank's signature against the room's franking agent for `context`.
pub fn verify(frank: &Frank, agent: &FrankingAgent, ciphersuite: u16, context: &Context<'_>) -> Result<(), FrankError> {
    if frank.ciphersuite != ciphersuite {
        return Err(FrankError::Ciphersuite { found: frank.ciphersuite, room: ciphersuite });
    }
    let tbs = integrity_tbs(&frank.server_frank, ciphersuite, context);
    if !verify_with_label(&agent.key, LABEL, &tbs, &frank.signature) {
        return Err(FrankError::Signature);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> crate::event::ServerKey {
        crate::event::ServerKey::from_seed("k", [7; 32]).unwrap()
    }

    #[test]
    fn a_stamp_verifies_for_its_context_only() {
        let key = key();
        let agent = FrankingAgent { key: key.verifying_key().to_bytes().to_vec(), identity: b"mimi://hub".to_vec() };
        assert_eq!(FrankingAgent::decode(&agent.encode()).unwrap(), agent);
        let tag = franking_tag(&[1; 16], b"framed content");
        let context = Context { sender_uri: "mimi://a/u/alice", room_uri: "mimi://hub/r/x", accepted_timestamp: 5 };
        let hub_key = key.derive_secret("franking");
        let frank = stamp(&hub_key, |m| key.sign_raw(m), &tag, 1, &context);
        assert_eq!(frank, stamp(&hub_key, |m| key.sign_raw(m), &tag, 1, &context), "deterministic");
        verify(&frank, &agent, 1, &context).unwrap();
        let later = Context { accepted_timestamp: 6, ..context };
        assert_eq!(verify(&frank, &agent, 1, &later), Err(FrankError::Signature));
        assert_eq!(verify(&frank, &agent, 2, &context), Err(FrankError::Ciphersuite { found: 1, room: 2 }));
        let other_tag = franking_tag(&[2; 16], b"framed content");
        assert_ne!(stamp(&hub_key, |m| key.sign_raw(m), &other_tag, 1, &context).server_frank, frank.server_frank);
    }

    #[test]
    fn the_tag_is_hmac_sha256_keyed_with_the_salt() {
        // Computed independently (Python's hmac module, SHA-256, key 0x0b × 16).
        let expected = "492ce020fe2534a5789dc3848806c78f4f6711397f08e7e7a12ca5a4483c8aa6";
        assert_eq!(hex::encode(franking_tag(&[0x0b; 16], b"Hi There")), expected);
    }
}
