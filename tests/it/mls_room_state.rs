//! The participant list in the room's `GroupContext` follows the log's membership at every
//! commit: a user added is listed, a banned user stays listed as banned (role 1) and their
//! clients leave the group, a ban of a user without clients is committed on its own, and both
//! logs verify with the list checked at each commit.

use mimi_bridge::event::UnverifiedPdu;
use mimi_bridge::mimi::protocol::{ParticipantList, Wire as _};
use mimi_bridge::mls::events::{COMMIT, CommitContent};
use mimi_bridge::mls::room_data::participant;
use mimi_bridge::replay;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{MlsMessageBodyIn, MlsMessageIn};

use crate::common::*;
use crate::mls_rooms::{Pair, mimi};

const DAVE: &str = "@dave:part.example";

/// The participant list (user URI, role) in the group after the room's latest commit, and the
/// number of commits.
fn listed(pair: &Pair) -> (Vec<(String, u32)>, usize) {
    let store = pair.hub.store();
    let short = store.short_room(&pair.room).unwrap().unwrap();
    let mut commits = Vec::new();
    for item in store.pdus(short, 0).unwrap() {
        let pdu = UnverifiedPdu::parse(&item.unwrap().1).unwrap();
        if pdu.meta().event_type == COMMIT {
            commits.push(CommitContent::parse(pdu.content()).unwrap().public_group_state);
        }
    }
    let message = MlsMessageIn::tls_deserialize_exact(commits.last().unwrap()).unwrap();
    let MlsMessageBodyIn::GroupInfo(info) = message.extract() else { panic!("not a GroupInfo") };
    let dictionary = info.group_context().extensions().app_data_dictionary().unwrap().dictionary();
    let list = ParticipantList::decode(dictionary.get(&0x0022).unwrap()).unwrap();
    let list = list.0.into_iter().map(|p| (String::from_utf8(p.user).unwrap(), p.role)).collect();
    (list, commits.len())
}

fn entry(user: &str, role: u32) -> (String, u32) {
    (String::from_utf8(participant(user)).unwrap(), role)
}

#[test]
fn the_participant_list_follows_joins_and_bans_commit_by_commit() {
    let (hub_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pair = Pair::new(hub_dir.path(), part_dir.path());
    assert_eq!(listed(&pair), (vec![entry(ALICE, 2), entry(BOB, 2)], 1), "Bob listed by the commit adding him");

    // Bob is banned: his clients are removed and he stays listed, as banned.
    assert!(pair.hub.leave(&pair.room, ALICE, BOB, "ban", TS).unwrap());
    assert_eq!(listed(&pair), (vec![entry(ALICE, 2), entry(BOB, 1)], 2));
    pair.sync();
    assert!(pair.part.encrypt_lpdu(&pair.room, BOB, &mimi(1), TS).is_err(), "Bob's client left the group");

    // Dave, who never joined and has no client, is banned: a commit of the list alone.
    assert!(pair.hub.leave(&pair.room, ALICE, DAVE, "ban", TS).unwrap());
    assert_eq!(listed(&pair), (vec![entry(ALICE, 2), entry(BOB, 1), entry(DAVE, 1)], 3));
    // Nothing owed: banning him again commits nothing.
    assert!(pair.hub.leave(&pair.room, ALICE, DAVE, "ban", TS).unwrap());
    assert_eq!(listed(&pair).1, 3);

    pair.alice_sends(7);
    pair.sync();
    for hub in [&pair.hub, &pair.part] {
        let summary = replay::verify_store(hub.store(), None, &mimi_bridge::event::KeyRing::new(), false).unwrap();
        assert_eq!(summary.rooms, 1);
    }
}
