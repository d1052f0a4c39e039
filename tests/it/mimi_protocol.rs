//! The MIMI protocol's binary bodies (draft-ietf-mimi-protocol-06): the known byte vectors byte
//! for byte, refusals naming the field, and decode → encode identity.

use mimi_bridge::mimi::protocol::group_info::{GroupInfoRefusal, GroupInfoSuccess, PendingProposal};
use mimi_bridge::mimi::protocol::identifier::{QueryCode, QueryElement, SearchType};
use mimi_bridge::mimi::protocol::tree::PartialGroupInfo;
use mimi_bridge::mimi::protocol::{
    AbuseReport, AbusiveMessage, AppDataDictionary, ClientMaterial, ConsentEntry, ConsentOperation, FanoutExtra,
    FanoutMessage, Frank, GroupInfoOption, GroupInfoRatchetTree, GroupInfoRequest, GroupInfoResponse, HandshakeBundle,
    IdentifierRequest, IdentifierResponse, KeyMaterialRequest, KeyMaterialResponse, RatchetTreeOption,
    SubmitMessageRequest, SubmitMessageResponse, UpdateOutcome, UpdateRoomResponse, UserStatus, Wire, WireError,
};

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text.replace(' ', "")).unwrap()
}

fn refused<T: Wire + std::fmt::Debug>(bytes: &[u8], offset: usize, field: &str, reason: &str) -> WireError {
    let err = T::decode(bytes).expect_err("must be refused");
    assert_eq!((err.offset, err.field.as_str()), (offset, field), "{err}");
    assert!(err.reason.contains(reason), "{reason:?} in {err}");
    err
}

/// The peer's known answers: accepted (with the frank's presence byte even when absent),
/// notAllowed, epochTooOld.
#[test]
fn submit_message_responses_match_the_known_vectors() {
    let cases = [
        (
            "01 00 0102030405060708 00",
            SubmitMessageResponse::Accepted { timestamp: 0x0102_0304_0506_0708, frank: None },
        ),
        ("01 01", SubmitMessageResponse::NotAllowed),
        ("01 02 000000000000002a", SubmitMessageResponse::EpochTooOld { current_epoch: 42 }),
    ];
    for (hex, value) in cases {
        assert_eq!(SubmitMessageResponse::decode(&unhex(hex)).unwrap(), value, "{hex}");
        assert_eq!(value.encode(), unhex(hex), "{hex}");
    }
    let franked = SubmitMessageResponse::Accepted {
        timestamp: 7,
        frank: Some(Frank { server_frank: [0xab; 32], ciphersuite: 1, signature: vec![1, 2, 3] }),
    };
    let bytes = franked.encode();
    assert_eq!(bytes[10..12], [0x01, 0xab], "presence byte, then the frank");
    assert_eq!(SubmitMessageResponse::decode(&bytes).unwrap(), franked);

    refused::<SubmitMessageResponse>(&unhex("01 00 0102030405060708"), 10, "frank", "needs 1 bytes");
    refused::<SubmitMessageResponse>(&unhex("01 00 0102030405060708 00 ff"), 11, "body", "1 bytes left over");
    refused::<SubmitMessageResponse>(&unhex("02 00 0000000000000000"), 0, "protocol", "unknown protocol 2");
    refused::<SubmitMessageResponse>(&unhex("01 03"), 1, "statusCode", "unknown value 3");
    refused::<SubmitMessageResponse>(&unhex("01 00 0102030405060708 02"), 10, "frank", "presence byte 2");
}

/// A submit request embeds the MLS message whole; what is not an MLSMessage is refused there.
#[test]
fn submit_message_requests_embed_an_mls_message() {
    let message = crate::mimi_protocol_support::private_message();
    let request = SubmitMessageRequest { app_message: message.clone(), sending_uri: "mimi://a.example/u/alice".into() };
    let bytes = request.encode();
    assert_eq!(bytes[0], 1);
    assert_eq!(bytes[1..=message.len()], message[..]);
    assert_eq!(SubmitMessageRequest::decode(&bytes).unwrap(), request);
    refused::<SubmitMessageRequest>(&[1, 0xff, 0xff], 1, "appMessage", "expected an MLSMessage");
    refused::<SubmitMessageRequest>(&bytes[..bytes.len() - 1], 1 + message.len(), "sendingUri", "needs 24 bytes");
}

