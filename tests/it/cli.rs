//! The binary's stable interface: keygen, the log tools and their exit codes.

use serde_json::Value;

use crate::common::*;
use crate::replay::sample;

#[test]
fn keygen_writes_a_synapse_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    let out = run(&["keygen", "--out", path.to_str().unwrap(), "--key-id", "abc_1"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = std::fs::read_to_string(&path).unwrap();
    let words: Vec<&str> = file.split_whitespace().collect();
    assert_eq!((words.len(), words[0], words[1]), (3, "ed25519", "abc_1"));
    let key = mimi_bridge::event::ServerKey::parse_synapse(&file).unwrap();
    assert_eq!(text(&out.stdout).trim(), format!("ed25519:abc_1 {}", key.public_b64()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let again = run(&["keygen", "--out", path.to_str().unwrap()], b"");
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), file);

    let default = dir.path().join("default.key");
    assert!(run(&["keygen", "--out", default.to_str().unwrap()], b"").status.success());
    let version = std::fs::read_to_string(&default).unwrap().split_whitespace().nth(1).unwrap().to_owned();
    assert!(version.starts_with("a_") && version.len() == 6, "{version}");

    let bad = run(&["keygen", "--out", dir.path().join("x").to_str().unwrap(), "--key-id", "no-dash"], b"");
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("[A-Za-z0-9_]+"), "{}", text(&bad.stderr));
}

#[test]
fn event_commands_reject_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    std::fs::write(&key, hub_key().to_synapse_line()).unwrap();
    let key = key.to_str().unwrap();
    for (args, stdin, needle) in [
        (vec!["event", "check"], &b"{\"a\": 1e10}"[..], "float"),
        (vec!["event", "check"], b"[1]", "object"),
        (vec!["event", "check", "--room-version", "99"], b"{}", "unknown room version"),
        (vec!["event", "check", "--key", "nonsense"], b"{}", "--key"),
        (
            vec!["event", "sign", "--server-name", "s", "--key-file", "/nonexistent/key"],
            b"{}",
            "--key-file /nonexistent/key",
        ),
        (vec!["event", "sign", "--server-name", "s", "--key-file", key], b"{\"a\":1,\"a\":2}", "duplicate key"),
    ] {
        let out = run(&args, stdin);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    let huge = vec![b' '; (1 << 20) + 10];
    let out = run(&["event", "check"], &huge);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("more than"), "{}", text(&out.stderr));
}

#[test]
fn log_list_show_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, room) = sample(dir.path());
    drop(hub);
    let d = dir.path().to_str().unwrap();

    let out = run(&["log", "list", "--data-dir", d], b"");
    assert!(out.status.success());
    let listing = text(&out.stdout);
    assert!(listing.contains(&room) && listing.contains("\t13\t") && listing.contains(HUB), "{listing}");

    let out = run(&["log", "show", "--data-dir", d, "--room", &room, "--from", "9", "--limit", "2"], b"");
    let shown = text(&out.stdout);
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(shown.lines().next().unwrap().trim_start().starts_with("9  $"), "{shown}");
    assert!(shown.contains("\"bob 1 \u{2713}\"") && shown.contains(BOB), "{shown}");

    let out = run(&["log", "show", "--data-dir", d, "--room", &room, "--json", "--limit", "1"], b"");
    let first: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(first["position"], 0);
    assert_eq!(first["pdu"]["type"], "m.room.create");

    let out = run(&["log", "state", "--data-dir", d, "--room", &room, "--at", "5", "--json"], b"");
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&Value> =
        state["state"].as_array().unwrap().iter().filter(|s| s["type"] == "m.room.member").collect();
    assert_eq!(members.len(), 2, "after position 5 Bob is invited: {state}");
    assert!(members.iter().any(|m| m["state_key"] == BOB && m["content"]["membership"] == "invite"));
    let out = run(&["log", "state", "--data-dir", d, "--room", &room, "--json"], b"");
    let now: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        now["state"].as_array().unwrap().iter().any(|m| m["state_key"] == BOB && m["content"]["membership"] == "join")
    );
    let out = run(&["log", "state", "--data-dir", d, "--room", &room, "--at", "99"], b"");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn log_verify_export_import_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, room) = sample(dir.path());
    drop(hub);
    let d = dir.path().to_str().unwrap();

    let out = run(&["log", "verify", "--data-dir", d], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("13 event(s) verified"));
    // Pinning a wrong key for the participant: exit 1, naming room, position and event.
    let wrong = format!(
        "{PART}=ed25519:part1={}",
        mimi_bridge::event::ServerKey::from_seed("x", [3; 32]).unwrap().public_b64()
    );
    let out = run(&["log", "verify", "--data-dir", d, "--key", &wrong], b"");
    assert_eq!(out.status.code(), Some(1));
    let msg = text(&out.stderr);
    assert!(
        msg.contains(&room) && msg.contains("position 6") && msg.contains("event $") && msg.contains(PART),
        "{msg}"
    );

    let out = run(&["log", "export", "--data-dir", d, "--room", &room], b"");
    assert!(out.status.success());
    assert!(out.stderr.is_empty() || !text(&out.stderr).contains('\r'), "no progress bar in a pipe");
    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap();
    let out = run(&["log", "import", "--data-dir", t], &out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(run(&["log", "verify", "--data-dir", t, "--room", &room], b"").status.success());

    let out = run(&["log", "import", "--data-dir", t], b"not json\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("line 1"), "{}", text(&out.stderr));
    let out = run(&["log", "show", "--data-dir", d, "--room", "!missing:hub.example"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["log", "list", "--data-dir", "/nonexistent/dir"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/dir"));
}

#[test]
fn event_check_names_a_missing_sender() {
    let out = run(&["event", "check"], br#"{"type":"m.room.message","content":{},"hashes":{"sha256":"x"}}"#);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert!(report["error"].as_str().unwrap().contains("field `sender`"), "{report}");
}
