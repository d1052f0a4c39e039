//! The bridge's configuration: one documented struct, read from `config.yaml` and checked before
//! anything starts.
//!
//! The file follows the conventions homeserver admins know from mautrix bridges (sections
//! `homeserver`, `appservice`, `database`, `logging`, `metrics`, `encryption`), plus `mimi` for
//! the bridge's own server identity. `schemas/config.schema.json` describes the same shape and
//! `bridge-config/config.example.yaml` (printed by `mimi-bridge generate-config`) documents every
//! key; tests keep the three in step.
//!
//! Nothing is reloaded while running: every change takes effect on restart. Fields marked
//! *(registration)* are also copied into `registration.yaml`; after changing one, run
//! `mimi-bridge generate-registration` again and restart the homeserver.
//!
//! [`Config::load`] rejects unknown keys, wrong types and values that cannot work (ports, URLs,
//! server names, localparts, the ghost template, tokens), naming the file, the field path, the
//! value found and what was expected. Tokens print redacted in `Debug` output.

mod check;
mod database;
mod encryption;
mod example;
mod provider;
mod registration;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use check::FieldError;
pub use database::{DatabaseSection, DatabaseSync};
pub use encryption::{BRIDGE_DEVICE, EncryptionSection};
pub use example::EXAMPLE;
pub use provider::{ConsentPolicy, PeerQuotas, TlsSection};
pub use registration::{Namespace, Namespaces, Registration, generate_token, replace_tokens};

/// The token value that asks `generate-registration` to generate a token.
pub const GENERATE: &str = "generate";

/// The whole configuration file.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The homeserver the bridge is attached to.
    pub homeserver: HomeserverSection,
    /// The application-service side: where Synapse reaches the bridge and how it authenticates.
    pub appservice: AppserviceSection,
    /// The bridge's own server on the MIMI side.
    pub mimi: MimiSection,
    /// The data directory.
    pub database: DatabaseSection,
    /// Log output (optional section).
    #[serde(default)]
    pub logging: LoggingSection,
    /// The Prometheus endpoint (optional section).
    #[serde(default)]
    pub metrics: MetricsSection,
    /// The bridge's own Matrix device (optional section).
    #[serde(default)]
    pub encryption: EncryptionSection,
}

/// `homeserver`: the homeserver the bridge is attached to.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeserverSection {
    /// URL of the homeserver's client-server API as the bridge reaches it (`http` or `https`),
    /// e.g. `http://127.0.0.1:8008`. Required.
    pub address: String,
    /// The homeserver's server name, the part after `:` in its user IDs, e.g. `hs.test`.
    /// Required. *(registration)*
    pub domain: String,
}

/// `appservice`: the application-service registration and listener.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppserviceSection {
    /// URL the homeserver uses to reach the bridge (`http` or `https`, may carry a path), e.g.
    /// `http://127.0.0.1:29340`. Required. *(registration)*
    pub address: String,
    /// IP address the appservice listener binds to. Default `127.0.0.1`.
    #[serde(default = "default_hostname", deserialize_with = "check::ip_addr")]
    pub hostname: IpAddr,
    /// TCP port the appservice listener binds to (1-65535). Default 29340.
    #[serde(default = "default_port", deserialize_with = "check::port")]
    pub port: u16,
    /// The registration ID, unique on the homeserver and never changed afterwards. Default
    /// `mimi`. *(registration)*
    #[serde(default = "default_id")]
    pub id: String,
    /// The bridge bot.
    #[serde(default)]
    pub bot: BotSection,
    /// Token the bridge presents to the homeserver: visible ASCII, or `generate` for
    /// `generate-registration` to fill in. Required. *(registration)*
    pub as_token: String,
    /// Token the homeserver presents to the bridge: visible ASCII, different from `as_token`, or
    /// `generate`. Required. *(registration)*
    pub hs_token: String,
    /// Localpart of the ghost user standing for a remote MIMI user: a fixed prefix, `{server}`,
    /// fixed text containing `_` (which no server name contains, so the mapping reverses there),
    /// then `{localpart}`, each placeholder once; the remote user
    /// `@bob:part.test` becomes `@mimi_part.test_bob:hs.test`. Default
    /// `mimi_{server}_{localpart}`. *(registration)*
    #[serde(default = "default_username_template")]
    pub username_template: String,
    /// Also accept the homeserver's token as the legacy `?access_token=` query parameter (for
    /// homeservers older than Matrix v1.4); otherwise only `Authorization: Bearer`. Default false.
    #[serde(default)]
    pub legacy_access_token_query: bool,
}

