//! The MIMI content codec against the draft's example vectors (draft-ietf-mimi-content editor's
//! copy "-08", `examples/*.cbor` + `*.edn`, copied into `tests/vectors/mimi-content/`): byte-exact
//! round trips, -08 and -07 message IDs, the EDN annotations, the discard list, and properties.

use mimi_bridge::mimi::cbor::{
    self, DecodeError, Float, MAX_VALUE_DEPTH, Reader, Value, write_bytes, write_head, write_text,
};
use mimi_bridge::mimi::content::{MAX_PARTS, MAX_TOPIC_ID, parts_in_order};
use mimi_bridge::mimi::derived::{DerivedValues, Timestamp};
use mimi_bridge::mimi::status::{Status, StatusReport};
use mimi_bridge::mimi::{
    Disposition, Expiration, ExtensionKey, ExternalPart, IdDraft, MessageId, MimiContent, NestedPart, Part,
    PartSemantics, message_id,
};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::edn;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content");
/// Every message vector (all `NAME.cbor` but `implied-original`, which is not a message).
const MESSAGES: [&str; 10] = [
    "attachment",
    "delete",
    "edit",
    "mention",
    "multipart-1",
    "multipart-2",
    "original",
    "reaction",
    "reply",
    "unlike",
];
const ROOM: &str = "mimi://example.com/r/engineering_team";
const ALICE: &str = "mimi://example.com/u/alice-smith";
const BOB: &str = "mimi://example.com/u/bob-jones";
const CATHY: &str = "mimi://example.com/u/cathy-washington";
const GFM: &str = "text/markdown;variant=GFM-MIMI";
const PLAIN: &str = "text/plain;charset=utf-8";

fn cbor_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}.cbor")).unwrap_or_else(|e| panic!("{name}.cbor: {e}"))
}

fn edn_file(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}.edn")).unwrap_or_else(|e| panic!("{name}.edn: {e}"))
}

fn decode(name: &str) -> MimiContent {
    MimiContent::decode(&cbor_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The ID of a vector as its `.edn` header states it (-08 algorithm).
fn header_id(name: &str) -> MessageId {
    let hex = edn::header_message_id(&edn_file(name)).unwrap_or_else(|| panic!("{name}.edn has no message ID header"));
    MessageId(hex::decode(hex).unwrap().try_into().unwrap())
}

/// The ID of a message vector computed from its bytes with sender = extension 1, room = extension 2.
fn computed_id(draft: IdDraft, name: &str) -> MessageId {
    let bytes = cbor_file(name);
    let content = MimiContent::decode(&bytes).unwrap();
    let sender = content.sender_uri().unwrap_or_else(|| panic!("{name}: no senderUri"));
    let room = content.room_uri().unwrap_or_else(|| panic!("{name}: no roomUri"));
    message_id(draft, sender, room, &bytes, &content.salt).unwrap()
}

fn id(hex_id: &str) -> MessageId {
    MessageId(hex::decode(hex_id).unwrap().try_into().unwrap())
}

fn generic(bytes: &[u8]) -> Value {
    let mut r = Reader::new(bytes);
    let value = r.value("", MAX_VALUE_DEPTH).unwrap();
    r.finish().unwrap();
    value
}

#[test]
fn mimi_vector_directory_holds_exactly_the_expected_messages() {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".cbor").map(str::to_owned))
        .filter(|n| n != "implied-original")
        .collect();
    names.sort();
    assert_eq!(names, MESSAGES);
    for name in MESSAGES {
        assert!(std::fs::metadata(format!("{DIR}/{name}.edn")).is_ok(), "{name}.edn missing");
    }
}

#[test]
fn mimi_vectors_decode_reencode_and_match_their_edn() {
    for name in MESSAGES {
        let bytes = cbor_file(name);
        let content = MimiContent::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(hex::encode(content.encode()), hex::encode(&bytes), "{name}: re-encoding differs");
        assert_eq!(computed_id(IdDraft::V08, name), header_id(name), "{name}: -08 message ID");
        // The whole message, structurally: what the bytes hold is what the annotated EDN says.
        assert_eq!(generic(&bytes), edn::parse(&edn_file(name)), "{name}: .cbor differs from .edn");
        // And the EDN, encoded deterministically, is the file byte for byte.
        assert_eq!(hex::encode(cbor::to_vec(&edn::parse(&edn_file(name)))), hex::encode(&bytes), "{name}");
    }
}

