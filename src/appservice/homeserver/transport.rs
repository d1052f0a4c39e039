//! The HTTP layer under [`super::HomeserverClient`]: the connector, URL building, and one request
//! with its timeout and body-size limit.
//!
//! The connector is chosen in [`connector`] and nowhere else: the homeserver sits on loopback, so
//! it is plain HTTP today, and HTTPS means swapping that function and [`SCHEME`]. Every request
//! carries the `as_token` in an `Authorization` header marked sensitive (hyper's `Debug` then
//! prints it as `Sensitive`); the token never appears in a URL, a log line or an error.

use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, PercentEncode, utf8_percent_encode};

use super::HomeserverError;

/// The only URL scheme the connector speaks.
const SCHEME: &str = "http";

/// How long to wait for a TCP connection before calling the homeserver unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything but RFC 3986's unreserved characters is escaped, in path segments and query values
/// alike, so `!room:server`, `@user:server`, `$event` and slashes in a txnId stay one segment.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The connector type; change it together with [`connector`].
type Connector = HttpConnector;

/// The one place where the transport is chosen.
fn connector() -> Connector {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    http.enforce_http(true);
    http
}

/// Percent-encodes one path segment or query value.
pub(super) fn enc(component: &str) -> PercentEncode<'_> {
    utf8_percent_encode(component, COMPONENT)
}

/// A body to send: bytes and their content type.
pub(super) struct Payload {
    pub(super) bytes: Bytes,
    pub(super) content_type: HeaderValue,
}

impl Payload {
    /// A JSON body.
    pub(super) fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, HomeserverError> {
        let bytes = serde_json::to_vec(value).map_err(|e| HomeserverError::InvalidRequest(format!("body: {e}")))?;
        Ok(Self { bytes: bytes.into(), content_type: HeaderValue::from_static("application/json") })
    }
}

/// A homeserver's answer, body read in full (within the limit).
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) content_type: Option<String>,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Bytes,
}

impl Reply {
    pub(super) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this non-2xx answer stands for.
    pub(super) fn error(&self) -> HomeserverError {
        HomeserverError::from_response(self.status, &self.body, self.retry_after)
    }
}

/// The pooled HTTP client plus where and as whom it talks.
#[derive(Clone)]
pub(super) struct Transport {
    client: Client<Connector, Full<Bytes>>,
    /// `http://host:port` followed by the base URL's path, without a trailing slash.
    base: String,
    /// `Bearer <as_token>`, marked sensitive.
    authorization: HeaderValue,
}

impl Transport {
    pub(super) fn new(base_url: &str, as_token: &str) -> Result<Self, HomeserverError> {
        let base = parse_base(base_url)?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {as_token}")).map_err(|_| {
            HomeserverError::InvalidRequest("as_token contains characters not allowed in a header".into())
        })?;
        authorization.set_sensitive(true);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_mins(1)).build(connector());
        Ok(Self { client, base, authorization })
    }

    /// The base URL as given, normalized (no trailing slash).
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request and reads the answer's body, all within `timeout`; a body (or declared
    /// `Content-Length`) over `limit` bytes is [`HomeserverError::TooLarge`]. `path_and_query`
    /// must already be percent-encoded.
    pub(super) async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        payload: Option<Payload>,
        timeout: Duration,
        limit: usize,
    ) -> Result<Reply, HomeserverError> {
        let uri: Uri = format!("{}{path_and_query}", self.base)
            .parse()
            .map_err(|e| HomeserverError::InvalidRequest(format!("URL for {path_and_query}: {e}")))?;
        let mut builder = Request::builder().method(method.clone()).uri(uri).header(AUTHORIZATION, &self.authorization);
        let body = match payload {
            Some(Payload { bytes, content_type }) => {
                builder = builder.header(CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| HomeserverError::InvalidRequest(e.to_string()))?;
        let started = tokio::time::Instant::now();
        let path = path_and_query.split('?').next().unwrap_or_default();
        let reply = tokio::time::timeout(timeout, self.exchange(request, limit)).await;
        let elapsed_ms = started.elapsed().as_millis();
        match &reply {
            Ok(Ok(r)) => tracing::debug!(%method, path, status = r.status, elapsed_ms, "homeserver call"),
            Ok(Err(error)) => tracing::debug!(%method, path, %error, elapsed_ms, "homeserver call failed"),
            Err(_) => tracing::debug!(%method, path, elapsed_ms, "homeserver call timed out"),
        }
        reply.map_err(|_| HomeserverError::Timeout)?
    }

    async fn exchange(&self, request: Request<Full<Bytes>>, limit: usize) -> Result<Reply, HomeserverError> {
        let response = self.client.request(request).await.map_err(|e| {
            HomeserverError::Connection(format!("{}: {}", self.base, crate::http::error::error_chain(&e)))
        })?;
        let headers = response.headers();
        let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
            return Err(HomeserverError::TooLarge);
        }
        let status = response.status().as_u16();
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Only the delay-seconds form; an HTTP date from a homeserver would be unusual.
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = Limited::new(response.into_body(), limit).collect().await.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                HomeserverError::TooLarge
            } else {
                HomeserverError::Connection(format!(
                    "reading the response body: {}",
                    crate::http::error::error_chain(e.as_ref())
                ))
            }
        })?;
        Ok(Reply { status, content_type, retry_after, body: body.to_bytes() })
    }
}

/// Checks and normalizes the base URL: `http://host[:port][/prefix]`, no query.
fn parse_base(base_url: &str) -> Result<String, HomeserverError> {
    let bad = |why: &str| HomeserverError::InvalidRequest(format!("homeserver address `{base_url}`: {why}"));
    let uri: Uri = base_url.trim().parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some(SCHEME) => {}
        Some(other) => return Err(bad(&format!("scheme `{other}` is not supported, use `{SCHEME}://`"))),
        None => return Err(bad(&format!("no scheme, expected `{SCHEME}://host:port`"))),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if uri.query().is_some() {
        return Err(bad("a query string is not allowed"));
    }
    Ok(format!("{SCHEME}://{authority}{}", uri.path().trim_end_matches('/')))
}
