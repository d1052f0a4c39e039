//! Membership rules (`m.room.member`, rule 5 of the digest's §7.2).
//!
//! Membership is what every other rule keys on ("is the sender joined?") and what the hub's fan-out
//! follows, so each transition is checked against the *target's* current membership as well as the
//! sender's power: you cannot act on someone at or above your own level, and the join rule (absent
//! means "invite", as Synapse and eigen-server treat it) decides who may enter uninvited.

use super::power::Levels;
use super::{AuthError, AuthInput, content_str};
use crate::event::state::RoomState;

/// Rule 5 for an `m.room.member` event.
pub(super) fn check(ev: &AuthInput<'_>, state: &RoomState, levels: &Levels<'_>) -> Result<(), AuthError> {
    let Some(target) = ev.state_key else {
        return Err(AuthError::MissingStateKey { event_type: ev.event_type.to_owned(), sender: ev.sender.to_owned() });
    };
    let Some(membership) = content_str(ev.content, "membership") else {
        return Err(AuthError::MissingMembership { target: target.to_owned() });
    };
    let change = Change { ev, target, state, levels };
    match membership {
        "join" => change.join(),
        "invite" => change.invite(),
        "leave" => change.leave(),
        "ban" => change.ban(),
        "knock" => change.knock(),
        other => Err(AuthError::UnknownMembership { target: target.to_owned(), membership: other.to_owned() }),
    }
}

struct Change<'a> {
    ev: &'a AuthInput<'a>,
    target: &'a str,
    state: &'a RoomState,
    levels: &'a Levels<'a>,
}

impl Change<'_> {
    fn join(&self) -> Result<(), AuthError> {
        let sender = self.ev.sender;
        // The creator's own join right after the create event bootstraps the room.
        if self.ev.position == 1 && sender == self.target && self.state.create().is_some_and(|c| c.sender == sender) {
            return Ok(());
        }
        self.require_self()?;
        let current = self.state.membership(sender);
        if current == Some("ban") {
            return Err(AuthError::Banned { user: sender.to_owned() });
        }
        let rule = join_rule(self.state);
        let allowed = match rule.as_str() {
            "invite" | "knock" => matches!(current, Some("invite" | "join")),
            "public" => true,
            _ => false,
        };
        if allowed { Ok(()) } else { Err(self.join_rule_forbids(rule, "join")) }
    }

    fn invite(&self) -> Result<(), AuthError> {
        self.require_sender_joined()?;
        match self.state.membership(self.target) {
            Some("ban") => {
                return Err(AuthError::Banned { user: self.target.to_owned() });
            }
            Some("join") => return Err(self.conflict("invite")),
            _ => {}
        }
        self.require_level(self.levels.invite(), "invite")
    }

    fn leave(&self) -> Result<(), AuthError> {
        let current = self.state.membership(self.target);
        if self.ev.sender == self.target {
            return if matches!(current, Some("invite" | "join" | "knock")) {
                Ok(())
            } else {
                Err(self.conflict("leave"))
            };
        }
        self.require_sender_joined()?;
        let verb = if current == Some("ban") {
            self.require_level(self.levels.ban(), "unban")?;
            "unban"
        } else {
            "kick"
        };
        self.require_level(self.levels.kick(), verb)?;
        self.require_target_below(verb)
    }

    fn ban(&self) -> Result<(), AuthError> {
        self.require_sender_joined()?;
        self.require_level(self.levels.ban(), "ban")?;
        self.require_target_below("ban")
    }

    fn knock(&self) -> Result<(), AuthError> {
        let rule = join_rule(self.state);
        if rule != "knock" {
            return Err(self.join_rule_forbids(rule, "knock"));
        }
        self.require_self()?;
        match self.state.membership(self.target) {
            Some("ban") => Err(AuthError::Banned { user: self.target.to_owned() }),
            Some("invite" | "join") => Err(self.conflict("knock")),
            _ => Ok(()),
        }
    }

    fn require_self(&self) -> Result<(), AuthError> {
        if self.ev.sender == self.target {
            Ok(())
        } else {
            Err(AuthError::StateKeyNotSender {
                event_type: self.ev.event_type.to_owned(),
                sender: self.ev.sender.to_owned(),
                state_key: self.target.to_owned(),
            })
        }
    }

    fn require_sender_joined(&self) -> Result<(), AuthError> {
        match self.state.membership(self.ev.sender) {
            Some("join") => Ok(()),
            other => {
                Err(AuthError::NotJoined { sender: self.ev.sender.to_owned(), membership: other.map(str::to_owned) })
            }
        }
    }

    fn require_level(&self, need: i64, verb: &str) -> Result<(), AuthError> {
        let have = self.levels.user(self.ev.sender);
        if have >= need {
            Ok(())
        } else {
            Err(AuthError::InsufficientPower {
                sender: self.ev.sender.to_owned(),
                have,
                need,
                action: format!("{verb} {}", self.target),
            })
        }
    }

    fn require_target_below(&self, action: &'static str) -> Result<(), AuthError> {
        let sender_level = self.levels.user(self.ev.sender);
        let target_level = self.levels.user(self.target);
        if target_level < sender_level {
            Ok(())
        } else {
            Err(AuthError::TargetPowerTooHigh {
                sender: self.ev.sender.to_owned(),
                sender_level,
                target: self.target.to_owned(),
                target_level,
                action,
            })
        }
    }

    fn conflict(&self, to: &str) -> AuthError {
        AuthError::MembershipConflict {
            target: self.target.to_owned(),
            from: self.state.membership(self.target).map(str::to_owned),
            to: to.to_owned(),
        }
    }

    fn join_rule_forbids(&self, join_rule: String, action: &'static str) -> AuthError {
        AuthError::JoinRuleForbids {
            sender: self.ev.sender.to_owned(),
            join_rule,
            action,
            membership: self.state.membership(self.ev.sender).map(str::to_owned),
        }
    }
}

