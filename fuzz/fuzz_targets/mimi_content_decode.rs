//! Any bytes fed to the MIMI decoders return a value or an error, never a panic; a value
//! re-encodes to exactly the bytes it was decoded from (the codec accepts only deterministic CBOR).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mimi_bridge::mimi::MimiContent;
use mimi_bridge::mimi::derived::DerivedValues;
use mimi_bridge::mimi::status::StatusReport;

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = MimiContent::decode(data) {
        assert_eq!(content.encode(), data, "decode → encode must be the identity");
        let json = mimi_bridge::mimi::json::content_to_json(&content);
        let back = mimi_bridge::mimi::json::json_to_content(&json).expect("the JSON mapping round-trips");
        assert_eq!(back, content);
    }
    if let Ok(derived) = DerivedValues::decode(data) {
        assert_eq!(derived.encode(), data);
    }
    if let Ok(report) = StatusReport::decode(data) {
        assert_eq!(report.encode(), data);
    }
});
