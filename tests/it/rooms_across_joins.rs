//! A participant's new client joins by external commit, over mutual TLS with the hub's real
//! outbox: its provider asks the hub for the group (`groupInfo`); the answer opens only with the
//! request's HPKE key and is signed by the room's external sender; the client's external commit
//! goes to `update`, is appended and fanned out, and the client decrypts what comes next. Not
//! authorized: a user who is not a participant, a provider speaking for another's user, a
//! request whose signature does not verify, a joining code; an unknown room is `noSuchRoom`.

use std::time::Duration;

use mimi_bridge::mimi::protocol::group_info::GroupInfoRefusal;
use mimi_bridge::mimi::protocol::{
    GroupInfoOption, GroupInfoRequest, GroupInfoResponse, HandshakeBundle, RatchetTreeOption, UpdateOutcome,
    UpdateRoomResponse, Wire as _,
};
use mimi_bridge::mls::MlsProvider;
use mimi_bridge::mls::group::{RoomGroup, group_info_request, open_group_info};
use mimi_bridge::mls::identity::LocalDevice;
use mimi_bridge::mls::member::Member;
use mimi_bridge::provider::client::PeerClient;
use mimi_bridge::provider::peers::Peers;

use crate::bridge_synapse::wait_for;
use crate::provider_peers::{Pair, pair};
use crate::rooms_across_gaps::{room_with_bob, send, verify};
use crate::rooms_across_refusals::{as_provider, mimi_text};

const BOB: &str = "@bob:b.test";

/// Posts `body` to a.test's `endpoint` for `room`, found through a.test's directory.
fn post(pair: &Pair, client: &PeerClient, endpoint: &str, room: &str, body: Vec<u8>) -> Vec<u8> {
    let room_uri = mimi_bridge::translate::uri::room_uri_of(room).unwrap();
    let directory = pair.runtime.block_on(Peers::new(client.clone()).directory("a.test")).unwrap();
    let url = directory.url(endpoint, &[("roomId", &room_uri)]).unwrap();
    let answer = pair.runtime.block_on(client.post(&url, body)).unwrap();
    assert_eq!(answer.status.as_u16(), 200, "{}", String::from_utf8_lossy(&answer.body));
    answer.body.to_vec()
}

fn refusal(pair: &Pair, client: &PeerClient, room: &str, request: &GroupInfoRequest) -> Option<GroupInfoRefusal> {
    GroupInfoResponse::decode(&post(pair, client, "groupInfo", room, request.encode())).unwrap().result.err()
}

/// A new client of `user` at b.test: a device b.test's server key vouches for, its signing key
/// in its own MLS storage. (This bridge gives each of its users one device; b.test stands for a
/// provider whose users have several.)
fn device(pair: &Pair, user: &str, device_id: &str) -> (MlsProvider, LocalDevice) {
    let provider = Member::provider_for(pair.b.provider.hub.store(), user, device_id);
    let key = mimi_bridge::event::ServerKey::from_seed("k1", [2; 32]).unwrap(); // b.test's, in `pair`
    let device = LocalDevice::generate(&provider, &key, user, device_id).unwrap();
    (provider, device)
}

