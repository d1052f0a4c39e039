//! A certificate authority made at run time for mutual-TLS tests, issuing certificates the way a
//! real CA would (a leaf is not a CA, names its domain, and may serve and authenticate as a
//! client). No key material is checked in.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A CA whose certificate is in `ca.pem` of its directory.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub dir: PathBuf,
}

/// A leaf's files.
pub(crate) struct Leaf {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA writing into `dir`.
    pub(crate) fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Self { issuer: Issuer::new(params, key), dir: dir.to_owned() }
    }

    /// The CA certificate (the trust anchor file).
    pub(crate) fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `domain` (server and client use), written as `<file>.pem`/`<file>.key`.
    pub(crate) fn issue(&self, domain: &str, file: &str) -> Leaf {
        let mut params = CertificateParams::new(vec![domain.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, domain);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf =
            Leaf { certificate: self.dir.join(format!("{file}.pem")), key: self.dir.join(format!("{file}.key")) };
        std::fs::write(&leaf.certificate, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}
