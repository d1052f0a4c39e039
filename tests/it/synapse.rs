//! A real Synapse homeserver for the bridge tests, run through `scripts/synapse`, and a small
//! client-server API client over `ureq`.
//!
//! The first start in a test process runs `scripts/synapse install` (a pinned matrix-synapse in a
//! venv under `~/.cache/mimi-bridge`); if that fails every test using Synapse fails with the
//! script's output. Each [`Synapse`] has its own temporary directory (config, `SQLite` database,
//! logs) and loopback port, and is stopped when dropped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/synapse");

/// The server name used when `MIMI_BRIDGE_SYNAPSE_SERVER_NAME` is not set.
pub(crate) const DEFAULT_SERVER_NAME: &str = "hs.test";

/// A running Synapse on `127.0.0.1:port`, stopped on drop.
pub(crate) struct Synapse {
    /// Holds `homeserver.yaml`, `homeserver.db`, `homeserver.log`, `synapse.out`, `synapse.pid`.
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    /// `http://127.0.0.1:{port}`, no trailing slash.
    pub(crate) base_url: String,
    pub(crate) server_name: String,
    registrations: Vec<PathBuf>,
    running: bool,
    agent: ureq::Agent,
}

/// HTTP methods the client helpers use.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
}

fn script() -> Command {
    Command::new(SCRIPT)
}

fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `scripts/synapse install` once per process; panics (in every caller) if it failed.
fn install() {
    static INSTALL: OnceLock<Result<Duration, String>> = OnceLock::new();
    let result = INSTALL.get_or_init(|| {
        let started = Instant::now();
        let out = script().arg("install").output().map_err(|e| format!("cannot run {SCRIPT}: {e}"))?;
        if out.status.success() {
            let took = started.elapsed();
            eprintln!("synapse: install checked in {took:?}");
            Ok(took)
        } else {
            Err(describe("scripts/synapse install", &out))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Percent-encodes one path segment (room IDs, user IDs, event types, transaction IDs).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// A transaction ID unique within this test process.
pub(crate) fn txn_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("it-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Synapse {
    /// Installs Synapse if needed and starts a fresh server on a free port, loading the given
    /// appservice registration files.
    pub(crate) fn start(registrations: &[&Path]) -> Synapse {
        let server_name =
            std::env::var("MIMI_BRIDGE_SYNAPSE_SERVER_NAME").unwrap_or_else(|_| DEFAULT_SERVER_NAME.to_owned());
        Self::start_named(&server_name, registrations)
    }

    /// [`start`](Self::start) with the given server name (a second homeserver beside the first).
    pub(crate) fn start_named(server_name: &str, registrations: &[&Path]) -> Synapse {
        install();
        let server_name = server_name.to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_mins(1)))
            .build()
            .into();
        let mut synapse = Synapse {
            dir: tempfile::Builder::new().prefix("synapse-").tempdir().unwrap(),
            port: 0,
            base_url: String::new(),
            server_name,
            registrations: registrations.iter().map(|p| p.to_path_buf()).collect(),
            running: false,
            agent,
        };
        // Another process may bind the port before Synapse does: retry.
        let mut attempt = 0;
        loop {
            synapse.port = crate::ports::consecutive(1);
            synapse.base_url = format!("http://127.0.0.1:{}", synapse.port);
            match synapse.try_start() {
                Ok(()) => return synapse,
                Err(message) if attempt < 4 && message.contains("Address already in use") => attempt += 1,
                Err(message) => panic!("{message}"),
            }
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        let out = script()
            .arg("start")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .args(&self.registrations)
            .env("MIMI_BRIDGE_SYNAPSE_SERVER_NAME", &self.server_name)
            .env("MIMI_BRIDGE_SYNAPSE_WATCH_PID", std::process::id().to_string())
            .output()
            .map_err(|e| format!("cannot run {SCRIPT}: {e}"))?;
        if out.status.success() {
            self.running = true;
            Ok(())
        } else {
            Err(describe(&format!("scripts/synapse start {} {}", self.dir.path().display(), self.port), &out))
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 20 s); the directory stays for a restart.
    pub(crate) fn stop(&mut self) {
        let out = script().arg("stop").arg(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", describe("scripts/synapse stop", &out));
        self.running = false;
    }

    /// Stops the server if it runs and starts it again on the same directory, port and
    /// registrations (same database, same users and rooms).
    pub(crate) fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        if let Err(message) = self.try_start() {
            panic!("{message}");
        }
    }

    /// Turns on what push mode needs (to-device messages and device data in appservice
    /// transactions, behind experimental flags) and restarts the server.
    pub(crate) fn enable_push_extensions(&mut self) {
        self.stop();
        let homeserver_yaml = self.dir.path().join("homeserver.yaml");
        let yaml = std::fs::read_to_string(&homeserver_yaml).unwrap();
        let flags = "experimental_features:\n  msc2409_to_device_messages_enabled: true\n  msc3202_transaction_extensions: true\n";
        std::fs::write(&homeserver_yaml, format!("{yaml}{flags}")).unwrap();
        self.restart();
    }

    /// `@localpart:server_name`.
    pub(crate) fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Creates a user through the shared registration secret; fine if it exists.
    pub(crate) fn register(&self, user: &str, password: &str) {
        self.register_with(user, password, false);
    }

    /// Like [`Synapse::register`], as a server admin.
    pub(crate) fn register_admin(&self, user: &str, password: &str) {
        self.register_with(user, password, true);
    }

    fn register_with(&self, user: &str, password: &str, admin: bool) {
        let mut cmd = script();
        cmd.arg("register").arg(self.dir.path()).arg(user).arg(password);
        if admin {
            cmd.arg("--admin");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", describe(&format!("scripts/synapse register {user}"), &out));
    }

    /// Password login; returns the access token.
    pub(crate) fn login(&self, user: &str, password: &str) -> String {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        let response = self.post(None, "/_matrix/client/v3/login", &body);
        response["access_token"].as_str().unwrap().to_owned()
    }

    /// Sends a request to `base_url + path` (path already encoded, query included), with the
    /// token as a bearer if given; returns the status and the JSON body (a JSON string holding
    /// the raw text if the body is not JSON).
    pub(crate) fn call(&self, method: Method, token: Option<&str>, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            (Method::Get, None) => {
                let mut req = self.agent.get(&url);
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            (Method::Post | Method::Put, body) => {
                let mut req = match method {
                    Method::Post => self.agent.post(&url),
                    _ => self.agent.put(&url),
                };
                if let Some(auth) = &auth {
                    req = req.header("Authorization", auth);
                }
                req.send_json(body.cloned().unwrap_or_else(|| json!({})))
            }
            (Method::Get, Some(_)) => panic!("GET {path} with a body"),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method:?} {url}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    fn expect_ok(&self, method: Method, token: Option<&str>, path: &str, body: Option<&Value>) -> Value {
        let (status, value) = self.call(method, token, path, body);
        assert_eq!(status, 200, "{method:?} {path} answered {status}: {value}");
        value
    }

    /// GET, expecting 200.
    pub(crate) fn get(&self, token: Option<&str>, path: &str) -> Value {
        self.expect_ok(Method::Get, token, path, None)
    }

    /// POST a JSON body, expecting 200.
    pub(crate) fn post(&self, token: Option<&str>, path: &str, body: &Value) -> Value {
        self.expect_ok(Method::Post, token, path, Some(body))
    }

    /// PUT a JSON body, expecting 200.
    pub(crate) fn put(&self, token: Option<&str>, path: &str, body: &Value) -> Value {
        self.expect_ok(Method::Put, token, path, Some(body))
    }

    /// `POST /createRoom` with `body` (e.g. `{"preset": "private_chat", "invite": [...]}`);
    /// returns the room ID.
    pub(crate) fn create_room(&self, token: &str, body: &Value) -> String {
        let response = self.post(Some(token), "/_matrix/client/v3/createRoom", body);
        response["room_id"].as_str().unwrap().to_owned()
    }

    /// Sends any message-like event with a fresh transaction ID; returns the event ID.
    pub(crate) fn send(&self, token: &str, room: &str, event_type: &str, content: &Value) -> String {
        let path =
            format!("/_matrix/client/v3/rooms/{}/send/{}/{}", encode(room), encode(event_type), encode(&txn_id()));
        let response = self.put(Some(token), &path, content);
        response["event_id"].as_str().unwrap().to_owned()
    }

    /// Sends an `m.text` `m.room.message`; returns the event ID.
    pub(crate) fn send_text(&self, token: &str, room: &str, body: &str) -> String {
        self.send(token, room, "m.room.message", &json!({"msgtype": "m.text", "body": body}))
    }

    /// `POST /rooms/{room}/invite`.
    pub(crate) fn invite(&self, token: &str, room: &str, user: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", encode(room));
        self.post(Some(token), &path, &json!({"user_id": user}));
    }

    /// `POST /join/{room}` (a room ID or alias); returns the room ID.
    pub(crate) fn join(&self, token: &str, room: &str) -> String {
        let path = format!("/_matrix/client/v3/join/{}", encode(room));
        let response = self.post(Some(token), &path, &json!({}));
        response["room_id"].as_str().unwrap().to_owned()
    }

    /// The room's latest events (up to 1000, state events included) in chronological order.
    pub(crate) fn messages(&self, token: &str, room: &str) -> Vec<Value> {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000", encode(room));
        let response = self.get(Some(token), &path);
        let mut events = response["chunk"].as_array().unwrap().clone();
        events.reverse();
        events
    }

    /// `(sender, body)` of the room's `m.room.message` events, in chronological order.
    pub(crate) fn texts(&self, token: &str, room: &str) -> Vec<(String, String)> {
        self.messages(token, room)
            .into_iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| {
                let sender = e["sender"].as_str().unwrap_or_default().to_owned();
                let body = e["content"]["body"].as_str().unwrap_or_default().to_owned();
                (sender, body)
            })
            .collect()
    }

    /// The server's log (`homeserver.log`, WARNING and above), for failure messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default()
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        match script().arg("stop").arg(self.dir.path()).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("{}", describe("scripts/synapse stop", &out)),
            Err(e) => eprintln!("cannot run {SCRIPT} stop: {e}"),
        }
    }
}

#[test]
fn synapse_starts_registers_and_sends() {
    install();
    let started = Instant::now();
    let mut synapse = Synapse::start(&[]);
    eprintln!("synapse: started on {} in {:?}", synapse.base_url, started.elapsed());

    synapse.register("alice", "alice-pw");
    synapse.register("alice", "alice-pw"); // idempotent
    synapse.register("bob", "bob-pw");
    synapse.register_admin("root", "root-pw");
    let alice = synapse.login("alice", "alice-pw");
    let bob = synapse.login("bob", "bob-pw");

    let room = synapse.create_room(&alice, &json!({"preset": "private_chat", "name": "smoke"}));
    assert!(room.starts_with('!'), "{room}");
    let event = synapse.send_text(&alice, &room, "hello from a real Synapse");
    assert!(event.starts_with('$'), "{event}");
    synapse.invite(&alice, &room, &synapse.user_id("bob"));
    assert_eq!(synapse.join(&bob, &room), room);
    synapse.send_text(&bob, &room, "hi alice");

    let events = synapse.messages(&bob, &room);
    assert_eq!(events[0]["type"], "m.room.create", "chronological order: {events:#?}");
    let sent = events.iter().find(|e| e["event_id"] == event.as_str()).unwrap();
    assert_eq!(sent["content"]["body"], "hello from a real Synapse");
    assert_eq!(
        synapse.texts(&alice, &room),
        [
            (synapse.user_id("alice"), "hello from a real Synapse".to_owned()),
            (synapse.user_id("bob"), "hi alice".to_owned())
        ]
    );

    // Errors come back as status and body, not panics.
    let (status, body) = synapse.call(Method::Get, Some("bogus"), "/_matrix/client/v3/account/whoami", None);
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));

    // A restart keeps the database: the old token and the history survive.
    let restarted = Instant::now();
    synapse.restart();
    eprintln!("synapse: restarted in {:?}", restarted.elapsed());
    assert_eq!(synapse.texts(&alice, &room).len(), 2, "{}", synapse.log());
}
