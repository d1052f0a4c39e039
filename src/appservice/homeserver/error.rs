//! What can go wrong talking to the homeserver, and which of it is worth retrying.
//!
//! Matrix errors are parsed from the standard `{errcode, error}` body. A non-JSON error body (a
//! reverse proxy's HTML page, say) still becomes [`HomeserverError::Matrix`], with `M_UNKNOWN` and
//! the start of the body, so the status decides what happens next. Nothing here ever holds the
//! `as_token`: error texts are built from response bodies, paths and transport errors only.

use std::time::Duration;

use serde_json::Value;

/// How much of a non-JSON error body is kept in an error message.
const BODY_EXCERPT: usize = 200;

/// An error from a call to the homeserver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HomeserverError {
    /// The homeserver answered with an error status and (usually) a Matrix error body.
    #[error("homeserver answered HTTP {status} {errcode}: {error}")]
    Matrix {
        /// The HTTP status code.
        status: u16,
        /// The Matrix `errcode` (`M_UNKNOWN` if the body was not a Matrix error).
        errcode: String,
        /// The human-readable `error` text (or the start of a non-JSON body).
        error: String,
        /// How long the homeserver asked us to wait (`retry_after_ms`, or the `Retry-After`
        /// header), if it said.
        retry_after_ms: Option<u64>,
    },
    /// The appservice ping failed in a way the admin has to fix; the text says what to do.
    #[error("appservice ping failed: {0}")]
    Ping(PingFailure),
    /// The homeserver could not be reached, or the connection broke mid-request.
    #[error("cannot reach the homeserver: {0}")]
    Connection(String),
    /// The homeserver did not answer within the request timeout.
    #[error("the homeserver did not answer within the request timeout")]
    Timeout,
    /// The homeserver answered 2xx with a body of an unexpected shape.
    #[error("unexpected response from the homeserver: {0}")]
    Malformed(String),
    /// The response body is bigger than the limit set for it (declared or while reading). An
    /// upload the homeserver finds too big is a [`HomeserverError::Matrix`] `M_TOO_LARGE` (413).
    #[error("the response body is larger than the limit set for it")]
    TooLarge,
    /// The caller handed over something that cannot become a request: a base URL that is not
    /// `http://host:port[/prefix]`, a string that is not an `mxc://` URI, an unserializable body.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl HomeserverError {
    /// Whether trying the same request again may succeed: 5xx, 429, connection errors and
    /// timeouts. Other 4xx, malformed answers and bad input are final.
    ///
    /// This says the failure was transient, not that the request is idempotent: re-sending a
    /// `PUT …/send/{txnId}` is safe, re-sending `createRoom` may create a second room.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Matrix { status, .. } => *status == 429 || (500..600).contains(status),
            Self::Ping(failure) => failure.is_retryable(),
            Self::Connection(_) | Self::Timeout => true,
            Self::Malformed(_) | Self::TooLarge | Self::InvalidRequest(_) => false,
        }
    }

    /// How long the homeserver asked the caller to wait before trying again, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Matrix { retry_after_ms: Some(ms), .. } => Some(Duration::from_millis(*ms)),
            _ => None,
        }
    }

    /// The Matrix `errcode`, if the homeserver sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Self::Matrix { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// Builds the error for a non-2xx answer from its status, body and `Retry-After` header.
    pub(super) fn from_response(status: u16, body: &[u8], retry_after_header: Option<Duration>) -> Self {
        let header_ms = retry_after_header.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) if map.get("errcode").is_some_and(Value::is_string) => Self::Matrix {
                status,
                errcode: str_field(&map, "errcode").unwrap_or_default(),
                error: str_field(&map, "error").unwrap_or_default(),
                retry_after_ms: map.get("retry_after_ms").and_then(Value::as_u64).or(header_ms),
            },
            _ => Self::Matrix {
                status,
                errcode: "M_UNKNOWN".to_owned(),
                error: excerpt(body),
                retry_after_ms: header_ms,
            },
        }
    }
}

