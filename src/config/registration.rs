//! The registration file the homeserver loads (`registration.yaml`), and the tokens in it.
//!
//! The bridge writes its own type rather than ruma's `Registration`, which cannot carry the
//! unstable keys homeservers read (`de.sorunome.msc2409.push_ephemeral`) and drops unknown keys.
//! Synapse treats a missing `rate_limited` as true, so it is always written as false.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::check::{Piece, pieces};
use super::{Config, ConfigError};

/// A Synapse-compatible application-service registration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[expect(clippy::struct_excessive_bools, reason = "the registration's flags are booleans in the file")]
pub struct Registration {
    /// The appservice ID (`appservice.id`).
    pub id: String,
    /// Where the homeserver pushes transactions (`appservice.address`).
    pub url: String,
    /// The bridge's token towards the homeserver.
    pub as_token: String,
    /// The homeserver's token towards the bridge.
    pub hs_token: String,
    /// The bot's localpart (`appservice.bot.username`).
    pub sender_localpart: String,
    /// The exclusive namespaces.
    pub namespaces: Namespaces,
    /// Whether the homeserver rate-limits the ghosts: always false for a bridge.
    pub rate_limited: bool,
    /// Receive typing, receipts and presence (Matrix v1.13).
    pub receive_ephemeral: bool,
    /// The same for homeservers that only know MSC2409's unstable name.
    #[serde(rename = "de.sorunome.msc2409.push_ephemeral")]
    pub push_ephemeral: bool,
    /// The appservice manages its devices itself (MSC4190, Matrix v1.17): with
    /// `encryption.enabled`.
    #[serde(rename = "io.element.msc4190", default, skip_serializing_if = "std::ops::Not::not")]
    pub device_management: bool,
    /// Device-list changes and key counts in transactions (MSC3202): with `encryption.push`.
    #[serde(rename = "org.matrix.msc3202", default, skip_serializing_if = "std::ops::Not::not")]
    pub transaction_extensions: bool,
    /// Any other keys, kept when a registration is read and written again.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_norway::Value>,
}

impl std::fmt::Debug for Registration {
    /// Without the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("as_token", &"<redacted>")
            .field("hs_token", &"<redacted>")
            .field("sender_localpart", &self.sender_localpart)
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

/// `namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    /// User IDs: the bot and the ghosts.
    pub users: Vec<Namespace>,
    /// Room aliases: those of rooms the bot makes for `open` (`#<bot>_open_<n>`), which name
    /// the room so that a retried command finds it instead of making another.
    pub aliases: Vec<Namespace>,
    /// Room IDs (none).
    pub rooms: Vec<Namespace>,
}

/// One namespace entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// Whether only the appservice may use these IDs.
    pub exclusive: bool,
    /// A regular expression over full IDs, anchored at both ends.
    pub regex: String,
}

impl Registration {
    /// The registration for `config`, with its tokens as they are.
    pub fn from_config(config: &Config) -> Self {
        let (appservice, domain) = (&config.appservice, escape(&config.homeserver.domain));
        let bot = format!("^@{}:{domain}$", escape(&appservice.bot.username));
        let ghost_localpart: String = pieces(&appservice.username_template)
            .unwrap_or_default()
            .iter()
            .map(|p| match p {
                Piece::Text(t) => escape(t),
                Piece::Server | Piece::Localpart => ".*".to_owned(),
            })
            .collect();
        let ghosts = format!("^@{ghost_localpart}:{domain}$");
        let opened = format!("^#{}_open_[0-9]+:{domain}$", escape(&appservice.bot.username));
        let encryption = &config.encryption;
        let mut users = vec![Namespace { exclusive: true, regex: bot }, Namespace { exclusive: true, regex: ghosts }];
        if encryption.enabled {
            let owner = super::EncryptionSection::owner_localpart(&appservice.bot.username);
            users.push(Namespace { exclusive: true, regex: format!("^@{}:{domain}$", escape(&owner)) });
        }
        Self {
            id: appservice.id.clone(),
            url: appservice.address.clone(),
            as_token: appservice.as_token.clone(),
            hs_token: appservice.hs_token.clone(),
            sender_localpart: appservice.bot.username.clone(),
            namespaces: Namespaces {
                users,
                aliases: vec![Namespace { exclusive: true, regex: opened }],
                rooms: Vec::new(),
            },
            rate_limited: false,
            receive_ephemeral: true,
            push_ephemeral: true,
            device_management: encryption.enabled,
            transaction_extensions: encryption.enabled && encryption.push,
            other: BTreeMap::new(),
        }
    }