/// `appservice.bot`: the bridge's own Matrix user.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotSection {
    /// Localpart of the bot user (lowercase letters, digits, `.`, `_`, `-`). Default `mimibot`,
    /// i.e. `@mimibot:hs.test`. *(registration)*
    #[serde(default = "default_bot_username")]
    pub username: String,
}

/// `mimi`: the bridge's server identity on the MIMI side.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MimiSection {
    /// The bridge's server name, different from the homeserver's, e.g. `mimi.hs.test`; the
    /// server part of local users in MIMI rooms. Never change it once rooms exist. Required.
    pub server_name: String,
    /// Path of the ed25519 signing key in Synapse's key-file format (`mimi-bridge keygen`).
    /// Required.
    pub signing_key: PathBuf,
    /// IP address and port of the server-server (federation) listener. It speaks plain HTTP:
    /// put a TLS reverse proxy in front of it. Default `127.0.0.1:29341`.
    #[serde(default = "default_federation_listen", deserialize_with = "check::socket_addr")]
    pub federation_listen: SocketAddr,
    /// Other servers' signing keys to trust, each `server=ed25519:ID=base64 public key`, as
    /// `mimi-bridge log verify --key` takes them: their X-Matrix requests and signatures are
    /// accepted. (Key fetching from `/_matrix/key/v2/server` comes with outbound federation.)
    /// Default: none.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Send each Matrix event's `origin_server_ts` and event ID along in its MIMI messages, as
    /// extensions 3 (`senderTimestamp`) and 4 (`externalMessageId`, scoped by the homeserver's
    /// domain) of draft-mimi-content-more-extensions. The key numbers are not assigned by IANA
    /// yet, and the event ID tells the other side a little more. Received ones are always
    /// accepted. Default `false`.
    #[serde(default)]
    pub more_content_extensions: bool,
    /// Certificate, key and trust anchors of this MIMI provider; without them the bridge is not
    /// a MIMI provider (no MIMI listener, no requests to other providers). Default: none.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// IP address and port of the MIMI listener (HTTPS, mutual TLS). Default `127.0.0.1:29343`.
    #[serde(default = "provider::default_listen", deserialize_with = "check::socket_addr")]
    pub listen: SocketAddr,
    /// Where this provider's directory says it is, `https://host[:port]`. Default
    /// `https://<server_name>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Other providers reached at a fixed address (`domain: ip:port`) instead of the one their
    /// name resolves to; TLS still checks the domain. Default: none.
    #[serde(default)]
    pub peers: BTreeMap<String, SocketAddr>,
    /// Which providers may ask for consent, and whose users have it without asking.
    #[serde(default)]
    pub consent: ConsentPolicy,
    /// Per-provider daily bounds on what other providers' requests make this one store.
    #[serde(default)]
    pub quotas: PeerQuotas,
    /// Answer `identifierQuery` for this homeserver's users; off, every query is answered
    /// `notFound`, whether or not the user exists. Default `false`.
    #[serde(default)]
    pub discovery: bool,
}

/// `logging`: log output on standard error.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// A `tracing` filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or directives such
    /// as `info,mimi_bridge::hub=debug`. Default `info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Line format. Default `text`.
    #[serde(default)]
    pub format: LogFormat,
}

