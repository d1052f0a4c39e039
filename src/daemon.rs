//! `mimi-bridge serve`: the daemon. Opens the store, starts the appservice listener (and the
//! metrics one if enabled), checks the homeserver, then bridges until SIGINT or SIGTERM.
//!
//! Startup checks fail fast with what to fix: the homeserver unreachable (`homeserver.address`),
//! the `as_token` refused (the registration not loaded, or different tokens), the homeserver
//! unable to reach us (`appservice.address`). The appservice ping also makes Synapse send its
//! backlog at once instead of after its retry back-off.

use std::sync::Arc;
use std::time::Duration;

use crate::appservice::bridge::Bridge;
use crate::appservice::ghost::GhostTemplate;
use crate::appservice::homeserver::HomeserverClient;
use crate::appservice::intake::Intake;
use crate::appservice::service::{Appservice, Settings};
use crate::config::Config;
use crate::event::ServerKey;
use crate::http::metrics::{Metrics, MetricsHandler};
use crate::hub::Hub;
use crate::store::{Store, SyncPolicy};

/// Largest request body the appservice port accepts (Synapse's transactions are ≤ 100 events of
/// ≤ 64 KiB each).
pub const MAX_BODY: usize = 8 << 20;

/// Largest federation request body (50 PDUs of ≤ 64 KiB and 100 EDUs).
pub const MAX_FEDERATION_BODY: usize = 4 << 20;

/// Why the daemon stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// A configured file or listener could not be used.
    #[error("{field}: {message}")]
    Setup {
        /// The config field at fault.
        field: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A startup check against the homeserver failed.
    #[error("startup check failed: {0}")]
    Check(String),
}

fn setup(field: &'static str) -> impl Fn(&dyn std::fmt::Display) -> DaemonError {
    move |e| DaemonError::Setup { field, message: e.to_string() }
}