    /// The YAML text, with a header saying where it goes.
    pub fn to_yaml(&self) -> String {
        let body = serde_norway::to_string(self).unwrap_or_default();
        format!(
            "# mimi-bridge application-service registration, written by `mimi-bridge generate-registration`.\n\
             # Add its path to Synapse's `app_service_config_files` and restart Synapse. Keep it secret:\n\
             # it holds the tokens. Regenerate it after changing the fields marked (registration) in\n\
             # config.yaml; the tokens stay the same.\n{body}"
        )
    }
}

/// Escapes regular-expression metacharacters (POSIX and Python `re` alike).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// 64 random letters and digits from the operating system's generator.
pub fn generate_token() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut token = String::with_capacity(64);
    while token.len() < 64 {
        let mut bytes = [0u8; 96];
        getrandom::fill(&mut bytes)?;
        // Rejection sampling: 248 = 4 * 62 keeps every character equally likely.
        for b in bytes.into_iter().filter(|b| *b < 248).take(64 - token.len()) {
            token.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(token)
}

/// Rewrites the `as_token` / `hs_token` lines of the `appservice` section of configuration text,
/// leaving every other byte (comments, order, quoting, line endings) as it was. `None` leaves a
/// token alone.
pub fn replace_tokens(
    text: &str,
    file: &std::path::Path,
    as_token: Option<&str>,
    hs_token: Option<&str>,
) -> Result<String, ConfigError> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    for (key, token) in [("as_token", as_token), ("hs_token", hs_token)] {
        let Some(token) = token else { continue };
        let index = token_line(&lines, key).ok_or_else(|| ConfigError::Rewrite {
            file: file.to_owned(),
            message: format!(
                "cannot find the line `  {key}: ...` under `appservice:` to write the generated token; \
                 write `{key}: {token}` there by hand and run generate-registration again"
            ),
        })?;
        lines[index] = with_value(&lines[index], token);
    }
    Ok(lines.concat())
}

/// The index of `key:` among the direct children of the top-level `appservice:` mapping.
fn token_line(lines: &[String], key: &str) -> Option<usize> {
    let is_content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let start = lines.iter().position(|l| {
        l.strip_prefix("appservice:").is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'))
    })?;
    let mut indent = None;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(line) {
            continue;
        }
        let depth = line.len() - line.trim_start_matches(' ').len();
        if depth == 0 {
            return None;
        }
        let child = *indent.get_or_insert(depth);
        if depth == child && line[depth..].strip_prefix(key).is_some_and(|r| r.starts_with(':')) {
            return Some(i);
        }
    }
    None
}

/// `line` with its value replaced by `token`, keeping indentation, a trailing comment and the
/// line ending.
fn with_value(line: &str, token: &str) -> String {
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = &line[body.len()..];
    let colon = body.find(':').unwrap_or(body.len());
    let rest = &body[colon..];
    let (value, comment) = rest.split_at(rest.find(" #").unwrap_or(rest.len()));
    let gap = &value[value.trim_end().len()..];
    format!("{}: {token}{gap}{comment}{ending}", &body[..colon])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_metacharacters() {
        assert_eq!(escape("hs.test"), "hs\\.test");
        assert_eq!(escape("a-b_c+d"), "a\\-b_c\\+d");
    }

    #[test]
    fn tokens_are_64_alphanumerics_and_differ() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert!(a.len() == 64 && a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn rewrites_only_the_token_lines() {
        let text = "# top\nappservice:\r\n  # the token\n  as_token: generate   # fill in\r\n  bot:\n    hs_token: x\n  \
                    hs_token: \"generate\"\nmimi:\n  as_token: no\n";
        let out = replace_tokens(text, "c.yaml".as_ref(), Some("AAA"), Some("BBB")).unwrap();
        assert_eq!(
            out,
            "# top\nappservice:\r\n  # the token\n  as_token: AAA   # fill in\r\n  bot:\n    hs_token: x\n  \
             hs_token: BBB\nmimi:\n  as_token: no\n"
        );
        let keep = replace_tokens(text, "c.yaml".as_ref(), None, Some("BBB")).unwrap();
        assert!(keep.contains("as_token: generate   # fill in"));
        let missing = replace_tokens("appservice: {as_token: x}\n", "c.yaml".as_ref(), Some("A"), None);
        assert!(missing.unwrap_err().to_string().starts_with("c.yaml: cannot find the line `  as_token: ...`"));
    }
}
