//! `GET /_matrix/app/v1/users/{userId}`: the homeserver asks whether a user in our namespace
//! exists (e.g. before an invite). The bot and every well-formed ghost do: the ghost is
//! registered before the answer, as the spec requires.

use super::ghost::GhostTemplate;
use super::service::Appservice;
use crate::http::{MatrixError, Response, json};

/// Answers the user query.
pub async fn get(app: &Appservice, user_id: &str) -> Result<Response, MatrixError> {
    let ours = user_id == app.settings.bot() || app.settings.ghosts.is_ghost(user_id);
    let localpart = GhostTemplate::localpart_of(user_id)
        .filter(|_| ours)
        .ok_or_else(|| MatrixError::not_found(format!("{user_id} is not a user of this bridge")))?;
    app.homeserver.register_ghost(localpart).await.map_err(|e| {
        tracing::warn!(user_id, error = %e, "could not register a user the homeserver asked about");
        MatrixError::internal(format!("could not register {user_id}"))
    })?;
    Ok(json(hyper::StatusCode::OK, &serde_json::json!({})))
}
