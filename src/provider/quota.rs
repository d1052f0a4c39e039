//! The provider's daily quotas per peer: consent requests (any requester under a peer's domain,
//! any room, each a new scope) and abuse reports (see `crate::http::quota`).

use crate::config::PeerQuotas;
use crate::http::MatrixError;
use crate::store::Batch;

use super::service::{Provider, blocking};

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quota {
    /// Consent requests recorded for a local user's decision.
    ConsentRequests,
    /// Abuse reports stored.
    AbuseReports,
}

impl Quota {
    fn name(self) -> &'static str {
        match self {
            Self::ConsentRequests => "consent requests",
            Self::AbuseReports => "abuse reports",
        }
    }

    fn limit(self, quotas: &PeerQuotas) -> u64 {
        match self {
            Self::ConsentRequests => quotas.consent_requests_per_day,
            Self::AbuseReports => quotas.abuse_reports_per_day,
        }
    }
}

/// Counts one more of `quota` for `peer` in `batch`, or refuses with 429 (see
/// [`crate::http::quota::take`]); call it under the lock that serializes writing what it counts.
pub(super) async fn take(provider: &Provider, quota: Quota, peer: &str, batch: &mut Batch) -> Result<(), MatrixError> {
    let (store, peer, limit) = (std::sync::Arc::clone(&provider.store), peer.to_owned(), quota.limit(&provider.quotas));
    let mut taken = std::mem::take(batch);
    let (result, taken) = blocking(move || {
        let result = crate::http::quota::take(&store, quota.name(), &peer, limit, &mut taken);
        Ok::<_, crate::store::StoreError>((result, taken))
    })
    .await?;
    *batch = taken;
    result
}