#[test]
fn mimi_vector_ids_match_the_digest_table_08() {
    // §2 of the digest, recomputed there; a cross-check that the EDN header extraction is right.
    for (name, hex_id) in [
        ("original", "017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4"),
        ("reply", "015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b27"),
        ("reaction", "0158c4288911e50a8f6be3f47746b6682f10fd91bc8c05557aa589a3157aff68"),
        ("mention", "018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af"),
        ("edit", "014028c0deddbdea56bec26172f6ede953d11024cb82b8192b5e2aea62d7fb47"),
        ("delete", "011d9efc78d04d4dcf4d82b07d5199bbef37011c1f0c7e004b6111c6dda504b4"),
        ("unlike", "013aadbb8f313253c8930f4e93c6ca54b2ed06d258185bdcec3870534c8a4ec4"),
        ("attachment", "0176180c7d19a925021fe446d241134d05c38e0d999cdc0f39c391d2377ed9d1"),
        ("multipart-1", "01da5a515ec5db42cc4dcc19b90c3c31245d8a1cfcce11318f24eb11dce0990e"),
        ("multipart-2", "01d65918c6c51c8e76546337276ae6f4bfd873d867d5cb57c76bcdca3d999dd7"),
    ] {
        assert_eq!(header_id(name), id(hex_id), "{name}");
        assert_eq!(computed_id(IdDraft::V08, name).to_hex(), hex_id, "{name}");
    }
}

#[test]
fn mimi_vector_ids_with_the_07_algorithm() {
    // "Older-algorithm vectors" (tag draft-ietf-mimi-content-07): no length prefixes on the URIs.
    // The -07 files are the -08 files except that `replaces`/`inReplyTo` hold the -07 IDs of the
    // messages referenced (only `original` and `attachment`, which reference nothing, are
    // byte-identical). So rebuild each -07 message from its -08 one by swapping in the -07 IDs
    // computed earlier in the chain, then hash with the -07 function.
    let mut to_07 = std::collections::BTreeMap::new();
    for (name, hex_id) in [
        ("original", "01b0084467273cc43d6f0ebeac13eb84229c4fffe8f6c3594c905f47779e5a79"),
        ("reply", "01a419aef4e16d43cfc06c28235ecfbe9faebc740d0148e7ca20b22150930836"),
        ("reaction", "01b1a14a88f4480e1336be86987854f838a3ec82944d4533d8d4088578550ed7"),
        ("edit", "01fdcd2f418e4b16f6ba319800a44c12b3b0730871f29385bdc6d151b15751ad"),
        ("delete", "01b85744b443e9db85de5bb826c04bcd65b625e53d17839dc8a3f21321421088"),
        ("unlike", "01f4777df96bb04a66eabbe77b9a264fe725f03d2905281dbb37a8b61484d791"),
        ("attachment", "01ad825f6116adeb437a7b1f95a9d9acbcc708f83f5df505d32af9c2826e8b5f"),
    ] {
        let mut content = decode(name);
        let references = content.replaces.is_some() || content.in_reply_to.is_some();
        for reference in [&mut content.replaces, &mut content.in_reply_to].into_iter().flatten() {
            *reference =
                *to_07.get(reference).unwrap_or_else(|| panic!("{name}: -08 ID {} unknown", reference.to_hex()));
        }
        let bytes = content.encode();
        assert_eq!(bytes == cbor_file(name), !references, "{name}: only messages with references differ");
        let (sender, room) = (content.sender_uri().unwrap(), content.room_uri().unwrap());
        let computed = message_id(IdDraft::V07, sender, room, &bytes, &content.salt).unwrap();
        assert_eq!(computed.to_hex(), hex_id, "{name}");
        to_07.insert(header_id(name), computed);
    }
    // Hashing the -08 bytes with the -07 function reproduces the table only where they coincide.
    assert_eq!(computed_id(IdDraft::V07, "original"), to_07[&header_id("original")]);
    assert_ne!(computed_id(IdDraft::V07, "reply"), to_07[&header_id("reply")]);
}

fn single(part: &NestedPart) -> (&str, &[u8]) {
    match &part.part {
        Part::Single { content_type, content } => (content_type, content),
        other => panic!("expected a SinglePart, found {other:?}"),
    }
}

