//! `identifierQuery/{domain}`: a provider asks another for the URI of a user it knows by a handle,
//! an email address, a name… (all elements must match). Sent directly, never through a hub.

use super::common::{AppDataDictionary, code};
use super::tls::{Reader, Wire, WireError, Writer};

/// `SearchIdentifierType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchType {
    /// `handle(1)`: the whole handle URI.
    Handle = 1,
    /// `nick(2)`.
    Nick = 2,
    /// `email(3)`.
    Email = 3,
    /// `phone(4)`.
    Phone = 4,
    /// `partialName(5)`.
    PartialName = 5,
    /// `wholeProfile(6)`.
    WholeProfile = 6,
    /// `oidcStdClaim(7)`: qualified by the claim's name.
    OidcStdClaim = 7,
    /// `vcardField(8)`: qualified by the property's name.
    VcardField = 8,
}

impl SearchType {
    fn from_u8(v: u8) -> Option<Self> {
        [
            Self::Handle,
            Self::Nick,
            Self::Email,
            Self::Phone,
            Self::PartialName,
            Self::WholeProfile,
            Self::OidcStdClaim,
            Self::VcardField,
        ]
        .into_iter()
        .find(|t| *t as u8 == v)
    }

    fn qualified(self) -> bool {
        matches!(self, Self::OidcStdClaim | Self::VcardField)
    }
}

/// `QueryElement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryElement {
    /// `SearchIdentifierType searchType`.
    pub search_type: SearchType,
    /// `claimName` / `propertyName` for the two qualified types; empty otherwise.
    pub qualifier: Vec<u8>,
    /// `opaque searchValue<V>` (UTF-8).
    pub value: String,
}

/// `IdentifierRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierRequest {
    /// `QueryElement query_elements<V>`.
    pub elements: Vec<QueryElement>,
    /// `AppDataDictionary id_request_extensions` (new in -06).
    pub extensions: AppDataDictionary,
}

impl Wire for IdentifierRequest {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let elements = r.list("query_elements", |r, name| {
            let search_type = code(r, &format!("{name}.searchType"), SearchType::from_u8)?;
            let qualifier =
                if search_type.qualified() { r.opaque(&format!("{name}.qualifier"))?.to_vec() } else { Vec::new() };
            let value = r.text(&format!("{name}.searchValue"))?;
            Ok(QueryElement { search_type, qualifier, value })
        })?;
        let extensions = AppDataDictionary::read(r, "id_request_extensions")?;
        Ok(Self { elements, extensions })
    }

    fn write(&self, w: &mut Writer) {
        w.vector(|w| {
            for e in &self.elements {
                w.u8(e.search_type as u8);
                if e.search_type.qualified() {
                    w.opaque(&e.qualifier);
                }
                w.opaque(e.value.as_bytes());
            }
        });
        self.extensions.write(w);
    }
}

/// `IdentifierQueryCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryCode {
    /// `success(0)`.
    Success = 0,
    /// `notFound(1)`.
    NotFound = 1,
    /// `ambiguous(2)`.
    Ambiguous = 2,
    /// `forbidden(3)`.
    Forbidden = 3,
    /// `unsupportedField(4)`.
    UnsupportedField = 4,
}

impl QueryCode {
    fn from_u8(v: u8) -> Option<Self> {
        [Self::Success, Self::NotFound, Self::Ambiguous, Self::Forbidden, Self::UnsupportedField]
            .into_iter()
            .find(|c| *c as u8 == v)
    }
}

/// `ProfileField`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileField {
    /// `FieldSource fieldSource`: `oidcStdClaim(7)` or `vcardField(8)`.
    pub source: u8,
    /// `string fieldName`.
    pub name: String,
    /// `opaque fieldValue<V>`.
    pub value: Vec<u8>,
}

/// `UserProfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    /// `IdentifierUri stableUri`.
    pub stable_uri: String,
    /// `ProfileField fields<V>`.
    pub fields: Vec<ProfileField>,
}

/// `IdentifierResponse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierResponse {
    /// `IdentifierQueryCode responseCode`.
    pub code: QueryCode,
    /// `IdentifierUri uri<V>`.
    pub uris: Vec<String>,
    /// `UserProfile foundProfiles<V>`.
    pub profiles: Vec<UserProfile>,
    /// `AppDataDictionary id_response_extensions` (new in -06).
    pub extensions: AppDataDictionary,
}

impl Wire for IdentifierResponse {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let code = code(r, "responseCode", QueryCode::from_u8)?;
        let uris = r.list("uri", Reader::text)?;
        let profiles = r.list("foundProfiles", |r, name| {
            let stable_uri = r.text(&format!("{name}.stableUri"))?;
            let fields = r.list(&format!("{name}.fields"), |r, field| {
                let source =
                    super::common::code(r, &format!("{field}.fieldSource"), |c| matches!(c, 7 | 8).then_some(c))?;
                Ok(ProfileField {
                    source,
                    name: r.text(&format!("{field}.fieldName"))?,
                    value: r.opaque(&format!("{field}.fieldValue"))?.to_vec(),
                })
            })?;
            Ok(UserProfile { stable_uri, fields })
        })?;
        let extensions = AppDataDictionary::read(r, "id_response_extensions")?;
        Ok(Self { code, uris, profiles, extensions })
    }

    fn write(&self, w: &mut Writer) {
        w.u8(self.code as u8);
        w.vector(|w| {
            for uri in &self.uris {
                w.opaque(uri.as_bytes());
            }
        });
        w.vector(|w| {
            for p in &self.profiles {
                w.opaque(p.stable_uri.as_bytes());
                w.vector(|w| {
                    for f in &p.fields {
                        w.u8(f.source);
                        w.opaque(f.name.as_bytes());
                        w.opaque(&f.value);
                    }
                });
            }
        });
        self.extensions.write(w);
    }
}
