//! Matrix identifiers ⇄ MIMI URIs, and the two link forms mentions take.
//!
//! The mapping is structural so that it needs no table and is reversible: `@alice:hs.example` ⇄
//! `mimi://hs.example/u/alice`, and a room ⇄ `mimi://<server>/r/<opaque>`. Matrix localparts may
//! (historically) hold any printable character, URI path segments may not, so everything outside
//! the RFC 3986 unreserved set, `=` and `+` is percent-encoded (upper-case hex) on the way out and
//! decoded on the way back; `encode ∘ decode` is the identity on every URI this module produces.
//! Server names (`host[:port]`, IPv6 literals in brackets) are valid URI authorities as they are.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::TranslateError;

/// Bytes left alone in a path segment: unreserved (`-._~`) plus `=` and `+`, common in bridged
/// localparts.
const SEGMENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'=').remove(b'+');
/// Bytes left alone in a matrix.to fragment identifier (as clients write them).
const FRAGMENT: &AsciiSet = &SEGMENT.remove(b'@').remove(b':').remove(b'!').remove(b'#').remove(b'$');

const MATRIX_TO: &str = "https://matrix.to/#/";

/// Splits `@localpart:server`.
pub fn split_user_id(user_id: &str) -> Result<(&str, &str), TranslateError> {
    let bad = || TranslateError::BadUserId(user_id.to_owned());
    let rest = user_id.strip_prefix('@').ok_or_else(bad)?;
    let (local, server) = rest.split_once(':').ok_or_else(bad)?;
    if local.is_empty() || !valid_server(server) {
        return Err(bad());
    }
    Ok((local, server))
}

