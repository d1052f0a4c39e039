//! `/_matrix/mau/live` and `/_matrix/mau/ready`, as mautrix bridges answer them, so existing
//! monitoring works unchanged: live while the process serves; ready once startup checks passed
//! and for as long as every worker runs and the store takes writes. A worker that stops for good
//! (it panicked) is named in the answer and in an error log line; a store that refuses writes
//! (after a full disk or an I/O error) is named with its reason, and the daemon exits so that
//! its supervisor restarts it (see `daemon::serve`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{Response, json};

/// Whether the bridge is ready, and which workers died.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    dead: Mutex<Vec<&'static str>>,
    store: std::sync::OnceLock<std::sync::Arc<crate::store::Store>>,
}

impl Health {
    /// Startup checks passed.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    /// A worker stopped for good.
    pub fn failed(&self, worker: &'static str) {
        tracing::error!(worker, "a bridge worker stopped; /_matrix/mau/ready now answers 503");
        let mut dead = self.dead.lock().unwrap_or_else(PoisonError::into_inner);
        if !dead.contains(&worker) {
            dead.push(worker);
        }
    }

    /// Ties readiness to `store` taking writes.
    pub fn watch_store(&self, store: std::sync::Arc<crate::store::Store>) {
        let _ = self.store.set(store);
    }

    /// Why the watched store refuses writes, if it does.
    pub fn store_failure(&self) -> Option<String> {
        self.store.get().and_then(|s| s.poisoned())
    }

    /// Ready: started, no worker died, and the store takes writes.
    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::SeqCst)
            && self.dead.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
            && self.store_failure().is_none()
    }

    /// The workers that died.
    pub fn dead(&self) -> Vec<&'static str> {
        self.dead.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Watches a spawned worker: if it ends by panicking, or at all while it should run
    /// forever, readiness goes.
    pub fn supervise(self: &std::sync::Arc<Self>, worker: &'static str, handle: tokio::task::JoinHandle<()>) {
        let health = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            match handle.await {
                Err(error) if error.is_panic() => health.failed(worker),
                Err(_) => {}
                Ok(()) => health.failed(worker),
            }
        });
    }
}

/// `GET /_matrix/mau/live`.
pub fn live() -> Response {
    json(hyper::StatusCode::OK, &serde_json::json!({"ok": true}))
}

/// `GET /_matrix/mau/ready`: 503 until started, and again once a worker died.
pub fn ready(health: &Health) -> Response {
    let ready = health.is_ready();
    let status = if ready { hyper::StatusCode::OK } else { hyper::StatusCode::SERVICE_UNAVAILABLE };
    let mut body = serde_json::json!({"ok": ready});
    let dead = health.dead();
    if !dead.is_empty() {
        body["dead_workers"] = serde_json::json!(dead);
    }
    if let Some(reason) = health.store_failure() {
        body["store"] = serde_json::json!(reason);
    }
    json(status, &body)
}

impl super::metrics::MetricsSource for Health {
    fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let failed = u8::from(self.store_failure().is_some());
        let _ = writeln!(
            out,
            "# HELP mimi_bridge_store_failed 1 once a write failed (full disk, I/O error): the store refuses writes until a restart.\n\
             # TYPE mimi_bridge_store_failed gauge\nmimi_bridge_store_failed {failed}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_that_dies_makes_the_bridge_unready_and_is_named() {
        let health = std::sync::Arc::new(Health::default());
        assert!(!health.is_ready(), "not ready before the startup checks");
        health.set_started();
        assert_eq!(ready(&health).status(), hyper::StatusCode::OK);
        health.supervise("steady", tokio::spawn(std::future::pending()));
        health.supervise("portal follower", tokio::spawn(async { panic!("a bug") }));
        for _ in 0..100 {
            if !health.is_ready() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(health.dead(), ["portal follower"]);
        let response = ready(&health);
        assert_eq!(response.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"ok": false, "dead_workers": ["portal follower"]}));
    }

    #[tokio::test]
    async fn a_store_that_refuses_writes_makes_the_bridge_unready_with_its_reason() {
        use super::super::metrics::MetricsSource as _;
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(crate::store::Store::open(dir.path()).unwrap());
        let health = Health::default();
        health.set_started();
        health.watch_store(std::sync::Arc::clone(&store));
        let mut text = String::new();
        health.render(&mut text);
        assert!(text.contains("mimi_bridge_store_failed 0"), "{text}");
        assert_eq!(ready(&health).status(), hyper::StatusCode::OK);

        store.fail_for_test("No space left on device");
        let response = ready(&health);
        assert_eq!(response.status(), hyper::StatusCode::SERVICE_UNAVAILABLE);
        let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["store"].as_str().unwrap().contains("No space left on device"), "{body}");
        let mut text = String::new();
        health.render(&mut text);
        assert!(text.contains("mimi_bridge_store_failed 1"), "{text}");
        assert!(store.write(crate::store::Batch::new()).is_err(), "nothing is written after a failure");
    }
}