/// Hex of a URI's `<V>` encoding (lengths under 64).
fn uri(text: &str) -> String {
    format!("{:02x}{}", text.len(), hex::encode(text))
}

fn round_trip<T: Wire + std::fmt::Debug + PartialEq>(hex: &str, expected: &T) {
    let bytes = unhex(hex);
    assert_eq!(&T::decode(&bytes).unwrap(), expected, "{hex}");
    assert_eq!(expected.encode(), bytes, "{hex}");
}

/// The public peer's answers for key material: exhausted (partialSuccess, one client, no
/// KeyPackage) and refused for want of consent (no clients); garbage refused by its field.
#[test]
fn key_material_responses_match_the_peers_vectors() {
    let bob = "mimi://b.example/u/bob";
    let exhausted = KeyMaterialResponse {
        status: UserStatus::PartialSuccess,
        user_uri: bob.into(),
        clients: vec![ClientMaterial::Exhausted { client_uri: bob.into() }],
    };
    round_trip(&format!("01 01 {} 18 01 {}", uri(bob), uri(bob)), &exhausted);
    round_trip(
        "010103626f62050103626f62",
        &KeyMaterialResponse {
            status: UserStatus::PartialSuccess,
            user_uri: "bob".into(),
            clients: vec![ClientMaterial::Exhausted { client_uri: "bob".into() }],
        },
    );
    round_trip(
        "0105056361726f6c00",
        &KeyMaterialResponse { status: UserStatus::NoConsent, user_uri: "carol".into(), clients: Vec::new() },
    );
    refused::<KeyMaterialResponse>(&unhex("01ff0000"), 1, "userStatus", "unknown value 255");
    refused::<KeyMaterialResponse>(
        &unhex("0101 03626f62 05 03 03626f62"),
        7,
        "clients[0].clientStatus",
        "unknown value 3",
    );
    // nothingCompatible carries optional Capabilities: a missing presence byte is refused.
    refused::<KeyMaterialResponse>(
        &unhex("0103 03626f62 05 02 03626f62"),
        12,
        "clients[0].clientCapabilities",
        "needs 1 bytes",
    );
}

/// A success carries the KeyPackage whole, and only a KeyPackage parses there.
#[test]
fn key_material_success_embeds_key_packages() {
    let bob = crate::mimi_protocol_support::TestClient::new("mimi://b.example/d/bob/1");
    let key_package = bob.key_package();
    let response = KeyMaterialResponse {
        status: UserStatus::Success,
        user_uri: "mimi://b.example/u/bob".into(),
        clients: vec![
            ClientMaterial::Success { client_uri: "mimi://b.example/d/bob/1".into(), key_package: key_package.clone() },
            ClientMaterial::NothingCompatible { client_uri: "mimi://b.example/d/bob/2".into(), capabilities: None },
        ],
    };
    let bytes = response.encode();
    assert_eq!(KeyMaterialResponse::decode(&bytes).unwrap(), response);
    let broken = KeyMaterialResponse {
        clients: vec![ClientMaterial::Success { client_uri: "c".into(), key_package: vec![0, 1, 0xff] }],
        ..response
    };
    refused::<KeyMaterialResponse>(&broken.encode(), 29, "clients[0].keyPackage", "expected a KeyPackage");
}

