//! What the bridge keeps as a MIMI provider: consent between users of different providers,
//! which KeyPackage went to which provider (to route the Welcome that will use it), and abuse
//! reports received.

use super::{Batch, Cf, Store, StoreError};

/// `requester \0 target \0 room` (room empty: any room).
fn scope(requester: &str, target: &str, room: Option<&str>) -> Vec<u8> {
    [requester.as_bytes(), b"\0", target.as_bytes(), b"\0", room.unwrap_or("").as_bytes()].concat()
}

/// u16 BE length of the reference ‖ the reference ‖ the provider's domain.
fn claim_key(reference: &[u8], provider: &str) -> Vec<u8> {
    let len = u16::try_from(reference.len()).unwrap_or(u16::MAX).to_be_bytes();
    [&len[..], reference, provider.as_bytes()].concat()
}

impl Batch {
    /// Records consent (`granted`, `requested` or `revoked`, as JSON) for a scope; `None`
    /// deletes it.
    pub fn consent(&mut self, requester: &str, target: &str, room: Option<&str>, record: Option<&[u8]>) {
        self.ops.push((Cf::ConsentscopeRecord, scope(requester, target, room), record.map(<[u8]>::to_vec)));
    }

    /// Records that the KeyPackage `reference` was handed to `provider` (JSON record). A last
    /// resort goes to several providers: each gets its record.
    pub fn key_package_claim(&mut self, reference: &[u8], provider: &str, record: &[u8]) {
        self.put(Cf::KeypackagerefClaim, claim_key(reference, provider), record.to_vec());
    }

    /// Stores abuse report number `seq` (JSON record).
    pub fn abuse_report(&mut self, seq: u64, record: &[u8]) {
        self.put(Cf::AbuseseqReport, seq.to_be_bytes().to_vec(), record.to_vec());
    }
}

impl Store {
    /// The consent record of a scope.
    pub fn consent(&self, requester: &str, target: &str, room: Option<&str>) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::ConsentscopeRecord, &scope(requester, target, room))
    }

    /// The record of the KeyPackage `reference` handed to `provider`.
    pub fn key_package_claim(&self, reference: &[u8], provider: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::KeypackagerefClaim, &claim_key(reference, provider))
    }

    /// An abuse report.
    pub fn abuse_report(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::AbuseseqReport, &seq.to_be_bytes())
    }
}
