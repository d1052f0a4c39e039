//! A real Synapse for the benches (`scripts/synapse`, `SQLite`, rate limits off) in a temporary
//! directory on a free loopback port, stopped on drop (also when unwinding from a panic, and by
//! the script's watcher if the bench process is killed).

#![allow(dead_code, reason = "each bench uses a part")]

use std::process::{Command, Output};

use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/synapse");

/// A blocking HTTP agent that returns error statuses as responses, with a one-minute deadline.
pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_mins(1)))
        .build()
        .into()
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn script(args: &[&str]) -> Output {
    Command::new(SCRIPT).args(args).output().unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"))
}

/// A real Synapse on a free loopback port, stopped on drop (also when unwinding from a panic).
pub(crate) struct Synapse {
    dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) base: String,
    agent: ureq::Agent,
}

impl Synapse {
    /// Starts a fresh server loading the given appservice registrations.
    pub(crate) fn start(registrations: &[&std::path::Path]) -> Self {
        let out = script(&["install"]);
        assert!(out.status.success(), "{}", describe("scripts/synapse install", &out));
        let dir = tempfile::Builder::new().prefix("synapse-bench-").tempdir().expect("dir");
        let path = dir.path().to_str().expect("UTF-8 temporary path").to_owned();
        for attempt in 0.. {
            let port = crate::ports::consecutive(1);
            let out = Command::new(SCRIPT)
                .args(["start", &path, &port.to_string()])
                .args(registrations)
                .env("MIMI_BRIDGE_SYNAPSE_SERVER_NAME", "hs.test")
                .env("MIMI_BRIDGE_SYNAPSE_WATCH_PID", std::process::id().to_string())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"));
            if out.status.success() {
                return Synapse { dir, port, base: format!("http://127.0.0.1:{port}"), agent: agent() };
            }
            let message = describe(&format!("scripts/synapse start {path} {port}"), &out);
            assert!(attempt < 4 && message.contains("Address already in use"), "{message}");
        }
        unreachable!("the loop returns or panics")
    }

    pub(crate) fn path(&self) -> &str {
        self.dir.path().to_str().expect("UTF-8 temporary path")
    }

    /// The server's pid, for its CPU time.
    pub(crate) fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("synapse.pid")).expect("synapse.pid").trim().to_owned()
    }

    pub(crate) fn register(&self, user: &str, password: &str) {
        let out = script(&["register", self.path(), user, password]);
        assert!(out.status.success(), "{}", describe(&format!("scripts/synapse register {user}"), &out));
    }

    /// POST or PUT a JSON body, expecting 200; returns the response.
    pub(crate) fn call(agent: &ureq::Agent, put: bool, url: &str, token: Option<&str>, body: &Value) -> Value {
        let mut request = if put { agent.put(url) } else { agent.post(url) };
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let mut response = request.send_json(body).unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("response body");
        assert_eq!(status, 200, "{url} answered {status}: {text}");
        serde_json::from_str(&text).expect("JSON response")
    }

    pub(crate) fn login(&self, user: &str, password: &str) -> String {
        let body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                          "password": password});
        let url = format!("{}/_matrix/client/v3/login", self.base);
        Self::call(&self.agent, false, &url, None, &body)["access_token"].as_str().expect("access_token").to_owned()
    }

    pub(crate) fn create_room(&self, token: &str, name: &str) -> String {
        let url = format!("{}/_matrix/client/v3/createRoom", self.base);
        let body = json!({"preset": "private_chat", "name": name});
        Self::call(&self.agent, false, &url, Some(token), &body)["room_id"].as_str().expect("room_id").to_owned()
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        match Command::new(SCRIPT).args(["stop", self.path()]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("{}", describe("scripts/synapse stop", &out)),
            Err(e) => eprintln!("cannot run {SCRIPT} stop: {e}"),
        }
    }
}