#[test]
fn mimi_vector_typed_fields() {
    let original_id = header_id("original");
    for name in MESSAGES {
        let c = decode(name);
        assert_eq!((c.topic_id.is_empty(), c.expires), (true, None), "{name}: no topic, no expiry");
        assert_eq!(c.room_uri(), Some(ROOM), "{name}");
        assert_eq!(c.extensions.len(), 2, "{name}");
    }

    let original = decode("original");
    assert_eq!(original.salt, <[u8; 16]>::try_from(hex::decode("5eed9406c2545547ab6f09f20a18b003").unwrap()).unwrap());
    assert_eq!((original.replaces, original.in_reply_to, original.sender_uri()), (None, None, Some(ALICE)));
    assert_eq!((original.body.disposition, original.body.language.as_str()), (Disposition::RENDER, ""));
    assert_eq!(single(&original.body), (GFM, &b"Hi everyone, we just shipped release 2.0. __Good  work__!"[..]));

    let reply = decode("reply");
    assert_eq!((reply.replaces, reply.in_reply_to, reply.sender_uri()), (None, Some(original_id), Some(BOB)));
    assert_eq!(single(&reply.body), (GFM, &b"Right on! _Congratulations_ 'all!"[..]));

    let reaction = decode("reaction");
    assert_eq!(
        (reaction.replaces, reaction.in_reply_to, reaction.sender_uri()),
        (None, Some(original_id), Some(CATHY))
    );
    assert_eq!(reaction.body.disposition, Disposition::REACTION);
    // The prose says U+2665; the bytes are U+2764 (❤).
    assert_eq!(single(&reaction.body), (PLAIN, "\u{2764}".as_bytes()));

    let mention = decode("mention");
    assert_eq!((mention.in_reply_to, mention.sender_uri()), (Some(original_id), Some(CATHY)));
    let (ct, text) = single(&mention.body);
    assert_eq!(ct, GFM);
    assert!(std::str::from_utf8(text).unwrap().contains("[@Alice Smith](mimi://example.com/u/alice-smith)"));

    let edit = decode("edit");
    assert_eq!(
        (edit.replaces, edit.in_reply_to, edit.sender_uri()),
        (Some(header_id("reply")), Some(original_id), Some(BOB))
    );
    assert_eq!(single(&edit.body), (GFM, &b"Right on! _Congratulations_ y'all!"[..]));

    let delete = decode("delete");
    assert_eq!((delete.replaces, delete.in_reply_to), (Some(header_id("reply")), Some(original_id)));
    assert_eq!(delete.body, NestedPart { disposition: Disposition::RENDER, language: String::new(), part: Part::Null });

    let unlike = decode("unlike");
    assert_eq!(
        (unlike.replaces, unlike.in_reply_to, unlike.sender_uri()),
        (Some(header_id("reaction")), Some(original_id), Some(CATHY))
    );
    assert_eq!(
        unlike.body,
        NestedPart { disposition: Disposition::REACTION, language: String::new(), part: Part::Null }
    );

    let attachment = decode("attachment");
    assert_eq!((attachment.body.disposition, attachment.body.language.as_str()), (Disposition::ATTACHMENT, "en"));
    let Part::External(ext) = &attachment.body.part else { panic!("attachment: {:?}", attachment.body) };
    let expected = ExternalPart {
        content_type: "video/mp4".into(),
        url: "https://example.com/storage/8ksB4bSrrRE.mp4".into(),
        expires: 0,
        size: 708_234_961,
        enc_alg: 1,
        key: hex::decode("21399320958a6f4c745dde670d95e0d8").unwrap(),
        nonce: hex::decode("c86cf2c33f21527d1dd76f5b").unwrap(),
        aad: Vec::new(),
        hash_alg: 1,
        content_hash: hex::decode("9ab17a8cf0890baaae7ee016c7312fcc080ba46498389458ee44f0276e783163").unwrap(),
        description: "2 hours of key signing video".into(),
        filename: "bigfile.mp4".into(),
    };
    assert_eq!(**ext, expected);

    let multipart1 = decode("multipart-1");
    let Part::Multi { semantics, parts } = &multipart1.body.part else { panic!("multipart-1: {:?}", multipart1.body) };
    assert_eq!((*semantics, parts.len()), (PartSemantics::ChooseOne, 2));
    assert_eq!(single(&parts[0]), (GFM, &b"# Welcome!"[..]));
    assert_eq!(
        single(&parts[1]),
        ("application/vnd.examplevendor-fancy-im-message", &hex::decode("dc861ebaa718fd7c3ca159f71a2001").unwrap()[..])
    );

    let multipart2 = decode("multipart-2");
    assert_eq!(multipart2.body.disposition, Disposition::REACTION);
    let Part::Multi { semantics, parts } = &multipart2.body.part else { panic!("multipart-2: {:?}", multipart2.body) };
    assert_eq!((*semantics, parts.len()), (PartSemantics::ProcessAll, 3));
    for (part, glyph) in parts.iter().zip(["\u{2764}", "\u{1f973}", "\u{1f91e}"]) {
        assert_eq!(part.disposition, Disposition::REACTION);
        assert_eq!(single(part), (PLAIN, glyph.as_bytes()));
    }
    assert_eq!(parts_in_order(&multipart2.body).len(), 4, "implicit part indexes 0..=3");
}

