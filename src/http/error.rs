//! Matrix errors as HTTP responses: `{"errcode": …, "error": …}` with the status the spec gives.

use hyper::StatusCode;

/// A Matrix error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {errcode}: {error}")]
pub struct MatrixError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The Matrix error code (`M_FORBIDDEN`, …).
    pub errcode: &'static str,
    /// A human-readable explanation.
    pub error: String,
}

impl MatrixError {
    /// Any status and code.
    pub fn new(status: StatusCode, errcode: &'static str, error: impl Into<String>) -> Self {
        Self { status, errcode, error: error.into() }
    }

    /// 403 `M_FORBIDDEN`.
    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", error)
    }

    /// 401 `M_MISSING_TOKEN`… the appservice API answers a missing token with 401.
    pub fn missing_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", "no access token given")
    }

    /// 404 `M_UNRECOGNIZED` (unknown path).
    pub fn unrecognized() -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "unrecognized request")
    }

    /// 405 `M_UNRECOGNIZED` (known path, wrong method).
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "M_UNRECOGNIZED", "method not allowed on this path")
    }

    /// 400 with a code.
    pub fn bad_request(errcode: &'static str, error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, errcode, error)
    }

    /// 404 `M_NOT_FOUND`.
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_NOT_FOUND", error)
    }

    /// 413 `M_TOO_LARGE`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", format!("request body over {limit} bytes"))
    }

    /// 500 `M_UNKNOWN`: the request may be retried (nothing was acknowledged).
    pub fn internal(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", error)
    }

    /// The response.
    pub fn response(&self) -> super::Response {
        super::json(self.status, &serde_json::json!({"errcode": self.errcode, "error": self.error}))
    }
}

/// An error and its sources, joined: hyper's own `Display` leaves out the cause (a refused
/// certificate, a reset connection).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
