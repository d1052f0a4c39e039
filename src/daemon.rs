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
use crate::appservice::delivery::{HomeserverDelivery, NEXT_SEQ};
use crate::appservice::ghost::GhostTemplate;
use crate::appservice::homeserver::{HomeserverClient, HomeserverError, PingFailure};
use crate::appservice::intake::{DEFAULT_BACKLOG, Intake};
use crate::appservice::service::{Appservice, Settings};
use crate::config::Config;
use crate::event::ServerKey;
use crate::http::metrics::{Metrics, MetricsHandler};
use crate::hub::Hub;
use crate::queue::{Queue, QueueOptions, RetryPolicy};
use crate::store::{QueueId, Store};

/// Largest request body the appservice port accepts (Synapse's transactions are ≤ 100 events of
/// ≤ 64 KiB each).
pub const MAX_BODY: usize = 8 << 20;

/// Largest federation request body (50 PDUs of ≤ 64 KiB and 100 EDUs).
pub const MAX_FEDERATION_BODY: usize = 4 << 20;
/// Largest MIMI protocol request body (a commit bundle with a Welcome and a GroupInfo).
pub const MAX_PROVIDER_BODY: usize = 4 << 20;

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
    /// The store refused a write while serving (a full disk, an I/O error); the daemon stopped
    /// so that a supervisor restarts it once the cause is fixed.
    #[error("the database refused a write, so the bridge stopped (restart it once the cause is fixed): {0}")]
    Store(String),
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
    /// Where the MIMI listener listens, when `mimi.tls` is configured.
    pub provider_address: Option<std::net::SocketAddr>,
    /// The homeserver queue.
    pub queue: Arc<crate::appservice::delivery::HomeserverQueue>,
    /// Turn to `true` to stop the listeners and the queue's workers.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The listeners' tasks: each ends once its connections have finished after shutdown.
    pub listeners: Vec<tokio::task::JoinHandle<()>>,
    /// The store.
    pub store: Arc<Store>,
}

/// How long a stopping daemon waits for in-flight requests and deliveries.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

impl Running {
    /// Stops accepting, lets in-flight requests and deliveries finish (at most
    /// [`SHUTDOWN_GRACE`]), and returns whether everything finished in time. Whatever was
    /// acknowledged is durable either way; what did not finish is resumed at the next start.
    pub async fn stop(self) -> bool {
        let _ = self.shutdown.send(true);
        let queue = Arc::clone(&self.queue);
        let drained = async move {
            for listener in self.listeners {
                let _ = listener.await;
            }
            queue.drained().await;
        };
        tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_ok()
    }
}

/// Opens the store (which may upgrade it) and the hub, and trusts the pinned keys: synced writes,
/// run where blocking is allowed.
fn open_storage(config: &Config) -> Result<(Arc<Store>, Arc<Hub>), DaemonError> {
    // The key first: a key file that cannot be one is refused before the data directory is
    // created or touched.
    let (key, warning) = ServerKey::read_file(&config.mimi.signing_key).map_err(|e| setup("mimi.signing_key")(&e))?;
    if let Some(warning) = warning {
        tracing::warn!("mimi.signing_key: {warning}");
    }
    let options = config.database.store_options();
    let store = Arc::new(Store::open_with(&config.database.path, options).map_err(|e| setup("database.path")(&e))?);
    let hub =
        Arc::new(Hub::new(&config.mimi.server_name, &key, Arc::clone(&store)).map_err(|e| setup("database.path")(&e))?);
    let mut pinned = crate::event::KeyRing::new();
    for trusted in &config.mimi.trusted_keys {
        pinned.add_argument(trusted).map_err(|e| setup("mimi.trusted_keys")(&e))?;
    }
    for (server, key_id, key) in pinned.iter() {
        hub.directories().trust_key(server, key_id, *key).map_err(|e| setup("mimi.trusted_keys")(&e))?;
    }
    Ok((store, hub))
}

