//! Hub and follower at the library level: what a hub refuses of other providers, over mutual
//! TLS, with nothing stored (a message from a provider that is not in the room, a provider
//! speaking for another's user, a commit adding a user who is not a participant —
//! invalidProposal —, a message of a closed epoch — epochTooOld, with the epoch —, a leave
//! proposal from another provider or of a closed epoch, and a `notify`
//! from a provider that is not the room's hub); and a follower's record reloaded after a restart.

use std::collections::BTreeMap;

use mimi_bridge::event::UnverifiedPdu;
use mimi_bridge::event::canonical::parse_object;
use mimi_bridge::event::room_version::MIMI_HUB_1;
use mimi_bridge::http::tls::TlsMaterial;
use mimi_bridge::hub::{Admission, Hub, Recorded, RoomPreset, member_event};
use mimi_bridge::mimi::cbor::Value;
use mimi_bridge::mimi::protocol::{
    FanoutExtra, FanoutMessage, Frank, GroupInfoOption, HandshakeBundle, RatchetTreeOption, SubmitMessageRequest,
    SubmitMessageResponse, UpdateOutcome, UpdateRoomResponse, Wire as _,
};
use mimi_bridge::mimi::{ExtensionKey, MimiContent};
use mimi_bridge::mls::events::EncryptedContent;
use mimi_bridge::mls::identity::DeviceObject;
use mimi_bridge::mls::member::Member;
use mimi_bridge::mls::room_data::{ROLE_BANNED, ROLE_PARTICIPANT, Roster, participant};
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::peers::Requester;

use crate::provider_peers::{Side, connect, grant, pair, user_with_packages};

const ALICE: &str = "@alice:a.test";
const BOB: &str = "@bob:b.test";

/// The client of `user` (device D1) at `side`, as its store has it for `room`.
pub(crate) fn client(side: &Side, user: &str, room: &str) -> Member {
    let store = side.provider.hub.store();
    let object = DeviceObject::from_json(parse_object(&store.device_object(user, "D1").unwrap().unwrap()).unwrap());
    let credential = object.verify(&side.provider.hub.directories().trusted_keys()).unwrap();
    let provider = Member::provider_for(store, user, "D1");
    let device = Member::load_device(&provider, object, credential).unwrap();
    Member::load(provider, device, room).unwrap().expect("in the room's group")
}

/// Commits of Bob's client that the room's participant list forbids, each with what the hub's
/// refusal must name: adding Carol's client, whether or not the commit also lists her (she is
/// no participant); listing her without a client; banning Alice, who is a participant.
fn commits_the_list_forbids(
    bob: &mut Member,
    room: &str,
    carol_package: &openmls::prelude::KeyPackage,
) -> Vec<(mimi_bridge::mls::events::CommitContent, &'static str)> {
    let listed: Roster = [(participant(ALICE), ROLE_PARTICIPANT), (participant(BOB), ROLE_PARTICIPANT)].into();
    let mut with_carol = listed.clone();
    with_carol.insert(participant("@carol:b.test"), ROLE_PARTICIPANT);
    let mut alice_banned = listed.clone();
    alice_banned.insert(participant(ALICE), ROLE_BANNED);
    // (Adding Carol's device with her listed is a follower's invite: `rooms_across_invites`.)
    let attempts = [
        (&listed, true, "@carol:b.test"),
        (&with_carol, false, "@carol:b.test is listed"),
        (&alice_banned, false, "mimi://a.test/u/alice=1"),
    ];
    let mut commits = Vec::new();
    for (roster, adding, named) in attempts {
        let staged = if adding {
            bob.stage_add(std::slice::from_ref(carol_package), roster).unwrap()
        } else {
            bob.stage_remove("@nobody:b.test", roster).unwrap().unwrap()
        };
        bob.roll_back(room).unwrap();
        commits.push((staged, named));
    }
    commits
}

