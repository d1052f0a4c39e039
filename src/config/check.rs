//! Checks beyond types: every value that parses but cannot work is reported with its field path,
//! the value found and what was expected.

use std::net::{IpAddr, SocketAddr};

use serde::de::{Deserializer, Unexpected};

use super::{Config, GENERATE};
use crate::event::meta::is_server_name;

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `appservice.port`.
    pub field: String,
    /// The value found, as written (strings quoted).
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl FieldError {
    /// An invalid string value.
    pub fn new(field: &str, value: &str, expected: &str) -> Self {
        Self { field: field.to_owned(), value: format!("{value:?}"), expected: expected.to_owned() }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: invalid value {}, expected {}", self.field, self.value, self.expected)
    }
}

pub(super) fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A visitor that checks the value itself, so errors carry the field path and position (an error
/// raised after deserializing would be blamed on the enclosing section), and names what it
/// expects in type errors too.
struct Expect<T> {
    expected: &'static str,
    from_int: fn(i64) -> Option<T>,
    from_str: fn(&str) -> Option<T>,
}

impl<T> serde::de::Visitor<'_> for Expect<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<T, E> {
        (self.from_int)(n).ok_or_else(|| E::invalid_value(Unexpected::Signed(n), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<T, E> {
        i64::try_from(n).ok().and_then(self.from_int).ok_or_else(|| E::invalid_value(Unexpected::Unsigned(n), &self))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<T, E> {
        (self.from_str)(s).ok_or_else(|| E::invalid_value(Unexpected::Str(s), &self))
    }
}

/// A TCP port, 1-65535.
pub(super) fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    d.deserialize_any(Expect {
        expected: "a port number from 1 to 65535",
        from_int: |n| u16::try_from(n).ok().filter(|p| *p != 0),
        from_str: |_| None,
    })
}

/// An IP address (no host names: this is what a listener binds to).
pub(super) fn ip_addr<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    d.deserialize_any(Expect {
        expected: "an IP address such as 127.0.0.1 or ::1",
        from_int: |_| None,
        from_str: |s| s.parse().ok(),
    })
}

/// `IP:port` with a port from 1 to 65535.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_any(Expect {
        expected: "an IP address and a port from 1 to 65535, e.g. 127.0.0.1:29342",
        from_int: |_| None,
        from_str: |s| s.parse::<SocketAddr>().ok().filter(|a| a.port() != 0),
    })
}

/// Every problem in `config`, in file order.
pub(super) fn check(config: &Config) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut need = |ok: bool, field: &str, value: &str, expected: &str| {
        if !ok {
            errors.push(FieldError::new(field, value, expected));
        }
    };
    let (hs, appservice) = (&config.homeserver, &config.appservice);
    need(is_http_url(&hs.address), "homeserver.address", &hs.address, URL);
    need(is_server_name(&hs.domain), "homeserver.domain", &hs.domain, SERVER_NAME);
    need(is_http_url(&appservice.address), "appservice.address", &appservice.address, URL);
    need(
        !appservice.id.is_empty() && appservice.id.bytes().all(|b| b.is_ascii_graphic()),
        "appservice.id",
        &appservice.id,
        "a non-empty ID of visible ASCII characters, unique on the homeserver",
    );
    let bot = &appservice.bot.username;
    need(is_localpart(bot) && bot.len() + hs.domain.len() + 2 <= 255, "appservice.bot.username", bot, LOCALPART);
    for (field, token) in [("appservice.as_token", &appservice.as_token), ("appservice.hs_token", &appservice.hs_token)]
    {
        need(is_token(token), field, token, "a token of visible ASCII characters, or `generate`");
    }
    need(
        appservice.as_token == GENERATE || appservice.as_token != appservice.hs_token,
        "appservice.hs_token",
        "<redacted>",
        "a token different from appservice.as_token",
    );
    let template = &appservice.username_template;
    match check_template(template, &hs.domain) {
        Err(expected) => need(false, "appservice.username_template", template, expected),
        Ok(()) => need(
            !template_matches(template, bot),
            "appservice.bot.username",
            bot,
            "a localpart outside the ghost namespace of appservice.username_template",
        ),
    }
    let mimi = &config.mimi;
    need(is_server_name(&mimi.server_name), "mimi.server_name", &mimi.server_name, SERVER_NAME);
    need(
        mimi.server_name != hs.domain,
        "mimi.server_name",
        &mimi.server_name,
        "a server name of the bridge's own, different from homeserver.domain (e.g. mimi.hs.test)",
    );
    let key = mimi.signing_key.to_string_lossy();
    need(!key.is_empty(), "mimi.signing_key", &key, "the path of a signing key file (`mimi-bridge keygen`)");
    for (index, trusted) in mimi.trusted_keys.iter().enumerate() {
        need(
            crate::event::KeyRing::new().add_argument(trusted).is_ok(),
            &format!("mimi.trusted_keys[{index}]"),
            trusted,
            "server=ed25519:ID=base64 public key (32 bytes)",
        );
    }
    if let Some(url) = &mimi.public_url {
        let host = url.strip_prefix("https://").unwrap_or_default();
        need(
            !host.is_empty() && !host.contains('/') && is_server_name(host),
            "mimi.public_url",
            url,
            "https://host[:port] (no path)",
        );
    }
    for domain in mimi.peers.keys() {
        need(is_server_name(domain), &format!("mimi.peers.{domain}"), domain, SERVER_NAME);
    }
    let path = config.database.path.to_string_lossy();
    need(!path.is_empty(), "database.path", &path, "the path of the data directory");
    let memory = config.database.memory_mb;
    need(
        (crate::store::MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&memory),
        "database.memory_mb",
        &memory.to_string(),
        "MiB for RocksDB's memtables and block cache, from 16 to 1048576",
    );
    let level = &config.logging.level;
    need(
        tracing_subscriber::EnvFilter::builder().parse(level).is_ok(),
        "logging.level",
        level,
        "a level (error, warn, info, debug, trace) or tracing filter directives such as `info,mimi_bridge=debug`",
    );
    errors
}