/// Opens everything and starts serving; the startup checks run after the listener is up.
pub async fn start(config: &Config) -> Result<Running, DaemonError> {
    let owned = config.clone();
    let (store, hub) =
        tokio::task::spawn_blocking(move || open_storage(&owned)).await.map_err(|e| setup("database.path")(&e))??;
    let homeserver = Arc::new(
        HomeserverClient::new(&config.homeserver.address, &config.appservice.as_token, config.appservice.id.clone())
            .map_err(|e| setup("homeserver.address")(&e))?,
    );
    let settings = settings_of(config)?;
    let metrics = Arc::new(Metrics::default());
    let (intake, reader) = Intake::open(Arc::clone(&store), DEFAULT_BACKLOG).map_err(|e| setup("database.path")(&e))?;
    // Work left from before a restart counts in the intake gauge.
    let pending = intake.backlog().capacity().saturating_sub(intake.backlog().available());
    metrics.intake_depth.store(u64::try_from(pending).unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    let appservice = Arc::new(
        Appservice::new(settings.clone(), intake, Arc::clone(&metrics), Arc::clone(&homeserver))
            .with_push(config.encryption.enabled && config.encryption.push),
    );
    let health = Arc::clone(appservice.health());
    health.watch_store(Arc::clone(&store));
    metrics.add_source(Arc::clone(&health) as Arc<dyn crate::http::metrics::MetricsSource>);
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let listener = tokio::net::TcpListener::bind(config.appservice.bind_addr())
        .await
        .map_err(|e| setup("appservice.port")(&format!("binding {}: {e}", config.appservice.bind_addr())))?;
    let address = listener.local_addr().map_err(|e| setup("appservice.port")(&e))?;
    let mut listeners =
        vec![tokio::spawn(crate::http::serve(listener, Arc::clone(&appservice), MAX_BODY, watch.clone()))];
    if config.metrics.enabled {
        let listener = tokio::net::TcpListener::bind(config.metrics.listen)
            .await
            .map_err(|e| setup("metrics.listen")(&format!("binding {}: {e}", config.metrics.listen)))?;
        let handler = Arc::new(MetricsHandler(Arc::clone(&metrics)));
        listeners.push(tokio::spawn(crate::http::serve(listener, handler, 1024, watch.clone())));
    }
    let federation_listener = tokio::net::TcpListener::bind(config.mimi.federation_listen)
        .await
        .map_err(|e| setup("mimi.federation_listen")(&format!("binding {}: {e}", config.mimi.federation_listen)))?;
    let federation_address = federation_listener.local_addr().map_err(|e| setup("mimi.federation_listen")(&e))?;
    let federation = Arc::new(
        crate::federation::Federation::new(Arc::clone(&hub), Arc::clone(&store))
            .with_rooms_per_day(config.mimi.quotas.rooms_per_day),
    );
    metrics.add_source(Arc::clone(&federation.metrics) as Arc<dyn crate::http::metrics::MetricsSource>);
    listeners.push(tokio::spawn(crate::http::serve(
        federation_listener,
        federation,
        MAX_FEDERATION_BODY,
        watch.clone(),
    )));
    let (provider_address, outbox) = match &config.mimi.tls {
        Some(tls) => {
            let serving = (&hub, &store, &health);
            let (address, outbox) =
                start_provider(config, &metrics, tls, serving, &mut listeners, watch.clone()).await?;
            (Some(address), Some(outbox))
        }
        None => (None, None),
    };
    let device = check_homeserver(&homeserver, config, &store).await?;
    let e2ee = open_device(device, &store, &appservice, config).await?;
    let advances = store.advances();
    let bridge = Arc::new(Bridge {
        hub: Arc::clone(&hub),
        state: Arc::clone(&store),
        settings,
        homeserver: Arc::clone(&homeserver),
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
        advances: advances.clone(),
        outbox: outbox.clone(),
        ghosts: e2ee.as_deref().map(crate::appservice::encrypted::Ghosts::beside),
        e2ee: e2ee.clone(),
    });
    let options = QueueOptions {
        counter: NEXT_SEQ,
        policy: RetryPolicy::default(),
        max_in_flight: 32,
        health: Arc::clone(&health),
    };
    let delivery = HomeserverDelivery::new(Arc::clone(&bridge));
    let queue = Queue::open(QueueId::Homeserver, Arc::clone(&store), delivery, options, watch.clone())
        .map_err(|e| setup("database.path")(&e))?;
    metrics.add_queue(Arc::clone(&queue) as Arc<dyn crate::http::metrics::QueueStats>);
    queue.resume().await.map_err(|e| setup("database.path")(&e))?;
    if let Some(outbox) = &outbox {
        outbox.resume().await.map_err(|e| setup("database.path")(&e))?;
    }
    appservice.set_ready();
    health.supervise("portal follower", tokio::spawn(Arc::clone(&bridge).run_follower(advances, Arc::clone(&queue))));
    health.supervise("intake", tokio::spawn(bridge.run(reader, Arc::clone(&queue))));
    if let Some(device) = e2ee.filter(|_| !config.encryption.push) {
        health.supervise("device sync", tokio::spawn(crate::e2ee::sync::run(device)));
    }
    tokio::spawn(keep_pinging(Arc::clone(&homeserver), watch.clone()));
    tracing::info!(%address, server_name = %config.mimi.server_name, "mimi-bridge is ready");
    Ok(Running { appservice, hub, address, federation_address, provider_address, queue, shutdown, listeners, store })
}

/// The MIMI listener: mutual TLS with `mimi.tls`'s certificate, on `mimi.listen`; and the
/// outbox of requests to other providers, with the same certificate as client.
async fn start_provider(
    config: &Config,
    metrics: &Metrics,
    tls: &crate::config::TlsSection,
    (hub, store, health): (&Arc<Hub>, &Arc<Store>, &Arc<crate::http::health::Health>),
    listeners: &mut Vec<tokio::task::JoinHandle<()>>,
    watch: tokio::sync::watch::Receiver<bool>,
) -> Result<(std::net::SocketAddr, Arc<crate::provider::outbox::Outbox>), DaemonError> {
    let material = crate::http::tls::TlsMaterial::load(&tls.certificate, &tls.key, tls.trust_anchors.as_deref())
        .map_err(|e| setup("mimi.tls")(&e))?;
    let server = material.server_config().map_err(|e| setup("mimi.tls")(&e))?;
    let mimi = &config.mimi;
    let provider = Arc::new(crate::provider::Provider {
        domain: mimi.server_name.clone(),
        public_url: mimi.public_url.clone().unwrap_or_else(|| format!("https://{}", mimi.server_name)),
        homeserver_domain: config.homeserver.domain.clone(),
        hub: Arc::clone(hub),
        store: Arc::clone(store),
        consent: mimi.consent.clone(),
        quotas: mimi.quotas,
        discovery: mimi.discovery,
        metrics: Arc::new(crate::provider::metrics::PeerMetrics::default()),
        media: crate::federation::media::Hosted::new(Arc::clone(store)),
    });
    metrics.add_source(Arc::clone(&provider.metrics) as Arc<dyn crate::http::metrics::MetricsSource>);
    let client = crate::provider::client::PeerClient::new(&material, &mimi.server_name, mimi.peers.clone())
        .map_err(|e| setup("mimi.tls")(&e))?
        .with_metrics(Arc::clone(&provider.metrics));
    let peers = Arc::new(crate::provider::peers::Peers::new(client));
    let outbox =
        crate::provider::outbox::open(Arc::clone(store), peers, Arc::clone(hub), Arc::clone(health), watch.clone())
            .map_err(|e| setup("database.path")(&e))?;
    metrics.add_queue(Arc::clone(&outbox) as Arc<dyn crate::http::metrics::QueueStats>);
    hub.set_outbox(Arc::new(crate::provider::requests::OutboxRequests(Arc::clone(&outbox))));
    let listener = tokio::net::TcpListener::bind(mimi.listen)
        .await
        .map_err(|e| setup("mimi.listen")(&format!("binding {}: {e}", mimi.listen)))?;
    let address = listener.local_addr().map_err(|e| setup("mimi.listen")(&e))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    listeners.push(tokio::spawn(crate::http::serve_with(listener, Some(acceptor), provider, MAX_PROVIDER_BODY, watch)));
    tracing::info!(%address, "MIMI provider listening (mutual TLS)");
    Ok((address, outbox))
}

/// The bridge's Matrix device of `owner` (`encryption.enabled`); in push mode handed to the
/// appservice endpoints (which hold transactions carrying its data until then), then checked to
/// receive to-device messages through them.
async fn open_device(
    device: Option<(String, String)>,
    store: &Arc<Store>,
    appservice: &Arc<Appservice>,
    config: &Config,
) -> Result<Option<Arc<crate::e2ee::Device>>, DaemonError> {
    let Some((owner, id)) = device else { return Ok(None) };
    let acting = (owner.as_str(), id.as_str());
    let probes = appservice.probes();
    let recovery = if let Some(file) = &config.encryption.recovery_key_file {
        let key =
            crate::e2ee::recovery::RecoveryKey::open_or_create(file).map_err(|e| DaemonError::Check(e.to_string()))?;
        Some(Arc::new(key))
    } else {
        tracing::warn!(
            "encryption.recovery_key_file is not set: the cross-signing keys are in the data directory alone"
        );
        None
    };
    let device = crate::e2ee::Device::open(Arc::clone(store), Arc::clone(&appservice.homeserver), acting, recovery)
        .await
        .map_err(|e| DaemonError::Check(format!("encryption.enabled: the bridge's device: {e}")))?;
    let device = Arc::new(device.requiring_verification(config.encryption.require_verification));
    if config.encryption.push {
        appservice.push_to(Arc::clone(&device));
        crate::appservice::device::probe(&appservice.homeserver, acting, probes).await.map_err(DaemonError::Check)?;
    }
    Ok(Some(device))
}

/// What the appservice endpoints take from the configuration.
fn settings_of(config: &Config) -> Result<Settings, DaemonError> {
    let ghosts = GhostTemplate::parse(&config.appservice.username_template, &config.homeserver.domain)
        .map_err(|e| setup("appservice.username_template")(&e))?;
    let owner = crate::config::EncryptionSection::owner_localpart(&config.appservice.bot.username);
    Ok(Settings {
        hs_token: config.appservice.hs_token.clone(),
        legacy_access_token_query: config.appservice.legacy_access_token_query,
        domain: config.homeserver.domain.clone(),
        bot_localpart: config.appservice.bot.username.clone(),
        ghosts,
        more_content_extensions: config.mimi.more_content_extensions,
        device_owner: config.encryption.enabled.then(|| format!("@{owner}:{}", config.homeserver.domain)),
    })
}

/// Checks the homeserver and the registration; returns the bridge device's owner and ID (the store's,
/// or a new one), once the device is ready (`encryption.enabled`).
async fn check_homeserver(
    homeserver: &HomeserverClient,
    config: &Config,
    store: &Store,
) -> Result<Option<(String, String)>, DaemonError> {
    let bot = config.bot_user_id();
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
    startup_ping(homeserver)
        .await
        .map_err(|e| DaemonError::Check(format!("appservice.address: the homeserver cannot reach the bridge ({e})")))?;
    if !config.encryption.enabled {
        return Ok(None);
    }
    let device = crate::e2ee::Device::id_in(store).map_err(|e| setup("database.path")(&e))?;
    let owner = crate::appservice::device::ready(homeserver, config, &device).await.map_err(DaemonError::Check)?;
    tracing::info!(owner, device, push = config.encryption.push, "the bridge's Matrix device is ready");
    Ok(Some((owner, device)))
}

/// Startup pings tried before a failure to connect is taken for a wrong `appservice.address`.
const STARTUP_PINGS: u32 = 5;

/// The startup ping. A homeserver may fail to connect to a bridge that has just restarted
/// (Synapse 1.163 has answered a ping with `M_CONNECTION_FAILED` (`AlreadyCalled`) right after
/// the previous process was killed), so a failure to connect or a timeout is tried again a few
/// times, 0.5 s to 4 s apart, before the start fails.
async fn startup_ping(homeserver: &HomeserverClient) -> Result<(), HomeserverError> {
    let (mut attempt, mut wait) = (1, Duration::from_millis(500));
    loop {
        match homeserver.ping(Some("mimi-bridge-startup")).await {
            Err(HomeserverError::Ping(PingFailure::ConnectionFailed { .. } | PingFailure::Timeout))
                if attempt < STARTUP_PINGS =>
            {
                tracing::warn!(attempt, "the homeserver could not reach the bridge; pinging again");
                tokio::time::sleep(wait).await;
                (attempt, wait) = (attempt + 1, wait * 2);
            }
            other => return other.map(drop),
        }
    }
}

/// How often a running daemon pings the homeserver. Synapse retries the transactions it could
/// not deliver with a back-off that grows to 512 s, and retries at once after a successful ping:
/// whatever it held back while the bridge was unreachable (a restart that raced its first
/// failure, a network outage) arrives within this interval, not minutes later.
const PING_EVERY: Duration = Duration::from_secs(30);

async fn keep_pinging(homeserver: Arc<HomeserverClient>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PING_EVERY) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if let Err(error) = homeserver.ping(Some("mimi-bridge-keepalive")).await {
            tracing::warn!(%error, "the homeserver could not ping the bridge");
        }
    }
}

