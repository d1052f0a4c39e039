//! `GET /.well-known/mimi-protocol-directory`: where a provider's endpoints are. This provider's
//! is served with every endpoint it has; peers' are fetched over mutual TLS, cached for a bounded
//! time, and read leniently, because the draft's own example is not valid JSON and the one
//! public peer nests its map: a flat key wins, then a nested one (relative paths resolved
//! against the peer's origin); a missing `:`, and a `{variable}` glued to the path before it,
//! are mended.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// The well-known path.
pub const PATH: &str = "/.well-known/mimi-protocol-directory";

/// The endpoints of -06, as directory keys.
pub const ENDPOINTS: [&str; 10] = [
    "keyMaterial",
    "update",
    "notify",
    "submitMessage",
    "groupInfo",
    "requestConsent",
    "updateConsent",
    "identifierQuery",
    "reportAbuse",
    "proxyDownload",
];

/// A peer's endpoints: directory key → URL template (absolute `https` URL with `{variables}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directory {
    /// The templates.
    pub endpoints: BTreeMap<String, String>,
}

/// Why a directory could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Nothing usable in it.
    #[error("no endpoint in the directory")]
    Empty,
    /// The directory lacks the endpoint asked for.
    #[error("the directory has no {0} endpoint")]
    Missing(String),
    /// A template names a variable that was not given.
    #[error("{endpoint}: template variable {{{variable}}} has no value")]
    Variable {
        /// The endpoint.
        endpoint: String,
        /// The variable.
        variable: String,
    },
}

impl Directory {
    /// Parses a peer's directory leniently (see the module documentation); `origin` is
    /// `https://<peer domain>`, for relative paths.
    pub fn parse(body: &[u8], origin: &str) -> Result<Self, DirectoryError> {
        let text = String::from_utf8_lossy(body);
        let map = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => salvage(&text),
        };
        let mut endpoints = BTreeMap::new();
        // Nested maps first, so that flat keys overwrite them.
        for nested in ["endpoints", "wireEndpoints"] {
            if let Some(Value::Object(inner)) = map.get(nested) {
                collect(inner, origin, &mut endpoints);
            }
        }
        collect(&map, origin, &mut endpoints);
        if endpoints.is_empty() {
            return Err(DirectoryError::Empty);
        }
        Ok(Self { endpoints })
    }

    /// The URL of `endpoint` with its variables filled in (each percent-encoded as one path
    /// segment). Variables naming a domain or a user are interchangeable where the draft's
    /// example and its text disagree: give both.
    pub fn url(&self, endpoint: &str, variables: &[(&str, &str)]) -> Result<String, DirectoryError> {
        let template = self.endpoints.get(endpoint).ok_or_else(|| DirectoryError::Missing(endpoint.to_owned()))?;
        let mut out = String::with_capacity(template.len());
        let mut rest = template.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let name = &rest[open + 1..close.min(rest.len())];
            let value =
                variables.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).ok_or_else(|| {
                    DirectoryError::Variable { endpoint: endpoint.to_owned(), variable: name.to_owned() }
                })?;
            out.extend(percent_encoding::utf8_percent_encode(value, SEGMENT));
            rest = rest.get(close + 1..).unwrap_or("");
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// What a path segment must escape (everything but unreserved characters).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Known endpoints of `map` whose values are strings, made absolute and mended.
fn collect(map: &Map<String, Value>, origin: &str, into: &mut BTreeMap<String, String>) {
    for key in ENDPOINTS {
        if let Some(Value::String(template)) = map.get(key) {
            let absolute = if template.starts_with('/') { format!("{origin}{template}") } else { template.clone() };
            if absolute.starts_with("https://") {
                into.insert(key.to_owned(), mend(&absolute));
            }
        }
    }
}

/// `…/update{roomId}` → `…/update/{roomId}`.
fn mend(template: &str) -> String {
    let mut out = String::with_capacity(template.len() + 2);
    for (i, c) in template.char_indices() {
        if c == '{' && i > 0 && !template[..i].ends_with('/') {
            out.push('/');
        }
        out.push(c);
    }
    out
}

