//! Reaching other providers: each through its directory (fetched over mutual TLS, cached for a
//! bounded time), never a path of our own making; and claiming a remote user's key material,
//! each KeyPackage checked before anything uses it.

use std::time::Duration;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{BasicCredential, RequiredCapabilitiesExtension};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer as _;

use crate::mimi::protocol::key_material::REQUEST_LABEL;
use crate::mimi::protocol::{ClientMaterial, KeyMaterialRequest, KeyMaterialResponse, Wire, WireError};
use crate::mls::{CIPHERSUITE, SIGNATURE_SCHEME};
use crate::translate::uri::matrix_user_id;

use super::client::{PeerClient, PeerError};
use super::directory::{Directory, DirectoryCache, DirectoryError, PATH};
use super::key_material::{ClaimRefusal, check_claimed, sign_content};

/// How long a peer's directory is trusted before it is fetched again.
pub const DIRECTORY_LIFETIME: Duration = Duration::from_mins(5);

/// Why talking to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    /// The request did not get an answer.
    #[error(transparent)]
    Transport(#[from] PeerError),
    /// The directory is unusable or lacks the endpoint.
    #[error("directory of {provider}: {error}")]
    Directory {
        /// The peer.
        provider: String,
        /// What is wrong.
        error: DirectoryError,
    },
    /// The peer answered with an HTTP error.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// Where.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer's body did not decode.
    #[error("{url}: {error}")]
    Body {
        /// Where.
        url: String,
        /// The decoding error.
        error: WireError,
    },
    /// The name given is not a MIMI user URI.
    #[error("{0}: not a MIMI user URI (mimi://provider/u/user)")]
    NotAUser(String),
    /// Signing the request failed.
    #[error("signing the request: {0}")]
    Signing(String),
}

/// Who asks: a user URI, a signature key and a credential naming the user.
pub struct Requester {
    /// `requestingUser`.
    pub user_uri: String,
    signer: SignatureKeyPair,
    credential: Vec<u8>,
    /// The room's `RequiredCapabilities`, encoded (none by default).
    required: Vec<u8>,
}

impl std::fmt::Debug for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requester").field("user_uri", &self.user_uri).finish_non_exhaustive()
    }
}

impl Requester {
    /// A requester with a fresh key whose BasicCredential is the user URI itself (what a
    /// debugging tool or a provider acting for a user without a device uses).
    pub fn ephemeral(user_uri: &str) -> Result<Self, PeersError> {
        let signer = SignatureKeyPair::new(SIGNATURE_SCHEME).map_err(|e| PeersError::Signing(format!("{e:?}")))?;
        let credential: openmls::prelude::Credential = BasicCredential::new(user_uri.as_bytes().to_vec()).into();
        let credential = credential.tls_serialize_detached().map_err(|e| PeersError::Signing(e.to_string()))?;
        Ok(Self { user_uri: user_uri.to_owned(), signer, credential, required: vec![0, 0, 0] })
    }

    /// Asks for key material meeting `required` (a room's required capabilities).
    pub fn requiring(mut self, required: &RequiredCapabilitiesExtension) -> Result<Self, PeersError> {
        self.required = required.tls_serialize_detached().map_err(|e| PeersError::Signing(e.to_string()))?;
        Ok(self)
    }

    /// A signed `KeyMaterialRequest` for `target` (and `room`, if for one).
    pub fn key_material_request(&self, target: &str, room: Option<&str>) -> Result<KeyMaterialRequest, PeersError> {
        let mut request = KeyMaterialRequest {
            requesting_user: self.user_uri.clone(),
            target_user: target.to_owned(),
            room_id: room.unwrap_or_default().to_owned(),
            ciphersuites: vec![u16::from(CIPHERSUITE)],
            required_capabilities: self.required.clone(),
            signature_key: self.signer.to_public_vec(),
            credential: self.credential.clone(),
            signature: Vec::new(),
        };
        let content = sign_content(REQUEST_LABEL, &request.to_be_signed());
        request.signature = self.signer.sign(&content).map_err(|e| PeersError::Signing(format!("{e:?}")))?;
        Ok(request)
    }
}

/// What a claim brought: the answer, and each client's verdict.
#[derive(Debug)]
pub struct Claimed {
    /// The answer as received.
    pub response: KeyMaterialResponse,
    /// Per client with a KeyPackage: its URI and the package validated, or why it may not be
    /// used.
    pub checked: Vec<(String, Result<openmls::prelude::KeyPackage, ClaimRefusal>)>,
}

/// The peers (see the module documentation).
#[derive(Debug)]
pub struct Peers {
    client: PeerClient,
    directories: DirectoryCache,
}

impl Peers {
    /// Peers reached with `client`.
    pub fn new(client: PeerClient) -> Self {
        Self { client, directories: DirectoryCache::new(DIRECTORY_LIFETIME) }
    }

    /// The HTTPS client.
    pub fn client(&self) -> &PeerClient {
        &self.client
    }

    /// `provider`'s directory, from the cache or fetched.
    pub async fn directory(&self, provider: &str) -> Result<Directory, PeersError> {
        if let Some(directory) = self.directories.get(provider) {
            return Ok(directory);
        }
        let origin = format!("https://{provider}");
        let url = format!("{origin}{PATH}");
        let answer = self.client.get(&url).await?;
        if !answer.status.is_success() {
            return Err(status_error(&url, &answer));
        }
        let directory = Directory::parse(&answer.body, &origin)
            .map_err(|error| PeersError::Directory { provider: provider.to_owned(), error })?;
        self.directories.put(provider, directory.clone());
        Ok(directory)
    }

    /// Claims `target`'s key material (a user URI) as `requester`, checking every KeyPackage.
    pub async fn claim(&self, requester: &Requester, target: &str, room: Option<&str>) -> Result<Claimed, PeersError> {
        let target_id = matrix_user_id(target).map_err(|_| PeersError::NotAUser(target.to_owned()))?;
        let provider = crate::event::meta::server_of(&target_id).to_owned();
        let directory = self.directory(&provider).await?;
        let variables = [("targetUser", target)];
        let url = directory
            .url("keyMaterial", &variables)
            .map_err(|error| PeersError::Directory { provider: provider.clone(), error })?;
        let request = requester.key_material_request(target, room)?;
        let answer = self.client.post(&url, request.encode()).await?;
        if !answer.status.is_success() {
            return Err(status_error(&url, &answer));
        }
        let response = KeyMaterialResponse::decode(&answer.body).map_err(|error| PeersError::Body { url, error })?;
        let required = RequiredCapabilitiesExtension::tls_deserialize_exact(&request.required_capabilities[..])
            .map_err(|e| PeersError::Signing(format!("required capabilities: {e}")))?;
        let checked = response
            .clients
            .iter()
            .filter_map(|client| match client {
                ClientMaterial::Success { client_uri, key_package } => {
                    Some((client_uri.clone(), check_claimed(key_package, target, client_uri, &required)))
                }
                _ => None,
            })
            .collect();
        Ok(Claimed { response, checked })
    }
}

fn status_error(url: &str, answer: &super::client::Answer) -> PeersError {
    let body = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]).into_owned();
    PeersError::Status { url: url.to_owned(), status: answer.status.as_u16(), body }
}
