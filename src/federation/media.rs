//! `GET /_mimi/media/v1/{id}`: attachments this server hosts for MIMI rooms.
//!
//! MIMI content carries attachments as `ExternalPart`s: a URL, the AES-128-GCM key and nonce, and
//! the SHA-256 of the ciphertext. What is stored and served here is only that ciphertext, under
//! an unguessable ID; the key travels inside the MLS-encrypted message. So the endpoint needs no
//! authentication, like a homeserver's media repository behind an unguessable media ID.

use super::Federation;
use crate::http::{MatrixError, Request, Response};

/// The path prefix.
pub const PATH: &str = "/_mimi/media/v1/";

/// The URL of a hosted attachment, on this server's public name.
pub fn url(server_name: &str, media_id: &str) -> String {
    format!("https://{server_name}{PATH}{media_id}")
}

/// The media ID of a URL of this server's, if it is one.
pub fn local_id<'a>(server_name: &str, url: &'a str) -> Option<&'a str> {
    url.strip_prefix("https://")?.strip_prefix(server_name)?.strip_prefix(PATH).filter(|id| !id.contains('/'))
}

/// Serves one attachment.
pub fn get(federation: &Federation, id: &str, request: &Request) -> Result<Response, MatrixError> {
    if request.method != hyper::Method::GET {
        return Err(MatrixError::method_not_allowed());
    }
    let blob = federation
        .hub
        .store()
        .media(id)
        .map_err(|_| MatrixError::internal("media store unavailable"))?
        .ok_or_else(|| MatrixError::not_found("no such media"))?;
    let mut response = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from(blob)));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
    Ok(response)
}
