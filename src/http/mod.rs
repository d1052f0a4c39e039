//! The HTTP server the homeserver and peers talk to: hyper on loopback, plain for the homeserver
//! and the Linearized Matrix listener (TLS is the reverse proxy's job, as with every bridge an
//! admin runs), mutual TLS for the MIMI provider, where the client certificate is what names the
//! peer (`tls`).
//!
//! A request's head is shown to the handler's `admit` before its body is read, so a request
//! without credentials or to no route is refused without buffering anything. The body is then
//! read completely, within a size limit and within the listener's budget for bodies in memory
//! across all connections (a flood waits instead of growing memory): handlers get bytes, not
//! streams, and a body over the limit is refused with `M_TOO_LARGE` before anything is parsed or
//! stored. Handlers answer with Matrix errors (`errcode`, `error`), never panics.

pub mod auth;
pub mod error;
pub mod health;
pub mod metrics;
pub mod quota;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use error::MatrixError;

/// A response body: whole (JSON, text) or streamed (hosted media, a chunk at a time).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
/// A response.
pub type Response = hyper::Response<Body>;

/// A request, read completely.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: hyper::Method,
    /// The path, still percent-encoded.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The headers.
    pub headers: hyper::HeaderMap,
    /// The body.
    pub body: Bytes,
    /// On a mutual-TLS listener, the client's verified certificate.
    pub peer: Option<tls::PeerCertificate>,
}

impl Request {
    /// A query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned())
        })
    }
}

/// What serves requests.
pub trait Handler: Send + Sync + 'static {
    /// Looks at a request before its body is read (`request.body` is empty): refuse here what
    /// can be refused on the method, path and headers alone (no credentials, an unknown route),
    /// so an unauthenticated client never makes the server buffer a body.
    fn admit(&self, request: &Request) -> Result<(), MatrixError> {
        let _ = request;
        Ok(())
    }

    /// Answers one request.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// A JSON response.
pub fn json(status: hyper::StatusCode, value: &serde_json::Value) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// A plain-text response.
pub fn text(status: hyper::StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

/// Bytes of request bodies one listener holds in memory at once, across connections.
pub const BODY_BUDGET: usize = 64 << 20;

/// Reads a request: head first (refused early by `admit`), then the body within `max_body`
/// bytes and the listener's body budget. The budget's share is held until the answer is ready.
async fn read<H: Handler>(
    request: hyper::Request<Incoming>,
    handler: &H,
    (max_body, budget): &(usize, Arc<tokio::sync::Semaphore>),
    peer: Option<tls::PeerCertificate>,
) -> Result<(Request, Option<tokio::sync::OwnedSemaphorePermit>), MatrixError> {
    let max_body = *max_body;
    let (parts, body) = request.into_parts();
    let mut head = Request {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: Bytes::new(),
        peer,
    };
    handler.admit(&head)?;
    let declared = head
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        // Requests without a body (GETs) have an exact size of zero and reserve nothing.
        .or_else(|| hyper::body::Body::size_hint(&body).exact());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(MatrixError::too_large(max_body));
    }
    // A body of unknown length may grow to the limit: reserve that much.
    let share = declared.map_or(max_body, |n| usize::try_from(n).unwrap_or(max_body)).min(BODY_BUDGET);
    let permit = if share == 0 {
        None
    } else {
        let share = u32::try_from(share.div_ceil(1024)).unwrap_or(u32::MAX);
        Some(Arc::clone(budget).acquire_many_owned(share).await.map_err(|_| MatrixError::internal("shutting down"))?)
    };
    let body = Limited::new(body, max_body).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            MatrixError::too_large(max_body)
        } else {
            MatrixError::bad_request("M_UNKNOWN", "could not read the request body")
        }
    })?;
    head.body = body.to_bytes();
    Ok((head, permit))
}

/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Time allowed for a request's headers, and then for its body.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `handler` on `listener` until `shutdown` turns true, then stops accepting, lets every
/// open connection finish the request it is in (idle keep-alive connections are closed) and
/// returns once none is left. Bodies over `max_body` bytes are refused with 413 `M_TOO_LARGE`;
/// slow clients are cut off after [`READ_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served
/// at once.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    max_body: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    serve_with(listener, None, handler, max_body, shutdown).await;
}

/// [`serve`], over TLS when `tls` is given: each connection's handshake must finish within
/// [`READ_TIMEOUT`], and a verified client certificate reaches the handler as `Request::peer`.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Arc<H>,
    max_body: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    // In KiB, so that a u32 request for a share always fits.
    let budget = Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET / 1024));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot { Ok(slot) => slot, Err(_) => return },
            () = stopped(&mut shutdown) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: do not spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let limits = (max_body, Arc::clone(&budget));
        let (handler, shutdown) = (Arc::clone(&handler), shutdown.clone());
        match &tls {
            None => {
                tokio::spawn(connection(stream, None, handler, limits, shutdown, slot));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Some((stream, peer)) = tls::accept(&acceptor, stream, READ_TIMEOUT).await else { return };
                    connection(stream, peer, handler, limits, shutdown, slot).await;
                });
            }
        }
    }
    drop(listener);
    // Every slot back: every connection has finished.
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

async fn connection<H: Handler, S>(
    stream: S,
    peer: Option<tls::PeerCertificate>,
    handler: Arc<H>,
    limits: (usize, Arc<tokio::sync::Semaphore>),
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = Arc::new(limits);
    let service = service_fn(move |request| {
        let (handler, limits, peer) = (Arc::clone(&handler), Arc::clone(&limits), peer.clone());
        async move {
            let read = tokio::time::timeout(READ_TIMEOUT, read(request, &*handler, &limits, peer)).await;
            Ok::<_, Infallible>(match read {
                Ok(Ok((request, _share))) => handler.handle(request).await,
                Ok(Err(error)) => error.response(),
                Err(_) => MatrixError::new(hyper::StatusCode::REQUEST_TIMEOUT, "M_UNKNOWN", "request body too slow")
                    .response(),
            })
        }
    });
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut shutdown) => {
            // Finish the request in progress, then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}
