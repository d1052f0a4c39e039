//! Requests to other providers: HTTPS with this provider's client certificate, the peer's
//! certificate verified against the trust anchors for the domain in the URL, connections kept
//! and reused per peer, every request bounded in time and every answer in size. `From:` names
//! this provider, as the draft asks (the certificate is what proves it).
//!
//! A peer is reached at the address its name resolves to, unless the config overrides it
//! (`mimi.peers`: tests and private deployments); the TLS name stays the peer's domain either way.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

use crate::http::tls::{TlsError, TlsMaterial};

/// Why a request to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The URL is not an `https` URL with a host.
    #[error("{0}: not an https URL")]
    Url(String),
    /// Connecting, TLS or HTTP failed.
    #[error("{url}: {reason}")]
    Transport {
        /// Where.
        url: String,
        /// What happened.
        reason: String,
    },
    /// No answer within the time allowed.
    #[error("{0}: no answer within {1:?}")]
    Timeout(String, Duration),
    /// The answer was larger than allowed.
    #[error("{0}: answer larger than {1} bytes")]
    TooLarge(String, usize),
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: hyper::StatusCode,
    /// The body.
    pub body: Bytes,
}

/// Resolves peer names, the configured overrides first.
#[derive(Clone)]
struct Resolver {
    overrides: Arc<BTreeMap<String, SocketAddr>>,
    system: GaiResolver,
}

type Resolved = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Resolver {
    type Response = Resolved;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Resolved, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(address) = self.overrides.get(name.as_str()) {
            let address = *address;
            return Box::pin(async move { Ok(vec![address].into_iter()) });
        }
        let lookup = self.system.call(name);
        Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
    }
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector<Resolver>>;

/// The client (see the module documentation). Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct PeerClient {
    client: Client<Connector, Full<Bytes>>,
    from: hyper::header::HeaderValue,
    timeout: Duration,
    max_answer: usize,
    metrics: Arc<super::metrics::PeerMetrics>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").field("from", &self.from).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Time for one request to a peer, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer accepted from a peer.
pub const MAX_ANSWER: usize = 4 << 20;
/// Idle connections kept per peer.
const IDLE_PER_PEER: usize = 8;

impl PeerClient {
    /// A client for the provider `own_domain`, presenting its certificate.
    pub fn new(tls: &TlsMaterial, own_domain: &str, overrides: BTreeMap<String, SocketAddr>) -> Result<Self, TlsError> {
        let resolver = Resolver { overrides: Arc::new(overrides), system: GaiResolver::new() };
        let mut http = HttpConnector::new_with_resolver(resolver);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.client_config()?)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_PEER)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(https);
        let from = hyper::header::HeaderValue::from_str(&format!("mimi@{own_domain}"))
            .map_err(|_| TlsError::Verifier(format!("{own_domain}: not a header value")))?;
        Ok(Self { client, from, timeout: TIMEOUT, max_answer: MAX_ANSWER, metrics: Arc::default() })
    }

    /// The per-peer figures this client counts into.
    pub fn metrics(&self) -> &Arc<super::metrics::PeerMetrics> {
        &self.metrics
    }

    /// Counts this client's requests per peer in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<super::metrics::PeerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Answer, PeerError> {
        self.send(hyper::Method::GET, url, None, self.max_answer).await
    }

    /// `GET url` of a body up to `max_bytes` (an attachment).
    pub async fn get_up_to(&self, url: &str, max_bytes: usize) -> Result<Answer, PeerError> {
        self.send(hyper::Method::GET, url, None, max_bytes).await
    }

    /// `POST url` with a protocol body.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Result<Answer, PeerError> {
        self.send(hyper::Method::POST, url, Some(body), self.max_answer).await
    }

    async fn send(
        &self,
        method: hyper::Method,
        url: &str,
        body: Option<Vec<u8>>,
        max_answer: usize,
    ) -> Result<Answer, PeerError> {
        let uri: hyper::Uri = url.parse().map_err(|_| PeerError::Url(url.to_owned()))?;
        let Some(host) = uri.host().filter(|_| uri.scheme_str() == Some("https")).map(str::to_owned) else {
            return Err(PeerError::Url(url.to_owned()));
        };
        let mut request =
            hyper::Request::builder().method(method).uri(uri).header(hyper::header::FROM, self.from.clone());
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/octet-stream");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| PeerError::Transport { url: url.to_owned(), reason: e.to_string() })?;
        let transport = |e: &dyn std::fmt::Display| PeerError::Transport { url: url.to_owned(), reason: e.to_string() };
        let exchange = async {
            let response =
                self.client.request(request).await.map_err(|e| transport(&crate::http::error::error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), max_answer).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    PeerError::TooLarge(url.to_owned(), max_answer)
                } else {
                    transport(&e)
                }
            })?;
            Ok(Answer { status, body: body.to_bytes() })
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PeerError::Timeout(url.to_owned(), self.timeout))
            .and_then(|answer| answer);
        let answered = result.as_ref().is_ok_and(|a| !a.status.is_server_error());
        self.metrics.outbound(&host, answered, started.elapsed());
        result
    }
}
