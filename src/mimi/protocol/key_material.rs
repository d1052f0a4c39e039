//! `keyMaterial/{targetUser}`: a provider asks for a user's KeyPackages, one per client, to add
//! that user to a room. The request is signed by the requesting client
//! (`SignWithLabel(…, "KeyMaterialRequestTBS", …)` over the request without its signature).

use super::common::{MLS10, code, protocol};
use super::embedded::{self, Kind};
use super::tls::{Reader, Wire, WireError, Writer};

/// The signature label of a request.
pub const REQUEST_LABEL: &str = "KeyMaterialRequestTBS";

/// `KeyMaterialRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterialRequest {
    /// `IdentifierUri requestingUser`.
    pub requesting_user: String,
    /// `IdentifierUri targetUser`.
    pub target_user: String,
    /// `IdentifierUri roomId`: the room the material is for; empty when for none.
    pub room_id: String,
    /// `CipherSuite acceptableCiphersuites<V>`.
    pub ciphersuites: Vec<u16>,
    /// `RequiredCapabilities requiredCapabilities`, as encoded (an MLS
    /// `RequiredCapabilitiesExtension`).
    pub required_capabilities: Vec<u8>,
    /// `SignaturePublicKey requesterSignatureKey`.
    pub signature_key: Vec<u8>,
    /// `Credential requesterCredential`, as encoded.
    pub credential: Vec<u8>,
    /// `opaque key_material_request_signature<V>`.
    pub signature: Vec<u8>,
}

impl KeyMaterialRequest {
    /// `KeyMaterialRequestTBS`: the request without its signature, what the signature covers.
    pub fn to_be_signed(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write_tbs(&mut w);
        w.out
    }

    fn write_tbs(&self, w: &mut Writer) {
        w.u8(MLS10);
        w.opaque(self.requesting_user.as_bytes());
        w.opaque(self.target_user.as_bytes());
        w.opaque(self.room_id.as_bytes());
        w.vector(|w| {
            for suite in &self.ciphersuites {
                w.u16(*suite);
            }
        });
        w.raw(&self.required_capabilities);
        w.opaque(&self.signature_key);
        w.raw(&self.credential);
    }
}

impl Wire for KeyMaterialRequest {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        protocol(r)?;
        let requesting_user = r.text("requestingUser")?;
        let target_user = r.text("targetUser")?;
        let room_id = r.text("roomId")?;
        let at = r.position();
        let mut suites = r.vector("acceptableCiphersuites")?;
        if suites.rest().len() % 2 != 0 {
            return Err(WireError {
                offset: at,
                field: "acceptableCiphersuites".into(),
                reason: "odd length for uint16 entries".into(),
            });
        }
        let mut ciphersuites = Vec::new();
        while !suites.rest().is_empty() {
            ciphersuites.push(suites.u16("acceptableCiphersuites")?);
        }
        let required_capabilities = embedded::read(r, Kind::RequiredCapabilities, "requiredCapabilities")?;
        let signature_key = r.opaque("requesterSignatureKey")?.to_vec();
        let credential = embedded::read(r, Kind::Credential, "requesterCredential")?;
        let signature = r.opaque("key_material_request_signature")?.to_vec();
        Ok(Self {
            requesting_user,
            target_user,
            room_id,
            ciphersuites,
            required_capabilities,
            signature_key,
            credential,
            signature,
        })
    }

    fn write(&self, w: &mut Writer) {
        self.write_tbs(w);
        w.opaque(&self.signature);
    }
}

/// `KeyMaterialUserCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserStatus {
    /// `success(0)`: material for every client.
    Success = 0,
    /// `partialSuccess(1)`: for some clients.
    PartialSuccess = 1,
    /// `incompatibleProtocol(2)`.
    IncompatibleProtocol = 2,
    /// `noCompatibleMaterial(3)`.
    NoCompatibleMaterial = 3,
    /// `userUnknown(4)`.
    UserUnknown = 4,
    /// `noConsent(5)`.
    NoConsent = 5,
    /// `noConsentForThisRoom(6)`.
    NoConsentForThisRoom = 6,
    /// `userDeleted(7)`.
    UserDeleted = 7,
}

impl UserStatus {
    fn from_u8(v: u8) -> Option<Self> {
        [
            Self::Success,
            Self::PartialSuccess,
            Self::IncompatibleProtocol,
            Self::NoCompatibleMaterial,
            Self::UserUnknown,
            Self::NoConsent,
            Self::NoConsentForThisRoom,
            Self::UserDeleted,
        ]
        .into_iter()
        .find(|s| *s as u8 == v)
    }
}

/// One client's answer, by `KeyMaterialClientCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMaterial {
    /// `success(0)`: one KeyPackage, as encoded.
    Success {
        /// `IdentifierUri clientUri`.
        client_uri: String,
        /// `KeyPackage keyPackage`.
        key_package: Vec<u8>,
    },
    /// `keyMaterialExhausted(1)`.
    Exhausted {
        /// `IdentifierUri clientUri`.
        client_uri: String,
    },
    /// `nothingCompatible(2)`, with the client's MLS `Capabilities` unless withheld for privacy.
    NothingCompatible {
        /// `IdentifierUri clientUri`.
        client_uri: String,
        /// `optional<Capabilities> clientCapabilities`, as encoded.
        capabilities: Option<Vec<u8>>,
    },
}

/// `KeyMaterialResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterialResponse {
    /// `KeyMaterialUserCode userStatus`.
    pub status: UserStatus,
    /// `IdentifierUri userUri`.
    pub user_uri: String,
    /// `ClientKeyMaterial clients<V>`.
    pub clients: Vec<ClientMaterial>,
}

impl Wire for KeyMaterialResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        protocol(r)?;
        let status = code(r, "userStatus", UserStatus::from_u8)?;
        let user_uri = r.text("userUri")?;
        let clients = r.list("clients", |r, name| {
            let status = code(r, &format!("{name}.clientStatus"), |c| (c <= 2).then_some(c))?;
            let client_uri = r.text(&format!("{name}.clientUri"))?;
            Ok(match status {
                0 => ClientMaterial::Success {
                    client_uri,
                    key_package: embedded::read(r, Kind::KeyPackage, &format!("{name}.keyPackage"))?,
                },
                1 => ClientMaterial::Exhausted { client_uri },
                _ => {
                    let field = format!("{name}.clientCapabilities");
                    let capabilities =
                        if r.present(&field)? { Some(embedded::read(r, Kind::Capabilities, &field)?) } else { None };
                    ClientMaterial::NothingCompatible { client_uri, capabilities }
                }
            })
        })?;
        Ok(Self { status, user_uri, clients })
    }

    fn write(&self, w: &mut Writer) {
        w.u8(MLS10);
        w.u8(self.status as u8);
        w.opaque(self.user_uri.as_bytes());
        w.vector(|w| {
            for client in &self.clients {
                match client {
                    ClientMaterial::Success { client_uri, key_package } => {
                        w.u8(0);
                        w.opaque(client_uri.as_bytes());
                        w.raw(key_package);
                    }
                    ClientMaterial::Exhausted { client_uri } => {
                        w.u8(1);
                        w.opaque(client_uri.as_bytes());
                    }
                    ClientMaterial::NothingCompatible { client_uri, capabilities } => {
                        w.u8(2);
                        w.opaque(client_uri.as_bytes());
                        w.optional(capabilities.as_ref(), |w, c| w.raw(c));
                    }
                }
            }
        });
    }
}