/// The largest `database.memory_mb` (1 TiB): beyond it, a typo rather than a budget.
const MAX_MEMORY_MB: u32 = 1 << 20;
const URL: &str = "an http:// or https:// URL such as http://127.0.0.1:8008 (no query or fragment)";
const SERVER_NAME: &str = "a server name: a host name or IP address, optionally with :port";
const LOCALPART: &str = "a Matrix localpart of lowercase letters, digits, `.`, `_` and `-`";

/// `http(s)://host[:port][/path]`, with no user info, query or fragment.
pub(super) fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://")) else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, Some(port)),
        _ => (authority, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'),
    };
    host_ok
        && port.is_none_or(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p != 0))
        && path.bytes().all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

/// The localparts the bridge creates or claims: `[a-z0-9._-]+`, which Matrix allows and Synapse
/// accepts as `sender_localpart` (URL-safe).
pub(super) fn is_localpart(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_localpart_byte)
}

fn is_localpart_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
}

fn is_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

/// The fixed text and placeholders of a ghost template, in order.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece<'a> {
    Text(&'a str),
    Server,
    Localpart,
}

/// Splits a template into pieces; `None` when a brace is not one of the two placeholders.
pub(super) fn pieces(template: &str) -> Option<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let tail = &rest[open..];
        let (piece, len) = if tail.starts_with("{server}") {
            (Piece::Server, "{server}".len())
        } else if tail.starts_with("{localpart}") {
            (Piece::Localpart, "{localpart}".len())
        } else {
            return None;
        };
        out.push(piece);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Some(out)
}

fn check_template(template: &str, domain: &str) -> Result<(), &'static str> {
    const EXPECTED: &str = "a fixed prefix of lowercase letters, digits, `.`, `_` or `-`, then `{server}`, fixed \
         text containing `_`, then `{localpart}` (each once), e.g. `mimi_{server}_{localpart}`";
    let pieces = pieces(template).ok_or(EXPECTED)?;
    let count = |p: &Piece<'_>| pieces.iter().filter(|q| *q == p).count();
    let texts_ok = pieces.iter().all(|p| match p {
        Piece::Text(t) => t.bytes().all(is_localpart_byte),
        _ => true,
    });
    // `{server}`, then text with `_` (no server name has one: the mapping reverses there), then
    // `{localpart}`.
    let separated =
        pieces.windows(3).any(|w| matches!(w, [Piece::Server, Piece::Text(t), Piece::Localpart] if t.contains('_')));
    if count(&Piece::Server) != 1
        || count(&Piece::Localpart) != 1
        || !matches!(pieces.first(), Some(Piece::Text(_)))
        || !texts_ok
        || !separated
    {
        return Err(EXPECTED);
    }
    let sample = template.replace("{server}", "part.test").replace("{localpart}", "bob");
    if !is_localpart(&sample) || sample.len() + domain.len() + 2 > 200 {
        return Err("a template whose user IDs are valid and leave room for long remote IDs (under 200 bytes)");
    }
    Ok(())
}

