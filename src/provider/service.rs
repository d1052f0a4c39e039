//! The MIMI listener's routes. Every request comes over mutual TLS; one naming a source provider
//! (`From: mimi@<domain>`) is admitted only if the client certificate authenticates that domain,
//! before its body is read, and each endpoint then checks that the identities inside the body
//! belong to that provider. Refusals store nothing.

use std::sync::Arc;

use crate::config::{ConsentPolicy, PeerQuotas};
use crate::http::{Handler, MatrixError, Request, Response};
use crate::hub::Hub;
use crate::store::Store;

use super::directory;

/// Where this provider's endpoints live, under its public URL.
pub const PREFIX: &str = "/mimi/v1/";

/// Where hosted attachments are served (the same path as on the federation listener).
const MEDIA: &str = crate::federation::media::PATH;

/// The endpoints served, as directory entries: key → path template.
pub const SERVED: [(&str, &str); 9] = [
    ("keyMaterial", "/mimi/v1/keyMaterial/{targetUser}"),
    ("update", "/mimi/v1/update/{roomId}"),
    ("groupInfo", "/mimi/v1/groupInfo/{roomId}"),
    ("submitMessage", "/mimi/v1/submitMessage/{roomId}"),
    ("notify", "/mimi/v1/notify/{roomId}"),
    ("requestConsent", "/mimi/v1/requestConsent/{targetDomain}"),
    ("updateConsent", "/mimi/v1/updateConsent/{requesterDomain}"),
    ("identifierQuery", "/mimi/v1/identifierQuery/{domain}"),
    ("reportAbuse", "/mimi/v1/reportAbuse/{roomId}"),
];

/// The provider (see the module documentation).
#[derive(Debug)]
pub struct Provider {
    /// This provider's domain (`mimi.server_name`).
    pub domain: String,
    /// `https://host[:port]` its directory names.
    pub public_url: String,
    /// The homeserver's domain (handles of its users).
    pub homeserver_domain: String,
    /// The hub: local users' devices and key packages.
    pub hub: Arc<Hub>,
    /// The store: consent, claims, abuse reports.
    pub store: Arc<Store>,
    /// The admin's consent policy.
    pub consent: ConsentPolicy,
    /// What one peer's requests may make this provider store per day.
    pub quotas: PeerQuotas,
    /// Whether `identifierQuery` answers.
    pub discovery: bool,
    /// Per-peer figures.
    pub metrics: Arc<super::metrics::PeerMetrics>,
    /// The attachments this server hosts, for other providers to fetch (their users' clients
    /// are here, so they fetch them as the room's followers).
    pub media: crate::federation::media::Hosted,
}

/// A request admitted: the provider its certificate authenticates, and its body.
pub(super) struct Admitted<'a> {
    pub(super) from: &'a str,
    pub(super) body: &'a [u8],
}

impl Provider {
    /// The source provider: named in `From: mimi@<domain>` and authenticated by the client
    /// certificate (401 without either, 403 when they differ).
    fn source<'a>(&self, request: &'a Request) -> Result<&'a str, MatrixError> {
        let unauthorized = |why: &str| MatrixError::new(hyper::StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", why);
        let peer = request.peer.as_ref().ok_or_else(|| unauthorized("a client certificate is required"))?;
        let from = request
            .headers
            .get(hyper::header::FROM)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("mimi@"))
            .filter(|d| !d.is_empty())
            .ok_or_else(|| unauthorized("From: mimi@<provider domain> is required"))?;
        // One spelling per provider (webpki would also accept `Example.ORG.`), and never this one.
        if from.ends_with('.') || from.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(unauthorized("From: the provider domain in lowercase, without a trailing dot"));
        }
        if !peer.authenticates(from) || from == self.domain {
            return Err(MatrixError::forbidden(format!("the client certificate does not authenticate {from}")));
        }
        Ok(from)
    }

    /// The endpoint of a path and its one variable (percent-decoded).
    fn route(path: &str) -> Option<(&str, String)> {
        let rest = path.strip_prefix(PREFIX)?;
        let (endpoint, variable) = rest.split_once('/')?;
        if variable.is_empty() || variable.contains('/') {
            return None;
        }
        let variable = percent_encoding::percent_decode_str(variable).decode_utf8().ok()?.into_owned();
        Some((endpoint, variable))
    }

    fn directory(&self) -> Response {
        crate::http::json(hyper::StatusCode::OK, &directory::own(&self.public_url, &SERVED))
    }
}

