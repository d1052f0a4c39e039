//! `groupInfo/{roomId}` (follower → hub): a client about to join by external commit asks for the
//! group's GroupInfo; the hub answers it encrypted to the key in the request (HPKE, label
//! `"GroupInfo and ratchet_tree encryption"`, context the room ID) and signs the answer.
//!
//! -06 gives `joiningCode` as `optional` in the signed part and as a plain vector in the
//! request; the request's form is what travels, and [`GroupInfoRequest::to_be_signed`] follows
//! the signed part's (present exactly when the code is not empty).

use super::common::{MLS10, code, protocol};
use super::embedded::{self, Kind};
use super::tls::{Reader, Wire, WireError, Writer};
use super::tree::RatchetTreeOption;

/// The signature label of a request.
pub const REQUEST_LABEL: &str = "GroupInfoRequestTBS";
/// The signature label of a response.
pub const RESPONSE_LABEL: &str = "GroupInfoResponseTBS";
/// The HPKE label of the encrypted GroupInfo.
pub const ENCRYPTION_LABEL: &str = "GroupInfo and ratchet_tree encryption";

/// `GroupInfoRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfoRequest {
    /// `CipherSuite cipher_suite`.
    pub cipher_suite: u16,
    /// `SignaturePublicKey requestingSignatureKey`.
    pub signature_key: Vec<u8>,
    /// `Credential requestingCredential`, as encoded.
    pub credential: Vec<u8>,
    /// `HPKEPublicKey groupInfoPublicKey`.
    pub group_info_public_key: Vec<u8>,
    /// `opaque joiningCode<V>` (empty: none).
    pub joining_code: Vec<u8>,
    /// `opaque signature<V>`.
    pub signature: Vec<u8>,
}

impl GroupInfoRequest {
    /// `GroupInfoRequestTBS`.
    pub fn to_be_signed(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write_head(&mut w);
        let code = (!self.joining_code.is_empty()).then_some(&self.joining_code);
        w.optional(code, |w, c| w.opaque(c));
        w.out
    }

    fn write_head(&self, w: &mut Writer) {
        w.u8(MLS10);
        w.u16(self.cipher_suite);
        w.opaque(&self.signature_key);
        w.raw(&self.credential);
        w.opaque(&self.group_info_public_key);
    }
}

impl Wire for GroupInfoRequest {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        protocol(r)?;
        Ok(Self {
            cipher_suite: r.u16("cipher_suite")?,
            signature_key: r.opaque("requestingSignatureKey")?.to_vec(),
            credential: embedded::read(r, Kind::Credential, "requestingCredential")?,
            group_info_public_key: r.opaque("groupInfoPublicKey")?.to_vec(),
            joining_code: r.opaque("joiningCode")?.to_vec(),
            signature: r.opaque("signature")?.to_vec(),
        })
    }

    fn write(&self, w: &mut Writer) {
        self.write_head(w);
        w.opaque(&self.joining_code);
        w.opaque(&self.signature);
    }
}

/// `GroupInfoCode` other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupInfoRefusal {
    /// `notAuthorized(2)`.
    NotAuthorized = 2,
    /// `noSuchRoom(3)`.
    NoSuchRoom = 3,
}

/// The signed, encrypted answer of a `success(1)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfoSuccess {
    /// `CipherSuite cipher_suite`.
    pub cipher_suite: u16,
    /// `ExternalSender hub_sender`: `SignaturePublicKey signature_key`.
    pub hub_signature_key: Vec<u8>,
    /// `ExternalSender hub_sender`: `Credential credential`, as encoded.
    pub hub_credential: Vec<u8>,
    /// `HPKECiphertext encrypted_groupinfo_and_tree`: `opaque kem_output<V>`.
    pub kem_output: Vec<u8>,
    /// `HPKECiphertext encrypted_groupinfo_and_tree`: `opaque ciphertext<V>`.
    pub ciphertext: Vec<u8>,
    /// `opaque signature<V>`.
    pub signature: Vec<u8>,
}

