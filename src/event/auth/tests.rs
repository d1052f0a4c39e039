//! Auth-event selection and the general rules (create, membership of the sender, levels).

use serde_json::json;

use super::test_util::{ALICE, BOB, CAROL, ROOM, Room, VERSION, obj};
use super::{AuthError, AuthInput, check_auth_events, select_auth_events, user_power_level};

fn create_check(sender: &str, state_key: Option<&str>, content: serde_json::Value) -> Result<(), AuthError> {
    let mut room = Room::empty();
    room.send(sender, "m.room.create", state_key, content)
}

#[test]
fn create_at_position_zero_allowed() {
    assert_eq!(create_check(ALICE, Some(""), json!({"room_version": VERSION})), Ok(()));
}

#[test]
fn create_later_rejected() {
    let room = Room::new();
    let err = room.check(ALICE, "m.room.create", Some(""), json!({"room_version": VERSION}));
    assert!(matches!(err, Err(AuthError::CreateNotFirst { position: 2 })));
}

#[test]
fn first_event_must_be_create() {
    let room = Room::empty();
    let err = room.check(ALICE, "m.room.message", None, json!({"body": "hi"}));
    assert!(matches!(err, Err(AuthError::FirstEventNotCreate { .. })));
}

#[test]
fn create_sender_on_other_server_rejected() {
    let err = create_check(BOB, Some(""), json!({"room_version": VERSION}));
    assert!(matches!(err, Err(AuthError::CreateWrongServer { sender, room_server })
        if sender == BOB && room_server == "hub.example"));
}

#[test]
fn create_room_version_missing_or_wrong_rejected() {
    let missing = create_check(ALICE, Some(""), json!({}));
    assert!(matches!(missing, Err(AuthError::WrongRoomVersion { found: None, .. })));
    let wrong = create_check(ALICE, Some(""), json!({"room_version": "10"}));
    assert!(matches!(wrong, Err(AuthError::WrongRoomVersion { expected, found: Some(f) })
        if expected == VERSION && f == "10"));
}

#[test]
fn create_needs_empty_state_key() {
    let err = create_check(ALICE, None, json!({"room_version": VERSION}));
    assert!(matches!(err, Err(AuthError::CreateStateKey { state_key: None })));
    let err = create_check(ALICE, Some("x"), json!({"room_version": VERSION}));
    assert!(matches!(err, Err(AuthError::CreateStateKey { state_key: Some(_) })));
}

#[test]
fn non_create_without_create_in_state_rejected() {
    let mut room = Room::empty();
    room.len = 3;
    let err = room.check(ALICE, "m.room.message", None, json!({}));
    assert!(matches!(err, Err(AuthError::MissingCreate)));
}

#[test]
fn message_from_non_member_rejected() {
    let room = Room::new();
    let err = room.check(BOB, "m.room.message", None, json!({"body": "hi"}));
    assert!(matches!(err, Err(AuthError::NotJoined { ref sender, membership: None }) if sender == BOB));
    assert_eq!(err.unwrap_err().to_string(), "sender @bob:part.example is not joined to the room (membership: none)");
}

#[test]
fn message_from_departed_member_names_membership() {
    let mut room = Room::with_bob("public");
    room.member(BOB, BOB, "leave").unwrap();
    let err = room.check(BOB, "m.room.message", None, json!({})).unwrap_err();
    assert!(matches!(err, AuthError::NotJoined { membership: Some(ref m), .. } if m == "leave"));
    assert_eq!(err.to_string(), "sender @bob:part.example is not joined to the room (membership: leave)");
}

#[test]
fn message_allowed_at_events_default() {
    let mut room = Room::with_bob("public");
    assert_eq!(room.send(BOB, "m.room.message", None, json!({"body": "hi"})), Ok(()));
}

#[test]
fn message_below_events_level_rejected() {
    let mut room = Room::with_bob("public");
    room.levels(json!({"users": {ALICE: 100}, "events": {"m.room.message": 10}})).unwrap();
    let err = room.check(BOB, "m.room.message", None, json!({}));
    assert!(matches!(err, Err(AuthError::InsufficientPower { have: 0, need: 10, .. })));
    assert_eq!(room.send(ALICE, "m.room.message", None, json!({})), Ok(()));
}

