//! `GET /_mimi/media/v1/{id}`: attachments this server hosts for MIMI rooms.
//!
//! MIMI content carries attachments as `ExternalPart`s: a URL, the AES-128-GCM key and nonce, and
//! the SHA-256 of the ciphertext. What is stored and served here is only that ciphertext, under
//! an unguessable ID; the key travels inside the MLS-encrypted message. So the endpoint needs no
//! authentication, like a homeserver's media repository behind an unguessable media ID.
//!
//! An attachment is stored in chunks and streamed a chunk at a time (each read from the store on
//! a blocking thread as the client takes the previous one), so a download holds one chunk in
//! memory, never the whole file; at most [`MAX_DOWNLOADS`] are served at once, and further
//! requests wait for a slot, at most [`SLOT_WAIT`] (then 503, so that a client retries later
//! rather than pile up connections).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame};

use crate::http::{MatrixError, Request, Response};
use crate::store::{Store, StoreError};

/// The path prefix.
pub const PATH: &str = "/_mimi/media/v1/";

/// Downloads served at once.
pub const MAX_DOWNLOADS: usize = 16;

/// How long a request waits for a download slot before it is answered 503.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The URL of a hosted attachment, on this server's public name.
pub fn url(server_name: &str, media_id: &str) -> String {
    format!("https://{server_name}{PATH}{media_id}")
}

/// The media ID of a URL of this server's, if it is one.
pub fn local_id<'a>(server_name: &str, url: &'a str) -> Option<&'a str> {
    url.strip_prefix("https://")?.strip_prefix(server_name)?.strip_prefix(PATH).filter(|id| !id.contains('/'))
}

type ChunkRead = tokio::task::JoinHandle<Result<Option<Vec<u8>>, StoreError>>;

/// The chunks of one attachment, read as the client takes them.
struct Chunks {
    store: Arc<Store>,
    id: String,
    next: u32,
    reading: Option<ChunkRead>,
    first: Option<Vec<u8>>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(first)))));
        }
        let this = &mut *self;
        let reading = this.reading.get_or_insert_with(|| {
            let (store, id, index) = (Arc::clone(&this.store), this.id.clone(), this.next);
            tokio::task::spawn_blocking(move || store.media_chunk(&id, index))
        });
        let read = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(read) => read,
        };
        this.reading = None;
        match read {
            Ok(Ok(Some(chunk))) => {
                this.next += 1;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
            // The end, or a failed read: the client sees the download cut short (and the hash
            // will not match).
            Ok(Err(error)) => {
                tracing::error!(%error, "reading a hosted attachment failed");
                Poll::Ready(None)
            }
            Ok(Ok(None)) | Err(_) => Poll::Ready(None),
        }
    }
}

/// The attachments this server hosts, served by the federation listener and the MIMI
/// provider's alike (each with its own download slots).
#[derive(Debug)]
pub struct Hosted {
    store: Arc<Store>,
    downloads: Arc<tokio::sync::Semaphore>,
}

impl Hosted {
    /// Serving from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, downloads: Arc::new(tokio::sync::Semaphore::new(MAX_DOWNLOADS)) }
    }

    /// Serves one attachment.
    pub async fn get(&self, id: &str, request: &Request) -> Result<Response, MatrixError> {
        get(self, id, request).await
    }
}

async fn get(hosted: &Hosted, id: &str, request: &Request) -> Result<Response, MatrixError> {
    if request.method != hyper::Method::GET {
        return Err(MatrixError::method_not_allowed());
    }
    let slot = tokio::time::timeout(SLOT_WAIT, Arc::clone(&hosted.downloads).acquire_owned())
        .await
        .map_err(|_| {
            MatrixError::new(
                hyper::StatusCode::SERVICE_UNAVAILABLE,
                "M_LIMIT_EXCEEDED",
                "too many downloads; retry later",
            )
        })?
        .map_err(|_| MatrixError::internal("shutting down"))?;
    let (store, media_id) = (Arc::clone(&hosted.store), id.to_owned());
    let first = tokio::task::spawn_blocking(move || store.media_chunk(&media_id, 0))
        .await
        .map_err(|_| MatrixError::internal("media store unavailable"))?
        .map_err(|_| MatrixError::internal("media store unavailable"))?
        .ok_or_else(|| MatrixError::not_found("no such media"))?;
    let chunks = Chunks {
        store: Arc::clone(&hosted.store),
        id: id.to_owned(),
        next: 1,
        reading: None,
        first: Some(first),
        _slot: slot,
    };
    let mut response = hyper::Response::new(chunks.boxed());
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
    Ok(response)
}
