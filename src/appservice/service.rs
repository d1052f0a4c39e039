//! [`Appservice`]: the handler behind the appservice port, and what its endpoints share.

use std::sync::Arc;

use super::ghost::GhostTemplate;
use super::homeserver::HomeserverClient;
use super::intake::Intake;
use crate::http::metrics::Metrics;
use crate::http::{Handler, MatrixError, Request, Response, auth, health};

/// What the appservice endpoints need from the configuration.
#[derive(Clone)]
pub struct Settings {
    /// The token the homeserver sends (compared in constant time; never logged).
    pub hs_token: String,
    /// Accept the token in the legacy `access_token` query parameter too.
    pub legacy_access_token_query: bool,
    /// The homeserver's domain.
    pub domain: String,
    /// The bot's localpart.
    pub bot_localpart: String,
    /// How ghosts are named.
    pub ghosts: GhostTemplate,
    /// `mimi.more_content_extensions`.
    pub more_content_extensions: bool,
    /// The owner of the bridge's Matrix device (`encryption.enabled`).
    pub device_owner: Option<String>,
}

impl std::fmt::Debug for Settings {
    /// Without the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("hs_token", &"<redacted>")
            .field("legacy_access_token_query", &self.legacy_access_token_query)
            .field("domain", &self.domain)
            .field("bot_localpart", &self.bot_localpart)
            .field("ghosts", &self.ghosts)
            .field("more_content_extensions", &self.more_content_extensions)
            .field("device_owner", &self.device_owner)
            .finish()
    }
}

impl Settings {
    /// The bot's user ID.
    pub fn bot(&self) -> String {
        format!("@{}:{}", self.bot_localpart, self.domain)
    }

    /// Whether `user` is in the bridge's exclusive namespace (the bot, a ghost, the device's
    /// owner): events they send are the bridge's own and are never bridged again.
    pub fn is_ours(&self, user: &str) -> bool {
        user == self.bot() || self.ghosts.is_ghost(user) || self.device_owner.as_deref() == Some(user)
    }
}

/// The appservice endpoints' shared state.
#[derive(Debug)]
pub struct Appservice {
    /// Configuration.
    pub settings: Settings,
    /// Durable intake.
    pub intake: Intake,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The homeserver.
    pub homeserver: Arc<HomeserverClient>,
    health: Arc<health::Health>,
    /// The nonces of the to-device probes the latest transaction with any carried
    /// (`appservice::device`).
    probes: tokio::sync::watch::Sender<Vec<String>>,
    /// Push mode (`encryption.push`): transactions carry what the bridge's device receives.
    push: bool,
    /// The device, once open.
    pushed: tokio::sync::watch::Sender<Option<Arc<crate::e2ee::Device>>>,
}

impl Appservice {
    /// The appservice; not ready until [`set_ready`](Self::set_ready).
    pub fn new(settings: Settings, intake: Intake, metrics: Arc<Metrics>, homeserver: Arc<HomeserverClient>) -> Self {
        Self {
            settings,
            intake,
            metrics,
            homeserver,
            health: Arc::default(),
            probes: tokio::sync::watch::Sender::default(),
            push: false,
            pushed: tokio::sync::watch::Sender::default(),
        }
    }

    /// In push mode (`encryption.push`), transactions that carry data for the bridge's device
    /// wait until [`push_to`](Self::push_to) hands it over.
    #[must_use]
    pub fn with_push(mut self, push: bool) -> Self {
        self.push = push;
        self
    }

    /// What transactions carry for the bridge's device goes to `device` (push mode).
    pub fn push_to(&self, device: Arc<crate::e2ee::Device>) {
        self.pushed.send_replace(Some(device));
    }

    /// The device a transaction carrying `body` must be given to first, in push mode; waits
    /// (a start) at most `most` for it to open.
    pub(super) async fn pushed(
        &self,
        body: &[u8],
        most: std::time::Duration,
    ) -> Result<Option<Arc<crate::e2ee::Device>>, MatrixError> {
        if !self.push || !crate::e2ee::push::may_carry(body) {
            return Ok(None);
        }
        let mut open = self.pushed.subscribe();
        match tokio::time::timeout(most, open.wait_for(Option::is_some)).await {
            Ok(Ok(device)) => Ok(device.clone()),
            _ => Err(MatrixError::new(
                hyper::StatusCode::SERVICE_UNAVAILABLE,
                "M_UNKNOWN",
                "the bridge's device is not open yet",
            )),
        }
    }

    /// The to-device probes transactions carry, as they arrive.
    pub fn probes(&self) -> tokio::sync::watch::Receiver<Vec<String>> {
        self.probes.subscribe()
    }

    /// Whether a probe may be awaited: the start's checks hold a receiver (only then are
    /// transactions searched for one).
    pub(super) fn probing(&self) -> bool {
        self.probes.receiver_count() > 0
    }

    /// Notes the to-device probes a transaction carried.
    pub(super) fn probed(&self, nonces: Vec<String>) {
        self.probes.send_replace(nonces);
    }

    /// Marks startup checks as passed (`/_matrix/mau/ready` answers 200 while no worker died).
    pub fn set_ready(&self) {
        self.health.set_started();
    }

    /// Readiness, shared with the workers.
    pub fn health(&self) -> &Arc<health::Health> {
        &self.health
    }

    async fn route(&self, request: Request) -> Result<Response, MatrixError> {
        use hyper::Method;
        let path = request.path.clone();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = request.method.clone();
        match segments.as_slice() {
            ["_matrix", "mau", "live"] if method == Method::GET => return Ok(health::live()),
            ["_matrix", "mau", "ready"] if method == Method::GET => {
                return Ok(health::ready(&self.health));
            }
            ["_matrix", "mau", "live" | "ready"] => return Err(MatrixError::method_not_allowed()),
            ["_matrix", "app", "v1", ..] => {}
            _ => return Err(MatrixError::unrecognized()),
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let allowed = match segments.as_slice() {
            ["_matrix", "app", "v1", "transactions", _] => Method::PUT,
            ["_matrix", "app", "v1", "users" | "rooms", _] => Method::GET,
            ["_matrix", "app", "v1", "ping"] => Method::POST,
            _ => return Err(MatrixError::unrecognized()),
        };
        if method != allowed {
            return Err(MatrixError::method_not_allowed());
        }
        auth::check_bearer(&request, &self.settings.hs_token, self.settings.legacy_access_token_query)?;
        match segments.as_slice() {
            ["_matrix", "app", "v1", "transactions", txn] => {
                // The exact bytes: a lossy decoding would make `%C0` and `%C1` one ID.
                let txn: Vec<u8> = percent_encoding::percent_decode_str(txn).collect();
                super::transactions::put(self, &txn, &request).await
            }
            ["_matrix", "app", "v1", "users", user] => super::users::get(self, &decode(user)).await,
            ["_matrix", "app", "v1", "rooms", alias] => super::rooms::get(self, &decode(alias)),
            _ => super::ping::post(&request),
        }
    }
}

impl Handler for Appservice {
    /// The homeserver's token is checked before a transaction's body is read.
    fn admit(&self, request: &Request) -> Result<(), MatrixError> {
        if request.path.starts_with("/_matrix/app/") {
            auth::check_bearer(request, &self.settings.hs_token, self.settings.legacy_access_token_query)?;
        }
        Ok(())
    }

    async fn handle(&self, request: Request) -> Response {
        self.route(request).await.unwrap_or_else(|error| error.response())
    }
}