/// A MIMI content message of Bob's (its salt makes a franking tag) is franked by the hub:
/// signed by the room's franking agent (a.test's server key) for Bob, the room and the
/// acceptance time, and for nothing else; a retry gets the same frank.
fn franked_by_the_hub(
    submit: &dyn Fn(Vec<u8>) -> SubmitMessageResponse,
    tagged: Vec<u8>,
    bob_uri: &str,
    alice_uri: &str,
    room_uri: &str,
) {
    use mimi_bridge::mimi::frank::{self, Context, FrankingAgent};
    let SubmitMessageResponse::Accepted { timestamp, frank: Some(franked) } = submit(tagged.clone()) else {
        panic!("accepted without a frank")
    };
    let again = SubmitMessageResponse::Accepted { timestamp, frank: Some(franked.clone()) };
    assert_eq!(submit(tagged), again, "a retry: the same frank");
    let key = mimi_bridge::event::ServerKey::from_seed("k1", [1; 32]).unwrap();
    let agent = FrankingAgent { key: key.verifying_key().to_bytes().to_vec(), identity: b"mimi://a.test".to_vec() };
    let context = Context { sender_uri: bob_uri, room_uri, accepted_timestamp: timestamp };
    frank::verify(&franked, &agent, 1, &context).unwrap();
    assert!(frank::verify(&franked, &agent, 1, &Context { sender_uri: alice_uri, ..context }).is_err());
    assert!(frank::verify(&franked, &agent, 1, &Context { accepted_timestamp: timestamp + 1, ..context }).is_err());
}

/// Alice's messages, fanned out to b.test with the hub's frank: the first as the hub franked
/// it is delivered; the second, its frank's signature altered, is refused by Bob's client (the
/// record keeps the message, no plaintext is delivered), as is one whose frank names another
/// time.
fn a_follower_delivers_only_what_the_hub_franked(hub_a: &Hub, hub_b: &Hub, room: &str, alice_uri: &str) {
    let room_uri = mimi_bridge::translate::uri::room_uri_of(room).unwrap();
    let short = hub_a.short_room(room).unwrap().unwrap();
    let mut delivered = Vec::new();
    for (n, alter) in [(0u8, None), (1, Some(0usize)), (2, Some(1))] {
        let mut content = MimiContent::decode(&crate::mls_rooms::mimi(u64::from(n) + 50)).unwrap();
        content.set_extension(ExtensionKey::Int(1), Value::Text(alice_uri.to_owned()));
        content.set_extension(ExtensionKey::Int(2), Value::Text(room_uri.clone()));
        let sent = hub_a.send_encrypted(room, ALICE, &content.encode(), 100 + i64::from(n)).unwrap().wait().unwrap();
        let event = &hub_a.log_page(short, sent.position, 1).unwrap()[0].1;
        let encrypted = EncryptedContent::parse(UnverifiedPdu::parse(event).unwrap().content()).unwrap();
        let mut frank = Frank::decode(&encrypted.frank.expect("the hub franked Alice's message")).unwrap();
        let mut timestamp = 100 + u64::from(n);
        match alter {
            Some(0) => frank.signature[7] ^= 1,
            Some(_) => timestamp += 1,
            None => {}
        }
        let fanned =
            FanoutMessage { timestamp, message: encrypted.ciphertext, extra: FanoutExtra::Application(Some(frank)) };
        let Recorded::Appended { pending, .. } = hub_b.record_fanout(room, "a.test", &fanned).unwrap() else {
            panic!("not recorded")
        };
        let recorded = pending.wait().unwrap();
        delivered.push(hub_b.store().plaintext(&recorded.event_id).unwrap().is_some());
    }
    assert_eq!(delivered, [true, false, false]);
}

/// A client for `from` (its certificate) pointed at `to`.
pub(crate) fn as_provider(pair: &crate::provider_peers::Pair, from: &str, to: &Side) -> PeerClient {
    let leaf = pair.ca.issue(from, &format!("{from}-refusals"));
    let tls = TlsMaterial::load(&leaf.certificate, &leaf.key, Some(&pair.ca.ca_file())).unwrap();
    PeerClient::new(&tls, from, BTreeMap::from([(to.domain.to_owned(), to.address)])).unwrap()
}

