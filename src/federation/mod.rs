//! The server-server side of Linearized Matrix. So far the receiving half of `send`: a peer's
//! LPDUs reach the hub, and a hub's PDUs reach the rooms this server follows. Requests are
//! authenticated with X-Matrix signatures checked against the keys this server trusts.

pub mod media;
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
}

impl Handler for Federation {
    async fn handle(&self, request: Request) -> Response {
        let path = request.path.clone();
        if let Some(id) = path.strip_prefix(media::PATH) {
            return media::get(self, id, &request).unwrap_or_else(|error| error.response());
        }
        let txn = path
            .strip_prefix(&format!("{UNSTABLE_PREFIX}/send/"))
            .or_else(|| path.strip_prefix("/_matrix/federation/v2/send/"))
            .filter(|t| !t.is_empty() && !t.contains('/'));
        let result = match txn {
            Some(txn) if request.method == hyper::Method::PUT => send::put(self, txn, &request).await,
            Some(_) => Err(MatrixError::method_not_allowed()),
            None => Err(MatrixError::unrecognized()),
        };
        result.unwrap_or_else(|error| error.response())
    }
}