#[test]
fn mimi_implied_original_derived_values() {
    let bytes = cbor_file("implied-original");
    let derived = DerivedValues::decode(&bytes).unwrap();
    assert_eq!(hex::encode(derived.encode()), hex::encode(&bytes));
    assert_eq!(derived.hub_accepted_timestamp, Timestamp::Millis(1_644_387_225_019));
    assert_eq!(
        derived.mls_group_id,
        hex::decode("eeee0d12a7b5b5b78115ad1a1ddb13811c83fd7387c43e66799a594beeda26bf").unwrap()
    );
    assert_eq!(derived.sender_leaf_index, 4);
    assert_eq!(derived.sender_client_url, "mimi://example.com/d/3b52249d-68f9-45ce-8bf5-c799f3cad7ec/0003");
    assert_eq!(derived.sender_user_url, ALICE);
    assert_eq!(derived.room_url, ROOM);

    // The .cbor was not regenerated for -08: it carries the -07 ID of `original`, while the .edn
    // shows the -08 one. Assert exactly what each holds.
    let id07 = id("01b0084467273cc43d6f0ebeac13eb84229c4fffe8f6c3594c905f47779e5a79");
    assert_eq!(derived.message_id, id07);
    assert_eq!(computed_id(IdDraft::V07, "original"), id07);
    let Value::Array(from_edn) = edn::parse(&edn_file("implied-original")) else { panic!("implied-original.edn") };
    let Value::Array(from_cbor) = generic(&bytes) else { panic!("implied-original.cbor") };
    assert_eq!(from_edn.len(), 7);
    assert_eq!(from_edn[0], Value::Bytes(header_id("original").0.to_vec()), ".edn shows the -08 ID");
    assert_eq!(from_cbor[0], Value::Bytes(id07.0.to_vec()), ".cbor holds the -07 ID");
    assert_eq!(from_edn[1..], from_cbor[1..], "every other field as annotated");
}

// ---- the discard list -------------------------------------------------------------------------

/// Offsets of the 7 top-level items of a message, and its end.
fn item_offsets(bytes: &[u8]) -> [usize; 8] {
    let mut r = Reader::new(bytes);
    assert_eq!(r.array("").unwrap(), 7);
    let mut out = [0; 8];
    for slot in out.iter_mut().take(7) {
        *slot = r.position();
        r.value("", MAX_VALUE_DEPTH).unwrap();
    }
    out[7] = r.position();
    out
}

const SALT: usize = 0;
const REPLACES: usize = 1;
const TOPIC: usize = 2;
const IN_REPLY_TO: usize = 4;
const EXTENSIONS: usize = 5;
const BODY: usize = 6;

fn splice(bytes: &[u8], at: std::ops::Range<usize>, with: &[u8]) -> Vec<u8> {
    let mut out = bytes[..at.start].to_vec();
    out.extend_from_slice(with);
    out.extend_from_slice(&bytes[at.end..]);
    out
}

/// `original` with its body replaced; returns the message and the body's offset.
fn with_body(body: &[u8]) -> (Vec<u8>, usize) {
    let original = cbor_file("original");
    let at = item_offsets(&original)[BODY];
    (splice(&original, at..original.len(), body), at)
}

#[track_caller]
fn rejected(bytes: &[u8], offset: usize, field: &str, reason: &str) -> DecodeError {
    let err = MimiContent::decode(bytes).expect_err("must be discarded");
    assert_eq!((err.offset, err.field.as_str()), (offset, field), "{err}");
    assert!(err.reason.contains(reason), "reason should mention {reason:?}: {err}");
    let message = err.to_string();
    assert!(message.starts_with(&format!("byte {offset}")), "{message}");
    assert!(message.contains(field), "{message}");
    err
}

