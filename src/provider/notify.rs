//! `notify/{roomId}` (a room's hub → this follower): messages the hub accepted, in its order.
//! Only the room's hub may send them (the provider its room ID names, authenticated by its
//! certificate): 403 otherwise. Each is appended to this server's record of the room
//! (`hub::record`); the answer, 201 without a body, comes once all are durable. A repeat of
//! what the record holds is answered 201 and changes nothing; a gap (an epoch the record has not
//! reached) is answered 409 with the record's epoch (`{"errcode": "M_UNKNOWN", "error": …,
//! "epoch": n}`) and nothing after it is taken: the hub heals it from its log
//! (`hub::backfill`) before it sends the refused request again.

use std::sync::Arc;

use crate::event::meta::server_of;
use crate::http::{MatrixError, Response};
use crate::hub::{HubError, Recorded};
use crate::mimi::protocol::FanoutMessage;
use crate::mls::public::MlsCheckError;

use super::service::{Admitted, Provider, accepted, malformed};

pub(super) async fn serve(provider: &Provider, room: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    let room_id = crate::translate::uri::room_id_of(room)
        .map_err(|_| MatrixError::not_found(format!("{room} is not a MIMI room URI")))?;
    if server_of(&room_id) != admitted.from {
        return Err(MatrixError::forbidden(format!("{} is not the hub of {room}", admitted.from)));
    }
    let messages = FanoutMessage::decode_all(admitted.body).map_err(|e| malformed(&e))?;
    let (hub, from) = (Arc::clone(&provider.hub), admitted.from.to_owned());
    let recorded = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(messages.len());
        for message in &messages {
            out.push(hub.record_fanout(&room_id, &from, message)?);
        }
        Ok::<_, HubError>(out)
    })
    .await
    .map_err(|_| MatrixError::internal("worker stopped"))?;
    let recorded = match recorded {
        Ok(recorded) => recorded,
        Err(HubError::Mls(MlsCheckError::FutureEpoch { message, group })) => {
            tracing::warn!(room, message, group, "a gap in a followed room: asking the hub for what was missed");
            let error = format!("gap: a message for epoch {message}, but this record is at epoch {group}");
            let body = serde_json::json!({"errcode": "M_UNKNOWN", "error": error, "epoch": group});
            return Ok(crate::http::json(hyper::StatusCode::CONFLICT, &body));
        }
        Err(error) => return Err(refusal(&error, room)),
    };
    for outcome in recorded {
        if let Recorded::Appended { pending, .. } = outcome {
            super::submit::durable(*pending).await?;
        }
    }
    Ok(accepted())
}

fn refusal(error: &HubError, room: &str) -> MatrixError {
    match error {
        HubError::NotHub { .. } => MatrixError::forbidden(error.to_string()),
        HubError::Mls(_) | HubError::Event(_) => {
            tracing::warn!(room, %error, "a fanned-out message refused");
            MatrixError::bad_request("M_INVALID_PARAM", error.to_string())
        }
        _ => {
            tracing::error!(room, %error, "recording a fanned-out message failed");
            MatrixError::internal("temporarily unavailable; retry")
        }
    }
}