#[test]
fn state_event_default_50_with_power_levels() {
    let mut room = Room::with_bob("public");
    room.levels(json!({"users": {ALICE: 100, BOB: 49}})).unwrap();
    let err = room.check(BOB, "m.room.topic", Some(""), json!({"topic": "t"}));
    assert!(matches!(err, Err(AuthError::InsufficientPower { have: 49, need: 50, .. })));
    // A non-state event of the same type only needs events_default.
    assert_eq!(room.check(BOB, "m.room.topic", None, json!({})), Ok(()));
}

#[test]
fn state_event_default_0_without_power_levels() {
    let room = Room::with_bob("public");
    assert_eq!(room.check(BOB, "m.room.topic", Some(""), json!({"topic": "t"})), Ok(()));
}

#[test]
fn at_state_key_must_be_sender() {
    let room = Room::with_bob("public");
    let err = room.check(BOB, "org.example.status", Some(ALICE), json!({}));
    assert!(matches!(err, Err(AuthError::StateKeyNotSender { ref state_key, .. }) if state_key == ALICE));
    assert_eq!(room.check(BOB, "org.example.status", Some(BOB), json!({})), Ok(()));
    assert_eq!(room.check(BOB, "org.example.status", Some("x"), json!({})), Ok(()));
}

#[test]
fn user_power_level_defaults() {
    let mut room = Room::with_bob("public");
    assert_eq!(user_power_level(&room.state, ALICE), 100);
    assert_eq!(user_power_level(&room.state, BOB), 0);
    room.levels(json!({"users": {ALICE: 100}, "users_default": 7})).unwrap();
    assert_eq!(user_power_level(&room.state, ALICE), 100);
    assert_eq!(user_power_level(&room.state, BOB), 7);
    assert_eq!(user_power_level(&Room::empty().state, ALICE), 0);
}

fn member_input<'a>(
    room: &Room,
    sender: &'a str,
    target: &'a str,
    content: &'a ruma::CanonicalJsonObject,
) -> AuthInput<'a> {
    AuthInput {
        room_id: ROOM,
        event_type: "m.room.member",
        state_key: Some(target),
        sender,
        content,
        position: room.len,
    }
}

/// Alice (creator, joined), join rules, power levels, Bob invited.
fn selection_room() -> Room {
    let mut room = Room::new();
    room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "invite"})).unwrap();
    room.levels(json!({"users": {ALICE: 100}})).unwrap();
    room.member(ALICE, BOB, "invite").unwrap();
    room
}

#[test]
fn selection_order_for_join() {
    let room = selection_room();
    let content = obj(json!({"membership": "join"}));
    let ev = member_input(&room, BOB, BOB, &content);
    let ids = select_auth_events(&ev, &room.state);
    let expected = [
        room.id("m.room.create", ""),
        room.id("m.room.power_levels", ""),
        room.id("m.room.member", BOB),
        room.id("m.room.join_rules", ""),
    ];
    assert_eq!(ids, expected);
    assert_eq!(check_auth_events(&ev, &ids, &room.state), Ok(()));
}

#[test]
fn selection_for_kick_lists_target_without_join_rules() {
    let room = selection_room();
    let content = obj(json!({"membership": "leave"}));
    let ev = member_input(&room, ALICE, BOB, &content);
    let ids = select_auth_events(&ev, &room.state);
    let expected = [
        room.id("m.room.create", ""),
        room.id("m.room.power_levels", ""),
        room.id("m.room.member", ALICE),
        room.id("m.room.member", BOB),
    ];
    assert_eq!(ids, expected);
    // Carol has no member event: nothing listed for her.
    let ev = member_input(&room, ALICE, CAROL, &content);
    assert_eq!(select_auth_events(&ev, &room.state).len(), 3);
}