fn null_part(out: &mut Vec<u8>) {
    write_head(out, 4, 3);
    write_head(out, 0, 0);
    write_text(out, "");
    write_head(out, 0, 0);
}

/// A MultiPart header (disposition 1, semantics processAll) announcing `n` parts.
fn multi_head(out: &mut Vec<u8>, n: u64) {
    write_head(out, 4, 5);
    write_head(out, 0, 1);
    write_text(out, "");
    write_head(out, 0, 3);
    write_head(out, 0, 2);
    write_head(out, 4, n);
}

/// `levels` `NestedPart` levels: `MultiPart`s `[deeper, null]` down to a `NullPart` at the bottom.
fn nested(out: &mut Vec<u8>, levels: usize) {
    if levels == 1 {
        null_part(out);
    } else {
        multi_head(out, 2);
        nested(out, levels - 1);
        null_part(out);
    }
}

#[test]
fn mimi_discard_nested_part_depth_5() {
    let mut body = Vec::new();
    nested(&mut body, 4);
    MimiContent::decode(&with_body(&body).0).expect("depth 4 is allowed");
    let mut body = Vec::new();
    nested(&mut body, 5);
    let (bytes, at) = with_body(&body);
    let mut head = Vec::new();
    multi_head(&mut head, 2);
    rejected(&bytes, at + 4 * head.len(), "body.parts[0].parts[0].parts[0].parts[0]", "deeper than 4");
}

#[test]
fn mimi_discard_more_than_1024_parts() {
    let mut head = Vec::new();
    multi_head(&mut head, 1023);
    let mut body = head.clone();
    (0..1023).for_each(|_| null_part(&mut body));
    MimiContent::decode(&with_body(&body).0).expect("1024 parts (root + 1023) are allowed");

    let mut head = Vec::new();
    multi_head(&mut head, MAX_PARTS as u64);
    let mut body = head.clone();
    (0..MAX_PARTS).for_each(|_| null_part(&mut body));
    let (bytes, at) = with_body(&body);
    rejected(&bytes, at + head.len() + 1023 * 4, "body.parts[1023]", "more than 1024 parts");
}

#[test]
fn mimi_discard_salt_not_16_bytes() {
    let original = cbor_file("original");
    let off = item_offsets(&original);
    for len in [15, 17, 0, 32] {
        let mut salt = Vec::new();
        write_bytes(&mut salt, &vec![0xa5; len]);
        let bytes = splice(&original, off[SALT]..off[SALT + 1], &salt);
        rejected(&bytes, 1, "salt", &format!("must be 16 bytes, found {len}"));
    }
}

#[test]
fn mimi_discard_unknown_part_semantics() {
    let vector = cbor_file("multipart-1");
    let at = item_offsets(&vector)[BODY];
    assert_eq!(vector[at..at + 5], [0x85, 0x01, 0x60, 0x03, 0x00], "[render, \"\", multi, chooseOne, …]");
    let mut bytes = vector.clone();
    bytes[at + 4] = 3;
    rejected(&bytes, at + 4, "body.partSemantics", "unknown part semantics 3");
}

#[test]
fn mimi_discard_unknown_cardinality() {
    let mut bytes = cbor_file("original");
    let at = item_offsets(&bytes)[BODY];
    assert_eq!(bytes[at..at + 4], [0x85, 0x01, 0x60, 0x01], "[render, \"\", single, …]");
    bytes[at + 3] = 4;
    rejected(&bytes, at + 3, "body.cardinality", "unknown cardinality 4");
}

#[test]
fn mimi_discard_message_id_with_unknown_hash_byte() {
    for (name, item, field) in [("reply", IN_REPLY_TO, "inReplyTo"), ("edit", REPLACES, "replaces")] {
        let mut bytes = cbor_file(name);
        let at = item_offsets(&bytes)[item];
        assert_eq!(bytes[at..at + 3], [0x58, 0x20, 0x01], "{name}: a 32-byte sha-256 ID");
        bytes[at + 2] = 0x00;
        rejected(&bytes, at, field, "unknown hash algorithm 0");
    }
}

