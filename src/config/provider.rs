//! The types of `mimi.tls`, `mimi.consent` and `mimi.quotas`: the bridge as a MIMI provider
//! (mutual TLS between providers, the admin's policy for other providers and the bounds on what
//! they can make it store).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `mimi.tls`: this provider's certificate and whom it trusts.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain for `mimi.server_name` (server and client authentication).
    pub certificate: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// PEM file of the certificate authorities to trust for other providers; default: the
    /// system's roots.
    #[serde(default)]
    pub trust_anchors: Option<PathBuf>,
}

/// `mimi.consent`: which providers' users may ask this provider's users for consent, and whose
/// requests are granted without asking.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentPolicy {
    /// Provider domains whose `requestConsent` is accepted; `*` for any. Default: any.
    #[serde(default = "any")]
    pub accept_from: Vec<String>,
    /// Provider domains whose users are granted consent (for key material) without asking.
    /// Default: none.
    #[serde(default)]
    pub auto_grant: Vec<String>,
}

fn any() -> Vec<String> {
    vec!["*".to_owned()]
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        Self { accept_from: any(), auto_grant: Vec::new() }
    }
}

impl ConsentPolicy {
    /// Whether `provider` may send consent requests.
    pub fn accepts(&self, provider: &str) -> bool {
        self.accept_from.iter().any(|p| p == "*" || p == provider)
    }

    /// Whether users of `provider` have consent without asking.
    pub fn auto_grants(&self, provider: &str) -> bool {
        self.auto_grant.iter().any(|p| p == "*" || p == provider)
    }
}

/// `mimi.quotas`: how much one provider's requests may make this one store in a day (UTC). Past
/// a quota, requests of that kind are answered 429 until the day ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerQuotas {
    /// Consent requests recorded for this provider's users' decision. Default 1000.
    #[serde(default = "default_consent_requests")]
    pub consent_requests_per_day: u64,
    /// Abuse reports (each at most 256 KiB) stored. Default 100.
    #[serde(default = "default_abuse_reports")]
    pub abuse_reports_per_day: u64,
    /// Rooms another server may start in this one's store through Linearized Matrix `send`
    /// (each also needs one of this server's users invited or joined). Default 100.
    #[serde(default = "default_rooms")]
    pub rooms_per_day: u64,
}

fn default_rooms() -> u64 {
    100
}

fn default_consent_requests() -> u64 {
    1000
}

fn default_abuse_reports() -> u64 {
    100
}

impl Default for PeerQuotas {
    fn default() -> Self {
        Self {
            consent_requests_per_day: default_consent_requests(),
            abuse_reports_per_day: default_abuse_reports(),
            rooms_per_day: default_rooms(),
        }
    }
}

/// The MIMI listener's default address.
pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 29343))
}