/// The room's group, as its create event carries it, names the hub (its provider URI and its
/// server key) as its one external sender, and carries the room state: Alice its one
/// participant, the room's URI in its metadata.
fn the_group_names_its_hub_and_its_state(side: &Side, room: &str) {
    use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
    use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};
    let hub = &side.provider.hub;
    let short = hub.short_room(room).unwrap().unwrap();
    let create = UnverifiedPdu::parse(&hub.log_page(short, 0, 1).unwrap()[0].1).unwrap();
    let encryption = mimi_bridge::mls::events::RoomEncryption::from_create(create.content()).unwrap().unwrap();
    let MlsMessageBodyIn::GroupInfo(info) =
        MlsMessageIn::tls_deserialize_exact(encryption.group_info).unwrap().extract()
    else {
        panic!("not a GroupInfo")
    };
    let senders = info.group_context().extensions().external_senders().expect("external senders").clone();
    assert_eq!(senders.len(), 1);
    // ExternalSender { SignaturePublicKey signature_key<V>; Credential credential; } with a
    // basic credential (type 1) whose identity is the hub's provider URI, written out by hand.
    let key = mimi_bridge::event::ServerKey::from_seed("k1", [1; 32]).unwrap(); // a.test's, in `pair`
    let mut expected = vec![32];
    expected.extend(key.verifying_key().to_bytes());
    expected.extend([0, 1, 13]);
    expected.extend(b"mimi://a.test");
    assert_eq!(senders[0].tls_serialize_detached().unwrap(), expected);

    // The room state: ParticipantListData { UserRolePair participants<V> } with Alice as an
    // ordinary participant (role 2), and RoomMetaData opening with the room's URI.
    let dictionary = info.group_context().extensions().app_data_dictionary().expect("room state").dictionary();
    let alice = b"mimi://a.test/u/alice";
    let mut list = vec![1 + 21 + 4, 21];
    list.extend(alice);
    list.extend(2u32.to_be_bytes());
    assert_eq!(dictionary.get(&0x0022).expect("participant list"), list);
    let room_uri = mimi_bridge::translate::uri::room_uri_of(room).unwrap();
    let metadata = dictionary.get(&0x0023).expect("room metadata");
    assert_eq!(metadata[0] as usize, room_uri.len());
    assert_eq!(&metadata[1..=room_uri.len()], room_uri.as_bytes());
    let required = info.group_context().extensions().required_capabilities().expect("required capabilities");
    assert_eq!(required.proposal_types(), &[openmls::prelude::ProposalType::AppDataUpdate]);
}