#[test]
fn mimi_discard_topic_id_over_4096_bytes() {
    let original = cbor_file("original");
    let off = item_offsets(&original);
    let topic = |len: usize| {
        let mut t = Vec::new();
        write_bytes(&mut t, &vec![0x74; len]);
        splice(&original, off[TOPIC]..off[TOPIC + 1], &t)
    };
    let ok = MimiContent::decode(&topic(MAX_TOPIC_ID)).expect("4096 bytes are allowed");
    assert_eq!(ok.topic_id.len(), MAX_TOPIC_ID);
    rejected(&topic(MAX_TOPIC_ID + 1), off[TOPIC], "topicId", "4097 bytes");
}

#[test]
fn mimi_discard_multipart_with_one_part() {
    let mut body = Vec::new();
    multi_head(&mut body, 1);
    null_part(&mut body);
    let (bytes, at) = with_body(&body);
    rejected(&bytes, at + 5, "body.parts", "at least 2 parts, found 1");
    let mut body = Vec::new();
    multi_head(&mut body, 0);
    let (bytes, at) = with_body(&body);
    rejected(&bytes, at + 5, "body.parts", "found 0");
}

#[test]
fn mimi_discard_trailing_bytes() {
    let original = cbor_file("original");
    let mut bytes = original.clone();
    bytes.push(0x00);
    let err = rejected(&bytes, original.len(), "", "1 trailing bytes");
    assert_eq!(err.to_string(), format!("byte {}: 1 trailing bytes after the item", original.len()));
}

#[test]
fn mimi_discard_non_shortest_integers() {
    let original = cbor_file("original");
    let off = item_offsets(&original);
    // disposition 1 as 0x18 0x01
    let bytes = splice(&original, off[BODY] + 1..off[BODY] + 2, &[0x18, 0x01]);
    rejected(&bytes, off[BODY] + 1, "body.disposition", "shortest form");
    // the salt's length 16 as 0x58 0x10
    let bytes = splice(&original, 1..2, &[0x58, 0x10]);
    rejected(&bytes, 1, "salt", "shortest form");
}

#[test]
fn mimi_discard_indefinite_length_array() {
    let original = cbor_file("original");
    let at = item_offsets(&original)[BODY];
    let mut bytes = splice(&original, at..at + 1, &[0x9f]);
    bytes.push(0xff);
    rejected(&bytes, at, "body", "indefinite-length");
}

#[test]
fn mimi_discard_extension_keys_out_of_order_or_duplicated() {
    let original = cbor_file("original");
    let off = item_offsets(&original);
    let map = |entries: &[(u64, &str)]| {
        let mut m = Vec::new();
        write_head(&mut m, 5, entries.len() as u64);
        for (k, v) in entries {
            write_head(&mut m, 0, *k);
            write_text(&mut m, v);
        }
        splice(&original, off[EXTENSIONS]..off[EXTENSIONS + 1], &m)
    };
    assert_eq!(map(&[(1, ALICE), (2, ROOM)]), original);
    let mut first = Vec::new();
    write_head(&mut first, 0, 2);
    write_text(&mut first, ROOM);
    let second_key = off[EXTENSIONS] + 1 + first.len();
    rejected(&map(&[(2, ROOM), (1, ALICE)]), second_key, "mimiExtensions", "not in deterministic order");
    rejected(&map(&[(2, ROOM), (2, ROOM)]), second_key, "mimiExtensions", "duplicated");
}

#[test]
fn mimi_discard_extension_values_nested_deeper_than_4() {
    let original = cbor_file("original");
    let off = item_offsets(&original);
    let with_value = |levels: usize| {
        let mut value = Value::Unsigned(0);
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        let mut c = MimiContent::decode(&original).unwrap();
        c.set_extension(ExtensionKey::Int(3), value);
        c.encode()
    };
    MimiContent::decode(&with_value(4)).expect("4 levels are allowed");
    let bytes = with_value(5);
    let err = MimiContent::decode(&bytes).unwrap_err();
    // [[[[[0]]]]]: the fifth array head; extension 3 is the third entry.
    let fifth = bytes.windows(6).position(|w| w == [0x03, 0x81, 0x81, 0x81, 0x81, 0x81]).unwrap() + 5;
    assert!(fifth > off[EXTENSIONS], "{err}");
    assert_eq!((err.offset, err.field.as_str()), (fifth, "mimiExtensions[2][0][0][0][0]"), "{err}");
    assert!(err.reason.contains("nested too deeply") && err.to_string().starts_with(&format!("byte {fifth}")), "{err}");
}

