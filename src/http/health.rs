//! `/_matrix/mau/live` and `/_matrix/mau/ready`, as mautrix bridges answer them, so existing
//! monitoring works unchanged: live while the process serves, ready once startup checks passed.

use super::{Response, json};

/// `GET /_matrix/mau/live`.
pub fn live() -> Response {
    json(hyper::StatusCode::OK, &serde_json::json!({"ok": true}))
}

/// `GET /_matrix/mau/ready`: 503 until `ready`.
pub fn ready(ready: bool) -> Response {
    let status = if ready { hyper::StatusCode::OK } else { hyper::StatusCode::SERVICE_UNAVAILABLE };
    json(status, &serde_json::json!({"ok": ready}))
}