/// The current join rule: `content.join_rule` of `m.room.join_rules`, "invite" when there is no such
/// event or field. A non-string value is returned as its canonical JSON, which matches no rule.
fn join_rule(state: &RoomState) -> String {
    match state.get("m.room.join_rules", "").and_then(|e| e.content.get("join_rule")) {
        None => "invite".to_owned(),
        Some(ruma::CanonicalJsonValue::String(rule)) => rule.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::AuthError;
    use super::super::test_util::{ALICE, BOB, CAROL, Room, VERSION};

    #[test]
    fn creator_join_at_position_one() {
        let mut room = Room::empty();
        room.send(ALICE, "m.room.create", Some(""), json!({"room_version": VERSION})).unwrap();
        assert_eq!(room.len, 1);
        assert_eq!(room.member(ALICE, ALICE, "join"), Ok(()));
    }

    #[test]
    fn non_creator_join_at_position_one_rejected() {
        let mut room = Room::empty();
        room.send(ALICE, "m.room.create", Some(""), json!({"room_version": VERSION})).unwrap();
        let err = room.member(BOB, BOB, "join");
        assert!(matches!(err, Err(AuthError::JoinRuleForbids { ref join_rule, .. }) if join_rule == "invite"));
    }

    #[test]
    fn creator_rejoin_later_follows_join_rule() {
        let mut room = Room::new();
        room.member(ALICE, ALICE, "leave").unwrap();
        let err = room.member(ALICE, ALICE, "join");
        assert!(matches!(err, Err(AuthError::JoinRuleForbids { membership: Some(ref m), .. }) if m == "leave"));
    }

    #[test]
    fn join_to_invite_room_without_invite_rejected() {
        let mut room = Room::new();
        room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "invite"})).unwrap();
        let err = room.member(BOB, BOB, "join");
        assert!(matches!(err, Err(AuthError::JoinRuleForbids { membership: None, action: "join", .. })));
    }

    #[test]
    fn join_without_join_rules_event_is_invite_only() {
        let mut room = Room::new();
        assert!(matches!(room.member(BOB, BOB, "join"), Err(AuthError::JoinRuleForbids { .. })));
        room.member(ALICE, BOB, "invite").unwrap();
        assert_eq!(room.member(BOB, BOB, "join"), Ok(()));
    }

    #[test]
    fn join_after_invite_allowed() {
        let room = Room::with_bob("invite");
        assert_eq!(room.state.membership(BOB), Some("join"));
    }

    #[test]
    fn public_join_allowed() {
        let room = Room::with_bob("public");
        assert_eq!(room.state.membership(BOB), Some("join"));
    }

    #[test]
    fn restricted_or_unknown_join_rule_rejects_join() {
        for rule in [json!("restricted"), json!("private"), json!(3)] {
            let mut room = Room::new();
            room.force(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": rule}));
            let err = room.member(BOB, BOB, "join");
            assert!(matches!(err, Err(AuthError::JoinRuleForbids { .. })), "{rule}");
        }
    }

    #[test]
    fn banned_join_rejected() {
        let mut room = Room::with_bob("public");
        room.member(ALICE, BOB, "ban").unwrap();
        let err = room.member(BOB, BOB, "join");
        assert!(matches!(err, Err(AuthError::Banned { ref user }) if user == BOB));
    }

    #[test]
    fn join_for_someone_else_rejected() {
        let mut room = Room::with_bob("public");
        let err = room.member(BOB, CAROL, "join");
        assert!(matches!(err, Err(AuthError::StateKeyNotSender { ref sender, .. }) if sender == BOB));
    }

    #[test]
    fn invite_by_non_member_rejected() {
        let mut room = Room::new();
        let err = room.member(BOB, CAROL, "invite");
        assert!(matches!(err, Err(AuthError::NotJoined { ref sender, .. }) if sender == BOB));
    }

    #[test]
    fn invite_of_banned_or_joined_user_rejected() {
        let mut room = Room::with_bob("public");
        let err = room.member(ALICE, BOB, "invite");
        assert!(matches!(err, Err(AuthError::MembershipConflict { from: Some(ref f), .. }) if f == "join"));
        room.member(ALICE, BOB, "ban").unwrap();
        let err = room.member(ALICE, BOB, "invite");
        assert!(matches!(err, Err(AuthError::Banned { ref user }) if user == BOB));
    }

    #[test]
    fn invite_needs_invite_level() {
        let mut room = Room::with_bob("public");
        room.levels(json!({"users": {ALICE: 100}, "invite": 10})).unwrap();
        let err = room.member(BOB, CAROL, "invite");
        assert!(matches!(err, Err(AuthError::InsufficientPower { have: 0, need: 10, .. })));
        assert_eq!(room.member(ALICE, CAROL, "invite"), Ok(()));
    }

    #[test]
    fn kick_with_equal_level_rejected() {
        let mut room = Room::with_bob("public");
        room.member(CAROL, CAROL, "join").unwrap();
        room.levels(json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}})).unwrap();
        let err = room.member(BOB, CAROL, "leave");
        assert!(matches!(
            err,
            Err(AuthError::TargetPowerTooHigh { sender_level: 50, target_level: 50, action: "kick", .. })
        ));
    }

    #[test]
    fn kick_with_higher_level_allowed() {
        let mut room = Room::with_bob("public");
        room.member(CAROL, CAROL, "join").unwrap();
        room.levels(json!({"users": {ALICE: 100, BOB: 50, CAROL: 10}})).unwrap();
        assert_eq!(room.member(BOB, CAROL, "leave"), Ok(()));
        assert_eq!(room.state.membership(CAROL), Some("leave"));
    }

    #[test]
    fn kick_below_kick_level_rejected() {
        let mut room = Room::with_bob("public");
        room.member(CAROL, CAROL, "join").unwrap();
        room.levels(json!({"users": {ALICE: 100, BOB: 40}})).unwrap();
        let err = room.member(BOB, CAROL, "leave");
        assert!(matches!(err, Err(AuthError::InsufficientPower { have: 40, need: 50, .. })));
    }

    #[test]
    fn unban_needs_ban_level() {
        let mut room = Room::with_bob("public");
        room.levels(json!({"users": {ALICE: 100, BOB: 50}, "ban": 60})).unwrap();
        room.member(ALICE, CAROL, "ban").unwrap();
        let err = room.member(BOB, CAROL, "leave");
        assert!(matches!(err, Err(AuthError::InsufficientPower { need: 60, ref action, .. })
            if action.starts_with("unban")));
        assert_eq!(room.member(ALICE, CAROL, "leave"), Ok(()));
        assert_eq!(room.member(CAROL, CAROL, "join"), Ok(()));
    }

    #[test]
    fn ban_rules() {
        let mut room = Room::with_bob("public");
        room.levels(json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}})).unwrap();
        let err = room.member(CAROL, BOB, "ban");
        assert!(matches!(err, Err(AuthError::NotJoined { .. })));
        room.member(CAROL, CAROL, "join").unwrap();
        let err = room.member(CAROL, BOB, "ban");
        assert!(matches!(err, Err(AuthError::TargetPowerTooHigh { action: "ban", .. })));
        room.levels(json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 51})).unwrap();
        let err = room.member(CAROL, "@dave:x", "ban");
        assert!(matches!(err, Err(AuthError::InsufficientPower { need: 51, .. })));
        assert_eq!(room.member(ALICE, BOB, "ban"), Ok(()));
        assert_eq!(room.state.membership(BOB), Some("ban"));
    }

    #[test]
    fn self_leave_only_from_invite_join_or_knock() {
        let mut room = Room::with_bob("public");
        assert_eq!(room.member(BOB, BOB, "leave"), Ok(()));
        let err = room.member(BOB, BOB, "leave");
        assert!(matches!(err, Err(AuthError::MembershipConflict { from: Some(ref f), .. }) if f == "leave"));
        room.member(ALICE, CAROL, "invite").unwrap();
        assert_eq!(room.member(CAROL, CAROL, "leave"), Ok(()));
        room.member(ALICE, CAROL, "ban").unwrap();
        assert!(matches!(room.member(CAROL, CAROL, "leave"), Err(AuthError::MembershipConflict { .. })));
    }

    #[test]
    fn knock_on_knock_room() {
        let mut room = Room::new();
        room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "knock"})).unwrap();
        assert_eq!(room.member(BOB, BOB, "knock"), Ok(()));
        let err = room.member(BOB, BOB, "join");
        assert!(matches!(err, Err(AuthError::JoinRuleForbids { membership: Some(ref m), .. }) if m == "knock"));
        assert_eq!(room.member(BOB, BOB, "leave"), Ok(()));
        room.member(ALICE, BOB, "invite").unwrap();
        let err = room.member(BOB, BOB, "knock");
        assert!(matches!(err, Err(AuthError::MembershipConflict { .. })));
        assert_eq!(room.member(BOB, BOB, "join"), Ok(()));
        let err = room.member(CAROL, BOB, "knock");
        assert!(matches!(err, Err(AuthError::StateKeyNotSender { .. })));
        room.member(ALICE, CAROL, "ban").unwrap();
        assert!(matches!(room.member(CAROL, CAROL, "knock"), Err(AuthError::Banned { .. })));
    }

    #[test]
    fn knock_on_invite_room_rejected() {
        let mut room = Room::new();
        room.send(ALICE, "m.room.join_rules", Some(""), json!({"join_rule": "invite"})).unwrap();
        let err = room.member(BOB, BOB, "knock");
        assert!(matches!(err, Err(AuthError::JoinRuleForbids { action: "knock", .. })));
    }

    #[test]
    fn malformed_member_events_rejected() {
        let mut room = Room::new();
        let err = room.member(ALICE, BOB, "poke");
        assert!(matches!(err, Err(AuthError::UnknownMembership { ref membership, .. }) if membership == "poke"));
        let err = room.send(ALICE, "m.room.member", Some(BOB), json!({"membership": 1}));
        assert!(matches!(err, Err(AuthError::MissingMembership { .. })));
        let err = room.send(ALICE, "m.room.member", None, json!({"membership": "join"}));
        assert!(matches!(err, Err(AuthError::MissingStateKey { .. })));
    }
}
