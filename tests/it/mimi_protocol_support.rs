//! Real MLS objects for the protocol codec's tests, made with openmls in memory.

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    BasicCredential, Credential, CredentialWithKey, KeyPackage, MlsGroup, MlsGroupCreateConfig, OpenMlsProvider as _,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use mimi_bridge::mls::{CIPHERSUITE, SIGNATURE_SCHEME};

/// A client: provider, key and credential (a BasicCredential naming `identity`).
pub(crate) struct TestClient {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub credential: CredentialWithKey,
}

impl TestClient {
    pub(crate) fn new(identity: &str) -> Self {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SIGNATURE_SCHEME).unwrap();
        signer.store(provider.storage()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self { provider, signer, credential }
    }

    /// A KeyPackage, serialized.
    pub(crate) fn key_package(&self) -> Vec<u8> {
        let bundle =
            KeyPackage::builder().build(CIPHERSUITE, &self.provider, &self.signer, self.credential.clone()).unwrap();
        bundle.key_package().tls_serialize_detached().unwrap()
    }

    /// The credential, serialized.
    pub(crate) fn credential_bytes(&self) -> Vec<u8> {
        let credential: &Credential = &self.credential.credential;
        credential.tls_serialize_detached().unwrap()
    }
}

/// An MLSMessage holding a PrivateMessage (an application message of a fresh group).
pub(crate) fn private_message() -> Vec<u8> {
    let alice = TestClient::new("mimi://a.example/d/alice/1");
    let config = MlsGroupCreateConfig::builder().ciphersuite(CIPHERSUITE).build();
    let mut group = MlsGroup::new(&alice.provider, &alice.signer, &config, alice.credential.clone()).unwrap();
    let message = group.create_message(&alice.provider, &alice.signer, b"hello").unwrap();
    message.tls_serialize_detached().unwrap()
}

/// A commit adding Bob (a PublicMessage), its Welcome (an MLSMessage) and the new GroupInfo (the
/// bare struct), plus a proposal (a PublicMessage) of the next epoch.
pub(crate) struct Handshakes {
    pub commit: Vec<u8>,
    pub welcome: Vec<u8>,
    pub group_info: Vec<u8>,
    pub proposal: Vec<u8>,
}

pub(crate) fn handshakes() -> Handshakes {
    use openmls::prelude::PURE_PLAINTEXT_WIRE_FORMAT_POLICY;
    let alice = TestClient::new("mimi://a.example/d/alice/1");
    let bob = TestClient::new("mimi://b.example/d/bob/1");
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
        .build();
    let mut group = MlsGroup::new(&alice.provider, &alice.signer, &config, alice.credential.clone()).unwrap();
    let bundle = KeyPackage::builder().build(CIPHERSUITE, &bob.provider, &bob.signer, bob.credential.clone()).unwrap();
    let (commit, welcome, _) =
        group.add_members(&alice.provider, &alice.signer, &[bundle.key_package().clone()]).unwrap();
    group.merge_pending_commit(&alice.provider).unwrap();
    // An MLSMessage holding the GroupInfo: the struct itself follows version and wire format.
    let group_info = group.export_group_info(alice.provider.crypto(), &alice.signer, false).unwrap();
    let (proposal, _) = group
        .propose_self_update(&alice.provider, &alice.signer, openmls::prelude::LeafNodeParameters::default())
        .unwrap();
    Handshakes {
        commit: commit.tls_serialize_detached().unwrap(),
        welcome: welcome.tls_serialize_detached().unwrap(),
        group_info: group_info.tls_serialize_detached().unwrap()[4..].to_vec(),
        proposal: proposal.tls_serialize_detached().unwrap(),
    }
}