#[test]
fn a_participants_new_client_joins_by_external_commit() {
    let pair = pair();
    let _runtime = pair.runtime.enter();
    let (hub_a, hub_b) = (&pair.a.provider.hub, &pair.b.provider.hub);
    let (room, _outbox) = room_with_bob(&pair, 1);
    let from_b = as_provider(&pair, "b.test", &pair.a);

    // Refused: Carol is no participant; c.test does not speak for Bob; a signature that does
    // not verify; a joining code (this hub issues none); a room the hub does not have.
    let (_, carol) = device(&pair, "@carol:b.test", "D1");
    let (carol_request, _) = group_info_request(&carol.signer, &carol.credential_with_key).unwrap();
    assert_eq!(refusal(&pair, &from_b, &room, &carol_request), Some(GroupInfoRefusal::NotAuthorized));
    let (provider, bob2) = device(&pair, BOB, "D2");
    let (request, private_key) = group_info_request(&bob2.signer, &bob2.credential_with_key).unwrap();
    let from_c = as_provider(&pair, "c.test", &pair.a);
    assert_eq!(refusal(&pair, &from_c, &room, &request), Some(GroupInfoRefusal::NotAuthorized));
    let mut forged = request.clone();
    forged.signature[0] ^= 1;
    assert_eq!(refusal(&pair, &from_b, &room, &forged), Some(GroupInfoRefusal::NotAuthorized));
    let coded = GroupInfoRequest { joining_code: b"let me in".to_vec(), ..request.clone() };
    assert_eq!(refusal(&pair, &from_b, &room, &coded), Some(GroupInfoRefusal::NotAuthorized));
    let elsewhere = hub_a.new_room_id().unwrap();
    assert_eq!(refusal(&pair, &from_b, &elsewhere, &request), Some(GroupInfoRefusal::NoSuchRoom));

    // Bob's new client: the group, opened with its key only, from the room's hub.
    let response = GroupInfoResponse::decode(&post(&pair, &from_b, "groupInfo", &room, request.encode())).unwrap();
    let (other_key, _) = mimi_bridge::mls::seal::key_pair().unwrap();
    assert!(open_group_info(&response, &other_key).is_err(), "opens with the request's key only");
    let opened = open_group_info(&response, &private_key).unwrap();
    assert!(opened.pending_proposals.is_empty());
    let RatchetTreeOption::Full(tree) = &opened.ratchet_tree else { panic!("the tree travels in full") };
    let epoch = hub_a.mls_epoch(&room).unwrap().unwrap();
    let (mut group, commit) = RoomGroup::join_external(
        &provider,
        &bob2.signer,
        bob2.credential_with_key.clone(),
        &opened.group_info,
        Some(tree),
    )
    .unwrap();
    assert_eq!(group.epoch(), epoch + 1);

    // Carol's client joining with the same GroupInfo (had it leaked to her): she is no
    // participant, so her external commit is not allowed, and nothing is appended.
    let bundle = |commit: mimi_bridge::mls::group::StagedOut| HandshakeBundle::Commit {
        commit: commit.commit,
        welcome: None,
        group_info: GroupInfoOption::Full(commit.group_info[4..].to_vec()),
        ratchet_tree: RatchetTreeOption::DistributionService,
    };
    let (carol_provider, carol) = device(&pair, "@carol:b.test", "D2");
    let (_, carol_commit) = RoomGroup::join_external(
        &carol_provider,
        &carol.signer,
        carol.credential_with_key.clone(),
        &opened.group_info,
        None,
    )
    .unwrap();
    let answer =
        UpdateRoomResponse::decode(&post(&pair, &from_b, "update", &room, bundle(carol_commit).encode())).unwrap();
    assert_eq!(answer.outcome, UpdateOutcome::NotAllowed, "{answer:?}");
    assert_eq!(hub_a.mls_epoch(&room).unwrap(), Some(epoch));

    // Bob's external commit through `update`: appended, and fanned out.
    let answer = UpdateRoomResponse::decode(&post(&pair, &from_b, "update", &room, bundle(commit).encode())).unwrap();
    assert!(matches!(answer.outcome, UpdateOutcome::Success(_)), "{answer:?}");
    assert_eq!(hub_a.mls_epoch(&room).unwrap(), Some(epoch + 1));
    wait_for("the commit in b.test's record", Duration::from_mins(1), || {
        hub_b.mls_epoch(&room).unwrap() == Some(epoch + 1)
    });

    // Alice's next message reaches the new client.
    send(hub_a, &room, "to both of Bob's clients", 10);
    let short = hub_a.short_room(&room).unwrap().unwrap();
    let (_, last) = hub_a.log_page(short, 0, 1000).unwrap().pop().unwrap();
    let last = mimi_bridge::event::UnverifiedPdu::parse(&last).unwrap();
    let ciphertext = mimi_bridge::mls::events::EncryptedContent::parse(last.content()).unwrap().ciphertext;
    let decrypted = group.decrypt(&provider, &ciphertext).unwrap();
    assert_eq!(decrypted.mimi_cbor, mimi_text(&room, "to both of Bob's clients"));
    verify(hub_a);
    verify(hub_b);
}
