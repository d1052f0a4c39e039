//! The MIMI content codec's discard list: messages the draft says a receiver must reject, each
//! built by splicing one defect into an example vector, rejected with the offending byte offset
//! and field named.

use mimi_bridge::mimi::cbor::{DecodeError, MAX_VALUE_DEPTH, Reader, Value, write_bytes, write_head, write_text};
use mimi_bridge::mimi::content::{MAX_PARTS, MAX_TOPIC_ID};
use mimi_bridge::mimi::{ExtensionKey, MimiContent};

use crate::mimi_support::{ALICE, ROOM, cbor_file};

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
    bytes[at] = 0x0c;
    rejected(&bytes, at, "body.hashAlg", "unknown hash algorithm 12");
    // 0 (nothing to hash) with a hash.
    bytes[at] = 0x00;
    rejected(&bytes, at + 1, "body.contentHash", "must be empty with hashAlg 0");
}

/// The draft's conference link: an `ExternalPart` with nothing to hash (`hashAlg` 0, empty
/// hash) is accepted and re-encoded byte for byte; a known algorithm with an empty hash is not.
#[test]
fn a_link_without_content_hash_is_accepted_only_with_hash_algorithm_0() {
    let vector = cbor_file("attachment");
    // `hashAlg 1, h'9ab1…'` (1 + 34 bytes) becomes `hashAlg 0, h''` (1 + 1 byte).
    let at = vector.windows(5).position(|w| w == [0x01, 0x58, 0x20, 0x9a, 0xb1]).unwrap();
    let mut link = vector[..at].to_vec();
    link.extend([0x00, 0x40]);
    link.extend(&vector[at + 35..]);
    let content = MimiContent::decode(&link).unwrap();
    let mimi_bridge::mimi::Part::External(part) = &content.body.part else { panic!("{content:?}") };
    assert_eq!((part.hash_alg, part.content_hash.len()), (0, 0));
    assert_eq!(content.encode(), link);

    link[at] = 0x01;
    rejected(&link, at + 1, "body.contentHash", "empty, but hashAlg is 1");
}
