//! `identifierQuery/{domain}`: another provider looks up one of this homeserver's users by
//! handle. Answered only where the admin allows discovery (`mimi.discovery`), for exactly one
//! `handle` element naming a user of this homeserver who has a MIMI device; everything else is
//! `notFound`, whatever exists, so that the endpoint tells nothing about unlisted users.

use crate::http::{MatrixError, Response};
use crate::mimi::protocol::identifier::{QueryCode, SearchType};
use crate::mimi::protocol::{AppDataDictionary, IdentifierRequest, IdentifierResponse, Wire};
use crate::translate::uri::user_uri;

use super::service::{Admitted, Provider, binary, malformed};

pub(super) async fn serve(provider: &Provider, domain: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    if domain != provider.domain {
        return Err(MatrixError::not_found(format!("{domain} is not served here")));
    }
    let request = IdentifierRequest::decode(admitted.body).map_err(|e| malformed(&e))?;
    let mut uris = Vec::new();
    if let ([element], true) = (request.elements.as_slice(), provider.discovery)
        && element.search_type == SearchType::Handle
    {
        uris = provider.find_handle(&element.value).await.into_iter().collect();
    }
    let code = if uris.is_empty() { QueryCode::NotFound } else { QueryCode::Success };
    let response = IdentifierResponse { code, uris, profiles: Vec::new(), extensions: AppDataDictionary::default() };
    Ok(binary(hyper::StatusCode::OK, response.encode()))
}

impl Provider {
    /// The MIMI user URI of a handle `@user:<homeserver domain>` (or `im:` / bare forms of it),
    /// if that user has a MIMI device.
    async fn find_handle(&self, handle: &str) -> Option<String> {
        let handle = handle.strip_prefix("im:").unwrap_or(handle);
        let local = handle.strip_prefix('@')?.strip_suffix(&format!(":{}", self.homeserver_domain))?;
        let user_id = format!("@{local}:{}", self.domain);
        let hub = std::sync::Arc::clone(&self.hub);
        let devices = {
            let user_id = user_id.clone();
            super::service::blocking(move || hub.directories().local_device_ids(&user_id)).await.ok()?
        };
        if devices.is_empty() { None } else { user_uri(&user_id).ok() }
    }
}
