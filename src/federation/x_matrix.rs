//! X-Matrix request signatures: `Authorization: X-Matrix origin="…",destination="…",
//! key="ed25519:ID",sig="…"` over the canonical JSON of `{method, uri, origin, destination,
//! content}`. A body-less request is verified with and without `"content": {}` (the draft and
//! Matrix disagree); every header must verify.
//!
//! Parsing a body costs far more than checking a signature (about 130 ms of CPU for 4 MiB), so
//! the signature is first checked over the body's bytes as sent: a peer that sends canonical
//! JSON (Synapse does) signed exactly those bytes, spliced into the signed object as `content`
//! (which sorts first). Only a body that fails this is parsed and canonicalized to be checked
//! again ([`verify_parsed`]), and the caller bounds how many of those run at once.

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

/// One X-Matrix header, checked as far as it can be without the body.
struct Claim {
    origin: String,
    key: ed25519_dalek::VerifyingKey,
    sig: String,
}

fn forbidden(why: &str) -> MatrixError {
    MatrixError::new(hyper::StatusCode::UNAUTHORIZED, "M_FORBIDDEN", why.to_owned())
}

/// Every `Authorization` header well formed, for `destination`, naming one origin and a key this
/// server trusts.
fn claims(headers: &hyper::HeaderMap, destination: &str, keys: &KeyRing) -> Result<Vec<Claim>, MatrixError> {
    let mut claims: Vec<Claim> = Vec::new();
    for header in headers.get_all(hyper::header::AUTHORIZATION) {
        let params = header.to_str().ok().and_then(params).ok_or_else(|| forbidden("malformed X-Matrix header"))?;
        let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let (Some(from), Some(key_id), Some(sig)) = (get("origin"), get("key"), get("sig")) else {
            return Err(forbidden("X-Matrix header lacks origin, key or sig"));
        };
        if get("destination").is_some_and(|d| d != destination) {
            return Err(forbidden("X-Matrix destination is not this server"));
        }
        if claims.first().is_some_and(|c| c.origin != from) {
            return Err(forbidden("X-Matrix headers name different origins"));
        }
        let key = *keys.get(from, key_id).ok_or_else(|| forbidden("unknown origin key"))?;
        claims.push(Claim { origin: from.to_owned(), key, sig: sig.to_owned() });
    }
    if claims.is_empty() {
        return Err(forbidden("no X-Matrix authorization"));
    }
    Ok(claims)
}

/// What can be checked before the body is read: the headers are X-Matrix, for this server, from
/// one origin whose key is trusted. A request failing this is refused without reading its body.
pub fn precheck(headers: &hyper::HeaderMap, destination: &str, keys: &KeyRing) -> Result<(), MatrixError> {
    claims(headers, destination, keys).map(|_| ())
}

/// The signed bytes of a request whose body is sent as canonical JSON: the body spliced in as
/// `content`, the first key in canonical order.
fn spliced(method: &str, uri: &str, origin: &str, destination: &str, body: &[u8]) -> Vec<u8> {
    let rest = object_to_bytes(&signed_object(method, uri, origin, destination, None));
    let mut out = Vec::with_capacity(body.len() + rest.len() + 12);
    out.extend_from_slice(b"{\"content\":");
    out.extend_from_slice(body);
    out.push(b',');
    out.extend_from_slice(rest.get(1..).unwrap_or_default());
    out
}

/// Verifies the X-Matrix headers of a request with a body against the body's bytes as sent,
/// without parsing it: `Ok(Some(origin))` when every header verifies so, `Ok(None)` when the
/// body must be parsed to tell ([`verify_parsed`]). Header faults are 401 `M_FORBIDDEN`.
pub fn verify_bytes_as_sent(
    headers: &hyper::HeaderMap,
    method: &str,
    uri: &str,
    destination: &str,
    body: &[u8],
    keys: &KeyRing,
) -> Result<Option<String>, MatrixError> {
    let claims = claims(headers, destination, keys)?;
    let verified = claims.iter().all(|claim| {
        let signed = spliced(method, uri, &claim.origin, destination, body);
        verify_bytes(&claim.key, &claim.sig, &signed)
    });
    Ok(verified.then(|| claims[0].origin.clone()))
}

/// Verifies the X-Matrix headers of a request to `destination` (this server) over its parsed,
/// canonicalized body; returns the origin. Missing or malformed headers, another destination, an
/// unknown key, a body that is not JSON or a bad signature are 401 `M_FORBIDDEN`.
pub fn verify_parsed(
    headers: &hyper::HeaderMap,
    method: &str,
    uri: &str,
    destination: &str,
    body: &[u8],
    keys: &KeyRing,
) -> Result<String, MatrixError> {
    let claims = claims(headers, destination, keys)?;
    let content = if body.is_empty() {
        None
    } else {
        Some(parse_object(body).map_err(|_| forbidden("X-Matrix signature does not verify (the body is not JSON)"))?)
    };
    for claim in &claims {
        let candidates = match &content {
            Some(c) => vec![Some(c.clone())],
            None => vec![None, Some(CanonicalJsonObject::new())],
        };
        let verified = candidates.into_iter().any(|content| {
            let signed = signed_object(method, uri, &claim.origin, destination, content);
            verify_bytes(&claim.key, &claim.sig, &object_to_bytes(&signed))
        });
        if !verified {
            return Err(forbidden("X-Matrix signature does not verify"));
        }
    }
    Ok(claims[0].origin.clone())
}

/// [`verify_bytes_as_sent`], then [`verify_parsed`] if the bytes as sent do not verify.
pub fn verify_request(
    headers: &hyper::HeaderMap,
    method: &str,
    uri: &str,
    destination: &str,
    body: &[u8],
    keys: &KeyRing,
) -> Result<String, MatrixError> {
    if !body.is_empty()
        && let Some(origin) = verify_bytes_as_sent(headers, method, uri, destination, body, keys)?
    {
        return Ok(origin);
    }
    verify_parsed(headers, method, uri, destination, body, keys)
}
