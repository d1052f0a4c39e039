//! Golden vectors, byte for byte: the Matrix spec's canonical-JSON and signing vectors, and our
//! Linearized Matrix LPDU → PDU vector (computed independently by `scripts/lm_vector.py`).

use mimi_bridge::event::canonical::{object_to_bytes, parse_object, parse_value, to_bytes};
use mimi_bridge::event::check::inspect;
use mimi_bridge::event::room_version::{LINEARIZED_02, V1};
use mimi_bridge::event::sign::sign_json;
use mimi_bridge::event::{KeyRing, ServerKey, build_lpdu, complete_lpdu, sign_as};
use serde_json::Value;

use crate::common::{run, text};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../vectors/matrix-spec-signing.json")).unwrap()
}

fn lm_vector() -> Value {
    serde_json::from_str(include_str!("../vectors/lm-lpdu-pdu.json")).unwrap()
}

fn spec_key() -> ServerKey {
    let v = vectors();
    let seed = v["signing_key"]["seed_unpadded_base64"].as_str().unwrap();
    ServerKey::parse_synapse(&format!("ed25519 1 {seed}")).unwrap()
}

fn obj(v: &Value) -> ruma::CanonicalJsonObject {
    parse_object(v.to_string().as_bytes()).unwrap()
}

#[test]
fn spec_public_key_derives_from_seed() {
    assert_eq!(spec_key().public_b64(), vectors()["signing_key"]["public_key_unpadded_base64"].as_str().unwrap());
}

#[test]
fn canonical_json_entries_byte_for_byte_and_floats_rejected() {
    let mut checked = 0;
    for case in vectors()["canonical_json"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        if input.contains("1e10") {
            // The spec normalises `-0` and `1e10`; this project rejects floats, as ruma and Synapse do.
            let err = parse_value(input.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("float"), "{err}");
            continue;
        }
        let out = to_bytes(&parse_value(input.as_bytes()).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), case["output"].as_str().unwrap(), "input {input}");
        checked += 1;
    }
    assert_eq!(checked, 8);
}

#[test]
fn sign_json_entries() {
    for case in vectors()["sign_json"].as_array().unwrap() {
        let mut object = obj(&case["input"]);
        sign_json(&spec_key(), "domain", &mut object);
        let signed: Value = serde_json::from_slice(&object_to_bytes(&object)).unwrap();
        assert_eq!(signed["signatures"]["domain"]["ed25519:1"], case["signature"]);
    }
}

#[test]
fn room_v1_event_entries_through_the_library() {
    let mut ring = KeyRing::new();
    ring.insert("domain", "ed25519:1", spec_key().verifying_key());
    for case in vectors()["sign_event_room_v1_redaction"].as_array().unwrap() {
        let mut object = obj(&case["input"]);
        sign_as(&V1, &mut object, &spec_key(), "domain");
        let signed: Value = serde_json::from_slice(&object_to_bytes(&object)).unwrap();
        assert_eq!(signed["hashes"]["sha256"], case["content_hash_sha256"], "{}", case["name"]);
        assert_eq!(signed["signatures"]["domain"]["ed25519:1"], case["signature"], "{}", case["name"]);
        assert!(inspect(&V1, &object, &ring).valid());
    }
}

#[test]
fn room_v1_event_entries_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing.key");
    let seed = vectors()["signing_key"]["seed_unpadded_base64"].as_str().unwrap().to_owned();
    std::fs::write(&key_file, format!("ed25519 1 {seed}\n")).unwrap();
    let key_arg = format!("domain=ed25519:1={}", spec_key().public_b64());
    for case in vectors()["sign_event_room_v1_redaction"].as_array().unwrap() {
        let input = case["input"].to_string();
        let args = [
            "event",
            "sign",
            "--room-version",
            "1",
            "--server-name",
            "domain",
            "--key-file",
            key_file.to_str().unwrap(),
        ];
        let out = run(&args, input.as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let signed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(signed["hashes"]["sha256"], case["content_hash_sha256"]);
        assert_eq!(signed["signatures"]["domain"]["ed25519:1"], case["signature"]);

        let out = run(&["event", "check", "--room-version", "1", "--key", &key_arg], &out.stdout);
        assert!(out.status.success(), "{} {}", text(&out.stdout), text(&out.stderr));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["valid"], true);
        assert_eq!(report["sha256"], case["content_hash_sha256"]);
        assert_eq!(report["lpdu_sha256"], Value::Null);
        assert_eq!(report["signatures"]["domain"]["ed25519:1"], "ok");
        assert_eq!(report["event_id"], case["input"].get("event_id").cloned().unwrap_or(Value::Null));
    }
}

fn party_key(v: &Value) -> ServerKey {
    let key_id = v["key_id"].as_str().unwrap().trim_start_matches("ed25519:");
    ServerKey::parse_synapse(&format!("ed25519 {key_id} {}", v["seed"].as_str().unwrap())).unwrap()
}