/// `GroupInfoResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfoResponse {
    /// `opaque room_id<V>`.
    pub room_id: String,
    /// `success(1)` with its answer, or the refusal.
    pub result: Result<GroupInfoSuccess, GroupInfoRefusal>,
}

impl GroupInfoResponse {
    /// `GroupInfoResponseTBS` of a success (what the hub signs).
    pub fn to_be_signed(&self) -> Option<Vec<u8>> {
        let success = self.result.as_ref().ok()?;
        let mut w = Writer::default();
        self.write_success_head(&mut w, success);
        Some(w.out)
    }

    fn write_success_head(&self, w: &mut Writer, s: &GroupInfoSuccess) {
        w.u8(MLS10);
        w.opaque(self.room_id.as_bytes());
        w.u8(1);
        w.u16(s.cipher_suite);
        w.opaque(&s.hub_signature_key);
        w.raw(&s.hub_credential);
        w.opaque(&s.kem_output);
        w.opaque(&s.ciphertext);
    }
}

impl Wire for GroupInfoResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        protocol(r)?;
        let room_id = r.text("room_id")?;
        let status = code(r, "status", |c| (1..=3).contains(&c).then_some(c))?;
        let result = match status {
            1 => Ok(GroupInfoSuccess {
                cipher_suite: r.u16("cipher_suite")?,
                hub_signature_key: r.opaque("hub_sender.signature_key")?.to_vec(),
                hub_credential: embedded::read(r, Kind::Credential, "hub_sender.credential")?,
                kem_output: r.opaque("encrypted_groupinfo_and_tree.kem_output")?.to_vec(),
                ciphertext: r.opaque("encrypted_groupinfo_and_tree.ciphertext")?.to_vec(),
                signature: r.opaque("signature")?.to_vec(),
            }),
            2 => Err(GroupInfoRefusal::NotAuthorized),
            _ => Err(GroupInfoRefusal::NoSuchRoom),
        };
        Ok(Self { room_id, result })
    }

    fn write(&self, w: &mut Writer) {
        match &self.result {
            Ok(success) => {
                self.write_success_head(w, success);
                w.opaque(&success.signature);
            }
            Err(refusal) => {
                w.u8(MLS10);
                w.opaque(self.room_id.as_bytes());
                w.u8(*refusal as u8);
            }
        }
    }
}

/// `PendingProposal`: a proposal the hub accepted in the current epoch, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingProposal {
    /// `MLSMessage proposal`, as encoded.
    pub proposal: Vec<u8>,
    /// `uint64 hub_accepted_time`.
    pub hub_accepted_time: u64,
}

/// `GroupInfoRatchetTreeTBE`: the plaintext of `encrypted_groupinfo_and_tree`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfoRatchetTree {
    /// `GroupInfo groupInfo` (without its tree), as encoded.
    pub group_info: Vec<u8>,
    /// `RatchetTreeOption ratchetTreeOption`.
    pub ratchet_tree: RatchetTreeOption,
    /// `PendingProposal pending_proposals<V>` (new in -06).
    pub pending_proposals: Vec<PendingProposal>,
}

impl Wire for GroupInfoRatchetTree {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let group_info = embedded::read(r, Kind::GroupInfo, "groupInfo")?;
        let ratchet_tree = RatchetTreeOption::read(r)?;
        let pending_proposals = r.list("pending_proposals", |r, name| {
            Ok(PendingProposal {
                proposal: embedded::read(r, Kind::MlsMessage, &format!("{name}.proposal"))?,
                hub_accepted_time: r.u64(&format!("{name}.hub_accepted_time"))?,
            })
        })?;
        Ok(Self { group_info, ratchet_tree, pending_proposals })
    }

    fn write(&self, w: &mut Writer) {
        w.raw(&self.group_info);
        self.ratchet_tree.write(w);
        w.vector(|w| {
            for p in &self.pending_proposals {
                w.raw(&p.proposal);
                w.u64(p.hub_accepted_time);
            }
        });
    }
}
