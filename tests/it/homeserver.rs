//! `HomeserverClient` against a real Synapse (registration with `url: null`, ghosts, rooms,
//! txnIds, `ts`, state, media, ping diagnostics), and its transport and retry loop against a
//! scripted loopback server standing in for faults Synapse cannot be made to produce (502s, 429s,
//! hangs, oversized bodies).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mimi_bridge::appservice::homeserver::{HomeserverClient, HomeserverError, PingFailure, RetryPolicy, retry};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::synapse::{DEFAULT_SERVER_NAME, Synapse, encode, txn_id};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

/// The server name the fixture will use (it reads the same variable).
fn server_name() -> String {
    std::env::var("MIMI_BRIDGE_SYNAPSE_SERVER_NAME").unwrap_or_else(|_| DEFAULT_SERVER_NAME.to_owned())
}

/// One appservice registration written to disk.
struct Registration {
    path: PathBuf,
    id: String,
    as_token: String,
    hs_token: String,
}

/// Writes a registration for appservice `id` with bot `@{prefix}bot` and exclusive ghosts
/// `@{prefix}_.*`, on `server`; `url: None` writes `url: null`.
fn write_registration(dir: &Path, id: &str, url: Option<&str>, prefix: &str, server: &str) -> Registration {
    let (as_token, hs_token) = (random_token(), random_token());
    let server_re = server.replace('.', "\\.");
    let url = url.map_or_else(|| "null".to_owned(), |u| format!("'{u}'"));
    let yaml = format!(
        "id: {id}\nurl: {url}\nas_token: {as_token}\nhs_token: {hs_token}\nsender_localpart: {prefix}bot\n\
         rate_limited: false\nnamespaces:\n  users:\n    - regex: '@{prefix}_.*:{server_re}'\n      exclusive: true\n\
         \x20   - regex: '@{prefix}bot:{server_re}'\n      exclusive: true\n  aliases: []\n  rooms: []\n"
    );
    let path = dir.join(format!("{id}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    Registration { path, id: id.to_owned(), as_token, hs_token }
}

fn matrix_errcode(result: &Result<impl std::fmt::Debug, HomeserverError>) -> (u16, String) {
    match result {
        Err(HomeserverError::Matrix { status, errcode, .. }) => (*status, errcode.clone()),
        other => panic!("expected a Matrix error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server on 127.0.0.1: one request per connection, answers chosen by a
// closure from the request's index and head; `None` holds the connection open without answering.

/// A request the scripted server received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) head: String,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }
}

type Respond = Box<dyn FnMut(usize, &Seen) -> Option<Vec<u8>> + Send>;

pub(crate) struct Scripted {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub(crate) async fn start(respond: impl FnMut(usize, &Seen) -> Option<Vec<u8>> + Send + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Mutex<Respond>> = Arc::new(Mutex::new(Box::new(respond)));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_one(stream, Arc::clone(&log), Arc::clone(&respond)));
            }
        });
        Scripted { addr, seen }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn serve_one(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>, respond: Arc<Mutex<Respond>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut seen = Seen { head, body: buf[head_end + 4..].to_vec() };
    let length: usize = seen.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while seen.body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.body.extend_from_slice(&chunk[..n]),
        }
    }
    let reply = {
        let mut log = log.lock().unwrap();
        let index = log.len();
        log.push(seen.clone());
        (respond.lock().unwrap())(index, &seen)
    };
    match reply {
        Some(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        None => tokio::time::sleep(Duration::from_mins(1)).await,
    }
}

/// A complete HTTP/1.1 response with a JSON body.
pub(crate) fn http(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A retry policy fast enough for tests.
fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_attempts: 5,
        max_elapsed: Duration::from_secs(10),
    }
}

// ---------------------------------------------------------------------------------------------
// Against Synapse.

