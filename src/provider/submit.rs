//! `submitMessage/{roomId}` (follower → this hub): an application message of a follower
//! provider's user. Answered 200 with a `SubmitMessageResponse`: `accepted` with the hub's
//! timestamp once the message and its fan-out are durable, `notAllowed` (the sender is not a
//! joined user of the submitting provider, or the room is not hubbed here), `epochTooOld` with
//! the room's epoch. A resubmission within the epoch is accepted again with its first
//! timestamp and appended once.

use std::sync::Arc;

use crate::http::{MatrixError, Response};
use crate::hub::Verdict;
use crate::mimi::protocol::{SubmitMessageRequest, SubmitMessageResponse, Wire};

use super::service::{Admitted, Provider, binary, blocking, malformed};

pub(super) async fn serve(provider: &Provider, room: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    let request = SubmitMessageRequest::decode(admitted.body).map_err(|e| malformed(&e))?;
    let answer = |response: SubmitMessageResponse| Ok(binary(hyper::StatusCode::OK, response.encode()));
    let (Ok(room_id), Ok(sender)) =
        (crate::translate::uri::room_id_of(room), crate::translate::uri::matrix_user_id(&request.sending_uri))
    else {
        return answer(SubmitMessageResponse::NotAllowed);
    };
    let (hub, from) = (Arc::clone(&provider.hub), admitted.from.to_owned());
    let verdict = blocking(move || hub.submit_remote_message(&room_id, &from, &sender, &request.app_message)).await?;
    match verdict {
        Verdict::Accepted { timestamp, pending, frank } => {
            if let Some(pending) = pending {
                durable(pending).await?;
            }
            answer(SubmitMessageResponse::Accepted { timestamp, frank: frank.map(|f| *f) })
        }
        Verdict::WrongEpoch(current_epoch) => answer(SubmitMessageResponse::EpochTooOld { current_epoch }),
        Verdict::NotAllowed(why) | Verdict::InvalidProposal(why) => {
            tracing::info!(from = admitted.from, room, why, "submitMessage refused");
            answer(SubmitMessageResponse::NotAllowed)
        }
    }
}

/// Waits for an accepted submission's batch: only then is it the hub's promise.
pub(super) async fn durable(pending: crate::hub::PendingAppend) -> Result<(), MatrixError> {
    pending.durable().await.map(|_| ()).map_err(|error| {
        tracing::error!(%error, "appending a provider's submission failed");
        MatrixError::internal("temporarily unavailable; retry")
    })
}
