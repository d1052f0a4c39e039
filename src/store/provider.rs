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

    /// Sets a per-day count in `metaname_value` (a quota's use on `day`, days since the epoch).
    pub fn daily_count(&mut self, name: &str, day: u64, count: u64) {
        let value = [day.to_be_bytes(), count.to_be_bytes()].concat();
        self.put(Cf::MetanameValue, name.as_bytes().to_vec(), value);
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

    /// A per-day count on `day`: 0 if it was last set on another day, or never.
    pub fn daily_count(&self, name: &str, day: u64) -> Result<u64, StoreError> {
        let Some(value) = self.get(Cf::MetanameValue, name.as_bytes())? else { return Ok(0) };
        let (stored_day, count) = value
            .split_first_chunk::<8>()
            .and_then(|(d, c)| Some((u64::from_be_bytes(*d), u64::from_be_bytes(<[u8; 8]>::try_from(c).ok()?))))
            .ok_or_else(|| StoreError::corrupt("a daily count is not 16 bytes"))?;
        Ok(if stored_day == day { count } else { 0 })
    }

    /// An abuse report.
    pub fn abuse_report(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::AbuseseqReport, &seq.to_be_bytes())
    }
}
