//! `mimi-bridge mimi directory <provider>` and `mimi-bridge mimi claim <user URI>`: talk to a
//! peer as this bridge would (its certificate, its trust anchors, its `mimi.peers` overrides) and
//! print what came back, and why anything was refused. For debugging a peer; the claim consumes
//! one of the target's KeyPackages, as any claim does.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::Config;
use crate::http::tls::TlsMaterial;
use crate::mimi::protocol::ClientMaterial;
use crate::provider::client::PeerClient;
use crate::provider::peers::{Peers, Requester};

use super::CliError;

fn peers(config_path: &Path) -> Result<(Config, Peers), CliError> {
    let config = Config::load(config_path)?;
    let tls = config.mimi.tls.as_ref().ok_or_else(|| {
        CliError::usage(format!(
            "{}: mimi.tls: missing, expected the provider's certificate, key and trust anchors",
            config_path.display()
        ))
    })?;
    let material = TlsMaterial::load(&tls.certificate, &tls.key, tls.trust_anchors.as_deref())
        .map_err(|e| CliError::usage(format!("{}: mimi.tls: {e}", config_path.display())))?;
    let client = PeerClient::new(&material, &config.mimi.server_name, config.mimi.peers.clone())
        .map_err(|e| CliError::usage(format!("{}: mimi.tls: {e}", config_path.display())))?;
    Ok((config, Peers::new(client)))
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::usage(format!("cannot start the runtime: {e}")))
}

/// Prints a peer's directory as this bridge reads it.
pub fn mimi_directory(config_path: &Path, provider: &str) -> Result<String, CliError> {
    let (_, peers) = peers(config_path)?;
    let directory = runtime()?.block_on(peers.directory(provider)).map_err(|e| CliError::usage(e.to_string()))?;
    let mut out = String::new();
    for (endpoint, template) in &directory.endpoints {
        let _ = writeln!(out, "{endpoint}\t{template}");
    }
    Ok(out)
}

/// Claims a user's key material as the bridge's bot and prints each client's verdict.
pub fn mimi_claim(config_path: &Path, user_uri: &str, room: Option<&str>) -> Result<String, CliError> {
    let (config, peers) = peers(config_path)?;
    let bot = format!("mimi://{}/u/{}", config.mimi.server_name, config.appservice.bot.username);
    let requester = Requester::ephemeral(&bot).map_err(|e| CliError::usage(e.to_string()))?;
    let claimed =
        runtime()?.block_on(peers.claim(&requester, user_uri, room)).map_err(|e| CliError::usage(e.to_string()))?;
    let mut out = format!("userStatus {:?} for {}\n", claimed.response.status, claimed.response.user_uri);
    for client in &claimed.response.clients {
        let line = match client {
            ClientMaterial::Success { client_uri, key_package } => {
                let verdict = claimed.checked.iter().find(|(c, _)| c == client_uri).map(|(_, v)| v);
                match verdict {
                    Some(Ok(_)) => format!("{client_uri}\tKeyPackage of {} bytes, valid", key_package.len()),
                    Some(Err(refusal)) => format!("{client_uri}\tKeyPackage refused: {refusal}"),
                    None => format!("{client_uri}\tKeyPackage not checked"),
                }
            }
            ClientMaterial::Exhausted { client_uri } => format!("{client_uri}\tkeyMaterialExhausted"),
            ClientMaterial::NothingCompatible { client_uri, capabilities } => {
                format!(
                    "{client_uri}\tnothingCompatible (capabilities {})",
                    if capabilities.is_some() { "given" } else { "withheld" }
                )
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}
