//! `mimi-bridge generate-config` and `generate-registration`: the files a homeserver admin sets
//! the bridge up with.

use std::io::Write as _;
use std::path::Path;

use crate::config::{self, Config, ConfigError, GENERATE, Registration};

use super::CliError;

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::usage(e.to_string())
    }
}

/// `generate-config`: the documented example configuration, as `bridge-config/config.example.yaml`.
pub fn generate_config() -> &'static str {
    config::EXAMPLE
}

/// `generate-registration`: reads `config_path`, generates the tokens that are still `generate`
/// and writes them back into it (only those lines change; existing tokens are kept), then writes
/// the registration to `registration_path` (`-` for standard output, returned as the output).
/// Returns what to print.
pub fn generate_registration(config_path: &Path, registration_path: &Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|source| ConfigError::Read { file: config_path.to_owned(), source })?;
    let mut config = Config::from_yaml(&text, config_path)?;
    let generate = |token: &str| -> Result<Option<String>, CliError> {
        if token != GENERATE {
            return Ok(None);
        }
        config::generate_token().map(Some).map_err(|e| CliError::usage(format!("cannot generate a token: {e}")))
    };
    let as_token = generate(&config.appservice.as_token)?;
    let hs_token = generate(&config.appservice.hs_token)?;
    let generated = as_token.is_some() || hs_token.is_some();
    if generated {
        let new_text = config::replace_tokens(&text, config_path, as_token.as_deref(), hs_token.as_deref())?;
        if let Some(token) = &as_token {
            config.appservice.as_token.clone_from(token);
        }
        if let Some(token) = &hs_token {
            config.appservice.hs_token.clone_from(token);
        }
        // The rewrite touched only the token lines; make sure it reads back as exactly this.
        if Config::from_yaml(&new_text, config_path).ok().as_ref() != Some(&config) {
            return Err(ConfigError::Rewrite {
                file: config_path.to_owned(),
                message: "writing the generated tokens into the file would change more than the token values; \
                          write `as_token:` and `hs_token:` under `appservice:` on lines of their own"
                    .to_owned(),
            }
            .into());
        }
        write_atomic(config_path, new_text.as_bytes())?;
    }
    let registration = Registration::from_config(&config).to_yaml();
    let tokens = if generated { "tokens generated and written to" } else { "tokens kept from" };
    if registration_path == Path::new("-") {
        return Ok(registration.trim_end().to_owned());
    }
    write_atomic(registration_path, registration.as_bytes())?;
    Ok(format!(
        "wrote {} ({tokens} {}); add it to Synapse's app_service_config_files and restart Synapse",
        registration_path.display(),
        config_path.display()
    ))
}

/// Replaces `path` with `bytes` all at once: a temporary file beside it, synced, then renamed. An
/// existing file keeps its permissions; a new one is readable by its owner only (it holds tokens).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ConfigError> {
    let fail = |source| ConfigError::Write { file: path.to_owned(), source };
    let name = path.file_name().ok_or_else(|| fail(std::io::Error::other("not a file name")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(&tmp).and_then(|mut file| {
        if let Ok(old) = std::fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}