#[test]
fn appservice_calls_against_synapse() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_name();
    let reg = write_registration(dir.path(), "mimi-it", None, "mimi", &server);
    let mut synapse = Synapse::start(&[&reg.path]);
    assert_eq!(synapse.server_name, server);
    let bot = synapse.user_id("mimibot");
    let ghost = synapse.user_id("mimi_alice");
    let ghost2 = synapse.user_id("mimi_bob");
    synapse.register("carol", "carol-pw");
    let carol = synapse.login("carol", "carol-pw");

    let hs = HomeserverClient::new(&synapse.base_url, &reg.as_token, &reg.id).unwrap();
    let debug = format!("{hs:?}");
    assert!(!debug.contains(&reg.as_token) && debug.contains("<redacted>"), "{debug}");

    runtime().block_on(async {
        // Discovery and identity.
        let versions = hs.versions().await.unwrap();
        assert!(versions.iter().any(|v| v == "v1.11"), "authenticated media needs v1.11: {versions:?}");
        assert_eq!(hs.whoami(None).await.unwrap(), bot);
        let unregistered = hs.whoami(Some(&ghost)).await;
        assert_eq!(matrix_errcode(&unregistered), (403, "M_FORBIDDEN".to_owned()), "ghost not registered yet");

        // Ghosts: created once, then M_USER_IN_USE is success; outside the namespace is refused.
        assert!(hs.register_ghost("mimi_alice").await.unwrap(), "first registration creates the ghost");
        assert!(!hs.register_ghost("mimi_alice").await.unwrap(), "second registration is a no-op success");
        assert!(hs.register_ghost("mimi_bob").await.unwrap());
        assert_eq!(hs.whoami(Some(&ghost)).await.unwrap(), ghost);
        let outsider = hs.register_ghost("outsider").await;
        assert_eq!(matrix_errcode(&outsider), (400, "M_EXCLUSIVE".to_owned()));
        assert!(!outsider.unwrap_err().is_retryable());
        hs.set_displayname(&ghost, "Alice (MIMI)").await.unwrap();
        let profile = synapse.get(Some(&carol), &format!("/_matrix/client/v3/profile/{}", encode(&ghost)));
        assert_eq!(profile["displayname"], "Alice (MIMI)");

        // A portal room made by the bot; the ghost is invited and joins, and so does a human.
        let room = hs.create_room(None, &json!({"preset": "private_chat", "name": "portal"})).await.unwrap();
        assert!(room.starts_with('!'), "{room}");
        hs.invite(&room, None, &ghost).await.unwrap();
        assert_eq!(hs.join(&room, Some(&ghost)).await.unwrap(), room);
        hs.invite(&room, None, &ghost2).await.unwrap();
        assert_eq!(hs.join(&room, Some(&ghost2)).await.unwrap(), room);
        hs.invite(&room, None, &synapse.user_id("carol")).await.unwrap();
        assert_eq!(synapse.join(&carol, &room), room);

        // Sending as the ghost with a massaged timestamp; the same txnId gives the same event.
        let ts = 1_600_000_000_000_i64;
        let txn = txn_id();
        let content = json!({"msgtype": "m.text", "body": "hello from MIMI"});
        let event = hs.send_event(&room, "m.room.message", &txn, &content, Some(&ghost), Some(ts)).await.unwrap();
        assert!(event.starts_with('$'), "{event}");
        let again = hs.send_event(&room, "m.room.message", &txn, &content, Some(&ghost), Some(ts)).await.unwrap();
        assert_eq!(again, event, "a repeated txnId is de-duplicated");
        // Synapse keys the dedup on the path, not on `user_id`: another ghost reusing the txnId
        // gets the first ghost's event back and its own message is dropped (spec §0 item 4).
        let other = json!({"msgtype": "m.text", "body": "lost"});
        let collided = hs.send_event(&room, "m.room.message", &txn, &other, Some(&ghost2), None).await.unwrap();
        assert_eq!(collided, event);
        let events = synapse.messages(&carol, &room);
        let sent = events.iter().find(|e| e["event_id"] == event.as_str()).unwrap();
        assert_eq!(sent["sender"], ghost.as_str());
        assert_eq!(sent["origin_server_ts"], ts);
        assert_eq!(sent["content"]["body"], "hello from MIMI");
        assert_eq!(synapse.texts(&carol, &room), [(ghost.clone(), "hello from MIMI".to_owned())]);

        // State: no encryption in a portal; the name and a topic set through send_state.
        assert_eq!(hs.room_state_event(&room, "m.room.encryption", "", None).await.unwrap(), None);
        let name = hs.room_state_event(&room, "m.room.name", "", Some(&ghost)).await.unwrap();
        assert_eq!(name, Some(json!({"name": "portal"})));
        let topic = hs.send_state(&room, "m.room.topic", "", &json!({"topic": "bridged"}), None, None).await.unwrap();
        assert!(topic.starts_with('$'));
        let read = hs.room_state_event(&room, "m.room.topic", "", None).await.unwrap().unwrap();
        assert_eq!(read["topic"], "bridged");
        let member = hs.room_state_event(&room, "m.room.member", &ghost, None).await.unwrap().unwrap();
        assert_eq!(member["membership"], "join");
        assert_eq!(member["displayname"], "Alice (MIMI)");

        // Redaction as the ghost.
        let redaction = hs.redact(&room, &event, &txn_id(), Some(&ghost), Some("retracted")).await.unwrap();
        assert!(redaction.starts_with('$') && redaction != event);
        let events = synapse.messages(&carol, &room);
        let redacted = events.iter().find(|e| e["event_id"] == event.as_str()).unwrap();
        assert_eq!(redacted["content"], json!({}), "{redacted}");

        // Media round trip through the authenticated endpoint, with the size limit enforced.
        let data = b"bytes from a MIMI attachment".to_vec();
        let mxc = hs.upload_media(data.clone(), "text/plain", Some("note one.txt"), Some(&ghost)).await.unwrap();
        assert!(mxc.starts_with(&format!("mxc://{server}/")), "{mxc}");
        let (content_type, bytes) = hs.download_media(&mxc, 1024).await.unwrap();
        // Synapse adds a charset to text types it serves: `text/plain; charset=UTF-8`.
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert_eq!(bytes, data);
        assert_eq!(hs.download_media(&mxc, 8).await, Err(HomeserverError::TooLarge));
        let missing = hs.download_media(&format!("mxc://{server}/doesNotExist"), 1024).await;
        assert_eq!(matrix_errcode(&missing), (404, "M_NOT_FOUND".to_owned()));
        assert!(matches!(
            hs.download_media("https://example.org/x", 10).await,
            Err(HomeserverError::InvalidRequest(_))
        ));

        // Leaving.
        hs.leave(&room, Some(&ghost2)).await.unwrap();
        let member = hs.room_state_event(&room, "m.room.member", &ghost2, None).await.unwrap().unwrap();
        assert_eq!(member["membership"], "leave");

        // Ping with `url: null` tells the admin what to set.
        let ping = hs.ping(Some("it-ping")).await.unwrap_err();
        assert_eq!(ping, HomeserverError::Ping(PingFailure::UrlNotSet));
        assert!(!ping.is_retryable());
        assert!(ping.to_string().contains("set `url` in the registration"), "{ping}");
    });
    synapse.stop();
}