#[test]
fn a_hub_refuses_what_other_providers_may_not_do_and_stores_nothing() {
    let pair = pair();
    let (a, b, runtime) = (&pair.a, &pair.b, &pair.runtime);
    let (hub_a, hub_b) = (&a.provider.hub, &b.provider.hub);
    let alice_uri = user_with_packages(a, "alice", 1);
    let bob_uri = user_with_packages(b, "bob", 2);
    user_with_packages(b, "carol", 1);
    grant(b, &alice_uri, &bob_uri);

    // A MIMI room at a.test with Bob of b.test in it (his package claimed over mutual TLS, his
    // join vouched, his client added), and Bob's client joined at b.test from the Welcome.
    let room = hub_a.new_room_id().unwrap();
    let preset = RoomPreset { encrypted: true, version: &MIMI_HUB_1, ..RoomPreset::default() };
    hub_a.open_room_blocking(&room, ALICE, &preset, 1).unwrap();
    the_group_names_its_hub_and_its_state(a, &room);
    let claimed = runtime.block_on(a.peers.claim(&Requester::ephemeral(&alice_uri).unwrap(), &bob_uri, None)).unwrap();
    let package = claimed.checked.into_iter().next().unwrap().1.unwrap();
    hub_a.submit_local(member_event(&room, ALICE, BOB, "invite", 2)).unwrap().wait().unwrap();
    hub_a.vouch_join(&room, BOB, 3).unwrap().unwrap().wait().unwrap();
    let commit = hub_a.commit_add(&room, ALICE, &[package], 4).unwrap().wait().unwrap();
    let welcome = hub_a.welcome(&commit.event_id).unwrap().unwrap().message;
    let fanned = FanoutMessage {
        timestamp: 4,
        message: welcome,
        extra: FanoutExtra::Welcome(RatchetTreeOption::DistributionService),
    };
    hub_b.record_fanout(&room, "a.test", &fanned).unwrap();
    assert!(hub_b.in_group(&room, BOB).unwrap());
    let repeat = hub_b.record_fanout(&room, "a.test", &fanned).unwrap();
    assert!(matches!(repeat, Recorded::Nothing), "a repeated Welcome is recorded once");
    a_follower_delivers_only_what_the_hub_franked(hub_a, hub_b, &room, &alice_uri);
    let mut bob = client(b, BOB, &room);

    let room_uri = mimi_bridge::translate::uri::room_uri_of(&room).unwrap();
    let path = |endpoint: &str| format!("https://a.test/mimi/v1/{endpoint}/{}", crate::synapse::encode(&room_uri));
    let length = || hub_a.store().tail(hub_a.short_room(&room).unwrap().unwrap()).unwrap().unwrap().events().unwrap();
    let submit = |client: &PeerClient, sender: &str, ciphertext: Vec<u8>| {
        let body = SubmitMessageRequest { app_message: ciphertext, sending_uri: sender.into() }.encode();
        let answer = runtime.block_on(client.post(&path("submitMessage"), body)).unwrap();
        assert_eq!(answer.status.as_u16(), 200, "{}", String::from_utf8_lossy(&answer.body));
        SubmitMessageResponse::decode(&answer.body).unwrap()
    };
    let from_b = as_provider(&pair, "b.test", a);
    let from_c = as_provider(&pair, "c.test", a);
    let before = length();

    // A provider with nobody in the room, and b.test speaking for a user of a.test.
    let ciphertext = bob.encrypt(b"not sent").unwrap();
    let late = bob.encrypt(b"sent once the epoch is closed").unwrap();
    assert_eq!(submit(&from_c, "mimi://c.test/u/mallory", ciphertext.clone()), SubmitMessageResponse::NotAllowed);
    assert_eq!(submit(&from_b, &alice_uri, ciphertext.clone()), SubmitMessageResponse::NotAllowed);
    assert_eq!(length(), before, "nothing stored");

    // Commits of Bob's that the participant list forbids: invalidProposal, nothing stored.
    let carol_package = hub_b.directories().claim_key_package("@carol:b.test", "D1").unwrap().unwrap();
    let carol_package = hub_b.directories().check_key_package(&carol_package, "@carol:b.test", "D1").unwrap();
    for (i, (staged, named)) in commits_the_list_forbids(&mut bob, &room, &carol_package).into_iter().enumerate() {
        let group_info = GroupInfoOption::Full(staged.public_group_state[4..].to_vec());
        let bundle = HandshakeBundle::Commit {
            commit: staged.message.clone(),
            welcome: None,
            group_info,
            ratchet_tree: RatchetTreeOption::DistributionService,
        };
        let answer = runtime.block_on(from_b.post(&path("update"), bundle.encode())).unwrap();
        let response = UpdateRoomResponse::decode(&answer.body).unwrap();
        assert!(matches!(response.outcome, UpdateOutcome::InvalidProposal(_)), "{i}: {response:?}");
        assert!(response.error_description.contains(named), "{i}: {}", response.error_description);
        assert_eq!(length(), before, "{i}: nothing stored");
    }

    // Bob's leave of the current epoch, sent by a provider that is not his: notAllowed.
    let leave =
        HandshakeBundle::Proposals { proposal: client(b, BOB, &room).propose_leave().unwrap(), more: Vec::new() };
    let answer = runtime.block_on(from_c.post(&path("update"), leave.encode())).unwrap();
    assert_eq!(UpdateRoomResponse::decode(&answer.body).unwrap().outcome, UpdateOutcome::NotAllowed);
    assert_eq!(length(), before, "nothing stored");

    // Bob's message of the current epoch is accepted; once Alice's client commits (a new
    // epoch), one of the old epoch is refused with the room's epoch.
    assert!(matches!(submit(&from_b, &bob_uri, ciphertext.clone()), SubmitMessageResponse::Accepted { .. }));
    assert!(matches!(submit(&from_b, &bob_uri, ciphertext), SubmitMessageResponse::Accepted { .. }), "a retry");
    assert_eq!(length(), before + 1, "accepted once");
    let tagged = bob.encrypt(&crate::mls_rooms::mimi(1)).unwrap();
    franked_by_the_hub(&|c| submit(&from_b, &bob_uri, c), tagged, &bob_uri, &alice_uri, &room_uri);
    let epoch = hub_a.mls_epoch(&room).unwrap().unwrap();
    let dave = Admission { room_id: &room, user_id: "@dave:a.test", device_id: "D1", sponsor: ALICE, ts: 5 };
    hub_a.admit_local_user(&dave).unwrap();
    assert_eq!(submit(&from_b, &bob_uri, late), SubmitMessageResponse::EpochTooOld { current_epoch: epoch + 1 });
    let after = length();

    // Bob's client proposing its removal (a leave), of the closed epoch: wrongEpoch with the
    // room's, nothing stored (a retry of a leave the hub took looks the same).
    let leave =
        HandshakeBundle::Proposals { proposal: client(b, BOB, &room).propose_leave().unwrap(), more: Vec::new() };
    let answer = runtime.block_on(from_b.post(&path("update"), leave.encode())).unwrap();
    assert_eq!(UpdateRoomResponse::decode(&answer.body).unwrap().outcome, UpdateOutcome::WrongEpoch(epoch + 1));
    assert_eq!(length(), after, "nothing stored");
    assert_eq!(hub_a.membership(&room, BOB).unwrap().as_deref(), Some("join"));

    // A notify for the room from a provider that is not its hub: 403, nothing recorded.
    let mut c = crate::provider_peers::side(runtime, &pair.ca, "c.test", 3);
    connect(&mut c, b, &pair.ca);
    let fanout = FanoutMessage { timestamp: 9, message: vec![0, 1], extra: FanoutExtra::Application(None) };
    let notify = format!("https://b.test/mimi/v1/notify/{}", crate::synapse::encode(&room_uri));
    let answer = runtime.block_on(c.peers.client().post(&notify, FanoutMessage::encode_all(&[fanout]))).unwrap();
    assert_eq!(answer.status.as_u16(), 403, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(length(), after);
    let record = hub_b.store().tail(hub_b.short_room(&room).unwrap().unwrap()).unwrap().unwrap();
    let held = "the record holds its create, its keeper's join, the Welcome and Alice's three messages";
    assert_eq!(record.events().unwrap(), 6, "{held}");
}

/// A follower's record survives a restart: reopened, the hub reloads the record's group by
/// replaying its commits and its user's client decrypts what comes next; the record verifies.
#[test]
fn a_followers_record_is_reloaded_after_a_restart() {
    use mimi_bridge::event::ServerKey;
    use mimi_bridge::hub::Hub;
    use mimi_bridge::store::Store;
    use std::sync::Arc;

    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let key_b = ServerKey::from_seed("k1", [2; 32]).unwrap();
    let hub_a =
        Hub::new("a.test", &ServerKey::from_seed("k1", [1; 32]).unwrap(), Arc::new(Store::open(dir_a.path()).unwrap()))
            .unwrap();
    let open_b = || Hub::new("b.test", &key_b, Arc::new(Store::open(dir_b.path()).unwrap())).unwrap();
    let hub_b = open_b();
    hub_a.directories().register_device(ALICE, "D1").unwrap();
    hub_b.directories().register_device(BOB, "D1").unwrap();
    hub_b.directories().publish_key_packages(BOB, 1).unwrap();
    let record = br#"{"provider":"a.test","user":"@bob:b.test","device":"D1","at":1}"#;
    let claimed = hub_b.directories().claim_key_package_for(BOB, "D1", "a.test", record).unwrap().unwrap();
    let package = hub_a.directories().check_key_package(&claimed, BOB, "D1").unwrap();

    let room = hub_a.new_room_id().unwrap();
    let preset = RoomPreset { encrypted: true, version: &MIMI_HUB_1, ..RoomPreset::default() };
    hub_a.open_room_blocking(&room, ALICE, &preset, 1).unwrap();
    hub_a.submit_local(member_event(&room, ALICE, BOB, "invite", 2)).unwrap().wait().unwrap();
    hub_a.vouch_join(&room, BOB, 3).unwrap().unwrap().wait().unwrap();
    let added = hub_a.commit_add(&room, ALICE, &[package], 4).unwrap().wait().unwrap();
    let welcome = hub_a.welcome(&added.event_id).unwrap().unwrap().message;
    let fanout = |message: Vec<u8>, extra| FanoutMessage { timestamp: 5, message, extra };
    hub_b
        .record_fanout(&room, "a.test", &fanout(welcome, FanoutExtra::Welcome(RatchetTreeOption::DistributionService)))
        .unwrap();

    // What the hub appends next, fanned out to b.test by hand: Alice's message, Dave's add (a
    // commit), Alice's message in the new epoch.
    let last_mls = |hub: &Hub| {
        let short = hub.short_room(&room).unwrap().unwrap();
        let (_, bytes) = hub.log_page(short, 0, 1000).unwrap().pop().unwrap();
        UnverifiedPdu::parse(&bytes).unwrap()
    };
    let encrypted = |pdu: &UnverifiedPdu| EncryptedContent::parse(pdu.content()).unwrap().ciphertext;
    hub_a.send_encrypted(&room, ALICE, &mimi_text(&room, "before"), 6).unwrap().wait().unwrap();
    hub_b
        .record_fanout(&room, "a.test", &fanout(encrypted(&last_mls(&hub_a)), FanoutExtra::Application(None)))
        .unwrap();
    let dave = Admission { room_id: &room, user_id: "@dave:a.test", device_id: "D1", sponsor: ALICE, ts: 7 };
    hub_a.admit_local_user(&dave).unwrap();
    let short = hub_a.short_room(&room).unwrap().unwrap();
    let commit = hub_a
        .log_page(short, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|(_, bytes)| UnverifiedPdu::parse(&bytes).unwrap())
        .rfind(|pdu| pdu.meta().event_type == mimi_bridge::mls::events::COMMIT)
        .unwrap();
    let commit = mimi_bridge::mls::events::CommitContent::parse(commit.content()).unwrap().message;
    hub_b.record_fanout(&room, "a.test", &fanout(commit, FanoutExtra::Commit(Vec::new()))).unwrap();

    // b.test restarts.
    drop(hub_b);
    let hub_b = open_b();
    hub_a.send_encrypted(&room, ALICE, &mimi_text(&room, "after"), 8).unwrap().wait().unwrap();
    let after = fanout(encrypted(&last_mls(&hub_a)), FanoutExtra::Application(None));
    let recorded = hub_b.record_fanout(&room, "a.test", &after).unwrap();
    let Recorded::Appended { pending, .. } = recorded else { panic!("not recorded") };
    let appended = pending.wait().unwrap();
    let plaintext = hub_b.plaintext(&appended.event_id).unwrap().expect("decrypted after the restart");
    assert_eq!(plaintext, mimi_text(&room, "after"));
    assert_eq!(hub_b.mls_epoch(&room).unwrap(), hub_a.mls_epoch(&room).unwrap());
    let keys = mimi_bridge::event::KeyRing::new();
    let summary = mimi_bridge::replay::verify_store(hub_b.store(), None, &keys, false);
    assert!(summary.is_ok_and(|s| s.mls_commits == 1), "the record's one commit replayed");
}

/// MIMI content with a text body from Alice in `room`.
pub(crate) fn mimi_text(room: &str, text: &str) -> Vec<u8> {
    let json = serde_json::json!({
        "body": {"cardinality": "single", "content": hex::encode(text), "contentType": "text/plain;charset=utf-8",
                 "disposition": 1, "language": ""},
        "expires": null,
        "extensions": [{"key": 1, "value": "mimi://a.test/u/alice"},
                       {"key": 2, "value": mimi_bridge::translate::uri::room_uri_of(room).unwrap()}],
        "inReplyTo": null, "replaces": null, "salt": "5eed9406c2545547ab6f09f20a18b003", "topicId": "",
    });
    mimi_bridge::mimi::json::json_to_content(&json).unwrap().encode()
}
