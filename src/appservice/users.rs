//! `GET /_matrix/app/v1/users/{userId}`: the homeserver asks whether a user in our namespace
//! exists (e.g. before an invite). The bot and every ghost the mapping can produce for some MIMI
//! user do ([`GhostTemplate::remote_of`]): the ghost is registered before the answer, as the spec
//! requires. Anything else in the namespace (`../`, upper case, non-ASCII, over 255 bytes) is
//! `M_NOT_FOUND` and never reaches the homeserver's registration.

use super::ghost::GhostTemplate;
use super::service::Appservice;
use crate::http::{MatrixError, Response, json};

/// Answers the user query.
pub async fn get(app: &Appservice, user_id: &str) -> Result<Response, MatrixError> {
    let ours = user_id == app.settings.bot() || app.settings.ghosts.remote_of(user_id).is_some();
    let localpart = GhostTemplate::localpart_of(user_id)
        .filter(|_| ours)
        .ok_or_else(|| MatrixError::not_found(format!("{user_id} is not a user of this bridge")))?;
    app.homeserver.register_ghost(localpart).await.map_err(|e| {
        tracing::warn!(user_id, error = %e, "could not register a user the homeserver asked about");
        MatrixError::internal(format!("could not register {user_id}"))
    })?;
    Ok(json(hyper::StatusCode::OK, &serde_json::json!({})))
}