#[test]
fn lm_vector_reproduced_byte_for_byte() {
    let v = lm_vector();
    assert_eq!(v["room_version"], LINEARIZED_02.id);
    let (origin, hub) = (party_key(&v["origin"]), party_key(&v["hub"]));
    assert_eq!(origin.public_b64(), v["origin"]["public_key"].as_str().unwrap());
    assert_eq!(hub.public_b64(), v["hub"]["public_key"].as_str().unwrap());
    let input = obj(&v["lpdu_input"]);
    let template = mimi_bridge::event::EventTemplate {
        room_id: v["lpdu_input"]["room_id"].as_str().unwrap().into(),
        event_type: v["lpdu_input"]["type"].as_str().unwrap().into(),
        sender: v["lpdu_input"]["sender"].as_str().unwrap().into(),
        state_key: None,
        content: match input.get("content") {
            Some(ruma::CanonicalJsonValue::Object(c)) => c.clone(),
            _ => panic!(),
        },
        origin_server_ts: v["lpdu_input"]["origin_server_ts"].as_i64().unwrap(),
    };
    let origin_name = v["origin"]["server_name"].as_str().unwrap();
    let hub_name = v["hub"]["server_name"].as_str().unwrap();
    let lpdu = build_lpdu(&LINEARIZED_02, template, hub_name, &origin, origin_name).unwrap();
    assert_eq!(lpdu.reference_id(&LINEARIZED_02), v["lpdu_id"].as_str().unwrap());

    let mut ring = KeyRing::new();
    ring.insert(origin_name, origin.key_id(), origin.verifying_key());
    ring.insert(hub_name, hub.key_id(), hub.verifying_key());
    let verified = lpdu.verify(&LINEARIZED_02, &ring).unwrap();
    let ids =
        |k: &str| -> Vec<String> { v[k].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect() };
    let pdu =
        complete_lpdu(&LINEARIZED_02, verified, &ids("auth_events"), &ids("prev_events"), &hub, hub_name).unwrap();
    assert_eq!(String::from_utf8(pdu.bytes().to_vec()).unwrap(), v["pdu_canonical"].as_str().unwrap());
    assert_eq!(pdu.event_id(), v["event_id"].as_str().unwrap());
    let report = inspect(&LINEARIZED_02, pdu.object(), &ring);
    assert!(report.valid(), "{report:?}");
    assert_eq!(report.sha256.as_deref(), v["pdu_hash"].as_str());
    assert_eq!(report.lpdu_sha256.as_deref(), v["lpdu_hash"].as_str());
}

#[test]
fn lm_vector_through_the_cli() {
    let v = lm_vector();
    let dir = tempfile::tempdir().unwrap();
    let write_key = |name: &str, party: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, party_key(party).to_synapse_line()).unwrap();
        path
    };
    let origin_file = write_key("origin.key", &v["origin"]);
    let hub_file = write_key("hub.key", &v["hub"]);
    let sign = |input: &str, server: &Value, file: &std::path::Path| {
        let args = ["event", "sign", "--server-name", server.as_str().unwrap(), "--key-file", file.to_str().unwrap()];
        let out = run(&args, input.as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim_end().to_owned()
    };
    let lpdu = sign(&v["lpdu_input"].to_string(), &v["origin"]["server_name"], &origin_file);
    assert_eq!(lpdu, v["lpdu_signed_canonical"].as_str().unwrap());

    let mut linked: Value = serde_json::from_str(&lpdu).unwrap();
    linked["auth_events"] = v["auth_events"].clone();
    linked["prev_events"] = v["prev_events"].clone();
    let pdu = sign(&linked.to_string(), &v["hub"]["server_name"], &hub_file);
    assert_eq!(pdu, v["pdu_canonical"].as_str().unwrap());

    let keys = [
        format!(
            "{}={}={}",
            v["origin"]["server_name"].as_str().unwrap(),
            v["origin"]["key_id"].as_str().unwrap(),
            v["origin"]["public_key"].as_str().unwrap()
        ),
        format!(
            "{}={}={}",
            v["hub"]["server_name"].as_str().unwrap(),
            v["hub"]["key_id"].as_str().unwrap(),
            v["hub"]["public_key"].as_str().unwrap()
        ),
    ];
    let out = run(&["event", "check", "--key", &keys[0], "--key", &keys[1]], pdu.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["event_id"], v["event_id"]);
    assert_eq!(report["sha256"], v["pdu_hash"]);
    assert_eq!(report["lpdu_sha256"], v["lpdu_hash"]);
    assert_eq!(
        report["signatures"][v["hub"]["server_name"].as_str().unwrap()][v["hub"]["key_id"].as_str().unwrap()],
        "ok"
    );

    // The LPDU alone checks too, under its LPDU reference ID; without the hub's key the PDU fails.
    let out = run(&["event", "check", "--key", &keys[0]], lpdu.as_bytes());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success());
    assert_eq!(report["event_id"], v["lpdu_id"]);
    assert_eq!(report["sha256"], Value::Null);
    let out = run(&["event", "check", "--key", &keys[0]], pdu.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(
        report["signatures"][v["hub"]["server_name"].as_str().unwrap()][v["hub"]["key_id"].as_str().unwrap()],
        "unknown_key"
    );
}
