//! The appservice port over real HTTP on 127.0.0.1: authentication, Matrix errors, size limits,
//! and durable, deduplicated intake — checked in the store after each request.

use std::sync::Arc;

use mimi_bridge::appservice::ghost::GhostTemplate;
use mimi_bridge::appservice::homeserver::HomeserverClient;
use mimi_bridge::appservice::intake::{DEFAULT_BACKLOG, Intake, IntakeReader};
use mimi_bridge::appservice::service::{Appservice, Settings};
use mimi_bridge::http::metrics::Metrics;
use mimi_bridge::store::Store;

const HS_TOKEN: &str = "hs-token-0123456789";
const AS_TOKEN: &str = "as-token-9876543210";

/// (path, token, body, expected status, expected errcode).
type Case<'a> = (&'a str, Option<&'a str>, &'a [u8], u16, &'a str);

struct Served {
    base: String,
    /// Stands in for the homeserver: records what the appservice asks of it, answers `{}`.
    homeserver: crate::homeserver::Scripted,
    metrics: String,
    store: Arc<Store>,
    receiver: IntakeReader,
    _shutdown: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn serve(legacy_query: bool) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (intake, receiver) = Intake::open(Arc::clone(&store), DEFAULT_BACKLOG).unwrap();
    let settings = Settings {
        hs_token: HS_TOKEN.into(),
        legacy_access_token_query: legacy_query,
        domain: "hs.test".into(),
        bot_localpart: "mimibot".into(),
        ghosts: GhostTemplate::parse("mimi_{server}_{localpart}", "hs.test").unwrap(),
        more_content_extensions: false,
        device_owner: None,
    };
    // Only the users query calls the homeserver (to register a ghost it answers 200 for).
    let scripted =
        runtime.block_on(crate::homeserver::Scripted::start(|_, _| Some(crate::homeserver::http(200, "{}"))));
    let homeserver = Arc::new(HomeserverClient::new(&scripted.url(), AS_TOKEN, "mimi").unwrap());
    let counters = Arc::new(Metrics::default());
    let app = Arc::new(Appservice::new(settings, intake, Arc::clone(&counters), homeserver));
    let (shutdown, watch) = tokio::sync::watch::channel(false);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(mimi_bridge::http::serve(listener, app, 64 * 1024, watch.clone()));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let metrics = format!("http://{}/metrics", listener.local_addr().unwrap());
    let handler = Arc::new(mimi_bridge::http::metrics::MetricsHandler(counters));
    runtime.spawn(mimi_bridge::http::serve(listener, handler, 1024, watch));
    Served { base, homeserver: scripted, metrics, store, receiver, _shutdown: shutdown, _runtime: runtime, _dir: dir }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// (status, errcode) of a response.
fn put(served: &Served, path: &str, token: Option<&str>, body: &[u8]) -> (u16, serde_json::Value) {
    let mut request = agent().put(format!("{}{path}", served.base));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut response = request.header("Content-Type", "application/json").send(body).unwrap();
    let status = response.status().as_u16();
    let value = response.body_mut().read_json().unwrap_or(serde_json::Value::Null);
    (status, value)
}

fn message(id: &str, body: &str) -> serde_json::Value {
    serde_json::json!({"event_id": id, "room_id": "!r:hs.test", "type": "m.room.message", "sender": "@alice:hs.test",
                       "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": body}})
}

fn txn(events: &[serde_json::Value]) -> Vec<u8> {
    serde_json::json!({"events": events}).to_string().into_bytes()
}