/// `"key" "value"` and `"key": "value"` pairs out of text that is not JSON.
fn salvage(text: &str) -> Map<String, Value> {
    let strings: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
    let mut map = Map::new();
    for pair in strings.windows(2) {
        if ENDPOINTS.contains(&pair[0]) && !map.contains_key(pair[0]) {
            map.insert(pair[0].to_owned(), Value::String(pair[1].to_owned()));
        }
    }
    map
}

/// This provider's directory: each endpoint it serves, under `base` (`https://host[:port]`).
pub fn own(base: &str, served: &[(&str, &str)]) -> Value {
    let map: Map<String, Value> =
        served.iter().map(|(key, path)| ((*key).to_owned(), Value::String(format!("{base}{path}")))).collect();
    Value::Object(map)
}

/// Peers' directories, each kept at most `lifetime`.
#[derive(Debug)]
pub struct DirectoryCache {
    lifetime: Duration,
    entries: Mutex<BTreeMap<String, (Instant, Directory)>>,
}

/// Peers whose directories are kept at once.
const MAX_CACHED: usize = 4096;

impl DirectoryCache {
    /// An empty cache.
    pub fn new(lifetime: Duration) -> Self {
        Self { lifetime, entries: Mutex::new(BTreeMap::new()) }
    }

    /// A fresh cached directory of `domain`.
    pub fn get(&self, domain: &str) -> Option<Directory> {
        let entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(domain).filter(|(at, _)| at.elapsed() < self.lifetime).map(|(_, d)| d.clone())
    }

    /// Keeps `directory` for `domain`.
    pub fn put(&self, domain: &str, directory: Directory) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= MAX_CACHED {
            entries.retain(|_, (at, _)| at.elapsed() < self.lifetime);
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.insert(domain.to_owned(), (Instant::now(), directory));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's example as printed: `update{roomId}` without `/`, `"proxyDownload"` without
    /// `:`, so not JSON at all.
    #[test]
    fn the_drafts_example_is_read_despite_its_typos() {
        let example = br#"{
          "keyMaterial": "https://mimi.example.com/v1/keyMaterial/{targetUser}",
          "update": "https://mimi.example.com/v1/update{roomId}",
          "proxyDownload" "https://mimi.example.com/v1/proxyDownload/{downloadUrl}"
        }"#;
        let d = Directory::parse(example, "https://mimi.example.com").unwrap();
        assert_eq!(d.endpoints["update"], "https://mimi.example.com/v1/update/{roomId}");
        assert_eq!(d.endpoints["proxyDownload"], "https://mimi.example.com/v1/proxyDownload/{downloadUrl}");
        let url = d.url("update", &[("roomId", "mimi://a.example/r/x y")]).unwrap();
        assert_eq!(url, "https://mimi.example.com/v1/update/mimi%3A%2F%2Fa.example%2Fr%2Fx%20y");
        assert_eq!(
            d.url("keyMaterial", &[]).unwrap_err(),
            DirectoryError::Variable { endpoint: "keyMaterial".into(), variable: "targetUser".into() }
        );
        assert_eq!(d.url("notify", &[]).unwrap_err(), DirectoryError::Missing("notify".into()));
    }

    /// The public peer's shape: flat absolute URLs beside nested maps of relative paths.
    #[test]
    fn nested_maps_are_read_and_flat_keys_win() {
        let nested = br#"{"wireEndpoints": {"keyMaterial": "/mimi/pl/keyMaterial/{targetUser}",
            "notify": "/mimi/pl/notify"}, "notify": "https://b.example/flat/notify", "provider": "b.example"}"#;
        let d = Directory::parse(nested, "https://b.example").unwrap();
        assert_eq!(d.endpoints["keyMaterial"], "https://b.example/mimi/pl/keyMaterial/{targetUser}");
        assert_eq!(d.endpoints["notify"], "https://b.example/flat/notify");
        assert_eq!(Directory::parse(b"{}", "https://b.example").unwrap_err(), DirectoryError::Empty);
        assert_eq!(Directory::parse(br#"{"notify": "http://plain"}"#, "https://b").unwrap_err(), DirectoryError::Empty);
    }
}
