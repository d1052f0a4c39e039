//! Per-peer daily quotas on what other providers' requests make this one store. Without them one
//! peer could fill the disk with consent requests (any requester under its domain, any room, each
//! a new scope) or with abuse reports. Each (kind, peer) has one count in `metaname_value`,
//! tagged with its UTC day, written in the batch that stores what it counts.

use crate::config::PeerQuotas;
use crate::http::MatrixError;
use crate::queue::now_ms;
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

/// Counts one more of `quota` for `peer` in `batch`, or refuses with 429 `M_LIMIT_EXCEEDED` when
/// today's are used up. Call it under the lock that serializes writing what it counts, so that
/// two requests cannot both take the last one.
pub(super) async fn take(provider: &Provider, quota: Quota, peer: &str, batch: &mut Batch) -> Result<(), MatrixError> {
    let day = now_ms() / 86_400_000;
    let counter = format!("quota {} {peer}", quota.name());
    let (store, name) = (std::sync::Arc::clone(&provider.store), counter.clone());
    let used = blocking(move || store.daily_count(&name, day)).await?;
    let limit = quota.limit(&provider.quotas);
    if used >= limit {
        tracing::warn!(peer, quota = quota.name(), limit, "a provider's daily quota is used up");
        return Err(MatrixError::new(
            hyper::StatusCode::TOO_MANY_REQUESTS,
            "M_LIMIT_EXCEEDED",
            format!("{peer} has sent its {limit} {} for today (UTC)", quota.name()),
        ));
    }
    batch.daily_count(&counter, day, used + 1);
    Ok(())
}