/// How often a running daemon checks that its store still takes writes.
const STORE_CHECK: Duration = Duration::from_secs(1);

/// Resolves with the reason once `store` refuses writes.
async fn store_failed(store: &Store) -> String {
    loop {
        if let Some(reason) = store.poisoned() {
            return reason;
        }
        tokio::time::sleep(STORE_CHECK).await;
    }
}

/// Runs the daemon until SIGINT or SIGTERM, or until the store refuses a write: then it stops
/// and fails (exit status 1), since only reopening the store (replaying its log) makes it take
/// writes again, and what it acknowledged is durable. A supervisor (systemd `Restart=`) restarts
/// it; while the disk is still full, opening fails and it exits again.
pub async fn serve(config: &Config) -> Result<(), DaemonError> {
    let running = start(config).await?;
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| setup("serve")(&e))?;
    let store = Arc::clone(&running.store);
    let failure = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        reason = store_failed(&store) => Some(reason),
    };
    if let Some(reason) = failure {
        tracing::error!(%reason, "the database refused a write; stopping so that a restart reopens it");
        let _ = running.stop().await;
        return Err(DaemonError::Store(reason));
    }
    tracing::info!("stopping: no new requests; finishing what is in flight");
    if running.stop().await {
        tracing::info!("mimi-bridge stopped");
    } else {
        tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "stopped with work still in flight; it resumes at the next start"
        );
    }
    Ok(())
}
