//! Ghost users: how a MIMI user of another server appears on the homeserver, and back.
//!
//! The template (config `appservice.username_template`, e.g. `mimi_{server}_{localpart}`) must read
//! `prefix {server} separator {localpart} suffix` with a separator containing `_`, which no
//! server name contains, so the mapping reverses at the separator's first occurrence. A server
//! name's port colon, not allowed in a Matrix localpart, is written `=`; server names are
//! lowercased (DNS names are case-insensitive).
//!
//! Only the IDs [`GhostTemplate::ghost_of`] can produce stand for anyone: the namespace regex the
//! homeserver applies admits far more (upper case, `../`, any length), and registering those on
//! the homeserver's word would let anyone mint accounts in the bridge's exclusive namespace.
//! [`GhostTemplate::remote_of`] is the strict reverse: it accepts a ghost only if mapping its
//! MIMI user forward again gives back the very same bytes.

use crate::event::meta::{is_server_name, is_user_id};

/// Why a ghost template is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ghost template {template:?}: {reason}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// A parsed ghost template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhostTemplate {
    prefix: String,
    separator: String,
    suffix: String,
    domain: String,
}

fn is_localpart(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
}

impl GhostTemplate {
    /// Parses `template` for ghosts on the homeserver `domain`.
    pub fn parse(template: &str, domain: &str) -> Result<Self, TemplateError> {
        let error = |reason| TemplateError { template: template.to_owned(), reason };
        let (prefix, rest) = template.split_once("{server}").ok_or_else(|| error("lacks {server}"))?;
        let (separator, suffix) =
            rest.split_once("{localpart}").ok_or_else(|| error("lacks {localpart} after {server}"))?;
        if !separator.contains('_') {
            return Err(error("needs a separator containing `_` between {server} and {localpart}"));
        }
        for part in [prefix, separator, suffix] {
            if !part.is_empty() && !is_localpart(part) {
                return Err(error("may contain only a-z, 0-9 and ._=-/+ besides the placeholders"));
            }
        }
        Ok(Self { prefix: prefix.into(), separator: separator.into(), suffix: suffix.into(), domain: domain.into() })
    }

    /// The ghost of a MIMI user `@localpart:server`; `None` if the ID is not of that form, its
    /// localpart is not a valid (lower-case) Matrix localpart, its server is not a server name,
    /// or the ghost would not be a valid Matrix user ID (over 255 bytes).
    pub fn ghost_of(&self, mimi_user: &str) -> Option<String> {
        let (localpart, server) = mimi_user.strip_prefix('@')?.split_once(':')?;
        if !is_server_name(server) {
            return None;
        }
        let server = server.to_ascii_lowercase().replace(':', "=");
        if !is_localpart(localpart) || server.contains('_') || !is_localpart(&server) {
            return None;
        }
        let ghost = format!("@{}{server}{}{localpart}{}:{}", self.prefix, self.separator, self.suffix, self.domain);
        is_user_id(&ghost).then_some(ghost)
    }

    /// The MIMI user whose ghost is exactly `ghost`, or `None`: the ID must be a valid Matrix
    /// user ID, reverse to a valid MIMI user, and be what [`ghost_of`](Self::ghost_of) makes of
    /// that user, byte for byte. What the homeserver may be told exists (see the module docs).
    pub fn remote_of(&self, ghost: &str) -> Option<String> {
        if !is_user_id(ghost) {
            return None;
        }
        let remote = self.mimi_user_of(ghost)?;
        (self.ghost_of(&remote).as_deref() == Some(ghost)).then_some(remote)
    }

    /// The MIMI user a ghost stands for; `None` for users outside the namespace.
    pub fn mimi_user_of(&self, ghost: &str) -> Option<String> {
        let (localpart, domain) = ghost.strip_prefix('@')?.split_once(':')?;
        if domain != self.domain {
            return None;
        }
        let inner = localpart.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        let (server, user) = inner.split_once(&self.separator)?;
        if server.is_empty() || user.is_empty() {
            return None;
        }
        Some(format!("@{user}:{}", server.replace('=', ":")))
    }

    /// Whether `user` is in the ghosts' namespace (whether or not a MIMI user maps to it; see
    /// [`remote_of`](Self::remote_of) for that).
    pub fn is_ghost(&self, user: &str) -> bool {
        self.mimi_user_of(user).is_some()
    }

    /// The ghost's localpart (for registration).
    pub fn localpart_of(ghost: &str) -> Option<&str> {
        ghost.strip_prefix('@')?.split_once(':').map(|(l, _)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghosts_map_both_ways() {
        let t = GhostTemplate::parse("mimi_{server}_{localpart}", "hs.test").unwrap();
        assert_eq!(t.ghost_of("@bob:part.test").unwrap(), "@mimi_part.test_bob:hs.test");
        assert_eq!(t.mimi_user_of("@mimi_part.test_bob:hs.test").unwrap(), "@bob:part.test");
        assert_eq!(t.ghost_of("@b_o.b:Part.Test:8448").unwrap(), "@mimi_part.test=8448_b_o.b:hs.test");
        assert_eq!(t.mimi_user_of("@mimi_part.test=8448_b_o.b:hs.test").unwrap(), "@b_o.b:part.test:8448");
        assert_eq!(t.mimi_user_of("@alice:hs.test"), None);
        assert_eq!(t.mimi_user_of("@mimi_part.test_bob:elsewhere.test"), None);
        assert_eq!(t.ghost_of("@Bob:part.test"), None);
        assert!(GhostTemplate::parse("mimi_{localpart}", "hs.test").is_err());
        assert!(GhostTemplate::parse("mimi{server}{localpart}", "hs.test").is_err());
        assert!(GhostTemplate::parse("MIMI_{server}_{localpart}", "hs.test").is_err());
    }

    #[test]
    fn only_ids_the_mapping_produces_reverse_strictly() {
        let t = GhostTemplate::parse("mimi_{server}_{localpart}", "hs.test").unwrap();
        assert_eq!(t.remote_of("@mimi_part.test_bob:hs.test").unwrap(), "@bob:part.test");
        assert_eq!(t.remote_of("@mimi_part.test=8448_b_o.b:hs.test").unwrap(), "@b_o.b:part.test:8448");
        let long = format!("@mimi_part.test_{}:hs.test", "a".repeat(300));
        for id in [
            "@mimi_../../x_y:hs.test",
            "@mimi_Part.test_bob:hs.test",
            "@mimi_part.test_Bob:hs.test",
            "@mimi_part.test_bøb:hs.test",
            "@mimi_part.test=1=2_bob:hs.test",
            "@mimi_part.test=_bob:hs.test",
            "@mimi_part.test_bob:elsewhere.test",
            "@mimibot:hs.test",
            long.as_str(),
        ] {
            assert_eq!(t.remote_of(id), None, "{id}");
        }
        assert_eq!(t.ghost_of("@y:../../x"), None);
        assert_eq!(t.ghost_of(&format!("@{}:part.test", "a".repeat(300))), None, "over 255 bytes");
    }
}
