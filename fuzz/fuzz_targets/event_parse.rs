//! Untrusted event JSON: parsing, shape checks and recomputing hashes and signatures never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mimi_bridge::event::room_version::LINEARIZED_02;
use mimi_bridge::event::{KeyRing, UnverifiedLpdu, UnverifiedPdu, inspect};

fuzz_target!(|data: &[u8]| {
    let keys = KeyRing::new();
    if let Ok(object) = mimi_bridge::event::canonical::parse_object(data) {
        let _ = inspect(&LINEARIZED_02, &object, &keys);
    }
    if let Ok(lpdu) = UnverifiedLpdu::parse(data) {
        let _ = lpdu.reference_id(&LINEARIZED_02);
        let _ = lpdu.verify(&LINEARIZED_02, &keys);
    }
    if let Ok(pdu) = UnverifiedPdu::parse(data) {
        let _ = pdu.verify(&LINEARIZED_02, &keys);
    }
});
