//! The appservice port under hostile clients (real HTTP on 127.0.0.1, the daemon's body limit):
//! a request without the homeserver's token is refused on its headers before any of its body is
//! sent, a declared length above the limit is refused at once however large, and a flood of
//! unauthenticated 8 MiB uploads leaves the process's memory where it was.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use mimi_bridge::appservice::ghost::GhostTemplate;
use mimi_bridge::appservice::homeserver::HomeserverClient;
use mimi_bridge::appservice::intake::{DEFAULT_BACKLOG, Intake};
use mimi_bridge::appservice::service::{Appservice, Settings};
use mimi_bridge::store::Store;

const MAX_BODY: usize = mimi_bridge::daemon::MAX_BODY;
const HS_TOKEN: &str = "hs-token-0123456789";

/// Sends a transaction's head declaring `length` bytes, then (if `send_body`) up to the limit of
/// them; returns the status line.
fn put(address: std::net::SocketAddr, token: Option<&str>, length: u64, send_body: bool) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "PUT /_matrix/app/v1/transactions/t1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    if send_body {
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..MAX_BODY / chunk.len() {
            if stream.write_all(&chunk).is_err() {
                break; // refused and closed before the whole body went
            }
        }
    }
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).lines().next().unwrap_or_default().to_owned()
}

#[test]
fn hostile_uploads_are_refused_on_their_headers_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (intake, _reader) = Intake::open(Arc::clone(&store), DEFAULT_BACKLOG).unwrap();
    let settings = Settings {
        hs_token: HS_TOKEN.into(),
        legacy_access_token_query: false,
        domain: "hs.test".into(),
        bot_localpart: "mimibot".into(),
        ghosts: GhostTemplate::parse("mimi_{server}_{localpart}", "hs.test").unwrap(),
        more_content_extensions: false,
        device_owner: None,
    };
    let homeserver = Arc::new(HomeserverClient::new("http://127.0.0.1:9", "as-token", "mimi").unwrap());
    let app = Arc::new(Appservice::new(settings, intake, Arc::default(), homeserver));
    let (_shutdown, watch) = tokio::sync::watch::channel(false);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(mimi_bridge::http::serve(listener, app, MAX_BODY, watch));

    // Refused on the headers alone: the body is never sent, yet the answer comes.
    assert!(put(address, None, MAX_BODY as u64 - 1, false).contains("401"), "no token");
    assert!(put(address, Some("wrong"), MAX_BODY as u64 - 1, false).contains("403"), "wrong token");
    assert!(put(address, Some(HS_TOKEN), 1 << 40, false).contains("413"), "a declared TiB");
    assert!(put(address, Some(HS_TOKEN), MAX_BODY as u64 + 1, false).contains("413"), "one byte over");

    // 200 clients at once, each offering an 8 MiB − 1 body without a token (1.6 GB offered).
    let before = crate::common::rss_kib();
    let threads: Vec<_> =
        (0..200).map(|_| std::thread::spawn(move || put(address, None, MAX_BODY as u64 - 1, true))).collect();
    let mut peak = before;
    for thread in threads {
        let status = thread.join().unwrap();
        assert!(status.contains("401") || status.is_empty(), "{status}");
        peak = peak.max(crate::common::rss_kib());
    }
    let growth_mib = peak.saturating_sub(before) / 1024;
    println!(
        "appservice flood: 200 unauthenticated 8 MiB uploads: RSS {} MiB before, peak {} MiB (+{growth_mib} MiB)",
        before / 1024,
        peak / 1024
    );
    assert!(growth_mib < 64, "RSS grew by {growth_mib} MiB under the flood");
}
