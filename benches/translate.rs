//! `cargo bench --bench translate`: Matrix → MIMI → Matrix translation rate for a typical
//! formatted text message (an Element reply with a mention pill, bold, a link and a short list),
//! each stage beside a baseline from the same run: parsing and re-serialising the same event JSON,
//! which the appservice does anyway.

#![allow(clippy::cast_precision_loss, reason = "rates are printed, not computed on")]

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use mimi_bridge::mimi::MimiContent;
use mimi_bridge::translate::{MemoryIdMap, OutboundContext, Outcome, Salt, encode_with_id, to_matrix, to_mimi};
use serde_json::{Value, json};

use support::rate;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let window = if quick { Duration::from_millis(200) } else { Duration::from_secs(1) };
    let ctx =
        OutboundContext { room_uri: "mimi://hs.example/r/portal".into(), salt: Salt::Random, matrix_origin: None };
    let mut ids = MemoryIdMap::new();
    let original = json!({"type": "m.room.message", "sender": "@bob:hs.example", "event_id": "$orig",
                          "content": {"msgtype": "m.text", "body": "release notes are up"}});
    let Outcome::Message(first) = to_mimi(&original, &ctx, &ids).expect("original").remove(0) else { panic!() };
    ids.record("$orig", "@bob:hs.example", &first).expect("record");
    let event: Value = json!({
        "type": "m.room.message", "sender": "@alice:hs.example", "event_id": "$reply",
        "content": {
            "msgtype": "m.text",
            "body": "> <@bob:hs.example> release notes are up\n\nBob: **great** work, see [the notes](https://example.org/notes)\n\n- fast\n- small",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r:hs.example/$orig\">In reply to</a> <a href=\"https://matrix.to/#/@bob:hs.example\">@bob:hs.example</a><br>release notes are up</blockquote></mx-reply><a href=\"https://matrix.to/#/@bob:hs.example\">Bob</a>: <strong>great</strong> work, see <a href=\"https://example.org/notes\">the notes</a><ul>\n<li>fast</li>\n<li>small</li>\n</ul>\n",
            "m.mentions": {"user_ids": ["@bob:hs.example"]},
            "m.relates_to": {"m.in_reply_to": {"event_id": "$orig"}}
        }
    });
    let text = event.to_string();
    let to_mimi_one = || match to_mimi(&event, &ctx, &ids).expect("to_mimi").remove(0) {
        Outcome::Message(m) => *m,
        other => panic!("{other:?}"),
    };
    let mimi = to_mimi_one();
    let (bytes, _) = encode_with_id(&mimi).expect("id");
    println!("typical formatted reply: {} bytes of event JSON, {} bytes of MIMI CBOR", text.len(), bytes.len());
    let json = rate(window, || {
        let v: Value = serde_json::from_str(black_box(&text)).expect("json");
        black_box(v.to_string());
    });
    let forward = rate(window, || {
        black_box(to_mimi_one());
    });
    let encode = rate(window, || {
        black_box(encode_with_id(black_box(&mimi)).ok());
    });
    let decode = rate(window, || {
        black_box(MimiContent::decode(black_box(&bytes)).ok());
    });
    let back = rate(window, || {
        black_box(to_matrix(black_box(&mimi), &ids).ok());
    });
    let round = rate(window, || {
        let m = to_mimi_one();
        let (bytes, _) = encode_with_id(&m).expect("id");
        let m = MimiContent::decode(&bytes).expect("decode");
        black_box(to_matrix(&m, &ids).ok());
    });
    println!("{:<36} {:>12}", "stage (one core)", "per second");
    println!("{:<36} {json:>12.0}", "baseline: event JSON parse + print");
    println!("{:<36} {forward:>12.0}", "Matrix → MIMI (to_mimi)");
    println!("{:<36} {encode:>12.0}", "encode + -08 message ID");
    println!("{:<36} {decode:>12.0}", "decode");
    println!("{:<36} {back:>12.0}", "MIMI → Matrix (to_matrix)");
    println!("{:<36} {round:>12.0}  ({:.2} × the JSON baseline's time)", "full round trip", json / round);
}