/// `logging.format`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `metrics`: Prometheus metrics over HTTP.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics`. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// IP address and port of the metrics listener. Default `127.0.0.1:29342`.
    #[serde(default = "default_metrics_listen", deserialize_with = "check::socket_addr")]
    pub listen: SocketAddr,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML of the configuration's shape: the message names the field path, the
    /// value found, what was expected and the position.
    #[error("{}: {message}", file.display())]
    Parse {
        /// The configuration file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Values that have the right type but cannot work.
    #[error("{}: {}", file.display(), check::join(errors))]
    Invalid {
        /// The configuration file.
        file: PathBuf,
        /// Every invalid field, in file order.
        errors: Vec<FieldError>,
    },
    /// A file cannot be written.
    #[error("{}: cannot write: {source}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tokens could not be written back into the configuration file.
    #[error("{}: {message}", file.display())]
    Rewrite {
        /// The configuration file.
        file: PathBuf,
        /// What went wrong and what to do by hand.
        message: String,
    },
}

impl Config {
    /// Reads and checks a configuration file. Tokens may still be `generate`; see
    /// [`Config::load_ready`] for the daemon.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_owned(), source })?;
        Self::from_yaml(&text, path)
    }

    /// Like [`Config::load`], and also refuses tokens that were never generated.
    pub fn load_ready(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::load(path)?;
        let errors = config.placeholder_errors();
        if errors.is_empty() { Ok(config) } else { Err(ConfigError::Invalid { file: path.to_owned(), errors }) }
    }

    /// Parses and checks configuration text; `file` names it in errors.
    pub fn from_yaml(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let config: Self = serde_norway::from_str(text)
            .map_err(|e| ConfigError::Parse { file: file.to_owned(), message: e.to_string() })?;
        let errors = config.check();
        if errors.is_empty() { Ok(config) } else { Err(ConfigError::Invalid { file: file.to_owned(), errors }) }
    }

    /// Every value that has the right type but cannot work; empty when the configuration is
    /// usable (tokens may still be `generate`).
    pub fn check(&self) -> Vec<FieldError> {
        check::check(self)
    }

    /// The bot's user ID, e.g. `@mimibot:hs.test`.
    pub fn bot_user_id(&self) -> String {
        format!("@{}:{}", self.appservice.bot.username, self.homeserver.domain)
    }

    /// The registration this configuration asks for (tokens as configured).
    pub fn registration(&self) -> Registration {
        Registration::from_config(self)
    }

    fn placeholder_errors(&self) -> Vec<FieldError> {
        [("appservice.as_token", &self.appservice.as_token), ("appservice.hs_token", &self.appservice.hs_token)]
            .into_iter()
            .filter(|(_, token)| *token == GENERATE)
            .map(|(field, _)| {
                FieldError::new(field, GENERATE, "a token: run `mimi-bridge generate-registration` to generate it")
            })
            .collect()
    }
}

impl AppserviceSection {
    /// The appservice listener's socket address.
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.hostname, self.port)
    }
}

impl std::fmt::Debug for AppserviceSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |token: &str| if token == GENERATE { GENERATE } else { "<redacted>" };
        f.debug_struct("AppserviceSection")
            .field("address", &self.address)
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("id", &self.id)
            .field("bot", &self.bot)
            .field("as_token", &redact(&self.as_token))
            .field("hs_token", &redact(&self.hs_token))
            .field("username_template", &self.username_template)
            .field("legacy_access_token_query", &self.legacy_access_token_query)
            .finish()
    }
}

impl Default for BotSection {
    fn default() -> Self {
        Self { username: default_bot_username() }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default() }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self { enabled: false, listen: default_metrics_listen() }
    }
}

fn default_hostname() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn default_port() -> u16 {
    29340
}

fn default_id() -> String {
    "mimi".to_owned()
}

fn default_bot_username() -> String {
    "mimibot".to_owned()
}

fn default_username_template() -> String {
    "mimi_{server}_{localpart}".to_owned()
}

fn default_federation_listen() -> SocketAddr {
    SocketAddr::new(default_hostname(), 29341)
}

fn default_log_level() -> String {
    "info".to_owned()
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::new(default_hostname(), 29342)
}