#[test]
fn mimi_discard_unknown_external_hash_algorithm() {
    let vector = cbor_file("attachment");
    // hashAlg 1 is followed by the 32-byte content hash 9ab1…
    let at = vector.windows(5).position(|w| w == [0x01, 0x58, 0x20, 0x9a, 0xb1]).unwrap();
    let mut bytes = vector.clone();
    bytes[at] = 0x00;
    rejected(&bytes, at, "body.hashAlg", "unknown hash algorithm 0");
}

// ---- properties -------------------------------------------------------------------------------

const MAX_KEY: i64 = (1 << 53) - 1;

fn leaf_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::Unsigned),
        (0u64..30).prop_map(Value::Unsigned),
        any::<u64>().prop_map(Value::Negative),
        vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        ".{0,6}".prop_map(Value::Text),
        prop_oneof![0u8..=23, 32u8..=255].prop_map(Value::Simple),
        prop::sample::select(vec![
            Float::F16(0x3c00),
            Float::F16(0x7e00),
            Float::F16(0xfc00),
            Float::F16(0x0001),
            Float::F32(0x47c3_5000),
            Float::F64(0x3ff1_9999_9999_999a),
        ])
        .prop_map(Value::Float),
    ]
}

fn sorted_map(entries: Vec<(Value, Value)>) -> Value {
    let mut keyed: Vec<(Vec<u8>, Value, Value)> = entries.into_iter().map(|(k, v)| (cbor::to_vec(&k), k, v)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
}

/// Generic values with at most 3 levels of arrays, maps and tags (extensions allow 4).
fn generic_value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((inner.clone(), inner.clone()), 0..4).prop_map(sorted_map),
            (prop_oneof![0u64..30, any::<u64>()], inner).prop_map(|(t, v)| Value::Tag(t, Box::new(v))),
        ]
    })
}

fn extension_key() -> impl Strategy<Value = ExtensionKey> {
    prop_oneof![
        (3i64..40).prop_map(ExtensionKey::Int),
        (-40i64..0).prop_map(ExtensionKey::Int),
        prop_oneof![3..=MAX_KEY, -MAX_KEY..=-1].prop_map(ExtensionKey::Int),
        "[a-z]{1,3}|.{1,6}".prop_map(ExtensionKey::Text),
    ]
}

fn message_id_strategy() -> impl Strategy<Value = Option<MessageId>> {
    proptest::option::of((prop_oneof![4 => Just(1u8), 1 => 1u8..=11], any::<[u8; 31]>()).prop_map(|(alg, rest)| {
        let mut id = [alg; 32];
        id[1..].copy_from_slice(&rest);
        MessageId(id)
    }))
}

fn language() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), Just("en".to_owned()), Just("en,fr-CA".to_owned()), ".{0,5}"]
}

fn external_part() -> impl Strategy<Value = Part> {
    (
        (".{0,10}", ".{0,20}", any::<u32>(), prop_oneof![Just(708_234_961u64), any::<u64>()]),
        (any::<u16>(), vec(any::<u8>(), 0..17), vec(any::<u8>(), 0..13), vec(any::<u8>(), 0..4)),
        (1u8..=11, vec(any::<u8>(), 0..33), ".{0,10}", ".{0,10}"),
    )
        .prop_map(
            |(
                (content_type, url, expires, size),
                (enc_alg, key, nonce, aad),
                (hash_alg, content_hash, description, filename),
            )| {
                Part::External(Box::new(ExternalPart {
                    content_type,
                    url,
                    expires,
                    size,
                    enc_alg,
                    key,
                    nonce,
                    aad,
                    hash_alg,
                    content_hash,
                    description,
                    filename,
                }))
            },
        )
}

fn semantics() -> impl Strategy<Value = PartSemantics> {
    prop_oneof![Just(PartSemantics::ChooseOne), Just(PartSemantics::SingleUnit), Just(PartSemantics::ProcessAll)]
}

/// `NestedPart`s up to 3 levels deep, every cardinality.
fn nested_part() -> impl Strategy<Value = NestedPart> {
    let leaf_part = prop_oneof![
        Just(Part::Null),
        (prop_oneof![Just(PLAIN.to_owned()), Just(GFM.to_owned()), ".{0,8}"], vec(any::<u8>(), 0..24))
            .prop_map(|(content_type, content)| Part::Single { content_type, content }),
        external_part(),
    ];
    let leaf = (any::<u8>(), language(), leaf_part).prop_map(|(d, language, part)| NestedPart {
        disposition: Disposition(d),
        language,
        part,
    });
    leaf.prop_recursive(2, 16, 4, |inner| {
        (any::<u8>(), language(), semantics(), vec(inner, 2..5)).prop_map(|(d, language, semantics, parts)| {
            NestedPart { disposition: Disposition(d), language, part: Part::Multi { semantics, parts } }
        })
    })
}

