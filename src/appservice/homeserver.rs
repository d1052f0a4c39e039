//! The client-server API as the appservice uses it: one [`HomeserverClient`] per homeserver,
//! authenticated with the registration's `as_token`, acting as the bot or as any ghost in the
//! appservice's namespace (`?user_id=`).
//!
//! What it guarantees:
//! - The `as_token` leaves the process only in the `Authorization` header; it is in no URL, log
//!   line, error or `Debug` output.
//! - Every request has a deadline ([`HomeserverClient::with_request_timeout`], 30 s by default,
//!   covering connect, send and reading the body) and every response body a size limit (1 MiB for
//!   JSON, a caller-given limit for media), so a stuck or misbehaving homeserver can neither hang
//!   a caller nor exhaust memory.
//! - Path segments and query values are percent-encoded, so IDs with `!`, `:`, `$`, `/` or `#`
//!   stay in their segment.
//! - Calls do not retry by themselves: the caller knows whether a request is idempotent (a send
//!   with a persisted txnId is; `createRoom` is not) and wraps it in [`retry`] if so.
//!
//! Layout: `error` (the error enum and the ping diagnostics), `transport`
//! (hyper, the one place that picks the connector), `rooms` (membership, events, state) and
//! `media` (authenticated download, upload).

mod devices;
mod error;
mod media;
mod rooms;
mod transport;

use std::fmt;
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

pub use crate::queue::{Retried, RetryPolicy, Retryable, retry};
pub use error::{HomeserverError, PingFailure};
use transport::{Payload, Transport, enc};

/// Default deadline for one JSON request, body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline for one media upload or download, body included.
pub const DEFAULT_MEDIA_TIMEOUT: Duration = Duration::from_mins(2);
/// Default limit on a JSON response body (and on any error body).
pub const DEFAULT_MAX_JSON_BYTES: usize = 1024 * 1024;

/// A client for the homeserver's client-server API, acting as an application service.
///
/// Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct HomeserverClient {
    transport: Transport,
    appservice_id: String,
    request_timeout: Duration,
    media_timeout: Duration,
    max_json_bytes: usize,
}

impl fmt::Debug for HomeserverClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeserverClient")
            .field("base_url", &self.transport.base())
            .field("appservice_id", &self.appservice_id)
            .field("as_token", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("media_timeout", &self.media_timeout)
            .field("max_json_bytes", &self.max_json_bytes)
            .finish()
    }
}

impl HomeserverClient {
    /// A client for the homeserver at `base_url` (`http://host:port`, optionally with a path
    /// prefix), authenticating with `as_token` as the appservice `appservice_id` (the
    /// registration's `id`, used by [`ping`](Self::ping)).
    ///
    /// Needs no runtime; the requests themselves must run inside a tokio runtime.
    pub fn new(
        base_url: &str,
        as_token: impl AsRef<str>,
        appservice_id: impl Into<String>,
    ) -> Result<Self, HomeserverError> {
        Ok(Self {
            transport: Transport::new(base_url, as_token.as_ref())?,
            appservice_id: appservice_id.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            media_timeout: DEFAULT_MEDIA_TIMEOUT,
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
        })
    }

    /// Sets the deadline for each JSON request (default [`DEFAULT_REQUEST_TIMEOUT`]).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the deadline for each media transfer (default [`DEFAULT_MEDIA_TIMEOUT`]).
    #[must_use]
    pub fn with_media_timeout(mut self, timeout: Duration) -> Self {
        self.media_timeout = timeout;
        self
    }

    /// Sets the limit on JSON response bodies (default [`DEFAULT_MAX_JSON_BYTES`]).
    #[must_use]
    pub fn with_max_json_bytes(mut self, limit: usize) -> Self {
        self.max_json_bytes = limit;
        self
    }

