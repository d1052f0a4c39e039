//! Attachments across providers, a phase of `rooms_across`' test: each side sends an image;
//! the other bridge fetches the ciphertext from the sender's provider over mutual TLS, checks
//! its hash, decrypts it and uploads it to its homeserver, where the reader gets the same bytes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::bridge_synapse::wait_for;
use crate::rooms_across::{Across, ghost};
use crate::synapse::Synapse;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// Uploads `image` to `side`'s homeserver and sends it into `room` as `token`'s holder.
pub(crate) fn send_image(synapse: &Synapse, token: &str, room: &str, image: &[u8]) {
    let uploaded: Value = agent()
        .post(format!("{}/_matrix/media/v3/upload?filename=pic.png", synapse.base_url))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "image/png")
        .send(image)
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let image = json!({
        "msgtype": "m.image", "body": "pic.png", "url": uploaded["content_uri"],
        "info": {"mimetype": "image/png", "size": image.len()},
    });
    synapse.send(token, room, "m.room.message", &image);
}

/// The bytes of the image `sender` sent into `room`, as `token`'s holder downloads them.
pub(crate) fn image_from(synapse: &Synapse, token: &str, room: &str, sender: &str) -> Option<Vec<u8>> {
    let messages = synapse.messages(token, room);
    let event = messages.iter().find(|e| e["sender"] == sender && e["content"]["msgtype"] == "m.image")?;
    let mxc = event["content"]["url"].as_str()?.strip_prefix("mxc://")?;
    let url = format!("{}/_matrix/client/v1/media/download/{mxc}", synapse.base_url);
    let mut answer = agent().get(url).header("Authorization", &format!("Bearer {token}")).call().unwrap();
    assert_eq!(answer.status(), 200);
    Some(answer.body_mut().with_config().limit(10 << 20).read_to_vec().unwrap())
}

/// Test images larger than one storage chunk: Alice's and Bob's.
pub(crate) fn images() -> (Vec<u8>, Vec<u8>) {
    let from_alice = (0..300_000u32).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
    let from_bob = (0..280_000u32).map(|i| u8::try_from(i * 13 % 241).unwrap()).collect();
    (from_alice, from_bob)
}

/// Alice and Bob each send an image (larger than one storage chunk): each reads the other's.
pub(crate) fn images_cross(x: &Across) {
    let (from_alice, from_bob) = images();
    send_image(&x.a.synapse, &x.alice, &x.room_a, &from_alice);
    send_image(&x.b.synapse, &x.bob, &x.room_b, &from_bob);
    let alice_at_b = ghost("alice", "mimi.hs.test", "hs-b.test");
    let bob_at_a = ghost("bob", "mimi.hs-b.test", "hs.test");
    wait_for("Alice's image at Bob's", Duration::from_mins(1), || {
        image_from(&x.b.synapse, &x.bob, &x.room_b, &alice_at_b).is_some()
    });
    wait_for("Bob's image at Alice's", Duration::from_mins(1), || {
        image_from(&x.a.synapse, &x.alice, &x.room_a, &bob_at_a).is_some()
    });
    assert!(image_from(&x.b.synapse, &x.bob, &x.room_b, &alice_at_b) == Some(from_alice), "the same bytes at Bob's");
    assert!(image_from(&x.a.synapse, &x.alice, &x.room_a, &bob_at_a) == Some(from_bob), "the same bytes at Alice's");
}
