//! `mimi-bridge mimi decode|encode|id` on the draft's vectors, through the real binary.

use crate::common::{run, text};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content");

/// The -08 message IDs from the `.edn` headers, and for `original` — the one vector whose bytes
/// are the same in the -07 draft (the others reference -07 IDs inside them) — its -07 ID.
const IDS: [(&str, &str, Option<&str>); 10] = [
    (
        "original",
        "017ce54837404c3696e0c747b985cb172716d0ed0a3d249ca63ace7d82a096f4",
        Some("01b0084467273cc43d6f0ebeac13eb84229c4fffe8f6c3594c905f47779e5a79"),
    ),
    ("reply", "015354973c2b65ca937bf1e035ae53a5ab80e947afa43d46920d4202e5cc0b27", None),
    ("reaction", "0158c4288911e50a8f6be3f47746b6682f10fd91bc8c05557aa589a3157aff68", None),
    ("mention", "018d825adf9f6be00dcafc5704c4102f5022e74219d0b603e4ba7622654042af", None),
    ("edit", "014028c0deddbdea56bec26172f6ede953d11024cb82b8192b5e2aea62d7fb47", None),
    ("delete", "011d9efc78d04d4dcf4d82b07d5199bbef37011c1f0c7e004b6111c6dda504b4", None),
    ("unlike", "013aadbb8f313253c8930f4e93c6ca54b2ed06d258185bdcec3870534c8a4ec4", None),
    ("attachment", "0176180c7d19a925021fe446d241134d05c38e0d999cdc0f39c391d2377ed9d1", None),
    ("multipart-1", "01da5a515ec5db42cc4dcc19b90c3c31245d8a1cfcce11318f24eb11dce0990e", None),
    ("multipart-2", "01d65918c6c51c8e76546337276ae6f4bfd873d867d5cb57c76bcdca3d999dd7", None),
];

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!("{VECTORS}/{name}.cbor")).unwrap()
}

#[test]
fn ids_and_round_trips_of_every_vector() {
    for (name, id08, id07) in IDS {
        let bytes = vector(name);
        let out = run(&["mimi", "id"], &bytes);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), id08, "{name}");
        if let Some(id07) = id07 {
            let out = run(&["mimi", "id", "--draft", "07"], &bytes);
            assert_eq!(text(&out.stdout).trim(), id07, "{name} (-07)");
        }
        let decoded = run(&["mimi", "decode"], &bytes);
        assert!(decoded.status.success(), "{name}: {}", text(&decoded.stderr));
        let encoded = run(&["mimi", "encode"], &decoded.stdout);
        assert!(encoded.status.success(), "{name}: {}", text(&encoded.stderr));
        assert_eq!(encoded.stdout, bytes, "{name}: decode | encode must give back identical bytes");
    }
}

#[test]
fn decoded_json_carries_the_fields() {
    let out = run(&["mimi", "decode"], &vector("reply"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["salt"], "11a458c73b8dd2cf404db4b378b8fe4d");
    assert_eq!(json["inReplyTo"], IDS[0].1);
    assert_eq!(json["replaces"], serde_json::Value::Null);
    assert_eq!(json["extensions"][0]["key"], 1);
    assert_eq!(json["extensions"][0]["value"], "mimi://example.com/u/bob-jones");
    assert_eq!(json["body"]["contentType"], "text/markdown;variant=GFM-MIMI");
    assert_eq!(json["body"]["text"], "Right on! _Congratulations_ 'all!");

    let out = run(&["mimi", "decode"], &vector("attachment"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["body"]["cardinality"], "external");
    assert_eq!(json["body"]["size"], 708_234_961);
    assert_eq!(json["body"]["key"], "21399320958a6f4c745dde670d95e0d8");
    assert_eq!(json["body"]["filename"], "bigfile.mp4");

    // The `text` convenience: an encode from text alone gives the same bytes.
    let out = run(&["mimi", "decode"], &vector("original"));
    let mut json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["body"].as_object_mut().unwrap().remove("content");
    let encoded = run(&["mimi", "encode"], json.to_string().as_bytes());
    assert_eq!(encoded.stdout, vector("original"));
}

#[test]
fn derived_values_decode() {
    let out = run(&["mimi", "decode", "--derived"], &vector("implied-original"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The record carries the -07 ID of `original` (its .edn shows the -08 form).
    assert_eq!(json["messageId"], IDS[0].2.unwrap());
    assert_eq!(json["hubAcceptedTimestamp"], 1_644_387_225_019_u64);
    assert_eq!(json["mlsGroupId"], "eeee0d12a7b5b5b78115ad1a1ddb13811c83fd7387c43e66799a594beeda26bf");
    assert_eq!(json["senderLeafIndex"], 4);
    assert_eq!(json["senderClientUrl"], "mimi://example.com/d/3b52249d-68f9-45ce-8bf5-c799f3cad7ec/0003");
    assert_eq!(json["senderUserUrl"], "mimi://example.com/u/alice-smith");
    assert_eq!(json["roomUrl"], "mimi://example.com/r/engineering_team");
}

#[test]
fn bad_input_exits_2_naming_the_offset_or_field() {
    let mut truncated = vector("original");
    truncated.truncate(100);
    let out = run(&["mimi", "decode"], &truncated);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("byte ") && text(&out.stderr).contains("body"), "{}", text(&out.stderr));

    let mut bad_salt = vector("original");
    bad_salt[1] = 0x4f; // a 15-byte salt
    let out = run(&["mimi", "decode"], &bad_salt);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("byte 1 (salt)"), "{}", text(&out.stderr));

    let out = run(&["mimi", "id", "--draft", "09"], &vector("original"));
    assert_eq!(out.status.code(), Some(2));

    for (json, field) in [
        (r#"{"salt": "00"}"#.to_owned(), "salt"),
        ("not json".to_owned(), "not JSON"),
        (
            String::from_utf8(run(&["mimi", "decode"], &vector("original")).stdout)
                .unwrap()
                .replace("\"language\"", "\"lang\""),
            "body.lang",
        ),
    ] {
        let out = run(&["mimi", "encode"], json.as_bytes());
        assert_eq!(out.status.code(), Some(2), "{json}");
        assert!(text(&out.stderr).contains(field), "{field}: {}", text(&out.stderr));
    }
}