/// Ping with a registration URL: a fake bridge that answers, then refuses; a registration whose
/// URL nobody listens on; and a client with the wrong appservice ID.
#[test]
fn ping_diagnostics_against_synapse() {
    let rt = runtime();
    let fake_bridge = rt.block_on(Scripted::start(|index, _| {
        if index == 0 { Some(http(200, "{}")) } else { Some(http(403, r#"{"errcode":"M_FORBIDDEN"}"#)) }
    }));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = server_name();
    let live = write_registration(dir.path(), "mimi-live", Some(&fake_bridge.url()), "live", &server);
    let gone = write_registration(dir.path(), "mimi-dead", Some(&format!("http://{dead}")), "dead", &server);
    let mut synapse = Synapse::start(&[&live.path, &gone.path]);

    rt.block_on(async {
        let hs = HomeserverClient::new(&synapse.base_url, &live.as_token, &live.id).unwrap();
        let rtt = hs.ping(Some("txn-ping-1")).await.unwrap();
        assert!(rtt < Duration::from_secs(10), "{rtt:?}");
        let seen = fake_bridge.seen();
        let ping = seen.iter().find(|s| s.request_line().starts_with("POST /_matrix/app/v1/ping")).unwrap();
        assert_eq!(ping.header("authorization"), Some(format!("Bearer {}", live.hs_token)));
        assert_eq!(serde_json::from_slice::<Value>(&ping.body).unwrap()["transaction_id"], "txn-ping-1");

        // The fake bridge now answers 403, as a bridge with the wrong hs_token would.
        let refused = hs.ping(None).await.unwrap_err();
        let HomeserverError::Ping(PingFailure::BadStatus { status, .. }) = &refused else {
            panic!("expected BadStatus, got {refused:?}");
        };
        assert_eq!(*status, Some(403));
        assert!(refused.to_string().contains("hs_token"), "{refused}");
        assert!(refused.is_retryable());

        let wrong_id = HomeserverClient::new(&synapse.base_url, &live.as_token, "not-mine").unwrap();
        let forbidden = wrong_id.ping(None).await.unwrap_err();
        assert!(matches!(&forbidden, HomeserverError::Ping(PingFailure::Forbidden { id, .. }) if id == "not-mine"));

        let hs_dead = HomeserverClient::new(&synapse.base_url, &gone.as_token, &gone.id).unwrap();
        let failed = hs_dead.ping(None).await.unwrap_err();
        assert!(matches!(failed, HomeserverError::Ping(PingFailure::ConnectionFailed { .. })), "{failed:?}");
        assert!(failed.to_string().contains("bridge is listening"), "{failed}");
    });
    synapse.stop();
}

// ---------------------------------------------------------------------------------------------
// Against the scripted server.

#[test]
fn retry_counts_retries_until_success() {
    runtime().block_on(async {
        let server = Scripted::start(|index, _| {
            Some(if index < 2 { http(502, "<html>bad gateway</html>") } else { http(200, r#"{"user_id":"@b:hs"}"#) })
        })
        .await;
        let hs = HomeserverClient::new(&server.url(), "tok", "as").unwrap();
        let outcome = retry(&quick_policy(), || hs.whoami(None)).await;
        assert_eq!(outcome.result.unwrap(), "@b:hs");
        assert_eq!(outcome.retries, 2);
        assert_eq!(server.hits(), 3);
    });
}

#[test]
fn retry_gives_up_at_once_on_a_client_error() {
    runtime().block_on(async {
        let server = Scripted::start(|_, _| Some(http(400, r#"{"errcode":"M_BAD_JSON","error":"nope"}"#))).await;
        let hs = HomeserverClient::new(&server.url(), "tok", "as").unwrap();
        let outcome = retry(&quick_policy(), || hs.whoami(None)).await;
        assert_eq!(outcome.retries, 0);
        assert_eq!(server.hits(), 1);
        assert_eq!(
            outcome.result,
            Err(HomeserverError::Matrix {
                status: 400,
                errcode: "M_BAD_JSON".into(),
                error: "nope".into(),
                retry_after_ms: None
            })
        );
    });
}

#[test]
fn retry_stops_at_the_attempt_limit_and_honours_retry_after() {
    runtime().block_on(async {
        let busy = Scripted::start(|_, _| Some(http(503, r#"{"errcode":"M_UNKNOWN","error":"busy"}"#))).await;
        let hs = HomeserverClient::new(&busy.url(), "tok", "as").unwrap();
        let policy = RetryPolicy { max_attempts: 3, ..quick_policy() };
        let outcome = retry(&policy, || hs.whoami(None)).await;
        assert_eq!((outcome.retries, busy.hits()), (2, 3));
        assert!(outcome.result.unwrap_err().is_retryable());

        let limited = Scripted::start(|index, _| {
            Some(if index == 0 {
                http(429, r#"{"errcode":"M_LIMIT_EXCEEDED","error":"slow down","retry_after_ms":300}"#)
            } else {
                http(200, r#"{"user_id":"@b:hs"}"#)
            })
        })
        .await;
        let hs = HomeserverClient::new(&limited.url(), "tok", "as").unwrap();
        let started = Instant::now();
        let outcome = retry(&quick_policy(), || hs.whoami(None)).await;
        assert_eq!((outcome.result.unwrap().as_str(), outcome.retries), ("@b:hs", 1));
        assert!(started.elapsed() >= Duration::from_millis(300), "waited only {:?}", started.elapsed());

        // A wait longer than the time budget is not waited for.
        let policy = RetryPolicy { max_elapsed: Duration::from_millis(100), ..quick_policy() };
        let again = Scripted::start(|_, _| {
            Some(http(429, r#"{"errcode":"M_LIMIT_EXCEEDED","error":"x","retry_after_ms":5000}"#))
        })
        .await;
        let hs = HomeserverClient::new(&again.url(), "tok", "as").unwrap();
        let started = Instant::now();
        let outcome = retry(&policy, || hs.whoami(None)).await;
        assert_eq!(outcome.retries, 0);
        assert_eq!(outcome.result.unwrap_err().retry_after(), Some(Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn requests_encode_ids_and_carry_the_token_only_in_the_header() {
    runtime().block_on(async {
        let server = Scripted::start(|_, _| Some(http(200, r#"{"event_id":"$e"}"#))).await;
        let hs = HomeserverClient::new(&format!("{}/prefix/", server.url()), "secret-token", "as").unwrap();
        assert_eq!(hs.base_url(), format!("{}/prefix", server.url()));
        let content = json!({"body": "x"});
        let event =
            hs.send_event("!r:hs.test", "m.room.message", "a/b c#1", &content, Some("@mimi_x:hs.test"), Some(5)).await;
        assert_eq!(event.unwrap(), "$e");
        let seen = server.seen();
        assert_eq!(
            seen[0].request_line(),
            "PUT /prefix/_matrix/client/v3/rooms/%21r%3Ahs.test/send/m.room.message/a%2Fb%20c%231\
             ?user_id=%40mimi_x%3Ahs.test&ts=5 HTTP/1.1"
        );
        assert_eq!(seen[0].header("authorization").as_deref(), Some("Bearer secret-token"));
        assert_eq!(seen[0].header("content-type").as_deref(), Some("application/json"));
        assert_eq!(serde_json::from_slice::<Value>(&seen[0].body).unwrap(), content);
        assert!(!format!("{hs:?}").contains("secret-token"));
    });
    for bad in ["https://hs.test", "127.0.0.1:8008", "http://hs.test/?x=1", "not a url"] {
        let error = HomeserverClient::new(bad, "t", "as").unwrap_err();
        assert!(matches!(error, HomeserverError::InvalidRequest(_)), "{bad}: {error:?}");
    }
}

#[test]
fn timeouts_limits_and_malformed_answers() {
    runtime().block_on(async {
        // A homeserver that accepts the connection and never answers.
        let silent = Scripted::start(|_, _| None).await;
        let hs =
            HomeserverClient::new(&silent.url(), "tok", "as").unwrap().with_request_timeout(Duration::from_millis(200));
        let started = Instant::now();
        let error = hs.versions().await.unwrap_err();
        assert_eq!(error, HomeserverError::Timeout);
        assert!(error.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(5));

        // A declared body over the JSON limit, and a chunked one that grows past it.
        let big = "x".repeat(4096);
        let declared = Scripted::start(move |_, _| Some(http(200, &format!("{{\"versions\":[\"{big}\"]}}")))).await;
        let hs = HomeserverClient::new(&declared.url(), "tok", "as").unwrap().with_max_json_bytes(1024);
        assert_eq!(hs.versions().await, Err(HomeserverError::TooLarge));
        let chunked = Scripted::start(|_, _| {
            let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                                 Connection: close\r\n\r\n"
                .to_vec();
            for _ in 0..8 {
                response.extend_from_slice(format!("200\r\n{}\r\n", " ".repeat(0x200)).as_bytes());
            }
            response.extend_from_slice(b"0\r\n\r\n");
            Some(response)
        })
        .await;
        let hs = HomeserverClient::new(&chunked.url(), "tok", "as").unwrap().with_max_json_bytes(1024);
        assert_eq!(hs.versions().await, Err(HomeserverError::TooLarge));

        // 2xx with the wrong shape, and a connection refused.
        let odd = Scripted::start(|_, _| Some(http(200, r#"{"versions":"v1.11"}"#))).await;
        let hs = HomeserverClient::new(&odd.url(), "tok", "as").unwrap();
        assert!(matches!(hs.versions().await, Err(HomeserverError::Malformed(_))));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let hs = HomeserverClient::new(&format!("http://{closed}"), "tok", "as").unwrap();
        let error = hs.versions().await.unwrap_err();
        assert!(matches!(&error, HomeserverError::Connection(_)) && error.is_retryable(), "{error:?}");
    });
}
