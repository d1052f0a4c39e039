//! The HTTP server the homeserver and peers talk to: hyper over plain TCP on loopback (TLS is
//! the reverse proxy's job, as with every bridge an admin runs).
//!
//! A request is read completely, within a size limit, before any handler sees it: handlers get
//! bytes, not streams, and a body over the limit is refused with `M_TOO_LARGE` before anything
//! is parsed or stored. Handlers answer with Matrix errors (`errcode`, `error`), never panics.

pub mod auth;
pub mod error;
pub mod health;
pub mod metrics;

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

/// A response body.
pub type Body = Full<Bytes>;
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
    /// Answers one request.
    fn handle(&self, request: Request) -> impl Future<Output = Response> + Send;
}

/// A JSON response.
pub fn json(status: hyper::StatusCode, value: &serde_json::Value) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// A plain-text response.
pub fn text(status: hyper::StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

async fn read(request: hyper::Request<Incoming>, max_body: usize) -> Result<Request, MatrixError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, max_body).collect().await.map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            MatrixError::too_large(max_body)
        } else {
            MatrixError::bad_request("M_UNKNOWN", "could not read the request body")
        }
    })?;
    Ok(Request {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body: body.to_bytes(),
    })
}

/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Time allowed for a request's headers, and then for its body.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves `handler` on `listener` until `shutdown` turns true. Bodies over `max_body` bytes are
/// refused with 413 `M_TOO_LARGE`; slow clients are cut off after [`READ_TIMEOUT`], and at most
/// [`MAX_CONNECTIONS`] are served at once.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    max_body: usize,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
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
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let handler = Arc::clone(&handler);
                async move {
                    let read = tokio::time::timeout(READ_TIMEOUT, read(request, max_body)).await;
                    Ok::<_, Infallible>(match read {
                        Ok(Ok(request)) => handler.handle(request).await,
                        Ok(Err(error)) => error.response(),
                        Err(_) => {
                            MatrixError::new(hyper::StatusCode::REQUEST_TIMEOUT, "M_UNKNOWN", "request body too slow")
                                .response()
                        }
                    })
                }
            });
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
}
