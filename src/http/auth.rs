//! The homeserver's token on requests to the appservice, compared in constant time.

use subtle::ConstantTimeEq as _;

use super::{MatrixError, Request};

/// Checks that `request` carries `expected` as `Authorization: Bearer …`, or, only when
/// `legacy_query` is allowed, as `?access_token=` (if both are present they must agree). A
/// missing token is 401 `M_MISSING_TOKEN`, a wrong one 403 `M_FORBIDDEN`.
pub fn check_bearer(request: &Request, expected: &str, legacy_query: bool) -> Result<(), MatrixError> {
    let header = request
        .headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let query = if legacy_query { request.query_param("access_token") } else { None };
    let given = match (header, query) {
        (None, None) => return Err(MatrixError::missing_token()),
        (Some(h), Some(q)) if !bool::from(h.as_bytes().ct_eq(q.as_bytes())) => {
            return Err(MatrixError::forbidden("the header and query tokens differ"));
        }
        (Some(token), _) | (None, Some(token)) => token,
    };
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(MatrixError::forbidden("bad token"))
    }
}