/// The request as the public peer's minimal form encodes it (empty key and signature), then a
/// real one whose signature covers exactly `KeyMaterialRequestTBS`.
#[test]
fn key_material_requests_and_what_their_signature_covers() {
    let minimal = KeyMaterialRequest {
        requesting_user: "mimi://a.example/u/alice".into(),
        target_user: "mimi://b.example/u/bob".into(),
        room_id: String::new(),
        ciphersuites: vec![1],
        required_capabilities: vec![0, 0, 0],
        signature_key: Vec::new(),
        credential: unhex(&format!("0001 {}", uri("wire-proof-requester"))),
        signature: Vec::new(),
    };
    round_trip(
        "01186d696d693a2f2f612e6578616d706c652f752f616c696365166d696d693a2f2f622e6578616d706c652f752f626f620002000100000000000114776972652d70726f6f662d72657175657374657200",
        &minimal,
    );
    let alice = crate::mimi_protocol_support::TestClient::new("mimi://a.example/d/alice/1");
    let request = KeyMaterialRequest {
        room_id: "mimi://a.example/r/team".into(),
        credential: alice.credential_bytes(),
        signature_key: alice.signer.public().to_vec(),
        signature: vec![9; 64],
        ..minimal
    };
    let bytes = request.encode();
    let tbs = request.to_be_signed();
    assert_eq!(bytes[..tbs.len()], tbs[..], "the signed part is the request up to its signature");
    assert_eq!(bytes[tbs.len()..], unhex(&format!("40 40 {}", "09".repeat(64)))[..]);
    assert_eq!(KeyMaterialRequest::decode(&bytes).unwrap(), request);
    refused::<KeyMaterialRequest>(&unhex("01 00 00 00 03 000100"), 4, "acceptableCiphersuites", "odd length");
}

