//! Matrix ⇄ MIMI translation (specs/mimi-mls.md §9.2) of relations between messages, both ways:
//! replies, edits, reactions and unlikes, deletes, threads, and the drops when a target is
//! unknown or the relation has no equivalent. Every MIMI message produced is encoded, decoded back
//! and given its -08 message ID.

use mimi_bridge::mimi::{Disposition, NestedPart, Part, PartSemantics};
use mimi_bridge::translate::{DropReason, MatrixOut, MemoryIdMap, Outcome, to_matrix, to_mimi};
use serde_json::json;

use crate::translate_support::{
    ALICE, BOB, checked, choose_one, ctx, dropped, event, html, message, one_event, send, single, text,
};

#[test]
fn replies_map_to_in_reply_to_without_fallbacks() {
    let mut ids = MemoryIdMap::new();
    let original = send(&mut ids, "$orig", &event("m.room.message", BOB, text("original")));
    let orig_id = checked(&original);
    let mut reply = html(
        "> <@bob:hs.example> original\n\nreply **text**",
        "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r/$orig\">In reply to</a> original</blockquote></mx-reply>reply <b>text</b>",
    );
    reply["m.relates_to"] = json!({"m.in_reply_to": {"event_id": "$orig"}});
    let m = message(to_mimi(&event("m.room.message", ALICE, reply), &ctx(), &ids).unwrap());
    assert_eq!(m.in_reply_to, Some(orig_id));
    let parts = choose_one(&m.body);
    assert_eq!([parts[0].1, parts[1].1, parts[2].1], ["reply **text**", "reply <b>text</b>", "reply **text**"]);
    let (_, _, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!(c["m.relates_to"], json!({"m.in_reply_to": {"event_id": "$orig"}}));
    assert_eq!((c["body"].as_str(), c["formatted_body"].as_str()), (Some("reply **text**"), Some("reply <b>text</b>")));

    // A reply to an event the bridge never saw keeps its text and loses only the relation.
    let mut orphan = text("> <@x:hs.example> ?\n\nhuh");
    orphan["m.relates_to"] = json!({"m.in_reply_to": {"event_id": "$unknown"}});
    let out = to_mimi(&event("m.room.message", ALICE, orphan), &ctx(), &ids).unwrap();
    assert_eq!(dropped(&out), [DropReason::UnknownTarget]);
    let Outcome::Message(m) = &out[0] else { panic!("{out:?}") };
    assert_eq!((m.in_reply_to, single(&m.body).1), (None, "huh"));
}

#[test]
fn edits_point_at_the_original_both_ways() {
    let mut ids = MemoryIdMap::new();
    let first = send(&mut ids, "$first", &event("m.room.message", BOB, text("first")));
    let mut reply = text("teh reply");
    reply["m.relates_to"] = json!({"m.in_reply_to": {"event_id": "$first"}});
    let original = send(&mut ids, "$orig", &event("m.room.message", ALICE, reply));
    let edit = json!({"msgtype": "m.text", "body": "* the reply", "m.new_content": text("the reply"),
                      "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}});
    let m = send(&mut ids, "$edit", &event("m.room.message", ALICE, edit));
    assert_eq!(m.replaces, Some(checked(&original)));
    assert_eq!(m.in_reply_to, Some(checked(&first)), "an edit keeps the original's inReplyTo");
    assert_eq!(single(&m.body).1, "the reply", "the `* ` fallback is ignored");
    let (sender, _, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!(sender, ALICE);
    assert_eq!(c["m.relates_to"], json!({"rel_type": "m.replace", "event_id": "$orig"}));
    assert_eq!(
        (c["m.new_content"]["body"].as_str(), c["m.new_content"]["msgtype"].as_str()),
        (Some("the reply"), Some("m.text"))
    );
    assert_eq!(c["body"], "* the reply");

    // Edit of an edit: invalid in Matrix, inexpressible in MIMI.
    let again = json!({"msgtype": "m.text", "body": "* x", "m.new_content": text("x"),
                       "m.relates_to": {"rel_type": "m.replace", "event_id": "$edit"}});
    assert_eq!(
        to_mimi(&event("m.room.message", ALICE, again), &ctx(), &ids).unwrap(),
        [Outcome::Dropped(DropReason::EditOfEdit)]
    );
    let mut mimi_again = m.clone();
    mimi_again.replaces = Some(checked(&m));
    assert_eq!(to_matrix(&mimi_again, &ids).unwrap(), [MatrixOut::Dropped(DropReason::EditOfEdit)]);
    // Someone else's edit.
    let foreign = json!({"msgtype": "m.text", "body": "* y", "m.new_content": text("y"),
                         "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}});
    assert_eq!(
        to_mimi(&event("m.room.message", BOB, foreign), &ctx(), &ids).unwrap(),
        [Outcome::Dropped(DropReason::ForeignEdit)]
    );
}

#[test]
fn reactions_and_unlikes() {
    let mut ids = MemoryIdMap::new();
    let original = send(&mut ids, "$orig", &event("m.room.message", ALICE, text("ship it")));
    let react = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$orig", "key": "👍"}});
    let m = send(&mut ids, "$react", &event("m.reaction", BOB, react));
    assert_eq!(m.in_reply_to, Some(checked(&original)));
    assert_eq!((m.body.disposition, single(&m.body)), (Disposition::REACTION, ("text/plain;charset=utf-8", "👍")));
    let (sender, kind, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!((sender.as_str(), kind.as_str()), (BOB, "m.reaction"));
    assert_eq!(c["m.relates_to"], json!({"rel_type": "m.annotation", "event_id": "$orig", "key": "👍"}));

    // Unlike = redaction of one's own reaction.
    let redaction = json!({"type": "m.room.redaction", "sender": BOB, "redacts": "$react", "content": {}});
    let unlike = message(to_mimi(&redaction, &ctx(), &ids).unwrap());
    assert_eq!((unlike.replaces, unlike.in_reply_to), (Some(checked(&m)), Some(checked(&original))));
    assert_eq!((unlike.body.disposition, &unlike.body.part), (Disposition::REACTION, &Part::Null));
    assert_eq!(
        to_matrix(&unlike, &ids).unwrap(),
        [MatrixOut::Redaction { sender: BOB.into(), redacts: "$react".into() }]
    );

    // Several reactions in one processAll → one m.reaction each.
    let mut multi = m.clone();
    let heart = NestedPart {
        disposition: Disposition::REACTION,
        language: String::new(),
        part: Part::Single { content_type: "text/plain;charset=utf-8".into(), content: "❤".as_bytes().to_vec() },
    };
    let party = NestedPart {
        part: Part::Single { content_type: "text/plain;charset=utf-8".into(), content: "🥳".as_bytes().to_vec() },
        ..heart.clone()
    };
    multi.body = NestedPart {
        disposition: Disposition::REACTION,
        language: String::new(),
        part: Part::Multi { semantics: PartSemantics::ProcessAll, parts: vec![heart, party] },
    };
    let keys: Vec<String> = to_matrix(&multi, &ids)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            MatrixOut::Event { event_type, content, .. } if event_type == "m.reaction" => {
                content["m.relates_to"]["key"].as_str().unwrap().to_owned()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["❤", "🥳"]);

    // Unknown targets drop the reaction whole.
    let stray = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$nope", "key": "x"}});
    assert_eq!(
        to_mimi(&event("m.reaction", BOB, stray), &ctx(), &ids).unwrap(),
        [Outcome::Dropped(DropReason::UnknownTarget)]
    );
}

#[test]
fn redactions_of_own_messages_are_deletes() {
    let mut ids = MemoryIdMap::new();
    let original = send(&mut ids, "$orig", &event("m.room.message", ALICE, text("oops")));
    let edit = json!({"msgtype": "m.text", "body": "* oops!", "m.new_content": text("oops!"),
                      "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}});
    send(&mut ids, "$edit", &event("m.room.message", ALICE, edit));
    let redact = |sender: &str, target: &str, reason: Option<&str>| {
        let content = reason.map_or(json!({}), |r| json!({"reason": r}));
        to_mimi(
            &json!({"type": "m.room.redaction", "sender": sender, "redacts": target, "content": content}),
            &ctx(),
            &ids,
        )
        .unwrap()
    };
    let delete = message(redact(ALICE, "$orig", None));
    assert_eq!(delete.replaces, Some(checked(&original)), "replaces the first version");
    assert_eq!((delete.body.disposition, &delete.body.part), (Disposition::RENDER, &Part::Null));
    assert_eq!(
        to_matrix(&delete, &ids).unwrap(),
        [MatrixOut::Redaction { sender: ALICE.into(), redacts: "$orig".into() }]
    );
    assert_eq!(dropped(&redact(ALICE, "$orig", Some("typo"))), [DropReason::RedactionReason]);
    assert_eq!(redact(BOB, "$orig", None), [Outcome::Dropped(DropReason::ModeratorRedaction)]);
    assert_eq!(redact(ALICE, "$edit", None), [Outcome::Dropped(DropReason::RedactedEdit)]);
    assert_eq!(redact(ALICE, "$gone", None), [Outcome::Dropped(DropReason::UnknownTarget)]);
    // Room version 11 puts `redacts` in the content.
    let v11 = json!({"type": "m.room.redaction", "sender": ALICE, "content": {"redacts": "$orig"}});
    assert_eq!(message(to_mimi(&v11, &ctx(), &ids).unwrap()).replaces, Some(checked(&original)));
}

#[test]
fn threads_are_topics_named_by_the_root() {
    let mut ids = MemoryIdMap::new();
    let root = send(&mut ids, "$root", &event("m.room.message", ALICE, text("thread root")));
    assert!(root.topic_id.is_empty(), "a root is an ordinary message");
    let root_id = checked(&root);
    let mut in_thread = text("first in thread");
    in_thread["m.relates_to"] = json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$root"}});
    let m = send(&mut ids, "$t1", &event("m.room.message", BOB, in_thread));
    assert_eq!((m.topic_id.as_slice(), m.in_reply_to), (root_id.0.as_slice(), None));
    let (_, _, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!(
        c["m.relates_to"],
        json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$root"}})
    );

    let mut reply = text("replying in thread");
    reply["m.relates_to"] = json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": false, "m.in_reply_to": {"event_id": "$t1"}});
    let r = message(to_mimi(&event("m.room.message", ALICE, reply), &ctx(), &ids).unwrap());
    assert_eq!((r.topic_id.as_slice(), r.in_reply_to), (root_id.0.as_slice(), Some(checked(&m))));
    let (_, _, c) = one_event(to_matrix(&r, &ids).unwrap());
    assert_eq!(
        c["m.relates_to"],
        json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": false, "m.in_reply_to": {"event_id": "$t1"}})
    );

    let mut lost = text("?");
    lost["m.relates_to"] = json!({"rel_type": "m.thread", "event_id": "$unknown"});
    assert_eq!(
        dropped(&to_mimi(&event("m.room.message", ALICE, lost), &ctx(), &ids).unwrap()),
        [DropReason::UnknownThread]
    );
    let mut stray = r.clone();
    stray.topic_id = vec![1; 32];
    stray.in_reply_to = None;
    let out = to_matrix(&stray, &ids).unwrap();
    assert!(matches!(&out[0], MatrixOut::Event { content, .. } if content.get("m.relates_to").is_none()), "{out:?}");
    assert_eq!(out[1], MatrixOut::Dropped(DropReason::UnknownThread));
}