    /// The normalized base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.transport.base()
    }

    /// The appservice ID this client pings as.
    pub fn appservice_id(&self) -> &str {
        &self.appservice_id
    }

    /// `GET /_matrix/client/versions`: the spec versions the homeserver supports.
    pub async fn versions(&self) -> Result<Vec<String>, HomeserverError> {
        let body = self.call(Method::GET, "/_matrix/client/versions".to_owned(), None).await?;
        body.get("versions")
            .and_then(Value::as_array)
            .and_then(|list| list.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| HomeserverError::Malformed("/versions: `versions` is not a list of strings".into()))
    }

    /// `GET /_matrix/client/v3/account/whoami`: the user the token (and `as_user`) acts as.
    pub async fn whoami(&self, as_user: Option<&str>) -> Result<String, HomeserverError> {
        let path = with_query("/_matrix/client/v3/account/whoami".to_owned(), &[("user_id", as_user)]);
        let body = self.call(Method::GET, path, None).await?;
        string_field(&body, "user_id", "whoami")
    }

    /// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: asks the homeserver to call the
    /// bridge's `/_matrix/app/v1/ping`, and returns the round trip it measured. Also makes Synapse
    /// retry its queued transactions at once, so call it on every start.
    ///
    /// The homeserver's diagnosis becomes [`HomeserverError::Ping`] with a message naming the
    /// setting to fix (registration `url`, `id`, `hs_token`).
    pub async fn ping(&self, transaction_id: Option<&str>) -> Result<Duration, HomeserverError> {
        let path = format!("/_matrix/client/v1/appservice/{}/ping", enc(&self.appservice_id));
        let body = match transaction_id {
            Some(txn) => json!({ "transaction_id": txn }),
            None => json!({}),
        };
        let reply = self
            .transport
            .send(Method::POST, &path, Some(Payload::json(&body)?), self.request_timeout, self.max_json_bytes)
            .await?;
        if !reply.is_success() {
            return Err(PingFailure::classify(reply.error(), &self.appservice_id, &reply.body));
        }
        let body = parse_json(&reply.body, "ping")?;
        let ms = body
            .get("duration_ms")
            .and_then(Value::as_u64)
            .ok_or_else(|| HomeserverError::Malformed("ping: no `duration_ms`".into()))?;
        Ok(Duration::from_millis(ms))
    }

    /// `POST /_matrix/client/v3/register` with `m.login.application_service` and
    /// `inhibit_login`: creates the ghost `@localpart:server`. Returns `true` if it was created,
    /// `false` if it already existed (`M_USER_IN_USE`, which is success here).
    pub async fn register_ghost(&self, localpart: &str) -> Result<bool, HomeserverError> {
        let body = json!({
            "type": "m.login.application_service",
            "username": localpart,
            "inhibit_login": true,
        });
        match self.call(Method::POST, "/_matrix/client/v3/register".to_owned(), Some(Payload::json(&body)?)).await {
            Ok(_) => Ok(true),
            Err(HomeserverError::Matrix { errcode, .. }) if errcode == "M_USER_IN_USE" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `PUT /_matrix/client/v3/profile/{userId}/displayname`, acting as `user` (a ghost or the
    /// bot).
    pub async fn set_displayname(&self, user: &str, name: &str) -> Result<(), HomeserverError> {
        let path =
            with_query(format!("/_matrix/client/v3/profile/{}/displayname", enc(user)), &[("user_id", Some(user))]);
        self.call(Method::PUT, path, Some(Payload::json(&json!({ "displayname": name }))?)).await?;
        Ok(())
    }

    /// One JSON request: percent-encoded `path_and_query`, the JSON timeout and limit, non-2xx
    /// turned into an error, the body parsed.
    async fn call(
        &self,
        method: Method,
        path_and_query: String,
        payload: Option<Payload>,
    ) -> Result<Value, HomeserverError> {
        let reply =
            self.transport.send(method, &path_and_query, payload, self.request_timeout, self.max_json_bytes).await?;
        if !reply.is_success() {
            return Err(reply.error());
        }
        let what = path_and_query.split('?').next().unwrap_or_default();
        parse_json(&reply.body, what)
    }
}

/// Appends the present `params` to `path` as a percent-encoded query string.
fn with_query(mut path: String, params: &[(&str, Option<&str>)]) -> String {
    let mut separator = '?';
    for (name, value) in params {
        if let Some(value) = value {
            path.push(separator);
            path.push_str(name);
            path.push('=');
            path.extend(enc(value));
            separator = '&';
        }
    }
    path
}

fn parse_json(body: &[u8], what: &str) -> Result<Value, HomeserverError> {
    serde_json::from_slice(body).map_err(|e| HomeserverError::Malformed(format!("{what}: body is not JSON: {e}")))
}

/// A string field of a JSON response, or [`HomeserverError::Malformed`] naming the call.
fn string_field(body: &Value, field: &str, what: &str) -> Result<String, HomeserverError> {
    body.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| HomeserverError::Malformed(format!("{what}: no string `{field}` in the response")))
}
