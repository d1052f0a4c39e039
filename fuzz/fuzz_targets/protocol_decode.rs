//! Any bytes fed to the MIMI protocol's body decoders return a value or an error, never a panic;
//! a value re-encodes to exactly the bytes it was decoded from.
#![no_main]

include!("../check/protocol_decode.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
