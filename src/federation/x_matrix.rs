//! X-Matrix request signatures: `Authorization: X-Matrix origin="…",destination="…",
//! key="ed25519:ID",sig="…"` over the canonical JSON of `{method, uri, origin, destination,
//! content}`. A body-less request is verified with and without `"content": {}` (the draft and
//! Matrix disagree); every header must verify.

use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use crate::event::canonical::{object_to_bytes, parse_object};
use crate::event::sign::verify_bytes;
use crate::event::{KeyRing, ServerKey};
use crate::http::MatrixError;

fn text(s: &str) -> CanonicalJsonValue {
    CanonicalJsonValue::String(s.to_owned())
}

fn signed_object(
    method: &str,
    uri: &str,
    origin: &str,
    destination: &str,
    content: Option<CanonicalJsonObject>,
) -> CanonicalJsonObject {
    let mut object = CanonicalJsonObject::from([
        ("method".to_owned(), text(method)),
        ("uri".to_owned(), text(uri)),
        ("origin".to_owned(), text(origin)),
        ("destination".to_owned(), text(destination)),
    ]);
    if let Some(content) = content {
        object.insert("content".to_owned(), CanonicalJsonValue::Object(content));
    }
    object
}

/// The `Authorization` header value for a request from `origin` to `destination`.
pub fn sign_request(
    key: &ServerKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<&CanonicalJsonObject>,
) -> String {
    let object = signed_object(method, uri, origin, destination, content.cloned());
    let sig = key.sign(&object_to_bytes(&object));
    format!("X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{}\",sig=\"{sig}\"", key.key_id())
}

fn params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.strip_prefix("X-Matrix ")?;
    rest.split(',')
        .map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            Some((k.to_owned(), v.trim_matches('"').to_owned()))
        })
        .collect()
}

/// Verifies the X-Matrix headers of a request to `destination` (this server); returns the
/// origin. Missing or malformed headers, another destination, an unknown key or a bad signature
/// are 401 `M_FORBIDDEN`.
pub fn verify_request(
    headers: &hyper::HeaderMap,
    method: &str,
    uri: &str,
    destination: &str,
    body: &[u8],
    keys: &KeyRing,
) -> Result<String, MatrixError> {
    let forbidden = |why: &str| MatrixError::new(hyper::StatusCode::UNAUTHORIZED, "M_FORBIDDEN", why.to_owned());
    let content = if body.is_empty() {
        None
    } else {
        Some(parse_object(body).map_err(|e| MatrixError::bad_request("M_NOT_JSON", format!("body: {e}")))?)
    };
    let mut origin: Option<String> = None;
    for header in headers.get_all(hyper::header::AUTHORIZATION) {
        let params = header.to_str().ok().and_then(params).ok_or_else(|| forbidden("malformed X-Matrix header"))?;
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let (Some(from), Some(key_id), Some(sig)) = (get("origin"), get("key"), get("sig")) else {
            return Err(forbidden("X-Matrix header lacks origin, key or sig"));
        };
        if get("destination").is_some_and(|d| d != destination) {
            return Err(forbidden("X-Matrix destination is not this server"));
        }
        if origin.as_deref().is_some_and(|o| o != from) {
            return Err(forbidden("X-Matrix headers name different origins"));
        }
        let key = keys.get(from, key_id).ok_or_else(|| forbidden("unknown origin key"))?;
        let candidates = match &content {
            Some(c) => vec![Some(c.clone())],
            None => vec![None, Some(CanonicalJsonObject::new())],
        };
        let verified = candidates.into_iter().any(|content| {
            verify_bytes(key, sig, &object_to_bytes(&signed_object(method, uri, from, destination, content)))
        });
        if !verified {
            return Err(forbidden("X-Matrix signature does not verify"));
        }
        origin = Some(from.to_owned());
    }
    origin.ok_or_else(|| forbidden("no X-Matrix authorization"))
}
