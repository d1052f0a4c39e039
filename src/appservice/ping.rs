//! `POST /_matrix/app/v1/ping`: the homeserver proving the token and the route.

use crate::http::{MatrixError, Request, Response, json};

/// Answers the ping (`transaction_id`, if any, is only logged).
pub fn post(request: &Request) -> Result<Response, MatrixError> {
    let body: serde_json::Value = if request.body.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_slice(&request.body)
            .map_err(|_| MatrixError::bad_request("M_NOT_JSON", "body: expected JSON"))?
    };
    tracing::debug!(transaction_id = ?body.get("transaction_id"), "pinged by the homeserver");
    Ok(json(hyper::StatusCode::OK, &serde_json::json!({})))
}
