//! A commit's Welcome as the store keeps it (`commitid_welcome`): the draft's to-device message
//! content, with whom it is for, so that it can be delivered to the added devices' servers (and
//! used again to join after a crash).

/// The Welcome as the draft's to-device message content, with whom it is for.
pub fn welcome_json(welcome: &[u8], commit_event_id: &str, targets: &[(String, String)]) -> Vec<u8> {
    use base64::Engine as _;
    let targets: Vec<_> = targets.iter().map(|(user, device)| serde_json::json!([user, device])).collect();
    let value = serde_json::json!({
        "algorithm": format!("m.mls.v1.welcome.{}", super::events::ALGORITHM.trim_start_matches("m.mls.v1.")),
        "ciphertext": base64::engine::general_purpose::STANDARD_NO_PAD.encode(welcome),
        "commit_event_id": commit_event_id,
        "targets": targets,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A Welcome stored for delivery to the added devices' servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The Welcome (TLS `MlsMessage`).
    pub message: Vec<u8>,
    /// The (user, device) pairs it adds.
    pub targets: Vec<(String, String)>,
}

/// Reads a stored Welcome back.
pub fn parse_welcome(json: &[u8]) -> Option<Welcome> {
    use base64::Engine as _;
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let welcome = base64::engine::general_purpose::STANDARD_NO_PAD.decode(value.get("ciphertext")?.as_str()?).ok()?;
    let targets = value
        .get("targets")?
        .as_array()?
        .iter()
        .filter_map(|t| Some((t.get(0)?.as_str()?.to_owned(), t.get(1)?.as_str()?.to_owned())))
        .collect();
    Some(Welcome { message: welcome, targets })
}
