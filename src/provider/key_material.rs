//! `keyMaterial/{targetUser}`: this provider's users' KeyPackages, one per device, handed out
//! once each (the last resort stays), only to providers whose user has the target's consent, and
//! with a note of which provider got which package so that its Welcome can be routed. And the
//! other way: claiming a remote user's KeyPackages, checking each before it is used.

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, Capabilities, Credential, KeyPackage, KeyPackageIn, ProtocolVersion, RequiredCapabilitiesExtension,
};

use crate::http::{MatrixError, Response};
use crate::mimi::protocol::key_material::REQUEST_LABEL;
use crate::mimi::protocol::{ClientMaterial, KeyMaterialRequest, KeyMaterialResponse, UserStatus, Wire};
use crate::mls::CIPHERSUITE;
use crate::mls::identity::DeviceCredential;
use crate::queue::now_ms;
use crate::translate::uri::{client_uri, matrix_user_id, parse_client_uri, user_uri};

use super::consent::Consent;
use super::service::{Admitted, Provider, binary, blocking, malformed};

pub use crate::mimi::protocol::common::{sign_content, verify_with_label};

/// Whether a BasicCredential names `user` (a user URI): the user URI itself (some peers use it), a
/// client URI under it, or an LM triple of its user (the bridge's devices before schema 5).
pub fn credential_names(credential: &Credential, user: &str) -> bool {
    let Ok(basic) = BasicCredential::try_from(credential.clone()) else { return false };
    if DeviceCredential::from_triple(basic.identity()).is_ok_and(|d| user_uri(d.user_id()).is_ok_and(|u| u == user)) {
        return true;
    }
    let Ok(identity) = std::str::from_utf8(basic.identity()) else { return false };
    identity == user || parse_client_uri(identity).is_ok_and(|(u, _)| user_uri(&u).is_ok_and(|uri| uri == user))
}

/// Whether a client with `capabilities` meets `required`. RFC 9420's default extension (1–5) and
/// proposal (1–7) types need not be listed to be supported; credential types must be.
pub fn meets(capabilities: &Capabilities, required: &RequiredCapabilitiesExtension) -> bool {
    let extensions = required
        .extension_types()
        .iter()
        .all(|t| (1..=5).contains(&u16::from(*t)) || capabilities.extensions().contains(t));
    let proposals = required
        .proposal_types()
        .iter()
        .all(|t| (1..=7).contains(&u16::from(*t)) || capabilities.proposals().contains(t));
    let credentials = required.credential_types().iter().all(|t| capabilities.credentials().contains(t));
    extensions && proposals && credentials
}

/// Serves one request (see the module documentation).
pub(super) async fn serve(provider: &Provider, target: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    let request = KeyMaterialRequest::decode(admitted.body).map_err(|e| malformed(&e))?;
    if request.target_user != target {
        return Err(MatrixError::bad_request("M_INVALID_PARAM", "targetUser differs from the path's"));
    }
    let requester_ok =
        matrix_user_id(&request.requesting_user).is_ok_and(|id| crate::event::meta::server_of(&id) == admitted.from);
    if !requester_ok {
        return Err(MatrixError::forbidden(format!("requestingUser is not a user of {}", admitted.from)));
    }
    let credential = Credential::tls_deserialize_exact(&request.credential[..])
        .map_err(|_| MatrixError::bad_request("M_BAD_JSON", "requesterCredential does not parse"))?;
    if !credential_names(&credential, &request.requesting_user) {
        return Err(MatrixError::forbidden("requesterCredential does not name requestingUser"));
    }
    if !verify_with_label(&request.signature_key, REQUEST_LABEL, &request.to_be_signed(), &request.signature) {
        return Err(MatrixError::forbidden("key_material_request_signature does not verify"));
    }
    let answer = |status, clients| {
        let response = KeyMaterialResponse { status, user_uri: request.target_user.clone(), clients };
        Ok(binary(hyper::StatusCode::OK, response.encode()))
    };
    // Consent first, so that an unknown user looks like any user without consent.
    let room = (!request.room_id.is_empty()).then_some(request.room_id.as_str());
    match provider.consent_for(&request.requesting_user, &request.target_user, room).await? {
        Consent::Granted => {}
        Consent::NotForThisRoom => return answer(UserStatus::NoConsentForThisRoom, Vec::new()),
        Consent::None => return answer(UserStatus::NoConsent, Vec::new()),
    }
    let Some(user_id) = provider.local_user(&request.target_user) else {
        return answer(UserStatus::UserUnknown, Vec::new());
    };
    let required = RequiredCapabilitiesExtension::tls_deserialize_exact(&request.required_capabilities[..])
        .map_err(|_| MatrixError::bad_request("M_BAD_JSON", "requiredCapabilities does not parse"))?;
    let ours = crate::mls::key_package::capabilities();
    let compatible = request.ciphersuites.contains(&u16::from(CIPHERSUITE)) && meets(&ours, &required);
    let (hub, from) = (std::sync::Arc::clone(&provider.hub), admitted.from.to_owned());
    // Every device's claim in one task that finishes even if the peer hangs up: a claim is
    // never left half done, and a device that fails is answered as exhausted.
    let clients = blocking(move || {
        let mut clients = Vec::new();
        for device in hub.directories().local_device_ids(&user_id)? {
            let Ok(client_uri) = client_uri(&user_id, &device) else { continue };
            if !compatible {
                let capabilities = openmls::prelude::tls_codec::Serialize::tls_serialize_detached(&ours).ok();
                clients.push(ClientMaterial::NothingCompatible { client_uri, capabilities });
                continue;
            }
            let record = serde_json::json!({"provider": from, "user": user_id, "device": device, "at": now_ms()});
            let claimed =
                hub.directories().claim_key_package_for(&user_id, &device, &from, record.to_string().as_bytes());
            clients.push(match claimed {
                Ok(Some(key_package)) => ClientMaterial::Success { client_uri, key_package },
                Ok(None) => ClientMaterial::Exhausted { client_uri },
                Err(error) => {
                    tracing::error!(%error, %client_uri, "claiming a KeyPackage failed");
                    ClientMaterial::Exhausted { client_uri }
                }
            });
        }
        Ok::<_, crate::hub::HubError>(clients)
    })
    .await?;
    if clients.is_empty() {
        return answer(UserStatus::UserUnknown, Vec::new());
    }
    let served = clients.iter().filter(|c| matches!(c, ClientMaterial::Success { .. })).count();
    let status = match served {
        n if n == clients.len() => UserStatus::Success,
        0 if clients.iter().all(|c| matches!(c, ClientMaterial::NothingCompatible { .. })) => {
            UserStatus::NoCompatibleMaterial
        }
        _ => UserStatus::PartialSuccess,
    };
    answer(status, clients)
}

