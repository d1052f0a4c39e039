//! `cargo bench --bench mimi`: MIMI content encode, decode and message-ID rates over the draft's
//! vectors, beside baselines from the same run: a generic (untyped) CBOR parse of the same bytes
//! for decode and encode, and a bare SHA-256 of the same bytes for the message ID.
//! Matrix → MIMI → Matrix translation has its own bench, `translate`.

#![allow(clippy::cast_precision_loss, reason = "rates are printed, not computed on")]

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use mimi_bridge::mimi::cbor::{MAX_VALUE_DEPTH, Reader};
use mimi_bridge::mimi::{IdDraft, MimiContent, message_id};
use sha2::{Digest, Sha256};

const NAMES: [&str; 10] = [
    "original",
    "reply",
    "reaction",
    "mention",
    "edit",
    "delete",
    "unlike",
    "attachment",
    "multipart-1",
    "multipart-2",
];

use support::rate;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let window = if quick { Duration::from_millis(100) } else { Duration::from_millis(500) };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content");
    println!("MIMI content codec — per vector, operations per second on one core");
    println!(
        "{:<12} {:>6} {:>12} {:>14} {:>7} {:>12} {:>14} {:>12} {:>14} {:>7}",
        "vector", "bytes", "decode/s", "generic/s", "ratio", "encode/s", "ratio-generic", "id/s", "sha256/s", "ratio"
    );
    for name in NAMES {
        let bytes = std::fs::read(format!("{dir}/{name}.cbor")).expect("vector");
        let content = MimiContent::decode(&bytes).expect("decode");
        let (sender, room) =
            (content.sender_uri().unwrap_or_default().to_owned(), content.room_uri().unwrap_or_default().to_owned());
        let decode = rate(window, || {
            std::hint::black_box(MimiContent::decode(std::hint::black_box(&bytes)).ok());
        });
        let generic = rate(window, || {
            std::hint::black_box(Reader::new(std::hint::black_box(&bytes)).value("", MAX_VALUE_DEPTH).ok());
        });
        let encode = rate(window, || {
            std::hint::black_box(std::hint::black_box(&content).encode());
        });
        let id = rate(window, || {
            std::hint::black_box(
                message_id(IdDraft::V08, &sender, &room, std::hint::black_box(&bytes), &content.salt).ok(),
            );
        });
        let sha = rate(window, || {
            std::hint::black_box(Sha256::digest(std::hint::black_box(&bytes)));
        });
        println!(
            "{name:<12} {:>6} {decode:>12.0} {generic:>14.0} {:>7.2} {encode:>12.0} {:>14.2} {id:>12.0} {sha:>14.0} {:>7.2}",
            bytes.len(),
            decode / generic,
            encode / generic,
            id / sha
        );
    }
}