impl Handler for Provider {
    fn admit(&self, request: &Request) -> Result<(), MatrixError> {
        if request.path == directory::PATH {
            return if request.method == hyper::Method::GET { Ok(()) } else { Err(MatrixError::method_not_allowed()) };
        }
        if request.path.starts_with(MEDIA) {
            return if request.method == hyper::Method::GET {
                self.source(request).map(|_| ())
            } else {
                Err(MatrixError::method_not_allowed())
            };
        }
        let Some((endpoint, _)) = Self::route(&request.path) else { return Err(MatrixError::unrecognized()) };
        if !SERVED.iter().any(|(key, _)| *key == endpoint) {
            return Err(MatrixError::unrecognized());
        }
        if request.method != hyper::Method::POST {
            return Err(MatrixError::method_not_allowed());
        }
        self.source(request).map(|_| ())
    }

    async fn handle(&self, request: Request) -> Response {
        if request.path == directory::PATH {
            return self.directory();
        }
        let from = self.source(&request).ok().map(str::to_owned);
        if let Some(id) = request.path.strip_prefix(MEDIA) {
            return self.media.get(id, &request).await.unwrap_or_else(|error| error.response());
        }
        let answer = async {
            let from = self.source(&request)?;
            let (endpoint, variable) = Self::route(&request.path).ok_or_else(MatrixError::unrecognized)?;
            let admitted = Admitted { from, body: &request.body };
            match endpoint {
                "keyMaterial" => super::key_material::serve(self, &variable, admitted).await,
                "requestConsent" | "updateConsent" => super::consent::serve(self, endpoint, &variable, admitted).await,
                "identifierQuery" => super::identifier::serve(self, &variable, admitted).await,
                "reportAbuse" => super::abuse::serve(self, &variable, admitted).await,
                "update" => super::update::serve(self, &variable, admitted).await,
                "groupInfo" => super::group_info::serve(self, &variable, admitted).await,
                "submitMessage" => super::submit::serve(self, &variable, admitted).await,
                "notify" => super::notify::serve(self, &variable, admitted).await,
                _ => Err(MatrixError::unrecognized()),
            }
        };
        let response = answer.await.unwrap_or_else(|e| e.response());
        if let Some(from) = from {
            self.metrics.inbound(&from, response.status().as_u16() >= 400);
        }
        response
    }
}

/// A protocol body answer.
pub(super) fn binary(status: hyper::StatusCode, body: Vec<u8>) -> Response {
    use http_body_util::BodyExt as _;
    let mut response = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
    response
}

/// 201 without a body (consent, abuse reports).
pub(super) fn accepted() -> Response {
    binary(hyper::StatusCode::CREATED, Vec::new())
}

/// 400 for a body that does not decode, naming the byte and field.
pub(super) fn malformed(error: &crate::mimi::protocol::WireError) -> MatrixError {
    MatrixError::bad_request("M_BAD_JSON", format!("body: {error}"))
}

/// Runs hub or store work (reads and synced writes) on a blocking thread; a failure is logged
/// and answered 500 (the peer may retry).
pub(super) async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, MatrixError> {
    let done = tokio::task::spawn_blocking(work).await.map_err(|_| MatrixError::internal("worker stopped"))?;
    done.map_err(|error| {
        tracing::error!(%error, "provider request failed");
        MatrixError::internal("temporarily unavailable; retry")
    })
}