fn mimi_content() -> impl Strategy<Value = MimiContent> {
    (
        (any::<[u8; 16]>(), message_id_strategy(), message_id_strategy()),
        (
            prop_oneof![4 => vec(any::<u8>(), 0..8), 1 => vec(any::<u8>(), 4090..=MAX_TOPIC_ID)],
            proptest::option::of(
                (any::<bool>(), any::<u32>()).prop_map(|(relative, time)| Expiration { relative, time }),
            ),
        ),
        (
            proptest::option::of(".{0,30}"),
            proptest::option::of(".{0,30}"),
            vec((extension_key(), generic_value()), 0..5),
        ),
        nested_part(),
    )
        .prop_map(|((salt, replaces, in_reply_to), (topic_id, expires), (sender, room, extra), body)| {
            let mut c = MimiContent { salt, replaces, topic_id, expires, in_reply_to, extensions: Vec::new(), body };
            for (key, value) in extra {
                c.set_extension(key, value);
            }
            if let Some(sender) = sender {
                c.set_extension(ExtensionKey::Int(1), Value::Text(sender));
            }
            if let Some(room) = room {
                c.set_extension(ExtensionKey::Int(2), Value::Text(room));
            }
            c
        })
}

/// Decoding never panics, and whatever decodes re-encodes to exactly the input.
fn decoders_are_total_and_exact(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(c) = MimiContent::decode(bytes) {
        prop_assert_eq!(hex::encode(c.encode()), hex::encode(bytes), "MimiContent {:?}", c);
    }
    if let Ok(d) = DerivedValues::decode(bytes) {
        prop_assert_eq!(hex::encode(d.encode()), hex::encode(bytes), "DerivedValues {:?}", d);
    }
    if let Ok(s) = StatusReport::decode(bytes) {
        prop_assert_eq!(hex::encode(s.encode()), hex::encode(bytes), "StatusReport {:?}", s);
    }
    Ok(())
}

/// The vector files plus a status report naming every vector, as seeds for mutation.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = MESSAGES.iter().map(|n| cbor_file(n)).collect();
    seeds.push(cbor_file("implied-original"));
    let entries = MESSAGES.iter().zip(0u8..).map(|(n, i)| (header_id(n), Status(i % 8))).collect();
    seeds.push(StatusReport { entries }.encode());
    seeds
}

#[test]
fn mimi_seed_status_report_round_trips() {
    let report = seeds().pop().unwrap();
    let decoded = StatusReport::decode(&report).unwrap();
    assert_eq!(decoded.entries.len(), MESSAGES.len());
    assert_eq!(decoded.encode(), report);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mimi_prop_content_round_trips(content in mimi_content()) {
        let bytes = content.encode();
        let decoded = MimiContent::decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}\n{}", hex::encode(&bytes))))?;
        prop_assert_eq!(&decoded, &content);
        prop_assert_eq!(hex::encode(decoded.encode()), hex::encode(&bytes));
    }

    #[test]
    fn mimi_prop_random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400), prefix in 0usize..4) {
        // Also as a top-level 7-array, or a 7-array after a valid salt, to get past the first head.
        let mut framed = [&[][..], &[0x87][..], &[0x87, 0x50][..], &[0x81, 0x82, 0x58, 0x20][..]][prefix].to_vec();
        framed.extend_from_slice(&bytes);
        decoders_are_total_and_exact(&bytes)?;
        decoders_are_total_and_exact(&framed)?;
    }

    #[test]
    fn mimi_prop_mutated_vectors_never_panic(
        seed in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        op in 0u8..4,
    ) {
        let seeds = seeds();
        let mut bytes = seed.get(&seeds).clone();
        let i = at.index(bytes.len());
        match op {
            0 => bytes[i] = byte,
            1 => bytes[i] ^= 1 << (byte % 8),
            2 => bytes.insert(i, byte),
            _ => bytes.truncate(i),
        }
        decoders_are_total_and_exact(&bytes)?;
    }
}