/// Why the homeserver could not ping the bridge (`POST /_matrix/client/v1/appservice/{id}/ping`).
/// Each message names the setting to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PingFailure {
    /// 400 `M_URL_NOT_SET`: the registration the homeserver loaded has `url: null`.
    #[error(
        "the homeserver has no URL for this appservice (400 M_URL_NOT_SET): set `url` in the registration \
         file the homeserver loads to the address the bridge listens on, then restart the homeserver"
    )]
    UrlNotSet,
    /// 403 `M_FORBIDDEN`: the token is not an appservice token, or belongs to another appservice.
    #[error(
        "the homeserver refused the ping for appservice id `{id}` (403 M_FORBIDDEN: {error}): the bridge's \
         appservice id and as_token must equal `id` and `as_token` in the registration the homeserver loaded"
    )]
    Forbidden {
        /// The appservice ID the bridge pinged as.
        id: String,
        /// The homeserver's explanation.
        error: String,
    },
    /// 502 `M_BAD_STATUS`: the homeserver reached the registration URL, which answered non-2xx.
    #[error(
        "the homeserver reached the registration `url`, but it answered {status_text}{body_text}: check that \
         the url points at this bridge and that the bridge's hs_token equals `hs_token` in the registration",
        status_text = status.map_or_else(|| "an error".to_owned(), |s| format!("HTTP {s}")),
        body_text = body.as_deref().map(|b| format!(" ({b})")).unwrap_or_default()
    )]
    BadStatus {
        /// The status the bridge (or whatever listens at the URL) answered, as the homeserver saw it.
        status: Option<u16>,
        /// The start of that answer's body.
        body: Option<String>,
    },
    /// 502 `M_CONNECTION_FAILED`: the homeserver could not connect to the registration URL.
    #[error(
        "the homeserver could not connect to the registration `url` ({error}): check that the url is \
         reachable from the homeserver and that the bridge is listening there"
    )]
    ConnectionFailed {
        /// The homeserver's description of the failure.
        error: String,
    },
    /// 504 `M_CONNECTION_TIMEOUT`: the homeserver's request to the registration URL timed out.
    #[error(
        "the homeserver's request to the registration `url` timed out (504): check that the url's host and \
         port are right and not firewalled, and that the bridge is not overloaded"
    )]
    Timeout,
}

impl PingFailure {
    /// Whether pinging again later may succeed (the bridge may still be starting): true for
    /// connection failures, timeouts and bad statuses, false for configuration errors.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::BadStatus { .. } | Self::ConnectionFailed { .. } | Self::Timeout)
    }

    /// Picks out the ping-specific answers; anything else stays a plain error.
    pub(super) fn classify(error: HomeserverError, appservice_id: &str, body: &[u8]) -> HomeserverError {
        let HomeserverError::Matrix { status, errcode, error: text, .. } = &error else {
            return error;
        };
        let failure = match (*status, errcode.as_str()) {
            (400, "M_URL_NOT_SET") => Self::UrlNotSet,
            (403, "M_FORBIDDEN") => Self::Forbidden { id: appservice_id.to_owned(), error: text.clone() },
            (502, "M_BAD_STATUS") => {
                let extra = serde_json::from_slice::<Value>(body).ok();
                let field = |name: &str| extra.as_ref().and_then(|v| v.get(name)).cloned();
                Self::BadStatus {
                    status: field("status").and_then(|v| v.as_u64()).and_then(|s| u16::try_from(s).ok()),
                    body: field("body").and_then(|v| v.as_str().map(|b| excerpt(b.as_bytes()))),
                }
            }
            (502, "M_CONNECTION_FAILED") => Self::ConnectionFailed { error: text.clone() },
            (504, _) => Self::Timeout,
            _ => return error,
        };
        HomeserverError::Ping(failure)
    }
}

fn str_field(map: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    map.get(name).and_then(Value::as_str).map(str::to_owned)
}

/// The first [`BODY_EXCERPT`] characters of a body, lossily decoded.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    match trimmed.char_indices().nth(BODY_EXCERPT) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

impl crate::queue::Retryable for HomeserverError {
    fn is_retryable(&self) -> bool {
        HomeserverError::is_retryable(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        HomeserverError::retry_after(self)
    }
}
