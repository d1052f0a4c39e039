// The property the `protocol_decode` fuzz target checks, shared with the test suite's smoke run
// (`tests/it/mimi_protocol.rs`), which feeds it mutated seeds on stable Rust in CI: every body
// type decodes any bytes to a value or an error, never a panic, and a value re-encodes to
// exactly the bytes it came from.

/// Decodes `data` as every body type; panics if a decoded value does not re-encode exactly.
pub(crate) fn check(data: &[u8]) {
    use mimi_bridge::mimi::protocol::{
        AbuseReport, ConsentEntry, FanoutMessage, GroupInfoRatchetTree, GroupInfoRequest, GroupInfoResponse,
        HandshakeBundle, IdentifierRequest, IdentifierResponse, KeyMaterialRequest, KeyMaterialResponse,
        SubmitMessageRequest, SubmitMessageResponse, UpdateRoomResponse, Wire,
    };

    fn identity<T: Wire + std::fmt::Debug>(data: &[u8]) {
        if let Ok(value) = T::decode(data) {
            assert_eq!(value.encode(), data, "decode → encode must be the identity: {value:?}");
        }
    }
    identity::<KeyMaterialRequest>(data);
    identity::<KeyMaterialResponse>(data);
    identity::<HandshakeBundle>(data);
    identity::<UpdateRoomResponse>(data);
    identity::<SubmitMessageRequest>(data);
    identity::<SubmitMessageResponse>(data);
    identity::<GroupInfoRequest>(data);
    identity::<GroupInfoResponse>(data);
    identity::<GroupInfoRatchetTree>(data);
    identity::<ConsentEntry>(data);
    identity::<IdentifierRequest>(data);
    identity::<IdentifierResponse>(data);
    identity::<AbuseReport>(data);
    if let Ok(messages) = FanoutMessage::decode_all(data) {
        assert_eq!(FanoutMessage::encode_all(&messages), data, "notify bodies re-encode exactly");
    }
}
