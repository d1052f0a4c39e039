//! Matrix ⇄ MIMI translation (specs/mimi-mls.md §9.2): every mapping row both ways, asserting the
//! fields that carry meaning, plus the deliberate drops. Every MIMI message produced is encoded,
//! decoded back and given its -08 message ID.

use mimi_bridge::mimi::status::{Status, StatusReport};
use mimi_bridge::mimi::{
    Disposition, ExtensionKey, ExternalPart, MessageId, MimiContent, NestedPart, Part, PartSemantics,
};
use mimi_bridge::translate::media::{decrypt_from_mimi, encrypt_for_mimi};
use mimi_bridge::translate::receipts::{read_receipt_to_status, status_to_read_receipts};
use mimi_bridge::translate::{
    DropReason, IdMap, MatrixOut, MemoryIdMap, OutboundContext, Outcome, Salt, encode_with_id, to_matrix, to_mimi,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ROOM: &str = "mimi://hs.example/r/portal";
const ALICE: &str = "@alice:hs.example";
const BOB: &str = "@bob:hs.example";

fn ctx() -> OutboundContext {
    OutboundContext { room_uri: ROOM.into(), salt: Salt::Fixed([7; 16]) }
}

fn event(kind: &str, sender: &str, content: Value) -> Value {
    let mut ev = json!({"type": kind, "sender": sender, "event_id": "$new", "room_id": "!portal:hs.example"});
    ev["content"] = content;
    ev
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

fn html(body: &str, formatted: &str) -> Value {
    json!({"msgtype": "m.text", "body": body, "format": "org.matrix.custom.html", "formatted_body": formatted})
}

/// Encodes, decodes and hashes `content`, as the bridge does before sending.
fn checked(content: &MimiContent) -> MessageId {
    let (bytes, id) = encode_with_id(content).unwrap();
    assert_eq!(&MimiContent::decode(&bytes).unwrap(), content);
    id
}

/// The single message an event gives (no drops).
fn message(outcomes: Vec<Outcome>) -> MimiContent {
    match <[Outcome; 1]>::try_from(outcomes) {
        Ok([Outcome::Message(m)]) => {
            checked(&m);
            *m
        }
        other => panic!("expected one message, got {other:?}"),
    }
}

/// Sends `ev` through `to_mimi` and records the result as Matrix event `event_id`.
fn send(ids: &mut MemoryIdMap, event_id: &str, ev: &Value) -> MimiContent {
    let m = message(to_mimi(ev, &ctx(), ids).unwrap());
    ids.record(event_id, ev["sender"].as_str().unwrap(), &m).unwrap();
    m
}

fn dropped(outcomes: &[Outcome]) -> Vec<DropReason> {
    outcomes.iter().filter_map(|o| if let Outcome::Dropped(r) = o { Some(r.clone()) } else { None }).collect()
}

/// The single event `to_matrix` gives: (sender, type, content).
fn one_event(out: Vec<MatrixOut>) -> (String, String, Value) {
    match <[MatrixOut; 1]>::try_from(out) {
        Ok([MatrixOut::Event { sender, event_type, content }]) => (sender, event_type, content),
        other => panic!("expected one event, got {other:?}"),
    }
}

fn single(part: &NestedPart) -> (&str, &str) {
    match &part.part {
        Part::Single { content_type, content } => (content_type.as_str(), std::str::from_utf8(content).unwrap()),
        other => panic!("expected a SinglePart, got {other:?}"),
    }
}

fn choose_one(part: &NestedPart) -> Vec<(&str, &str)> {
    match &part.part {
        Part::Multi { semantics: PartSemantics::ChooseOne, parts } => parts.iter().map(single).collect(),
        other => panic!("expected chooseOne, got {other:?}"),
    }
}

fn msgtype_ext(m: &MimiContent) -> Option<&Value2> {
    m.extensions.iter().find(|(k, _)| *k == ExtensionKey::Text("m.msgtype".into())).map(|(_, v)| v)
}
type Value2 = mimi_bridge::mimi::cbor::Value;

#[test]
fn plain_text_both_ways() {
    let ids = MemoryIdMap::new();
    let m = message(to_mimi(&event("m.room.message", ALICE, text("hello <world>")), &ctx(), &ids).unwrap());
    assert_eq!((m.sender_uri(), m.room_uri()), (Some("mimi://hs.example/u/alice"), Some(ROOM)));
    assert_eq!(
        (m.body.disposition, single(&m.body)),
        (Disposition::RENDER, ("text/plain;charset=utf-8", "hello <world>"))
    );
    assert_eq!((m.replaces, m.in_reply_to, m.topic_id.len(), m.salt), (None, None, 0, [7; 16]));
    let (sender, kind, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!((sender.as_str(), kind.as_str()), (ALICE, "m.room.message"));
    assert_eq!(
        (c["msgtype"].as_str(), c["body"].as_str(), c.get("formatted_body")),
        (Some("m.text"), Some("hello <world>"), None)
    );
}

#[test]
fn formatted_text_is_markdown_html_and_plain() {
    let ids = MemoryIdMap::new();
    let formatted = "<h3>News</h3><p>Hello <strong>world</strong> &amp; <em>you</em> <script>x()</script></p>\
                     <ul><li onclick=\"x()\">a &lt;tag&gt;</li><li><code>c*d</code></li></ul>";
    let body = "### News\n\nHello **world** & *you*\n\n- a <tag>\n- `c*d`";
    let m = message(to_mimi(&event("m.room.message", ALICE, html(body, formatted)), &ctx(), &ids).unwrap());
    let parts = choose_one(&m.body);
    assert_eq!(
        parts.iter().map(|p| p.0).collect::<Vec<_>>(),
        ["text/markdown;variant=GFM-MIMI", "text/html;charset=utf-8", "text/plain;charset=utf-8"]
    );
    assert_eq!(parts[0].1, "### News\n\nHello **world** & *you*\n\n- a &lt;tag>\n- `c*d`");
    let clean = "<h3>News</h3><p>Hello <strong>world</strong> &amp; <em>you</em> </p><ul><li>a &lt;tag&gt;</li><li><code>c*d</code></li></ul>";
    assert_eq!(parts[1].1, clean);
    assert_eq!(parts[2].1, body);
    let (_, _, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!(c["body"], body);
    assert_eq!(c["format"], "org.matrix.custom.html");
    assert_eq!(c["formatted_body"], clean);
    assert_eq!(c["m.mentions"], json!({}));
}

#[test]
fn notices_and_emotes_ride_the_private_msgtype_key() {
    let ids = MemoryIdMap::new();
    let notice = message(
        to_mimi(&event("m.room.message", ALICE, json!({"msgtype": "m.notice", "body": "bot says"})), &ctx(), &ids)
            .unwrap(),
    );
    assert_eq!(msgtype_ext(&notice), Some(&Value2::Text("m.notice".into())));
    assert_eq!(single(&notice.body).1, "bot says");
    let (_, _, c) = one_event(to_matrix(&notice, &ids).unwrap());
    assert_eq!((c["msgtype"].as_str(), c["body"].as_str()), (Some("m.notice"), Some("bot says")));

    let emote = json!({"msgtype": "m.emote", "body": "waves", "format": "org.matrix.custom.html", "formatted_body": "<em>waves</em>"});
    let m = message(to_mimi(&event("m.room.message", ALICE, emote), &ctx(), &ids).unwrap());
    assert_eq!(msgtype_ext(&m), Some(&Value2::Text("m.emote".into())));
    let parts = choose_one(&m.body);
    assert_eq!([parts[0].1, parts[1].1, parts[2].1], ["\\* alice *waves*", "* alice <em>waves</em>", "* alice waves"]);
    let (_, _, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!((c["msgtype"].as_str(), c["body"].as_str()), (Some("m.emote"), Some("waves")));
    assert_eq!(c["formatted_body"], "<em>waves</em>");
}

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

#[test]
fn mentions_are_matrix_to_links_one_side_and_mimi_uris_the_other() {
    let ids = MemoryIdMap::new();
    let mut content = html("Bob: look", "<a href=\"https://matrix.to/#/@bob:hs.example\">Bob</a>: look");
    content["m.mentions"] = json!({"user_ids": [BOB]});
    let m = message(to_mimi(&event("m.room.message", ALICE, content), &ctx(), &ids).unwrap());
    let parts = choose_one(&m.body);
    assert_eq!(parts[0].1, "[Bob](mimi://hs.example/u/bob): look");
    assert_eq!(parts[1].1, "<a href=\"mimi://hs.example/u/bob\">Bob</a>: look");
    let (_, _, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!(c["formatted_body"], "<a href=\"https://matrix.to/#/@bob:hs.example\">Bob</a>: look");
    assert_eq!(c["m.mentions"], json!({"user_ids": [BOB]}));

    // A native MIMI client's markdown mention (the draft's "mention" example text).
    let mut native = m.clone();
    native.body.part = Part::Single {
        content_type: "text/markdown;variant=GFM-MIMI".into(),
        content: b"Kudos to [@Alice Smith](mimi://example.com/u/alice-smith) for the release".to_vec(),
    };
    let (_, _, c) = one_event(to_matrix(&native, &ids).unwrap());
    assert_eq!(
        c["formatted_body"],
        "Kudos to <a href=\"https://matrix.to/#/@alice-smith:example.com\">@Alice Smith</a> for the release"
    );
    assert_eq!(c["body"], "Kudos to @Alice Smith for the release");
    assert_eq!(c["m.mentions"], json!({"user_ids": ["@alice-smith:example.com"]}));

    // @room has no MIMI equivalent: the message goes, the room mention is dropped and counted.
    let mut everyone = text("@room lunch!");
    everyone["m.mentions"] = json!({"room": true});
    let out = to_mimi(&event("m.room.message", ALICE, everyone), &ctx(), &ids).unwrap();
    assert!(matches!(&out[0], Outcome::Message(_)));
    assert_eq!(dropped(&out), [DropReason::RoomMention]);
}

#[test]
fn the_drafts_original_example_renders_as_matrix_html() {
    let bytes = hex::decode(concat!(
        "87505eed9406c2545547ab6f09f20a18b003f640f6f6a20178206d696d693a2f2f6578616d706c65",
        "2e636f6d2f752f616c6963652d736d6974680278256d696d693a2f2f6578616d706c652e636f6d2f",
        "722f656e67696e656572696e675f7465616d85016001781e746578742f6d61726b646f776e3b7661",
        "7269616e743d47464d2d4d494d49583948692065766572796f6e652c207765206a75737420736869",
        "707065642072656c6561736520322e302e205f5f476f6f642020776f726b5f5f21"
    ))
    .unwrap();
    let original = MimiContent::decode(&bytes).unwrap();
    let (sender, _, c) = one_event(to_matrix(&original, &MemoryIdMap::new()).unwrap());
    assert_eq!(sender, "@alice-smith:example.com");
    assert_eq!(c["body"], "Hi everyone, we just shipped release 2.0. Good work!");
    assert_eq!(c["formatted_body"], "Hi everyone, we just shipped release 2.0. <strong>Good  work</strong>!");

    // GFM-MIMI's "No HTML": raw HTML in received markdown is shown, never passed through.
    let mut raw = original.clone();
    raw.body.part = Part::Single {
        content_type: "text/markdown;variant=GFM-MIMI".into(),
        content: b"<img src=x onerror=y> **b**".to_vec(),
    };
    let (_, _, c) = one_event(to_matrix(&raw, &MemoryIdMap::new()).unwrap());
    assert_eq!(c["formatted_body"], "&lt;img src=x onerror=y&gt; <strong>b</strong>");
}

#[test]
fn images_and_files_are_encrypted_external_parts() {
    let ids = MemoryIdMap::new();
    let plaintext = b"\x89PNG not really".repeat(50);
    let image = json!({"msgtype": "m.image", "body": "my cat", "filename": "cat.png", "url": "mxc://hs.example/abc",
                       "info": {"mimetype": "image/png", "size": plaintext.len(), "w": 64, "h": 64}});
    let out = to_mimi(&event("m.room.message", ALICE, image), &ctx(), &ids).unwrap();
    let [Outcome::Media(pending)] = <[Outcome; 1]>::try_from(out).unwrap() else { panic!() };
    assert_eq!(pending.mxc_url, "mxc://hs.example/abc");
    let blob = encrypt_for_mimi(&plaintext).unwrap();
    let m = pending.finish("https://assets.example/u/1", &blob).unwrap();
    checked(&m);
    assert_eq!(m.sender_uri(), Some("mimi://hs.example/u/alice"));
    let Part::External(e) = &m.body.part else { panic!("{:?}", m.body) };
    assert_eq!(m.body.disposition, Disposition::INLINE);
    assert_eq!(
        (e.content_type.as_str(), e.url.as_str(), e.size),
        ("image/png", "https://assets.example/u/1", plaintext.len() as u64)
    );
    assert_eq!((e.enc_alg, e.key.len(), e.nonce.len(), e.aad.len(), e.hash_alg), (1, 16, 12, 0, 1));
    assert_eq!(e.content_hash, Sha256::digest(&blob.ciphertext).to_vec());
    assert_eq!((e.filename.as_str(), e.description.as_str()), ("cat.png", "my cat"));
    assert_eq!(decrypt_from_mimi(&blob.ciphertext, e).unwrap(), plaintext);

    let [MatrixOut::Media(upload)] = <[MatrixOut; 1]>::try_from(to_matrix(&m, &ids).unwrap()).unwrap() else {
        panic!()
    };
    assert_eq!(upload.external().map(|e: &ExternalPart| e.url.as_str()), Some("https://assets.example/u/1"));
    let (sender, _, c) = one_event(vec![upload.finish("mxc://hs.example/back").unwrap()]);
    assert_eq!(sender, ALICE);
    assert_eq!(
        c,
        json!({"msgtype": "m.image", "body": "my cat", "filename": "cat.png", "url": "mxc://hs.example/back",
                         "info": {"mimetype": "image/png", "size": plaintext.len()}})
    );

    let file = json!({"msgtype": "m.file", "body": "report.pdf", "url": "mxc://hs.example/f", "info": {"mimetype": "application/pdf"}});
    let out = to_mimi(&event("m.room.message", BOB, file), &ctx(), &ids).unwrap();
    let [Outcome::Media(pending)] = <[Outcome; 1]>::try_from(out).unwrap() else { panic!() };
    let m = pending.finish("https://assets.example/u/2", &encrypt_for_mimi(b"%PDF").unwrap()).unwrap();
    let Part::External(e) = &m.body.part else { panic!() };
    assert_eq!(
        (m.body.disposition, e.filename.as_str(), e.description.as_str(), e.size),
        (Disposition::ATTACHMENT, "report.pdf", "", 4)
    );
    let [MatrixOut::Media(upload)] = <[MatrixOut; 1]>::try_from(to_matrix(&m, &ids).unwrap()).unwrap() else {
        panic!()
    };
    let (_, _, c) = one_event(vec![upload.finish("mxc://hs.example/f2").unwrap()]);
    assert_eq!(
        (c["msgtype"].as_str(), c["body"].as_str(), c["url"].as_str()),
        (Some("m.file"), Some("report.pdf"), Some("mxc://hs.example/f2"))
    );
}

#[test]
fn stickers_and_videos_keep_their_dispositions() {
    let ids = MemoryIdMap::new();
    let blob = encrypt_for_mimi(b"frames").unwrap();
    let sticker = json!({"body": "a waving cat", "url": "mxc://hs.example/s", "info": {"mimetype": "image/webp"}});
    let video = json!({"msgtype": "m.video", "body": "clip.mp4", "url": "mxc://hs.example/v", "info": {"mimetype": "video/mp4"}});
    for (ev, disposition, description, msgtype) in [
        (event("m.sticker", ALICE, sticker), Disposition::INLINE, "a waving cat", "m.image"),
        (event("m.room.message", ALICE, video), Disposition::RENDER, "", "m.video"),
    ] {
        let [Outcome::Media(pending)] = <[Outcome; 1]>::try_from(to_mimi(&ev, &ctx(), &ids).unwrap()).unwrap() else {
            panic!()
        };
        let m = pending.finish("https://assets.example/x", &blob).unwrap();
        let Part::External(e) = &m.body.part else { panic!() };
        assert_eq!((m.body.disposition, e.description.as_str()), (disposition, description));
        let [MatrixOut::Media(upload)] = <[MatrixOut; 1]>::try_from(to_matrix(&m, &ids).unwrap()).unwrap() else {
            panic!()
        };
        let (_, _, c) = one_event(vec![upload.finish("mxc://hs.example/back").unwrap()]);
        assert_eq!(c["msgtype"], msgtype);
    }
}

#[test]
fn public_read_receipts_are_read_statuses() {
    let mut ids = MemoryIdMap::new();
    let original = send(&mut ids, "$orig", &event("m.room.message", ALICE, text("read me")));
    let receipt = json!({"type": "m.receipt", "content": {"$orig": {
        "m.read": {BOB: {"ts": 1}}, "m.read.private": {"@carol:hs.example": {"ts": 2}}}}});
    let out = to_mimi(&receipt, &ctx(), &ids).unwrap();
    assert_eq!(dropped(&out), [DropReason::PrivateReceipt]);
    let Outcome::Message(status) = &out[0] else { panic!("{out:?}") };
    checked(status);
    assert_eq!(status.sender_uri(), Some("mimi://hs.example/u/bob"));
    let Part::Single { content_type, content } = &status.body.part else { panic!("{status:?}") };
    assert_eq!(content_type, "application/mimi-message-status");
    assert_eq!(StatusReport::decode(content).unwrap().entries, [(checked(&original), Status::READ)]);
    assert_eq!(
        to_matrix(status, &ids).unwrap(),
        [MatrixOut::ReadReceipt { sender: BOB.into(), event_id: "$orig".into() }]
    );

    let (report, drops) = read_receipt_to_status(&["$orig", "$unknown"], &ids);
    assert_eq!((report.entries.len(), drops), (1, vec![DropReason::UnknownTarget]));
    let mixed =
        StatusReport { entries: vec![(checked(&original), Status::DELIVERED), (checked(&original), Status::READ)] };
    let (events, drops) = status_to_read_receipts(&mixed, &ids);
    assert_eq!((events, drops), (vec!["$orig".to_owned()], vec![DropReason::StatusWithoutEquivalent("delivered")]));
    assert_eq!(ids.event_id(&checked(&original)).as_deref(), Some("$orig"));
}

#[test]
fn what_cannot_map_is_dropped_with_a_reason() {
    let ids = MemoryIdMap::new();
    let cases = [
        (json!({"type": "m.typing", "content": {"user_ids": [ALICE]}}), DropReason::Typing),
        (json!({"type": "m.presence", "sender": ALICE, "content": {"presence": "online"}}), DropReason::Presence),
        (
            json!({"type": "m.receipt", "content": {"$e": {"m.read.private": {ALICE: {"ts": 1}}}}}),
            DropReason::PrivateReceipt,
        ),
        (json!({"type": "m.fully_read", "content": {"event_id": "$e"}}), DropReason::PrivateReceipt),
        (event("m.poll.start", ALICE, json!({})), DropReason::Poll),
        (event("m.call.invite", ALICE, json!({})), DropReason::Call),
        (event("m.room.encrypted", ALICE, json!({})), DropReason::Encrypted),
        (
            json!({"type": "m.room.member", "state_key": BOB, "sender": BOB, "content": {"membership": "join"}}),
            DropReason::State,
        ),
        (
            json!({"type": "m.room.pinned_events", "state_key": "", "sender": BOB, "content": {"pinned": []}}),
            DropReason::PinnedEvents,
        ),
        (event("com.example.custom", ALICE, json!({})), DropReason::Unsupported("com.example.custom".into())),
    ];
    let mut names = std::collections::BTreeSet::new();
    for (ev, reason) in cases {
        assert_eq!(to_mimi(&ev, &ctx(), &ids).unwrap(), [Outcome::Dropped(reason.clone())], "{ev}");
        names.insert(reason.counter_name());
    }
    assert_eq!(names.len(), 9, "one counter per reason: {names:?}");

    let mut expiring = message(to_mimi(&event("m.room.message", ALICE, text("soon gone")), &ctx(), &ids).unwrap());
    expiring.expires = Some(mimi_bridge::mimi::Expiration { relative: false, time: 2_000_000_000 });
    let out = to_matrix(&expiring, &ids).unwrap();
    assert_eq!(out.last(), Some(&MatrixOut::Dropped(DropReason::Expiry)));
    let mut anonymous = expiring;
    anonymous.extensions.clear();
    assert!(to_matrix(&anonymous, &ids).is_err());
}
