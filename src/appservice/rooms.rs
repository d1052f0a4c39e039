//! `GET /_matrix/app/v1/rooms/{roomAlias}`: the bridge claims no aliases (portals are made by
//! invitation), so every alias is unknown.

use super::service::Appservice;
use crate::http::{MatrixError, Response};

/// Answers the alias query.
pub fn get(_app: &Appservice, alias: &str) -> Result<Response, MatrixError> {
    Err(MatrixError::not_found(format!("{alias} is not an alias of this bridge")))
}