/// Whether `localpart` falls in the template's namespace (placeholders match anything).
pub(super) fn template_matches(template: &str, localpart: &str) -> bool {
    let Some(pieces) = pieces(template) else { return false };
    glob(&pieces, localpart)
}

fn glob(pieces: &[Piece<'_>], s: &str) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Text(t), rest)) => s.strip_prefix(t).is_some_and(|s| glob(rest, s)),
        Some((_, rest)) => (0..=s.len()).filter(|i| s.is_char_boundary(*i)).any(|i| glob(rest, &s[i..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in ["http://127.0.0.1:8008", "https://hs.test", "http://[::1]:29340/bridge/", "HTTP://A.b"] {
            assert!(is_http_url(good), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1:8008",
            "ftp://hs.test",
            "http://",
            "http://:80",
            "http://h:0",
            "http://h:70000",
            "http://u@h",
            "http://h/a b",
            "http://h/?q",
            "http://h#f",
            "http://[zz]:1",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn localparts() {
        assert!(is_localpart("mimibot") && is_localpart("a.b_c-9"));
        assert!(!is_localpart("") && !is_localpart("Bot") && !is_localpart("a:b") && !is_localpart("a b"));
        assert!(!is_localpart("a+b"), "not URL-safe, which Synapse requires of sender_localpart");
    }

    #[test]
    fn templates() {
        assert_eq!(check_template("mimi_{server}_{localpart}", "hs.test"), Ok(()));
        assert!(check_template("_mimi.{localpart}={server}", "hs.test").is_err(), "`=` not allowed");
        assert_eq!(check_template("_mimi.{server}._{localpart}.x", "hs.test"), Ok(()));
        for bad in [
            "mimi_{server}",
            "mimi_{localpart}",
            "{server}_{localpart}",
            "mimi_{server}{localpart}",
            "mimi_{server}-{localpart}",
            "mimi_{localpart}_{server}",
            "mimi_{server}_{localpart}_{server}",
            "mimi_{Server}_{localpart}",
            "Mimi_{server}_{localpart}",
            "mimi {server}_{localpart}",
            "mimi_{server}_{localpart",
            "mimi_{server}_{localpart}}",
        ] {
            assert!(check_template(bad, "hs.test").is_err(), "{bad}");
        }
        assert!(check_template(&format!("{}_{{server}}_{{localpart}}", "m".repeat(190)), "hs.test").is_err());
    }

    #[test]
    fn namespace_matching() {
        let t = "mimi_{server}_{localpart}";
        assert!(template_matches(t, "mimi_part.test_bob") && template_matches(t, "mimi__"));
        assert!(!template_matches(t, "mimibot") && !template_matches(t, "mimi_x") && !template_matches(t, "xmimi__"));
    }

    #[test]
    fn every_problem_is_reported_in_file_order_and_tokens_stay_secret() {
        let text = crate::config::EXAMPLE
            .replace("address: http://127.0.0.1:8008", "address: 'http://h/?q'")
            .replace("as_token: generate", "as_token: s3cret")
            .replace("hs_token: generate", "hs_token: s3cret")
            .replace("username: mimibot", "username: mimi_a_b");
        let err = Config::from_yaml(&text, "c.yaml".as_ref()).unwrap_err();
        let crate::config::ConfigError::Invalid { errors, .. } = &err else { panic!("{err}") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["homeserver.address", "appservice.hs_token", "appservice.bot.username"]);
        assert!(err.to_string().starts_with("c.yaml: homeserver.address: invalid value \"http://h/?q\", expected"));
        assert!(errors[2].expected.contains("ghost namespace"));
        let config: Config = serde_norway::from_str(&text).unwrap();
        assert!(!err.to_string().contains("s3cret") && !format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn field_errors_name_field_value_and_expectation() {
        let e = FieldError::new("appservice.address", "htp://x", URL);
        assert_eq!(e.to_string(), format!("appservice.address: invalid value \"htp://x\", expected {URL}"));
    }
}
