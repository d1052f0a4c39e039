//! The server-server side of Linearized Matrix. So far the receiving half of `send`: a peer's
//! LPDUs reach the hub, and a hub's PDUs reach the rooms this server follows. Requests are
//! authenticated with X-Matrix signatures checked against the keys this server trusts.

pub mod media;
pub mod metrics;
pub mod send;
pub mod x_matrix;

use std::sync::Arc;

use crate::http::{Handler, MatrixError, Request, Response};
use crate::hub::Hub;

/// The LM room version's unstable federation prefix, which every implementation uses.
pub const UNSTABLE_PREFIX: &str = "/_matrix/federation/unstable/org.matrix.i-d.ralston-mimi-linearized-matrix.02";

/// The federation listener's handler.
#[derive(Debug)]
pub struct Federation {
    /// The log writer (hub of our rooms, follower of others').
    pub hub: Arc<Hub>,
    /// The attachments this server hosts.
    media: media::Hosted,
    /// The one slot for parsing a body whose signature did not verify as sent: such requests
    /// take turns, so a flood of them costs at most one core.
    unverified: tokio::sync::Semaphore,
    /// Figures for `/metrics`.
    pub metrics: Arc<metrics::FederationMetrics>,
    /// Which new rooms other servers may start here.
    pub rooms: Arc<send::NewRooms>,
}

impl Federation {
    /// With at most `per_day` new rooms per server and day (`mimi.quotas.rooms_per_day`).
    #[must_use]
    pub fn with_rooms_per_day(mut self, per_day: u64) -> Self {
        self.rooms = Arc::new(send::NewRooms::new(per_day));
        self
    }

    /// The handler over `hub`, serving hosted media from `store`.
    pub fn new(hub: Arc<Hub>, store: Arc<crate::store::Store>) -> Self {
        Self {
            hub,
            media: media::Hosted::new(store),
            unverified: tokio::sync::Semaphore::new(1),
            metrics: Arc::default(),
            rooms: Arc::new(send::NewRooms::new(crate::config::PeerQuotas::default().rooms_per_day)),
        }
    }
}

/// The transaction ID of a `send` path.
fn send_txn(path: &str) -> Option<&str> {
    path.strip_prefix(UNSTABLE_PREFIX)
        .and_then(|p| p.strip_prefix("/send/"))
        .or_else(|| path.strip_prefix("/_matrix/federation/v2/send/"))
        .filter(|t| !t.is_empty() && !t.contains('/'))
}

impl Handler for Federation {
    /// Before any body is read: a known route with its method, and for `send` X-Matrix headers
    /// from a trusted origin key (the signature itself covers the body and is checked after).
    fn admit(&self, request: &Request) -> Result<(), MatrixError> {
        if request.path.starts_with(media::PATH) {
            return Ok(());
        }
        match send_txn(&request.path) {
            Some(_) if request.method == hyper::Method::PUT => {
                x_matrix::precheck(&request.headers, self.hub.server_name(), &self.hub.directories().trusted_keys())
            }
            Some(_) => Err(MatrixError::method_not_allowed()),
            None => Err(MatrixError::unrecognized()),
        }
    }

    async fn handle(&self, request: Request) -> Response {
        let path = request.path.clone();
        if let Some(id) = path.strip_prefix(media::PATH) {
            return self.media.get(id, &request).await.unwrap_or_else(|error| error.response());
        }
        let result = match send_txn(&path) {
            Some(txn) if request.method == hyper::Method::PUT => send::put(self, txn, &request).await,
            Some(_) => Err(MatrixError::method_not_allowed()),
            None => Err(MatrixError::unrecognized()),
        };
        result.unwrap_or_else(|error| error.response())
    }
}