/// Why a claimed KeyPackage is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    /// It does not parse, or its signatures, lifetime or keys do not hold.
    #[error("{client}: invalid KeyPackage: {reason}")]
    Invalid {
        /// The client URI.
        client: String,
        /// What openmls said.
        reason: String,
    },
    /// Another cipher suite than the rooms use.
    #[error("{client}: cipher suite {found:#06x}, expected {expected:#06x}")]
    Ciphersuite {
        /// The client URI.
        client: String,
        /// Found.
        found: u16,
        /// Expected.
        expected: u16,
    },
    /// The credential names someone else.
    #[error("{client}: the credential does not name {user}")]
    WrongUser {
        /// The client URI.
        client: String,
        /// The user asked for.
        user: String,
    },
    /// It lacks a capability the room requires.
    #[error("{client}: lacks a capability the room requires")]
    Capabilities {
        /// The client URI.
        client: String,
    },
    /// The client URI is not under the user.
    #[error("{client}: not a client of {user}")]
    ForeignClient {
        /// The client URI.
        client: String,
        /// The user asked for.
        user: String,
    },
}

/// Checks a KeyPackage claimed for `user` (a user URI) as `client`: parses, verifies (signature,
/// lifetime, keys), uses the rooms' cipher suite, supports what the room requires, and names the
/// user (client or user URI). Returns the validated package.
pub fn check_claimed(
    bytes: &[u8],
    user: &str,
    client: &str,
    required: &RequiredCapabilitiesExtension,
) -> Result<KeyPackage, ClaimRefusal> {
    let under = parse_client_uri(client).ok().and_then(|(u, _)| user_uri(&u).ok()).is_some_and(|u| u == user);
    if !under && client != user {
        return Err(ClaimRefusal::ForeignClient { client: client.to_owned(), user: user.to_owned() });
    }
    let invalid = |reason: String| ClaimRefusal::Invalid { client: client.to_owned(), reason };
    let package = KeyPackageIn::tls_deserialize_exact(bytes).map_err(|e| invalid(e.to_string()))?;
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let package = package.validate(&crypto, ProtocolVersion::Mls10).map_err(|e| invalid(e.to_string()))?;
    if package.ciphersuite() != CIPHERSUITE {
        return Err(ClaimRefusal::Ciphersuite {
            client: client.to_owned(),
            found: u16::from(package.ciphersuite()),
            expected: u16::from(CIPHERSUITE),
        });
    }
    if !meets(package.leaf_node().capabilities(), required) {
        return Err(ClaimRefusal::Capabilities { client: client.to_owned() });
    }
    if !credential_names(package.leaf_node().credential(), user) {
        return Err(ClaimRefusal::WrongUser { client: client.to_owned(), user: user.to_owned() });
    }
    Ok(package)
}
