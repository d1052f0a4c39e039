//! `requestConsent/{targetDomain}` and `updateConsent/{requesterDomain}`: consent between a user
//! of another provider (the requester) and one of this homeserver's (the target), kept durably
//! per scope (requester, target, room or any room). A request is recorded for the target's
//! decision unless the admin's policy grants it at once (only for users who exist, and never over
//! a decision); a grant or revoke from a target's provider is recorded for this provider's
//! requesters. Both answer 201 (also for an unknown user, so that nobody learns who exists), 403
//! when the names do not belong to the providers they must, and 429 once the requester's
//! provider has used up its daily quota of recorded requests.

use serde_json::json;

use crate::http::{MatrixError, Response};
use crate::mimi::protocol::{ConsentEntry, ConsentOperation, Wire};
use crate::store::Batch;
use crate::translate::uri::matrix_user_id;

use super::service::{Admitted, Provider, accepted, blocking, malformed};
use crate::queue::now_ms;

/// What a requester may do for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Granted (for this room or any).
    Granted,
    /// Revoked for this room, or granted for other rooms only.
    NotForThisRoom,
    /// Nothing granted.
    None,
}

fn provider_of(uri: &str) -> Option<String> {
    matrix_user_id(uri).ok().map(|id| crate::event::meta::server_of(&id).to_owned())
}

fn state(record: Option<Vec<u8>>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&record?).ok()?;
    value.get("state").and_then(serde_json::Value::as_str).map(str::to_owned)
}

impl Provider {
    /// Whether a user URI names a local user with a MIMI device.
    pub(super) async fn has_device(&self, uri: &str) -> bool {
        let Some(user_id) = self.local_user(uri) else { return false };
        let hub = std::sync::Arc::clone(&self.hub);
        blocking(move || hub.directories().local_device_ids(&user_id)).await.is_ok_and(|d| !d.is_empty())
    }

    /// The local user a user URI of this provider names.
    pub fn local_user(&self, uri: &str) -> Option<String> {
        let id = matrix_user_id(uri).ok()?;
        (crate::event::meta::server_of(&id) == self.domain).then_some(id)
    }

    /// Whether `requester` has `target`'s consent (for `room`, or any room).
    pub async fn consent_for(&self, requester: &str, target: &str, room: Option<&str>) -> Result<Consent, MatrixError> {
        if provider_of(requester).is_some_and(|p| self.consent.auto_grants(&p)) {
            return Ok(Consent::Granted);
        }
        let store = std::sync::Arc::clone(&self.store);
        let (requester, target, room) = (requester.to_owned(), target.to_owned(), room.map(str::to_owned));
        let (this_room, any_room) = blocking(move || {
            let this_room = match &room {
                Some(room) => state(store.consent(&requester, &target, Some(room))?),
                None => None,
            };
            Ok::<_, crate::store::StoreError>((this_room, state(store.consent(&requester, &target, None)?)))
        })
        .await?;
        Ok(match (this_room.as_deref(), any_room.as_deref()) {
            (Some("revoked"), _) => Consent::NotForThisRoom,
            (Some("granted"), _) | (_, Some("granted")) => Consent::Granted,
            _ => Consent::None,
        })
    }

    /// Records a consent state for a scope, durably, with what `batch` already holds.
    async fn record_consent(
        &self,
        entry: &ConsentEntry,
        state: Option<&str>,
        mut batch: Batch,
    ) -> Result<(), MatrixError> {
        let record = state.map(|s| json!({"state": s, "at": now_ms()}).to_string());
        batch.consent(
            &entry.requester_uri,
            &entry.target_uri,
            entry.room_id.as_deref(),
            record.as_deref().map(str::as_bytes),
        );
        self.store.submit(batch).wait().await.map_err(|e| {
            tracing::error!(error = %e, "storing consent failed");
            MatrixError::internal("consent not stored; retry")
        })
    }
}

/// Serializes the read-then-write of a consent record.
static SCOPES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Serves `requestConsent` (a remote requester asks one of this provider's users) and
/// `updateConsent` (a remote target answers one of this provider's requesters).
pub(super) async fn serve(
    provider: &Provider,
    endpoint: &str,
    domain: &str,
    admitted: Admitted<'_>,
) -> Result<Response, MatrixError> {
    if domain != provider.domain {
        return Err(MatrixError::not_found(format!("{domain} is not served here")));
    }
    let entry = ConsentEntry::decode(admitted.body).map_err(|e| malformed(&e))?;
    let (remote, local) = if endpoint == "requestConsent" {
        (&entry.requester_uri, &entry.target_uri)
    } else {
        (&entry.target_uri, &entry.requester_uri)
    };
    if provider_of(remote).as_deref() != Some(admitted.from) {
        return Err(MatrixError::forbidden(format!("{remote} is not a user of {}", admitted.from)));
    }
    if provider_of(local).as_deref() != Some(provider.domain.as_str()) {
        return Err(MatrixError::forbidden(format!("{local} is not a user of {}", provider.domain)));
    }
    // A request is kept only for a user who exists (the answer is 201 either way), and never
    // replaces a decision; a cancel withdraws only a pending request. The read and the write
    // are one step under this lock.
    let _turn = SCOPES.lock().await;
    let current = {
        let store = std::sync::Arc::clone(&provider.store);
        let (requester, target, room) = (entry.requester_uri.clone(), entry.target_uri.clone(), entry.room_id.clone());
        blocking(move || store.consent(&requester, &target, room.as_deref()).map(state)).await?
    };
    let mut batch = Batch::new();
    let state = match (endpoint, entry.operation) {
        ("requestConsent", ConsentOperation::Request) => {
            if !provider.consent.accepts(admitted.from) || current.is_some() || !provider.has_device(local).await {
                return Ok(accepted());
            }
            super::quota::take(provider, super::quota::Quota::ConsentRequests, admitted.from, &mut batch).await?;
            if provider.consent.auto_grants(admitted.from) { Some("granted") } else { Some("requested") }
        }
        ("requestConsent", ConsentOperation::Cancel) => {
            if current.as_deref() != Some("requested") {
                return Ok(accepted());
            }
            None
        }
        ("updateConsent", operation @ (ConsentOperation::Grant | ConsentOperation::Revoke)) => {
            if !provider.has_device(local).await {
                return Ok(accepted());
            }
            Some(if operation == ConsentOperation::Grant { "granted" } else { "revoked" })
        }
        (_, operation) => {
            return Err(MatrixError::bad_request(
                "M_INVALID_PARAM",
                format!("{operation:?} does not belong on {endpoint}"),
            ));
        }
    };
    provider.record_consent(&entry, state, batch).await?;
    Ok(accepted())
}
