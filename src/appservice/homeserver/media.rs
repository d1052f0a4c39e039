//! Media: download through the authenticated endpoint, upload through the content repository.
//!
//! Downloads go through `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}` (spec
//! v1.11, authenticated media); the legacy unauthenticated `/_matrix/media/v3/download` is
//! frozen on Synapse by default. The caller sets a byte limit per download: a larger declared
//! `Content-Length` fails before the body is read, and a body that grows past it fails as soon as
//! it does.

use hyper::Method;
use hyper::header::HeaderValue;

use super::transport::{Payload, enc};
use super::{HomeserverClient, HomeserverError, parse_json, string_field, with_query};

/// The content type assumed when the homeserver names none.
const OCTET_STREAM: &str = "application/octet-stream";

impl HomeserverClient {
    /// Downloads `mxc://server/media_id`; returns its content type and bytes. More than
    /// `max_bytes` is [`HomeserverError::TooLarge`].
    pub async fn download_media(&self, mxc_url: &str, max_bytes: u64) -> Result<(String, Vec<u8>), HomeserverError> {
        let (server, media_id) = parse_mxc(mxc_url)?;
        let path = format!("/_matrix/client/v1/media/download/{}/{}", enc(server), enc(media_id));
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let reply = self.transport.send(Method::GET, &path, None, self.media_timeout, limit).await?;
        if !reply.is_success() {
            return Err(reply.error());
        }
        let content_type = reply.content_type.clone().unwrap_or_else(|| OCTET_STREAM.to_owned());
        Ok((content_type, Vec::from(reply.body)))
    }

    /// `POST /_matrix/media/v3/upload`: uploads `bytes` as `content_type` (with an optional
    /// `filename`), acting as `as_user`; returns the `mxc://` URI.
    pub async fn upload_media(
        &self,
        bytes: Vec<u8>,
        content_type: &str,
        filename: Option<&str>,
        as_user: Option<&str>,
    ) -> Result<String, HomeserverError> {
        let content_type = HeaderValue::try_from(content_type)
            .map_err(|_| HomeserverError::InvalidRequest(format!("content type `{content_type}`")))?;
        let path = with_query("/_matrix/media/v3/upload".to_owned(), &[("filename", filename), ("user_id", as_user)]);
        let payload = Payload { bytes: bytes.into(), content_type };
        let reply =
            self.transport.send(Method::POST, &path, Some(payload), self.media_timeout, self.max_json_bytes).await?;
        if !reply.is_success() {
            return Err(reply.error());
        }
        let body = parse_json(&reply.body, "upload")?;
        let uri = string_field(&body, "content_uri", "upload")?;
        parse_mxc(&uri).map_err(|_| HomeserverError::Malformed(format!("upload: `{uri}` is not an mxc:// URI")))?;
        Ok(uri)
    }
}

/// Splits `mxc://server/media_id` into its two parts, both non-empty, the media ID without `/`.
fn parse_mxc(mxc_url: &str) -> Result<(&str, &str), HomeserverError> {
    mxc_url
        .strip_prefix("mxc://")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(server, id)| !server.is_empty() && !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| HomeserverError::InvalidRequest(format!("`{mxc_url}` is not an mxc://server/media_id URI")))
}
