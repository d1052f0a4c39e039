//! The MIMI content codec against the draft's example vectors (draft-ietf-mimi-content editor's
//! copy "-08", `examples/*.cbor` + `*.edn`, copied into `tests/vectors/mimi-content/`): byte-exact
//! round trips, -08 and -07 message IDs, the EDN annotations and the typed fields. The discard
//! list is in `mimi_discard`, the properties in `mimi_properties`.

use mimi_bridge::mimi::cbor::{self, MAX_VALUE_DEPTH, Reader, Value};
use mimi_bridge::mimi::content::parts_in_order;
use mimi_bridge::mimi::derived::{DerivedValues, Timestamp};
use mimi_bridge::mimi::{
    Disposition, ExternalPart, IdDraft, MessageId, MimiContent, NestedPart, Part, PartSemantics, message_id,
};

use crate::edn;
use crate::mimi_support::{ALICE, DIR, GFM, MESSAGES, PLAIN, ROOM, cbor_file, edn_file, header_id};

const BOB: &str = "mimi://example.com/u/bob-jones";
const CATHY: &str = "mimi://example.com/u/cathy-washington";

fn decode(name: &str) -> MimiContent {
    MimiContent::decode(&cbor_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
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
