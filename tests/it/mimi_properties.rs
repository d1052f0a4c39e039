//! Properties of the MIMI content codec: generated messages round-trip exactly, and the decoders
//! never panic on random or mutated bytes (and re-encode exactly whatever they accept).

use mimi_bridge::mimi::cbor::{self, Float, Value};
use mimi_bridge::mimi::content::MAX_TOPIC_ID;
use mimi_bridge::mimi::derived::DerivedValues;
use mimi_bridge::mimi::status::{Status, StatusReport};
use mimi_bridge::mimi::{
    Disposition, Expiration, ExtensionKey, ExternalPart, MessageId, MimiContent, NestedPart, Part, PartSemantics,
};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::mimi_support::{GFM, MESSAGES, PLAIN, cbor_file, header_id};

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
        // A link has nothing to hash (0, empty); any other algorithm has a hash.
        (prop_oneof![Just((0u8, Vec::new())), (1u8..=11, vec(any::<u8>(), 1..33))], ".{0,10}", ".{0,10}"),
    )
        .prop_map(
            |(
                (content_type, url, expires, size),
                (enc_alg, key, nonce, aad),
                ((hash_alg, content_hash), description, filename),
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
