//! The MLS layer of a log, offline: `log show --decrypt` prints the stored MIMI content, and
//! `log verify` replays every commit against the group's public state, refusing the first that
//! does not apply.

use mimi_bridge::event::UnverifiedPdu;
use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::state::RoomState;
use mimi_bridge::mimi::MimiContent;
use mimi_bridge::mimi::json::content_to_json;
use mimi_bridge::mls::events::{COMMIT, CommitContent, RoomEncryption};
use mimi_bridge::mls::public::{MlsCheckError, PublicView};

use crate::common::*;
use crate::mls_rooms::{CAROL, Pair, mimi};

fn stdout(args: &[&str]) -> String {
    let out = run(args, b"");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn log_show_decrypt_prints_the_stored_mimi_content_and_verify_replays_the_commits() {
    let (hub_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pair = Pair::new(hub_dir.path(), part_dir.path());
    pair.alice_sends(10);
    pair.part_sends(BOB, 11).unwrap();
    pair.sync();

    for dir in [hub_dir.path(), part_dir.path()] {
        let dir = dir.to_str().unwrap();
        let room = pair.room.as_str();
        let lines = stdout(&["log", "show", "--data-dir", dir, "--room", room, "--decrypt", "--json"]);
        let decrypted: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["pdu"]["type"] == "m.room.encrypted")
            .map(|v| v["decrypted"].clone())
            .collect();
        let expected: Vec<_> =
            [10, 11].iter().map(|n| content_to_json(&MimiContent::decode(&mimi(*n)).unwrap())).collect();
        assert_eq!(decrypted, expected, "{dir}");
        let text = stdout(&["log", "show", "--data-dir", dir, "--room", room, "--decrypt"]);
        assert_eq!(text.matches("decrypted: {").count(), 2, "{text}");
        let verify = stdout(&["log", "verify", "--data-dir", dir]);
        assert!(verify.contains("1 MLS commit(s) replayed"), "{verify}");
    }
    // Export → import → verify keeps the MLS layer checkable.
    let export = run(&["log", "export", "--data-dir", hub_dir.path().to_str().unwrap(), "--room", &pair.room], b"");
    assert!(export.status.success());
    let imported = tempfile::tempdir().unwrap();
    let target = imported.path().join("db");
    let out = run(&["log", "import", "--data-dir", target.to_str().unwrap()], &export.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verify = stdout(&["log", "verify", "--data-dir", target.to_str().unwrap()]);
    assert!(verify.contains("1 MLS commit(s) replayed"), "{verify}");
}

/// The room's create group info and commits, in log order, as `log verify` reads them.
/// A commit's sender, event ID, content and the room's state before it.
type Commit = (String, String, CommitContent, RoomState);

/// The room's state before the event at `seq`.
fn state_before(pair: &Pair, seq: u64) -> RoomState {
    let (_, rows) = mimi_bridge::replay::state_at(pair.hub.store(), &pair.room, Some(seq - 1)).unwrap();
    let mut state = RoomState::new();
    for row in rows {
        state.insert(row.event_type.clone(), row.state_key.clone(), row.event.clone());
    }
    state
}

/// The create event's group info and ID, and each commit's sender, event ID, content and the
/// state before it.
fn group_history(pair: &Pair) -> (Vec<u8>, String, Vec<Commit>) {
    let store = pair.hub.store();
    let short = store.short_room(&pair.room).unwrap().unwrap();
    let mut create = None;
    let mut commits = Vec::new();
    for item in store.pdus(short, 0).unwrap() {
        let (seq, bytes) = item.unwrap();
        let pdu = UnverifiedPdu::parse(&bytes).unwrap();
        let event_id = pdu.event_id(&LINEARIZED_02);
        if seq == 0 {
            create = Some((RoomEncryption::from_create(pdu.content()).unwrap().unwrap().group_info, event_id));
        } else if pdu.meta().event_type == COMMIT {
            let content = CommitContent::parse(pdu.content()).unwrap();
            commits.push((pdu.meta().sender.clone(), event_id, content, state_before(pair, seq)));
        }
    }
    let (group_info, create_id) = create.unwrap();
    (group_info, create_id, commits)
}

#[test]
fn a_commit_that_does_not_apply_to_the_public_group_is_refused() {
    let (hub_dir, part_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pair = Pair::new(hub_dir.path(), part_dir.path());
    let invite = template(&pair.room, ALICE, "m.room.member", Some(CAROL), serde_json::json!({"membership": "invite"}));
    pair.hub.submit_local(invite).unwrap().wait().unwrap();
    let join = template(&pair.room, CAROL, "m.room.member", Some(CAROL), serde_json::json!({"membership": "join"}));
    pair.hub.submit_lpdu(part_lpdu(join)).unwrap().wait().unwrap();
    pair.add(CAROL, "CAROLDEV");
    let (group_info, create_id, commits) = group_history(&pair);
    assert_eq!(commits.len(), 2);
    let fresh = || PublicView::for_create(&group_info, &pair.room, ALICE, &create_id).unwrap();

    // In order, both apply and end at the group the last commit describes.
    let mut view = fresh();
    for (sender, event_id, content, state) in &commits {
        let checked = view.check_commit(sender, content, state, None).unwrap();
        view.apply(checked, event_id).unwrap();
    }
    assert_eq!(view.epoch(), 2);
    assert_eq!(view.latest_commit(), commits[1].1);

    // The same commit twice: stale.
    let (sender, event_id, first, state) = &commits[0];
    let mut view = fresh();
    let checked = view.check_commit(sender, first, state, None).unwrap();
    view.apply(checked, event_id).unwrap();
    assert_eq!(
        view.check_commit(sender, first, state, None).unwrap_err(),
        MlsCheckError::StaleEpoch { message: 0, group: 1 }
    );
    // The second before the first: from the future.
    assert_eq!(
        fresh().check_commit(sender, &commits[1].2, state, None).unwrap_err(),
        MlsCheckError::FutureEpoch { message: 1, group: 0 }
    );
    // A commit claiming another group state than the one it produces.
    let lying =
        CommitContent { message: first.message.clone(), public_group_state: commits[1].2.public_group_state.clone() };
    assert_eq!(fresh().check_commit(sender, &lying, state, None).unwrap_err(), MlsCheckError::StateMismatch);
    // A commit by Alice's device presented as another user's.
    assert!(matches!(fresh().check_commit(BOB, first, state, None).unwrap_err(), MlsCheckError::SenderMismatch { .. }));
    // The first commit where the log already had Carol joined: its participant list (Alice
    // and Bob) is not the log's membership.
    let later = &commits[1].3;
    let refused = fresh().check_commit(sender, first, later, None).unwrap_err();
    assert!(
        matches!(&refused, MlsCheckError::ParticipantList { listed, log }
            if !listed.contains("carol") && log.contains("mimi://part.example/u/carol=2")),
        "{refused}"
    );
}
