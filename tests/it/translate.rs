//! Matrix ⇄ MIMI translation (specs/mimi-mls.md §9.2), the content rows both ways: plain and
//! formatted text, notices and emotes, mentions, received markdown, media, read receipts, and the
//! deliberate drops. Relations between messages are in `translate_relations`. Every MIMI message
//! produced is encoded, decoded back and given its -08 message ID.

use mimi_bridge::mimi::status::{Status, StatusReport};
use mimi_bridge::mimi::{Disposition, ExtensionKey, ExternalPart, MimiContent, Part};
use mimi_bridge::translate::media::{decrypt_from_mimi, encrypt_for_mimi};
use mimi_bridge::translate::receipts::{read_receipt_to_status, status_to_read_receipts};
use mimi_bridge::translate::{DropReason, IdMap, MatrixOut, MemoryIdMap, Outcome, to_matrix, to_mimi};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::translate_support::{
    ALICE, BOB, ROOM, checked, choose_one, ctx, dropped, event, html, message, one_event, send, single, text,
};

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

/// With `mimi.more_content_extensions`, a message carries the Matrix timestamp and event ID as
/// extensions 3 and 4; without it (the default), neither.
#[test]
fn the_matrix_origin_travels_as_extensions_3_and_4_only_when_asked() {
    let ids = MemoryIdMap::new();
    let mut ev = event("m.room.message", ALICE, text("hi"));
    ev["origin_server_ts"] = json!(1_700_000_000_123u64);
    let plain = message(to_mimi(&ev, &ctx(), &ids).unwrap());
    assert_eq!((plain.sender_timestamp_ms(), plain.external_message_id()), (None, None));
    let keys: Vec<_> = plain.extensions.iter().map(|(k, _)| k.clone()).collect();
    assert!(!keys.contains(&ExtensionKey::Int(3)) && !keys.contains(&ExtensionKey::Int(4)), "{keys:?}");

    let mut with_origin = ctx();
    with_origin.matrix_origin = Some("hs.example".into());
    let m = message(to_mimi(&ev, &with_origin, &ids).unwrap());
    assert_eq!(m.sender_timestamp_ms(), Some(1_700_000_000_123));
    assert_eq!(m.external_message_id(), Some((&b"$new"[..], "hs.example")));
    assert_eq!(MimiContent::decode(&m.encode()).unwrap(), m);
}

/// A link part with nothing to hash (the draft's conference link) becomes a text message with
/// its description and URL, not a download.
#[test]
fn a_link_part_without_a_hash_is_a_text_message() {
    let ids = MemoryIdMap::new();
    let mut m = message(to_mimi(&event("m.room.message", ALICE, text("placeholder")), &ctx(), &ids).unwrap());
    m.body.part = Part::External(Box::new(ExternalPart {
        content_type: "text/plain".into(),
        url: "https://example.com/join/12345".into(),
        expires: 0,
        size: 0,
        enc_alg: 0,
        key: Vec::new(),
        nonce: Vec::new(),
        aad: Vec::new(),
        hash_alg: 0,
        content_hash: Vec::new(),
        description: "Join the call".into(),
        filename: String::new(),
    }));
    let m = MimiContent::decode(&m.encode()).unwrap();
    let (_, kind, c) = one_event(to_matrix(&m, &ids).unwrap());
    assert_eq!((kind.as_str(), c["msgtype"].as_str()), ("m.room.message", Some("m.text")));
    assert_eq!(c["body"], "Join the call: https://example.com/join/12345");
}