/// Consent entries as the peer encodes them; a grant carries KeyPackages, other operations
/// none; -06's extensions dictionary must be sorted.
#[test]
fn consent_entries() {
    let (alice, bob) = ("mimi://a.example/u/alice", "mimi://b.example/u/bob");
    let request = ConsentEntry {
        operation: ConsentOperation::Request,
        requester_uri: alice.into(),
        target_uri: bob.into(),
        room_id: None,
        key_packages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    round_trip(
        "01186d696d693a2f2f612e6578616d706c652f752f616c696365166d696d693a2f2f622e6578616d706c652f752f626f620000",
        &request,
    );
    let kp = crate::mimi_protocol_support::TestClient::new("mimi://b.example/d/bob/1").key_package();
    let grant = ConsentEntry {
        operation: ConsentOperation::Grant,
        room_id: Some("mimi://a.example/r/team".into()),
        key_packages: vec![kp.clone(), kp],
        extensions: AppDataDictionary(vec![(1, vec![1]), (0x22, Vec::new())]),
        ..request.clone()
    };
    assert_eq!(ConsentEntry::decode(&grant.encode()).unwrap(), grant);
    refused::<ConsentEntry>(&unhex("ff00"), 0, "consentOperation", "unknown value 255");
    let unsorted = ConsentEntry { extensions: AppDataDictionary(vec![(5, vec![]), (5, vec![])]), ..request };
    let bytes = unsorted.encode();
    refused::<ConsentEntry>(&bytes, bytes.len() - 3, "consent_extensions[1].component_id", "not above");
}

/// Identifier queries: a handle, a qualified vCard field, and the answers.
#[test]
fn identifier_queries_and_answers() {
    let handle = IdentifierRequest {
        elements: vec![QueryElement { search_type: SearchType::Handle, qualifier: Vec::new(), value: "alice".into() }],
        extensions: AppDataDictionary::default(),
    };
    round_trip("070105616c69636500", &handle);
    let vcard = IdentifierRequest {
        elements: vec![QueryElement {
            search_type: SearchType::VcardField,
            qualifier: b"ORG".to_vec(),
            value: "Acme".into(),
        }],
        extensions: AppDataDictionary::default(),
    };
    round_trip("0a 08 034f5247 0441636d65 00", &vcard);
    refused::<IdentifierRequest>(&unhex("01 00 00"), 1, "query_elements[0].searchType", "unknown value 0");

    let not_found = IdentifierResponse {
        code: QueryCode::NotFound,
        uris: Vec::new(),
        profiles: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    round_trip("01000000", &not_found);
    let found =
        IdentifierResponse { code: QueryCode::Success, uris: vec!["mimi://a.example/u/alice".into()], ..not_found };
    round_trip("0019186d696d693a2f2f612e6578616d706c652f752f616c6963650000", &found);
}

/// Update answers, the peer's success vector among them; abuse reports.
#[test]
fn update_answers_and_abuse_reports() {
    round_trip(
        "00 00 0102030405060708",
        &UpdateRoomResponse {
            outcome: UpdateOutcome::Success(0x0102_0304_0506_0708),
            error_description: String::new(),
        },
    );
    round_trip(
        "03 02 6e6f 04 02abcd 00",
        &UpdateRoomResponse {
            outcome: UpdateOutcome::InvalidProposal(vec![vec![0xab, 0xcd], Vec::new()]),
            error_description: "no".into(),
        },
    );
    refused::<UpdateRoomResponse>(&unhex("ff00"), 0, "responseCode", "unknown value 255");

    let report = AbuseReport {
        reporting_user: "mimi://a.example/u/alice".into(),
        alleged_abuser: "mimi://b.example/u/mallory".into(),
        reason_code: 0,
        note: "spam".into(),
        messages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    round_trip(
        "186d696d693a2f2f612e6578616d706c652f752f616c6963651a6d696d693a2f2f622e6578616d706c652f752f6d616c6c6f727900047370616d0000",
        &report,
    );
    let with_message = AbuseReport {
        messages: vec![AbusiveMessage {
            content: vec![0x87],
            frank: Frank { server_frank: [1; 32], ciphersuite: 1, signature: vec![2; 64] },
            accepted_timestamp: 5,
        }],
        ..report
    };
    assert_eq!(AbuseReport::decode(&with_message.encode()).unwrap(), with_message);
}

/// A commit bundle (optional Welcome, full GroupInfo, tree option) and a proposals bundle, made
/// of real openmls messages; what follows the MLSMessage depends on what it carries.
#[test]
fn handshake_bundles_and_fanout_messages_follow_what_the_message_carries() {
    let h = crate::mimi_protocol_support::handshakes();
    let bare_welcome = h.welcome[4..].to_vec();
    let commit = HandshakeBundle::Commit {
        commit: h.commit.clone(),
        welcome: Some(bare_welcome.clone()),
        group_info: GroupInfoOption::Full(h.group_info.clone()),
        ratchet_tree: RatchetTreeOption::DistributionService,
    };
    let bytes = commit.encode();
    let expected = [&h.commit[..], &[1], &bare_welcome, &[1], &h.group_info, &[4]].concat();
    assert_eq!(bytes, expected);
    assert_eq!(HandshakeBundle::decode(&bytes).unwrap(), commit);
    // The public peer wraps the Welcome in an MLSMessage: accepted, kept as sent.
    let wrapped = HandshakeBundle::Commit {
        commit: h.commit.clone(),
        welcome: Some(h.welcome.clone()),
        group_info: GroupInfoOption::Partial(PartialGroupInfo {
            ratchet_tree_presence: 1,
            extensions: Vec::new(),
            signature: vec![7; 64],
        }),
        ratchet_tree: RatchetTreeOption::HttpsUri { url: "https://hub.example/t/1".into(), signature: vec![8; 64] },
    };
    assert_eq!(HandshakeBundle::decode(&wrapped.encode()).unwrap(), wrapped);
    let proposals = HandshakeBundle::Proposals { proposal: h.proposal.clone(), more: vec![h.proposal.clone()] };
    assert_eq!(HandshakeBundle::decode(&proposals.encode()).unwrap(), proposals);
    // An application message is neither.
    let app = crate::mimi_protocol_support::private_message();
    refused::<HandshakeBundle>(&app, 0, "proposalOrCommit", "neither a proposal nor a commit");

    // A notify body: four messages back to back, each followed by what its kind brings.
    let fanout = vec![
        FanoutMessage { timestamp: 1, message: app.clone(), extra: FanoutExtra::Application(None) },
        FanoutMessage { timestamp: 2, message: h.commit.clone(), extra: FanoutExtra::Commit(Vec::new()) },
        FanoutMessage {
            timestamp: 3,
            message: h.welcome.clone(),
            extra: FanoutExtra::Welcome(RatchetTreeOption::Full(vec![1, 2])),
        },
        FanoutMessage {
            timestamp: 4,
            message: h.proposal.clone(),
            extra: FanoutExtra::Proposal(vec![h.proposal.clone()]),
        },
    ];
    let body = FanoutMessage::encode_all(&fanout);
    assert_eq!(body[..8], [0, 0, 0, 0, 0, 0, 0, 1], "no protocol byte: the timestamp comes first");
    assert_eq!(FanoutMessage::decode_all(&body).unwrap(), fanout);
    let group_info_only = [&[0u8; 8][..], &[0, 1, 0, 4], &h.group_info].concat();
    refused::<FanoutMessage>(&group_info_only, 8, "message", "not an application message");
}

/// GroupInfo requests and answers, and the encrypted part with -06's pending proposals.
#[test]
fn group_info_requests_answers_and_pending_proposals() {
    let h = crate::mimi_protocol_support::handshakes();
    let alice = crate::mimi_protocol_support::TestClient::new("mimi://a.example/d/alice/2");
    let request = GroupInfoRequest {
        cipher_suite: 1,
        signature_key: alice.signer.public().to_vec(),
        credential: alice.credential_bytes(),
        group_info_public_key: vec![3; 32],
        joining_code: Vec::new(),
        signature: vec![4; 64],
    };
    let bytes = request.encode();
    assert_eq!(GroupInfoRequest::decode(&bytes).unwrap(), request);
    let tbs = request.to_be_signed();
    assert_eq!(
        (tbs[..tbs.len() - 1] == bytes[..tbs.len() - 1], tbs[tbs.len() - 1]),
        (true, 0),
        "absent code: presence 0"
    );

    let success = GroupInfoResponse {
        room_id: "mimi://hub.example/r/x".into(),
        result: Ok(GroupInfoSuccess {
            cipher_suite: 1,
            hub_signature_key: vec![5; 32],
            hub_credential: alice.credential_bytes(),
            kem_output: vec![6; 32],
            ciphertext: vec![7; 100],
            signature: vec![8; 64],
        }),
    };
    let bytes = success.encode();
    assert_eq!(GroupInfoResponse::decode(&bytes).unwrap(), success);
    assert_eq!(bytes[..bytes.len() - 66], success.to_be_signed().unwrap()[..]);
    round_trip(
        &format!("01 {} 03", uri("mimi://hub.example/r/x")),
        &GroupInfoResponse { room_id: "mimi://hub.example/r/x".into(), result: Err(GroupInfoRefusal::NoSuchRoom) },
    );
    refused::<GroupInfoResponse>(&unhex("01 00 00"), 2, "status", "unknown value 0");

    let tbe = GroupInfoRatchetTree {
        group_info: h.group_info.clone(),
        ratchet_tree: RatchetTreeOption::Full(vec![9; 10]),
        pending_proposals: vec![PendingProposal { proposal: h.proposal.clone(), hub_accepted_time: 77 }],
    };
    assert_eq!(GroupInfoRatchetTree::decode(&tbe.encode()).unwrap(), tbe);
}

/// The fuzz target's property, run here on stable Rust (CI's smoke mode of
/// `fuzz/fuzz_targets/protocol_decode.rs`).
mod fuzz_check {
    include!("../../fuzz/check/protocol_decode.rs");
}

/// One encoded body of every type, real MLS objects inside, as seeds for mutation.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let h = crate::mimi_protocol_support::handshakes();
        let bob = crate::mimi_protocol_support::TestClient::new("mimi://b.example/d/bob/1");
        let app = crate::mimi_protocol_support::private_message();
        let frank = Frank { server_frank: [1; 32], ciphersuite: 1, signature: vec![2; 8] };
        let dictionary = AppDataDictionary(vec![(0x20, vec![1]), (0x22, vec![2, 3])]);
        vec![
            KeyMaterialRequest {
                requesting_user: "mimi://a.example/u/alice".into(),
                target_user: "mimi://b.example/u/bob".into(),
                room_id: "mimi://a.example/r/x".into(),
                ciphersuites: vec![1, 3],
                required_capabilities: vec![0, 0, 0],
                signature_key: bob.signer.public().to_vec(),
                credential: bob.credential_bytes(),
                signature: vec![5; 64],
            }
            .encode(),
            KeyMaterialResponse {
                status: UserStatus::PartialSuccess,
                user_uri: "mimi://b.example/u/bob".into(),
                clients: vec![
                    ClientMaterial::Success {
                        client_uri: "mimi://b.example/d/bob/1".into(),
                        key_package: bob.key_package(),
                    },
                    ClientMaterial::Exhausted { client_uri: "mimi://b.example/d/bob/2".into() },
                ],
            }
            .encode(),
            HandshakeBundle::Commit {
                commit: h.commit.clone(),
                welcome: Some(h.welcome[4..].to_vec()),
                group_info: GroupInfoOption::Full(h.group_info.clone()),
                ratchet_tree: RatchetTreeOption::Full(vec![0; 4]),
            }
            .encode(),
            HandshakeBundle::Proposals { proposal: h.proposal.clone(), more: vec![h.proposal.clone()] }.encode(),
            UpdateRoomResponse { outcome: UpdateOutcome::WrongEpoch(3), error_description: "stale".into() }.encode(),
            SubmitMessageRequest { app_message: app.clone(), sending_uri: "mimi://a.example/u/alice".into() }.encode(),
            SubmitMessageResponse::Accepted { timestamp: 9, frank: Some(frank.clone()) }.encode(),
            FanoutMessage::encode_all(&[
                FanoutMessage { timestamp: 1, message: app, extra: FanoutExtra::Application(Some(frank.clone())) },
                FanoutMessage {
                    timestamp: 2,
                    message: h.welcome.clone(),
                    extra: FanoutExtra::Welcome(RatchetTreeOption::OutOfBand(vec![1])),
                },
            ]),
            GroupInfoRatchetTree {
                group_info: h.group_info.clone(),
                ratchet_tree: RatchetTreeOption::DistributionService,
                pending_proposals: vec![PendingProposal { proposal: h.proposal.clone(), hub_accepted_time: 1 }],
            }
            .encode(),
            ConsentEntry {
                operation: ConsentOperation::Grant,
                requester_uri: "mimi://a.example/u/alice".into(),
                target_uri: "mimi://b.example/u/bob".into(),
                room_id: Some("mimi://a.example/r/x".into()),
                key_packages: vec![bob.key_package()],
                extensions: dictionary.clone(),
            }
            .encode(),
            IdentifierRequest {
                elements: vec![QueryElement {
                    search_type: SearchType::OidcStdClaim,
                    qualifier: b"email".to_vec(),
                    value: "a@b".into(),
                }],
                extensions: dictionary.clone(),
            }
            .encode(),
            AbuseReport {
                reporting_user: String::new(),
                alleged_abuser: "mimi://b.example/u/m".into(),
                reason_code: 0,
                note: "n".into(),
                messages: vec![AbusiveMessage { content: vec![0x87], frank, accepted_timestamp: 4 }],
                extensions: dictionary,
            }
            .encode(),
        ]
    })
}

#[test]
fn every_seed_decodes_and_re_encodes() {
    for seed in seeds() {
        fuzz_check::check(seed);
    }
    assert_eq!(KeyMaterialRequest::decode(&seeds()[0]).unwrap().encode(), seeds()[0]);
    assert_eq!(ConsentEntry::decode(&seeds()[9]).unwrap().key_packages.len(), 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]

    /// Seeds with up to three bytes changed, inserted or cut: every decoder answers, and what
    /// decodes re-encodes exactly.
    #[test]
    fn mutated_bodies_never_panic_and_decode_exactly(
        seed in proptest::prelude::any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>(), 0u8..4), 1..4),
    ) {
        let mut bytes = seed.get(seeds()).clone();
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes[i] ^= 1 << (byte % 8),
                2 => bytes.insert(i, byte),
                _ => bytes.truncate(i),
            }
        }
        fuzz_check::check(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        fuzz_check::check(&bytes);
    }
}