#[test]
fn selection_dedupes_and_create_has_none() {
    let mut room = selection_room();
    // A corrupt state where two slots hold the same event: listed once.
    room.force(ALICE, "m.room.power_levels", Some(""), json!({}));
    let pl = room.state.get("m.room.power_levels", "").unwrap().clone();
    room.state.insert("m.room.member".into(), ALICE.into(), pl);
    let content = obj(json!({}));
    let ev = AuthInput { event_type: "m.room.message", state_key: None, ..member_input(&room, ALICE, ALICE, &content) };
    let ids = select_auth_events(&ev, &room.state);
    assert_eq!(ids, [room.id("m.room.create", ""), room.id("m.room.power_levels", "")]);
    let create = AuthInput { event_type: "m.room.create", position: 0, ..ev };
    assert!(select_auth_events(&create, &room.state).is_empty());
    assert_eq!(check_auth_events(&create, &[], &room.state), Ok(()));
    let err = check_auth_events(&create, &ids, &room.state);
    assert!(matches!(err, Err(AuthError::CreateHasAuthEvents { count: 2 })));
}

#[test]
fn check_accepts_subset_with_create() {
    let room = selection_room();
    let content = obj(json!({"membership": "join"}));
    let ev = member_input(&room, BOB, BOB, &content);
    let listed = [room.id("m.room.member", BOB), room.id("m.room.create", "")];
    assert_eq!(check_auth_events(&ev, &listed, &room.state), Ok(()));
}

#[test]
fn check_rejects_missing_create() {
    let room = selection_room();
    let content = obj(json!({"membership": "join"}));
    let ev = member_input(&room, BOB, BOB, &content);
    let listed = [room.id("m.room.power_levels", "")];
    assert!(matches!(check_auth_events(&ev, &listed, &room.state), Err(AuthError::CreateNotListed)));
    let err = check_auth_events(&ev, &listed, &Room::empty().state);
    assert!(matches!(err, Err(AuthError::MissingCreate)));
}

#[test]
fn check_rejects_duplicate() {
    let room = selection_room();
    let content = obj(json!({"membership": "join"}));
    let ev = member_input(&room, BOB, BOB, &content);
    let create = room.id("m.room.create", "");
    let err = check_auth_events(&ev, &[create.clone(), create.clone()], &room.state);
    assert!(matches!(err, Err(AuthError::DuplicateAuthEvent { event_id }) if event_id == create));
}

#[test]
fn check_rejects_unexpected_slot() {
    let room = selection_room();
    // A message may not cite join rules, nor a leave someone else's membership.
    let content = obj(json!({}));
    let ev = AuthInput { event_type: "m.room.message", state_key: None, ..member_input(&room, ALICE, ALICE, &content) };
    let listed = [room.id("m.room.create", ""), room.id("m.room.join_rules", "")];
    let err = check_auth_events(&ev, &listed, &room.state);
    assert!(
        matches!(err, Err(AuthError::UnexpectedAuthEvent { ref event_type, .. }) if event_type == "m.room.join_rules")
    );
    let listed = [room.id("m.room.create", ""), room.id("m.room.member", BOB)];
    let err = check_auth_events(&ev, &listed, &room.state);
    assert!(matches!(err, Err(AuthError::UnexpectedAuthEvent { ref state_key, .. }) if state_key == BOB));
    let leave = obj(json!({"membership": "leave"}));
    let ev = member_input(&room, BOB, BOB, &leave);
    let listed = [room.id("m.room.create", ""), room.id("m.room.join_rules", "")];
    assert!(matches!(check_auth_events(&ev, &listed, &room.state), Err(AuthError::UnexpectedAuthEvent { .. })));
}

#[test]
fn check_rejects_stale_event() {
    let mut room = selection_room();
    let old_levels = room.id("m.room.power_levels", "");
    room.levels(json!({"users": {ALICE: 100}, "ban": 60})).unwrap();
    let content = obj(json!({"membership": "join"}));
    let ev = member_input(&room, BOB, BOB, &content);
    let listed = [room.id("m.room.create", ""), old_levels.clone()];
    let err = check_auth_events(&ev, &listed, &room.state);
    assert!(matches!(err, Err(AuthError::StaleAuthEvent { event_id }) if event_id == old_levels));
    let unknown = [room.id("m.room.create", ""), "$nope".to_owned()];
    assert!(matches!(check_auth_events(&ev, &unknown, &room.state), Err(AuthError::StaleAuthEvent { .. })));
}