#[test]
fn bad_tokens_bodies_and_paths_get_matrix_errors_and_store_nothing() {
    let served = serve(false);
    let body = txn(&[message("$a", "hi")]);
    let cases: [Case; 7] = [
        ("/_matrix/app/v1/transactions/1", Some("wrong"), &body, 403, "M_FORBIDDEN"),
        ("/_matrix/app/v1/transactions/1", Some(AS_TOKEN), &body, 403, "M_FORBIDDEN"),
        ("/_matrix/app/v1/transactions/1", None, &body, 401, "M_MISSING_TOKEN"),
        ("/_matrix/app/v1/transactions/1", Some(HS_TOKEN), b"{not json", 400, "M_NOT_JSON"),
        ("/_matrix/app/v1/transactions/1", Some(HS_TOKEN), br#"{"events": [{"event_id": 5}]}"#, 400, "M_BAD_JSON"),
        ("/_matrix/app/v1/nothing", Some(HS_TOKEN), &body, 404, "M_UNRECOGNIZED"),
        ("/_matrix/app/v1/ping", Some(HS_TOKEN), b"{}", 405, "M_UNRECOGNIZED"),
    ];
    for (path, token, body, status, errcode) in cases {
        let (got, value) = put(&served, path, token, body);
        assert_eq!((got, value["errcode"].as_str().unwrap_or_default()), (status, errcode), "{path} {token:?}");
        assert!(value["error"].is_string());
    }
    let oversized = txn(&[message("$big", &"x".repeat(70 * 1024))]);
    let (status, value) = put(&served, "/_matrix/app/v1/transactions/1", Some(HS_TOKEN), &oversized);
    assert_eq!((status, value["errcode"].as_str().unwrap()), (413, "M_TOO_LARGE"));
    // The legacy query token is refused unless configured.
    let (status, _) = put(&served, &format!("/_matrix/app/v1/transactions/1?access_token={HS_TOKEN}"), None, &body);
    assert_eq!(status, 401);
    assert!(served.store.intake_len().unwrap() == 0);
    assert!(!served.store.txn_seen(b"1").unwrap());
}

#[test]
fn transactions_are_durable_before_200_and_deduplicated() {
    let mut served = serve(true);
    let first = txn(&[message("$a", "one"), message("$b", "two")]);
    assert_eq!(put(&served, "/_matrix/app/v1/transactions/7", Some(HS_TOKEN), &first).0, 200);
    // The same transaction again: 200, nothing new.
    assert_eq!(put(&served, "/_matrix/app/v1/transactions/7", Some(HS_TOKEN), &first).0, 200);
    // The same event in another transaction (legacy query token allowed here): stored once.
    let second = txn(&[message("$b", "two"), message("$c", "three")]);
    let path = format!("/_matrix/app/v1/transactions/8?access_token={HS_TOKEN}");
    assert_eq!(put(&served, &path, None, &second).0, 200);
    let queue = served.store.intake_page(0, 100).unwrap();
    let ids: Vec<String> = queue
        .iter()
        .map(|(_, bytes)| {
            serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["event_id"].as_str().unwrap().into()
        })
        .collect();
    assert_eq!(ids, ["$a", "$b", "$c"]);
    assert!(served.store.txn_seen(b"7").unwrap() && served.store.txn_seen(b"8").unwrap());
    let reader = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let page = reader.block_on(served.receiver.next_page(100)).unwrap();
    let delivered: Vec<&str> = page.iter().map(|q| q.event["event_id"].as_str().unwrap()).collect();
    assert_eq!(delivered, ["$a", "$b", "$c"]);
    let nothing_new = reader.block_on(async {
        tokio::time::timeout(std::time::Duration::from_millis(100), served.receiver.next_page(100)).await
    });
    assert!(nothing_new.is_err(), "entries are handed out once");

    // Health, and the other endpoints.
    let mut live = agent().get(format!("{}/_matrix/mau/live", served.base)).call().unwrap();
    assert_eq!(live.status().as_u16(), 200);
    assert_eq!(live.body_mut().read_json::<serde_json::Value>().unwrap()["ok"], true);
    let ready = agent().get(format!("{}/_matrix/mau/ready", served.base)).call().unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready before the startup checks");
    let ping = agent()
        .post(format!("{}/_matrix/app/v1/ping", served.base))
        .header("Authorization", &format!("Bearer {HS_TOKEN}"))
        .send(br#"{"transaction_id": "t"}"#.as_slice())
        .unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    let mut alias = agent()
        .get(format!("{}/_matrix/app/v1/rooms/%23x%3Ahs.test", served.base))
        .header("Authorization", &format!("Bearer {HS_TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(alias.status().as_u16(), 404);
    assert_eq!(alias.body_mut().read_json::<serde_json::Value>().unwrap()["errcode"], "M_NOT_FOUND");
    let mut stranger = agent()
        .get(format!("{}/_matrix/app/v1/users/%40alice%3Ahs.test", served.base))
        .header("Authorization", &format!("Bearer {HS_TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(stranger.status().as_u16(), 404);
    assert_eq!(stranger.body_mut().read_json::<serde_json::Value>().unwrap()["errcode"], "M_NOT_FOUND");

    // Prometheus counters on their own listener.
    let text = agent().get(&served.metrics).call().unwrap().body_mut().read_to_string().unwrap();
    for line in [
        "mimi_bridge_transactions_total 2",
        "mimi_bridge_transactions_duplicate_total 1",
        "mimi_bridge_events_in_total 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    assert_eq!(agent().get(served.metrics.replace("/metrics", "/other")).call().unwrap().status().as_u16(), 404);

    // A reopened intake hands back what is still queued, in order.
    drop(served.receiver);
    let store = Arc::clone(&served.store);
    let (again, mut again_reader) = Intake::open(store, DEFAULT_BACKLOG).unwrap();
    let replayed: Vec<u64> = reader.block_on(again_reader.next_page(100)).unwrap().iter().map(|q| q.seq).collect();
    assert_eq!(replayed, [1, 2, 3]);
    assert_eq!(again.backlog().capacity() - again.backlog().available(), 3, "the backlog counts what was left");
}

/// Transaction IDs are the path segment's exact bytes: `%C0` and `%C1` (both U+FFFD if decoded
/// lossily) are two transactions, each taken in; the same ID again is still a duplicate, and an
/// ID that is UTF-8 keeps its plain key.
#[test]
fn transaction_ids_are_compared_as_their_exact_bytes() {
    let served = serve(false);
    let ids = |served: &Served| -> Vec<String> {
        let queue = served.store.intake_page(0, 100).unwrap();
        queue
            .iter()
            .map(|(_, b)| serde_json::from_slice::<serde_json::Value>(b).unwrap()["event_id"].to_string())
            .collect()
    };
    for (segment, event) in [("%C0", "$x"), ("%C1", "$y"), ("%C0", "$z"), ("%E2%9C%93", "$w")] {
        let path = format!("/_matrix/app/v1/transactions/{segment}");
        assert_eq!(put(&served, &path, Some(HS_TOKEN), &txn(&[message(event, event)])).0, 200, "{segment}");
    }
    assert_eq!(ids(&served), ["\"$x\"", "\"$y\"", "\"$w\""], "%C1 taken in, %C0 again a duplicate");
    assert!(served.store.txn_seen(&[0xC0]).unwrap() && served.store.txn_seen(&[0xC1]).unwrap());
    assert!(served.store.txn_seen("✓".as_bytes()).unwrap(), "a UTF-8 ID keeps the key it always had");
    assert!(!served.store.txn_seen("\u{FFFD}".as_bytes()).unwrap());
}

/// `GET /_matrix/app/v1/users/{userId}` as the homeserver sends it: (status, errcode).
fn query_user(served: &Served, user_id: &str) -> (u16, String) {
    let segment = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC);
    let mut response = agent()
        .get(format!("{}/_matrix/app/v1/users/{segment}", served.base))
        .header("Authorization", &format!("Bearer {HS_TOKEN}"))
        .call()
        .unwrap();
    let value = response.body_mut().read_json::<serde_json::Value>().unwrap_or_default();
    (response.status().as_u16(), value["errcode"].as_str().unwrap_or_default().to_owned())
}

/// Usernames the appservice asked the homeserver to register.
fn registered(served: &Served) -> Vec<String> {
    served
        .homeserver
        .seen()
        .iter()
        .filter(|seen| seen.request_line().starts_with("POST /_matrix/client/v3/register"))
        .map(|seen| {
            serde_json::from_slice::<serde_json::Value>(&seen.body).unwrap()["username"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Only IDs the ghost mapping produces exist: anything else in the namespace is 404 and nothing
/// is registered for it; a real ghost and the bot are registered and answered 200.
#[test]
fn the_users_query_knows_only_ghosts_the_mapping_produces() {
    let served = serve(false);
    let long = format!("@mimi_part.test_{}:hs.test", "a".repeat(292));
    assert_eq!(long.len(), 316);
    for hostile in [
        "@mimi_../../x_y:hs.test",
        "@mimi_Part.test_bob:hs.test",
        "@mimi_part.test_BOB:hs.test",
        "@mimi_part.test_bøb:hs.test",
        "@mimi_part.tést_bob:hs.test",
        "@mimi_part.test=1=2_bob:hs.test",
        long.as_str(),
        "@alice:hs.test",
    ] {
        assert_eq!(query_user(&served, hostile), (404, "M_NOT_FOUND".to_owned()), "{hostile}");
    }
    assert_eq!(registered(&served), Vec::<String>::new(), "nothing registered for IDs no MIMI user maps to");

    assert_eq!(query_user(&served, "@mimi_part.test_bob:hs.test"), (200, String::new()));
    assert_eq!(query_user(&served, "@mimi_part.test=8448_b_o.b:hs.test"), (200, String::new()));
    assert_eq!(query_user(&served, "@mimibot:hs.test"), (200, String::new()));
    assert_eq!(registered(&served), ["mimi_part.test_bob", "mimi_part.test=8448_b_o.b", "mimibot"]);
}

/// A transaction whose request is dropped while its batch syncs (the homeserver hung up) is
/// still settled whole: its events are queued once, the backlog room it did not use (a repeated
/// event) is given back, and the homeserver's retry is a duplicate.
#[test]
fn a_transaction_cancelled_while_it_syncs_is_settled_whole() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let event = |id: &str| serde_json::json!({"event_id": id, "room_id": "!r:hs.test", "type": "m.room.message", "sender": "@a:hs.test"});
    let body = serde_json::json!({"events": [event("$a"), event("$a"), event("$b")]}).to_string();
    // Polled once (the batch is submitted), then dropped. Should the sync finish within that
    // first poll (an idle disk), nothing was cancelled: the same again on a fresh store.
    let mut attempts = 0;
    let (_dir, intake, mut reader) = loop {
        attempts += 1;
        assert!(attempts <= 20, "the transaction synced within its first poll {attempts} times");
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (intake, reader) = Intake::open(store, DEFAULT_BACKLOG).unwrap();
        let pending = runtime.block_on(async {
            let mut take = std::pin::pin!(intake.take(b"t1", body.as_bytes()));
            std::future::poll_fn(|cx| std::task::Poll::Ready(take.as_mut().poll(cx))).await.is_pending()
        });
        if pending {
            break (dir, intake, reader);
        }
    };

    let queued: Vec<u64> = runtime.block_on(reader.next_page(10)).unwrap().iter().map(|q| q.seq).collect();
    assert_eq!(queued, [1, 2]);
    let backlog = intake.backlog();
    let started = std::time::Instant::now();
    while backlog.available() != backlog.capacity() - 2 {
        assert!(started.elapsed().as_secs() < 10, "backlog room left taken: {} free", backlog.available());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let retry = runtime.block_on(intake.take(b"t1", body.as_bytes())).unwrap();
    assert!(retry.duplicate && retry.new_events == 0, "{retry:?}");
}
