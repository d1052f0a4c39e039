//! Mutual TLS between providers. Each side presents a certificate for its provider domain and
//! verifies the other's against the trust anchors (the system's roots, or a CA file for private
//! deployments and tests). Which provider a request comes from is what its client certificate
//! authenticates; names a request carries (`From:`, the path, identities in the body) are
//! checked against that, never believed on their own.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS could not be set up; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built (no trust anchors, say).
    #[error("TLS client verification: {0}")]
    Verifier(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// This provider's certificate chain and key, and whom it trusts.
#[derive(Clone)]
pub struct TlsMaterial {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    roots: Arc<rustls::RootCertStore>,
}

impl std::fmt::Debug for TlsMaterial {
    /// Without the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("certificates", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

#[expect(
    deprecated,
    reason = "ring keeps the build free of aws-lc's CMake; its key exchanges (X25519, P-256, P-384) are what peers offer; post-quantum ones would need aws-lc-rs"
)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsMaterial {
    /// Loads the PEM certificate chain and key; trusts the CA file's certificates, or the
    /// system's roots without one.
    pub fn load(certificate: &Path, key: &Path, trust_anchors: Option<&Path>) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
            .map_err(|e| file_error(certificate, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(certificate, e))?;
        if chain.is_empty() {
            return Err(file_error(certificate, "no CERTIFICATE block"));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, format!("no private key: {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = trust_anchors {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
                roots.add(cert.map_err(|e| file_error(path, e))?).map_err(|e| file_error(path, e))?;
            }
            if roots.is_empty() {
                return Err(file_error(path, "no CERTIFICATE block"));
            }
        } else {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
        Ok(Self { chain, key: Arc::new(key), roots: Arc::new(roots) })
    }

    /// The server side: a client certificate is required and verified.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&self.roots), provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The client side: presents this provider's certificate, verifies the peer's.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        // ALPN is the HTTP connector's to set.
        Ok(config)
    }
}

/// The provider a connection's client certificate was verified for (by the handshake, against
/// the trust anchors). Names are checked against it.
#[derive(Clone)]
pub struct PeerCertificate(CertificateDer<'static>);

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerCertificate")
    }
}

impl PeerCertificate {
    /// The end-entity certificate of a verified chain.
    pub fn new(end_entity: CertificateDer<'static>) -> Self {
        Self(end_entity)
    }

    /// Whether the certificate is valid for the provider domain `domain` (its subject
    /// alternative names, as a server certificate would be checked, RFC 6125).
    pub fn authenticates(&self, domain: &str) -> bool {
        let Ok(name) = ServerName::try_from(domain) else { return false };
        let Ok(cert) = webpki::EndEntityCert::try_from(&self.0) else { return false };
        cert.verify_is_valid_for_subject_name(&name).is_ok()
    }
}

/// Completes a server handshake within `limit`; the client's verified end-entity certificate
/// comes with the stream. A failed or slow handshake is logged and dropped.
pub async fn accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Option<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Option<PeerCertificate>)> {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerCertificate::new(c.clone().into_owned()));
            Some((stream, peer))
        }
        Ok(Err(error)) => {
            tracing::info!(%error, "TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::info!("TLS handshake too slow");
            None
        }
    }
}