fn valid_server(server: &str) -> bool {
    !server.is_empty() && server.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// `@alice:hs.example` → `mimi://hs.example/u/alice`.
pub fn user_uri(user_id: &str) -> Result<String, TranslateError> {
    let (local, server) = split_user_id(user_id)?;
    Ok(format!("mimi://{server}/u/{}", utf8_percent_encode(local, SEGMENT)))
}

/// `mimi://hs.example/u/alice` → `@alice:hs.example`.
pub fn matrix_user_id(uri: &str) -> Result<String, TranslateError> {
    let (server, local) = split_mimi(uri, "u").ok_or_else(|| TranslateError::BadUri(uri.to_owned()))?;
    Ok(format!("@{local}:{server}"))
}

/// `@alice:hs.example` and device `D1` → `mimi://hs.example/d/alice/D1` (an MLS client).
pub fn client_uri(user_id: &str, device_id: &str) -> Result<String, TranslateError> {
    let (local, server) = split_user_id(user_id)?;
    if device_id.is_empty() {
        return Err(TranslateError::BadUserId(user_id.to_owned()));
    }
    Ok(format!("mimi://{server}/d/{}/{}", utf8_percent_encode(local, SEGMENT), utf8_percent_encode(device_id, SEGMENT)))
}

/// `mimi://hs.example/d/alice/D1` → (`@alice:hs.example`, `D1`).
pub fn parse_client_uri(uri: &str) -> Result<(String, String), TranslateError> {
    let bad = || TranslateError::BadUri(uri.to_owned());
    let (server, path) = uri.strip_prefix("mimi://").and_then(|r| r.split_once('/')).ok_or_else(bad)?;
    let (local, device) = path.strip_prefix("d/").and_then(|p| p.split_once('/')).ok_or_else(bad)?;
    let device = percent_decode_str(device).decode_utf8().map_err(|_| bad())?;
    if device.is_empty() || device.contains('/') || device.chars().any(char::is_control) {
        return Err(bad());
    }
    let user = matrix_user_id(&format!("mimi://{server}/u/{local}")).map_err(|_| bad())?;
    Ok((user, device.into_owned()))
}

/// `mimi://<server>/r/<opaque>`, the opaque part percent-encoded.
pub fn room_uri(server: &str, opaque: &str) -> Result<String, TranslateError> {
    if !valid_server(server) || opaque.is_empty() {
        return Err(TranslateError::BadUri(format!("mimi://{server}/r/{opaque}")));
    }
    Ok(format!("mimi://{server}/r/{}", utf8_percent_encode(opaque, SEGMENT)))
}

/// The (server, opaque) of a room URI.
pub fn parse_room_uri(uri: &str) -> Result<(String, String), TranslateError> {
    split_mimi(uri, "r").ok_or_else(|| TranslateError::BadUri(uri.to_owned()))
}

/// The URI of a MIMI room whose log has the room ID `!<opaque>:<server>`.
pub fn room_uri_of(room_id: &str) -> Result<String, TranslateError> {
    let bad = || TranslateError::BadUri(room_id.to_owned());
    let (opaque, server) = room_id.strip_prefix('!').and_then(|r| r.split_once(':')).ok_or_else(bad)?;
    room_uri(server, opaque)
}

/// The room ID `!<opaque>:<server>` of a MIMI room URI (the inverse of [`room_uri_of`]).
pub fn room_id_of(uri: &str) -> Result<String, TranslateError> {
    let (server, opaque) = parse_room_uri(uri)?;
    if opaque.contains(':') {
        return Err(TranslateError::BadUri(uri.to_owned()));
    }
    Ok(format!("!{opaque}:{server}"))
}

/// (server, decoded segment) of `mimi://server/<kind>/segment`.
fn split_mimi(uri: &str, kind: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("mimi://")?;
    let (server, path) = rest.split_once('/')?;
    let segment = path.strip_prefix(kind)?.strip_prefix('/')?;
    if !valid_server(server) || segment.is_empty() || segment.contains(['/', '?', '#', '@', ':']) {
        return None;
    }
    let decoded = percent_decode_str(segment).decode_utf8().ok()?;
    if decoded.is_empty() || (kind == "u" && decoded.contains(':')) || decoded.chars().any(char::is_control) {
        return None;
    }
    Some((server.to_owned(), decoded.into_owned()))
}

/// The user a `https://matrix.to/#/@user:server` link points at (percent-encoded or not, with or
/// without a `?via=` query), or `None` for any other link.
pub fn matrix_to_user(href: &str) -> Option<String> {
    let id = href.strip_prefix(MATRIX_TO)?;
    let id = id.split_once('?').map_or(id, |(id, _)| id);
    let id = percent_decode_str(id).decode_utf8().ok()?;
    split_user_id(&id).ok()?;
    Some(id.into_owned())
}

/// `https://matrix.to/#/@user:server`.
pub fn matrix_to_link(user_id: &str) -> String {
    format!("{MATRIX_TO}{}", utf8_percent_encode(user_id, FRAGMENT))
}

/// A matrix.to user link → the user's MIMI URI (the forward rewrite of mention links).
pub fn matrix_to_mimi(href: &str) -> Option<String> {
    matrix_to_user(href).and_then(|u| user_uri(&u).ok())
}

/// A MIMI user URI → its matrix.to link (the reverse rewrite of mention links).
pub fn mimi_to_matrix(href: &str) -> Option<String> {
    matrix_user_id(href).ok().map(|u| matrix_to_link(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_round_trip_and_odd_localparts_are_encoded() {
        assert_eq!(user_uri("@alice:hs.example").unwrap(), "mimi://hs.example/u/alice");
        assert_eq!(matrix_user_id("mimi://hs.example/u/alice").unwrap(), "@alice:hs.example");
        for id in ["@a/b?c#d%e f:hs.example:8448", "@_bridge=x+y.z~:[::1]:8448", "@ünï:hs.example"] {
            let uri = user_uri(id).unwrap();
            assert!(!uri["mimi://".len()..].split_once('/').unwrap().1[2..].contains(['/', '?', '#', ' ']), "{uri}");
            assert_eq!(matrix_user_id(&uri).unwrap(), id);
        }
        assert_eq!(user_uri("@a/b:hs").unwrap(), "mimi://hs/u/a%2Fb");
        assert!(user_uri("alice:hs").is_err());
        assert!(user_uri("@alice").is_err());
        assert!(matrix_user_id("mimi://hs.example/r/alice").is_err());
        assert!(matrix_user_id("https://hs.example/u/alice").is_err());
    }

    #[test]
    fn rooms_and_matrix_to_links() {
        let room = room_uri("hs.example", "!abc:hs.example").unwrap();
        assert_eq!(room, "mimi://hs.example/r/%21abc%3Ahs.example");
        assert_eq!(parse_room_uri(&room).unwrap(), ("hs.example".into(), "!abc:hs.example".into()));
        assert_eq!(
            matrix_to_user("https://matrix.to/#/%40bob%3Ahs.example?via=hs.example").unwrap(),
            "@bob:hs.example"
        );
        assert_eq!(matrix_to_user("https://matrix.to/#/#room:hs.example"), None);
        assert_eq!(matrix_to_link("@bob:hs.example"), "https://matrix.to/#/@bob:hs.example");
        assert_eq!(mimi_to_matrix("mimi://hs.example/u/bob").unwrap(), "https://matrix.to/#/@bob:hs.example");
        assert_eq!(matrix_to_mimi("https://matrix.to/#/@bob:hs.example").unwrap(), "mimi://hs.example/u/bob");
    }
}
