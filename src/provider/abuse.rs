//! `reportAbuse/{roomId}`: reports about messages in rooms this provider hosts (and has), at most
//! [`MAX_REPORT`] bytes each and `mimi.quotas.abuse_reports_per_day` per provider (then 429),
//! stored durably (for the admin) and counted in `/metrics`; answered 201 without a body once
//! stored.

use serde_json::json;

use crate::http::{MatrixError, Response};
use crate::mimi::protocol::{AbuseReport, Wire};
use crate::store::Batch;

use super::service::{Admitted, Provider, accepted, blocking, malformed};
use crate::queue::now_ms;

/// Largest abuse report kept (its messages are MIMI contents with their franks).
pub(super) const MAX_REPORT: usize = 256 << 10;
/// The counter naming abuse reports.
const NEXT_REPORT: &str = "abuse_next_seq";

pub(super) async fn serve(provider: &Provider, room: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    if admitted.body.len() > MAX_REPORT {
        return Err(MatrixError::too_large(MAX_REPORT));
    }
    let room_id =
        crate::translate::uri::room_id_of(room).ok().filter(|id| crate::event::meta::server_of(id) == provider.domain);
    let store = std::sync::Arc::clone(&provider.store);
    let hosted = match room_id {
        Some(id) => blocking(move || store.short_room(&id)).await?.is_some(),
        None => false,
    };
    if !hosted {
        return Err(MatrixError::not_found(format!("{room} is not a room hosted here")));
    }
    let report = AbuseReport::decode(admitted.body).map_err(|e| malformed(&e))?;
    let reporter_ok = report.reporting_user.is_empty()
        || crate::translate::uri::matrix_user_id(&report.reporting_user)
            .is_ok_and(|id| crate::event::meta::server_of(&id) == admitted.from);
    if !reporter_ok {
        return Err(MatrixError::forbidden(format!("reportingUser is not a user of {}", admitted.from)));
    }
    let store = std::sync::Arc::clone(&provider.store);
    let record = json!({"from": admitted.from, "room": room, "at": now_ms(), "report": hex::encode(admitted.body)});
    let stored = {
        // The counter is read and advanced under the store's one writer of it: this lock.
        static NEXT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = NEXT.lock().await;
        let counter = std::sync::Arc::clone(&store);
        let seq = blocking(move || counter.counter(NEXT_REPORT)).await? + 1;
        let mut batch = Batch::new();
        super::quota::take(provider, super::quota::Quota::AbuseReports, admitted.from, &mut batch).await?;
        batch.abuse_report(seq, record.to_string().as_bytes());
        batch.counter(NEXT_REPORT, seq);
        store.submit(batch).wait().await
    };
    stored.map_err(|e| {
        tracing::error!(error = %e, "storing an abuse report failed");
        MatrixError::internal("report not stored; retry")
    })?;
    provider.metrics.abuse_report();
    tracing::warn!(from = admitted.from, room, reason = report.reason_code, "abuse report received");
    Ok(accepted())
}