/// The running parts, for the tests and the load tool.
#[derive(Debug)]
pub struct Running {
    /// The appservice state.
    pub appservice: Arc<Appservice>,
    /// The hub.
    pub hub: Arc<Hub>,
    /// Where the appservice listens.
    pub address: std::net::SocketAddr,
    /// Where the federation listener listens.
    pub federation_address: std::net::SocketAddr,
    /// Turn to `true` to stop the listeners.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

/// Opens everything and starts serving; the startup checks run after the listener is up.
pub async fn start(config: &Config) -> Result<Running, DaemonError> {
    let sync = SyncPolicy::from(config.database.sync);
    let store = Arc::new(Store::open_with(&config.database.path, sync).map_err(|e| setup("database.path")(&e))?);
    let key_text = std::fs::read_to_string(&config.mimi.signing_key)
        .map_err(|e| setup("mimi.signing_key")(&format!("{}: {e}", config.mimi.signing_key.display())))?;
    let key = ServerKey::parse_synapse(&key_text).map_err(|e| setup("mimi.signing_key")(&e))?;
    let hub =
        Arc::new(Hub::new(&config.mimi.server_name, &key, Arc::clone(&store)).map_err(|e| setup("database.path")(&e))?);
    let mut pinned = crate::event::KeyRing::new();
    for trusted in &config.mimi.trusted_keys {
        pinned.add_argument(trusted).map_err(|e| setup("mimi.trusted_keys")(&e))?;
    }
    for (server, key_id, key) in pinned.iter() {
        hub.trust_key(server, key_id, *key).map_err(|e| setup("mimi.trusted_keys")(&e))?;
    }
    let homeserver = Arc::new(
        HomeserverClient::new(&config.homeserver.address, &config.appservice.as_token, config.appservice.id.clone())
            .map_err(|e| setup("homeserver.address")(&e))?,
    );
    let ghosts = GhostTemplate::parse(&config.appservice.username_template, &config.homeserver.domain)
        .map_err(|e| setup("appservice.username_template")(&e))?;
    let settings = Settings {
        hs_token: config.appservice.hs_token.clone(),
        legacy_access_token_query: config.appservice.legacy_access_token_query,
        domain: config.homeserver.domain.clone(),
        bot_localpart: config.appservice.bot.username.clone(),
        ghosts,
    };
    let metrics = Arc::new(Metrics::default());
    // Work left from before a restart counts in the queue gauges.
    let pending = |queue: Result<Vec<(u64, Vec<u8>)>, _>| queue.map_or(0, |q| u64::try_from(q.len()).unwrap_or(0));
    metrics.intake_depth.store(pending(store.intake_queue()), std::sync::atomic::Ordering::Relaxed);
    metrics.hs_queue_depth.store(pending(store.hs_queue()), std::sync::atomic::Ordering::Relaxed);
    let (intake, receiver) = Intake::open(Arc::clone(&store)).map_err(|e| setup("database.path")(&e))?;
    let appservice = Arc::new(Appservice::new(settings.clone(), intake, Arc::clone(&metrics), Arc::clone(&homeserver)));
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind(config.appservice.bind_addr())
        .await
        .map_err(|e| setup("appservice.port")(&format!("binding {}: {e}", config.appservice.bind_addr())))?;
    let address = listener.local_addr().map_err(|e| setup("appservice.port")(&e))?;
    tokio::spawn(crate::http::serve(listener, Arc::clone(&appservice), MAX_BODY, watch.clone()));
    if config.metrics.enabled {
        let listener = tokio::net::TcpListener::bind(config.metrics.listen)
            .await
            .map_err(|e| setup("metrics.listen")(&format!("binding {}: {e}", config.metrics.listen)))?;
        tokio::spawn(crate::http::serve(listener, Arc::new(MetricsHandler(Arc::clone(&metrics))), 1024, watch.clone()));
    }
    let federation_listener = tokio::net::TcpListener::bind(config.mimi.federation_listen)
        .await
        .map_err(|e| setup("mimi.federation_listen")(&format!("binding {}: {e}", config.mimi.federation_listen)))?;
    let federation_address = federation_listener.local_addr().map_err(|e| setup("mimi.federation_listen")(&e))?;
    let federation = Arc::new(crate::federation::Federation { hub: Arc::clone(&hub) });
    tokio::spawn(crate::http::serve(federation_listener, federation, MAX_FEDERATION_BODY, watch.clone()));
    let bridge = Arc::new(Bridge { hub: Arc::clone(&hub), settings, homeserver: Arc::clone(&homeserver), metrics });
    check_homeserver(&homeserver, &config.bot_user_id()).await?;
    appservice.set_ready();
    tokio::spawn(Arc::clone(&bridge).run_outbound());
    tokio::spawn(bridge.run(receiver));
    tracing::info!(%address, server_name = %config.mimi.server_name, "mimi-bridge is ready");
    Ok(Running { appservice, hub, address, federation_address, shutdown })
}

async fn check_homeserver(homeserver: &HomeserverClient, bot: &str) -> Result<(), DaemonError> {
    let mut waited = Duration::ZERO;
    let versions = loop {
        match homeserver.versions().await {
            Ok(v) => break v,
            // Synapse checks a token sent even to /versions: a refusal is about the token.
            Err(e) if matches!(e.errcode(), Some("M_UNKNOWN_TOKEN" | "M_FORBIDDEN" | "M_MISSING_TOKEN")) => {
                return Err(DaemonError::Check(format!(
                    "appservice.as_token: the homeserver refused it ({e}); is the registration file in its \
                     app_service_config_files, with the same tokens?"
                )));
            }
            Err(e) if e.is_retryable() && waited < Duration::from_secs(30) => {
                tracing::info!(error = %e, "waiting for the homeserver");
                tokio::time::sleep(Duration::from_millis(500)).await;
                waited += Duration::from_millis(500);
            }
            Err(e) => {
                return Err(DaemonError::Check(format!(
                    "homeserver.address: the homeserver does not answer /versions: {e}"
                )));
            }
        }
    };
    tracing::info!(?versions, "homeserver versions");
    let whoami = homeserver.whoami(None).await.map_err(|e| {
        DaemonError::Check(format!(
            "appservice.as_token: the homeserver refused it ({e}); is the registration file in its app_service_config_files, with the same tokens?"
        ))
    })?;
    if whoami != bot {
        return Err(DaemonError::Check(format!(
            "appservice.bot.username: the as_token belongs to {whoami}, not {bot}; regenerate the registration"
        )));
    }
    homeserver
        .ping(Some("mimi-bridge-startup"))
        .await
        .map_err(|e| DaemonError::Check(format!("appservice.address: the homeserver cannot reach the bridge ({e})")))?;
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn serve(config: &Config) -> Result<(), DaemonError> {
    let running = start(config).await?;
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| setup("serve")(&e))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = running.shutdown.send(true);
    tracing::info!("mimi-bridge stopped");
    Ok(())
}
