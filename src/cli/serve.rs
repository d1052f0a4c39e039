//! `mimi-bridge serve -c CONFIG`: loads the configuration (every problem named by field), sets up
//! logging from it (`RUST_LOG` overrides the level), and runs the daemon until a signal.

use std::path::Path;

use crate::config::{Config, LogFormat};

use super::CliError;

/// Runs the daemon. Startup problems exit 2 naming the config field to fix; a store that
/// refuses writes while serving exits 1.
pub fn serve(config_path: &Path) -> Result<(), CliError> {
    let config = Config::load_ready(config_path)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    let _ = match config.logging.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(crate::daemon::serve(&config)).map_err(|e| match e {
        // Not the configuration's fault: a failure while running (exit 1).
        crate::daemon::DaemonError::Store(_) => CliError::check(format!("{}: {e}", config_path.display())),
        e => CliError::usage(format!("{}: {e}", config_path.display())),
    })
}
