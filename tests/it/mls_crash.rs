//! Kill -9 while encrypting: no (epoch, sender, generation) is ever used twice.
//!
//! Alice's MLS state must be durable before a ciphertext leaves the process (module
//! documentation of `mimi_bridge::mls::group`): otherwise a crash brings back the old ratchet
//! state and the next process encrypts under a key and nonce already used on the wire.
//!
//! The child is this same test binary running the ignored `mls_crash_child` test: it reopens
//! Alice's store, loads the room's group and her signature key, prints `ready`, then encrypts
//! MIMI content ("pid N msg i") in a loop, persisting each time and printing `ct <hex>` only
//! after the persist returned. The parent kills it with SIGKILL at random moments, round after
//! round, keeps the complete lines, then checks what left the child processes:
//!
//! 1. independently of openmls' replay protection, it decrypts each ciphertext's sender data
//!    itself (RFC 9420 §6.3.2, with the epoch's `sender_data_secret` read from Bob's storage)
//!    and requires the (epoch, leaf, generation) triples to be strictly increasing in wire
//!    order, hence never repeated;
//! 2. Bob decrypts every ciphertext in order (a reused generation would fail: its key is deleted
//!    once used) and the plaintexts are all distinct, each child's numbered 0, 1, 2, … with no
//!    gap.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mimi_bridge::mimi::{Disposition, MimiContent, NestedPart, Part};
use mimi_bridge::mls::group::RoomGroup;
use mimi_bridge::mls::{self, MlsProvider};
use mimi_bridge::store::Store;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, CredentialWithKey, GroupId, KeyPackage, MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider as _,
    StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::storage::{CURRENT_VERSION, Entity, StorageProvider as _, traits};

use crate::mimi_support::{PLAIN, cbor_file};

const CHILD_DIR: &str = "MIMI_BRIDGE_MLS_CRASH_CHILD_DIR";
const ROOM: &str = "!crash:a.example";
const ALICE: &str = "@alice:a.example";
const BOB: &str = "@bob:b.example";
/// Alice's signature public key, for the child to find her key pair in her store.
const ALICE_KEY_FILE: &str = "alice.signature-key";
const ROUNDS: u64 = 25;
/// Every `SPAWN_KILL_EVERY`-th round is killed at a random moment after the spawn (possibly
/// while the store opens or the group loads); the others a random 10–150 ms after `ready`.
const SPAWN_KILL_EVERY: u64 = 5;
/// A child the parent failed to kill stops by itself.
const CHILD_LIFETIME: Duration = Duration::from_secs(10);

fn provider(dir: &Path) -> MlsProvider {
    MlsProvider::new(Arc::new(Store::open(dir).unwrap()))
}

fn credential(identity: &str, signer: &SignatureKeyPair) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    }
}

/// A valid MIMI content whose salt and text carry the child's pid and the message's number.
fn content(template: &MimiContent, pid: u32, i: u64) -> Vec<u8> {
    let mut content = template.clone();
    content.salt = [0; 16];
    content.salt[..4].copy_from_slice(&pid.to_be_bytes());
    content.salt[4..12].copy_from_slice(&i.to_be_bytes());
    content.body = NestedPart {
        disposition: Disposition::RENDER,
        language: String::new(),
        part: Part::Single { content_type: PLAIN.into(), content: format!("pid {pid} msg {i}").into_bytes() },
    };
    content.encode()
}

#[test]
#[ignore = "child process of kill_9_never_reuses_a_generation; runs only when that test spawns it"]
fn mls_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let dir = Path::new(&dir);
    let public_key = std::fs::read(dir.join(ALICE_KEY_FILE)).unwrap();
    let provider = provider(&dir.join("alice"));
    let signer = SignatureKeyPair::read(provider.storage(), &public_key, mls::SIGNATURE_SCHEME).unwrap();
    let mut group = RoomGroup::load(&provider, ROOM).unwrap().expect("Alice's group is in her store");
    let template = MimiContent::decode(&cbor_file("original")).unwrap();
    let pid = std::process::id();
    let mut out = std::io::stdout().lock();
    // libtest has printed "test mls_crash::mls_crash_child ... " without a newline.
    writeln!(out, "\nready").unwrap();
    out.flush().unwrap();
    let started = Instant::now();
    for i in 0.. {
        if started.elapsed() > CHILD_LIFETIME {
            break;
        }
        let ciphertext = group.encrypt(&provider, &signer, &content(&template, pid, i)).unwrap();
        provider.storage().persist().unwrap();
        // Only now may the ciphertext leave the process.
        writeln!(out, "ct {}", hex::encode(&ciphertext)).unwrap();
        out.flush().unwrap();
    }
}

/// Alice creates the room and adds Bob; both persist; Alice's public key goes to a file.
fn set_up(dir: &Path) -> (MlsProvider, RoomGroup) {
    let alice = provider(&dir.join("alice"));
    let alice_signer = SignatureKeyPair::new(mls::SIGNATURE_SCHEME).unwrap();
    alice_signer.store(alice.storage()).unwrap();
    let bob = provider(&dir.join("bob"));
    let bob_signer = SignatureKeyPair::new(mls::SIGNATURE_SCHEME).unwrap();
    bob_signer.store(bob.storage()).unwrap();
    let bob_key_package = KeyPackage::builder()
        .build(mls::CIPHERSUITE, &bob, &bob_signer, credential(BOB, &bob_signer))
        .unwrap()
        .key_package()
        .clone();
    bob.storage().persist().unwrap();

    let mut alice_group =
        RoomGroup::create(&alice, &alice_signer, credential(ALICE, &alice_signer), ROOM, None).unwrap();
    let (_commit, welcome) = alice_group.add_members(&alice, &alice_signer, &[bob_key_package]).unwrap();
    alice_group.merge_pending_commit(&alice).unwrap();
    alice.storage().persist().unwrap();
    std::fs::write(dir.join(ALICE_KEY_FILE), alice_signer.to_public_vec()).unwrap();

    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(&welcome).unwrap().extract() else {
        panic!("expected a Welcome");
    };
    let bob_group = StagedWelcome::new_from_welcome(&bob, &mls::group_join_config(), welcome, None)
        .unwrap()
        .into_group(&bob)
        .unwrap();
    bob.storage().persist().unwrap();
    assert_eq!((alice_group.epoch(), bob_group.epoch().as_u64()), (1, 1));
    (bob, RoomGroup::from_group(bob_group))
}

/// What one child round printed.
enum Line {
    Ready,
    Ciphertext(Vec<u8>),
}

/// Spawns a child, kills it (SIGKILL) at a random moment, returns its complete `ct` lines.
fn round(dir: &Path, round: u64, seed: u64) -> (bool, Vec<Vec<u8>>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "mls_crash::mls_crash_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let spawned = Instant::now();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // A line cut short by the kill has no newline: it never left "durably", drop it.
        while stdout.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
            let text = line.trim_end();
            let parsed = if text == "ready" {
                Some(Line::Ready)
            } else {
                text.strip_prefix("ct ").map(|hex| Line::Ciphertext(hex::decode(hex).unwrap()))
            };
            if let Some(parsed) = parsed
                && tx.send(parsed).is_err()
            {
                break;
            }
            line.clear();
        }
    });
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    let at_spawn = round.is_multiple_of(SPAWN_KILL_EVERY);
    let mut ready = false;
    if at_spawn {
        std::thread::sleep(Duration::from_millis(seed % 80));
    } else {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Line::Ready) => ready = true,
            Ok(Line::Ciphertext(_)) => panic!("round {round}: a ciphertext before ready"),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("round {round}: the child never got ready ({e}): {}", stderr.join().unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(10 + seed % 141));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    let killed_after = spawned.elapsed();
    reader.join().unwrap();
    let stderr = stderr.join().unwrap();
    let mut ciphertexts = Vec::new();
    for line in rx.try_iter() {
        match line {
            Line::Ready => ready = true,
            Line::Ciphertext(c) => ciphertexts.push(c),
        }
    }
    assert!(status.code().is_none(), "round {round}: the child ended on its own ({status}) before the kill: {stderr}");
    eprintln!(
        "round {round}: killed after {killed_after:?} ({}), {} ciphertexts",
        if at_spawn { "from spawn" } else { "from ready" },
        ciphertexts.len()
    );
    (ready || !ciphertexts.is_empty(), ciphertexts)
}

/// openmls' message secrets of the group, as the storage holds them (JSON), to read the current
/// epoch's `sender_data_secret` out of.
#[derive(serde::Serialize, serde::Deserialize)]
struct RawMessageSecrets(serde_json::Value);
impl Entity<CURRENT_VERSION> for RawMessageSecrets {}
impl traits::MessageSecrets<CURRENT_VERSION> for RawMessageSecrets {}

fn sender_data_secret(provider: &MlsProvider) -> Vec<u8> {
    let secrets: RawMessageSecrets =
        provider.storage().message_secrets(&GroupId::from_slice(ROOM.as_bytes())).unwrap().unwrap();
    // openmls' `MessageSecretsStore` (past epochs' secret trees, none here, and the current
    // epoch's `MessageSecrets`); a `Secret` serializes as `{"value": {"vec": [u8, ...]}}`.
    let bytes = &secrets.0["message_secrets"]["sender_data_secret"]["secret"]["value"]["vec"];
    let bytes: Vec<u8> = serde_json::from_value(bytes.clone())
        .unwrap_or_else(|e| panic!("sender_data_secret not where openmls 0.9.2 keeps it ({e}): {bytes}"));
    assert_eq!(bytes.len(), mls::CIPHERSUITE.hash_length());
    bytes
}

/// A TLS presentation-language reader, just enough for an `MLSMessage` holding a
/// `PrivateMessage`.
struct Tls<'a>(&'a [u8]);

impl<'a> Tls<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "truncated MLS message");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn uint(&mut self, n: usize) -> u64 {
        self.take(n).iter().fold(0, |acc, b| acc << 8 | u64::from(*b))
    }

    /// `opaque x<V>`: a QUIC-style variable-length length, then the bytes.
    fn vector(&mut self) -> &'a [u8] {
        let first = self.take(1)[0];
        let extra = (1 << (first >> 6)) - 1;
        assert!(extra < 7, "8-byte vector lengths are invalid in MLS");
        let len = self.take(extra).iter().fold(u64::from(first & 0x3f), |acc, b| acc << 8 | u64::from(*b));
        self.take(usize::try_from(len).unwrap())
    }
}

fn push_vector(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap();
    assert!(len < 1 << 14);
    if len < 64 {
        out.push(u8::try_from(len).unwrap());
    } else {
        out.extend_from_slice(&(0x4000 | len).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// `ExpandWithLabel(secret, label, context, length)` (RFC 9420 §8).
fn expand_with_label(provider: &MlsProvider, secret: &[u8], label: &str, context: &[u8], length: usize) -> Vec<u8> {
    let mut info = u16::try_from(length).unwrap().to_be_bytes().to_vec();
    push_vector(&mut info, format!("MLS 1.0 {label}").as_bytes());
    push_vector(&mut info, context);
    let okm = provider.crypto().hkdf_expand(mls::CIPHERSUITE.hash_algorithm(), secret, &info, length).unwrap();
    okm.as_slice().to_vec()
}

/// The (epoch, leaf index, generation) of a `PrivateMessage`, from its sender data decrypted
/// with the epoch's `sender_data_secret` (RFC 9420 §6.3.2), without openmls' ratchets.
fn wire_triple(provider: &MlsProvider, sender_data_secret: &[u8], message: &[u8]) -> (u64, u32, u32) {
    let mut tls = Tls(message);
    assert_eq!(tls.uint(2), 1, "version mls10");
    assert_eq!(tls.uint(2), 2, "wire format mls_private_message");
    let group_id = tls.vector();
    let epoch = tls.uint(8);
    let content_type = tls.uint(1);
    assert_eq!(content_type, 1, "application");
    let _authenticated_data = tls.vector();
    let encrypted_sender_data = tls.vector();
    let ciphertext = tls.vector();
    assert!(tls.0.is_empty(), "trailing bytes after the PrivateMessage");
    assert_eq!(group_id, ROOM.as_bytes());

    let suite = mls::CIPHERSUITE;
    let sample = &ciphertext[..ciphertext.len().min(suite.hash_length())];
    let key = expand_with_label(provider, sender_data_secret, "key", sample, suite.aead_key_length());
    let nonce = expand_with_label(provider, sender_data_secret, "nonce", sample, suite.aead_nonce_length());
    let mut aad = Vec::new();
    push_vector(&mut aad, group_id);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.push(1);
    let sender_data =
        provider.crypto().aead_decrypt(suite.aead_algorithm(), &key, encrypted_sender_data, &nonce, &aad).unwrap();
    assert_eq!(sender_data.len(), 12, "SenderData: leaf_index, generation, reuse_guard");
    let mut sender_data = Tls(&sender_data);
    let leaf = u32::try_from(sender_data.uint(4)).unwrap();
    let generation = u32::try_from(sender_data.uint(4)).unwrap();
    (epoch, leaf, generation)
}

/// The control: state not persisted before the ciphertext left is exactly what check 1 catches.
/// Two ciphertexts from the same stored state (the writes of the first dropped, as a crash
/// would) carry the same (epoch, leaf, generation). Alice's store is left as it was.
fn check_one_catches_a_reuse(dir: &Path, bob: &MlsProvider) {
    let public_key = std::fs::read(dir.join(ALICE_KEY_FILE)).unwrap();
    let alice = provider(&dir.join("alice"));
    let signer = SignatureKeyPair::read(alice.storage(), &public_key, mls::SIGNATURE_SCHEME).unwrap();
    let template = MimiContent::decode(&cbor_file("original")).unwrap();
    let secret = sender_data_secret(bob);
    let mut triples = Vec::new();
    for i in 0..2 {
        let mut group = RoomGroup::load(&alice, ROOM).unwrap().unwrap();
        let ciphertext = group.encrypt(&alice, &signer, &content(&template, 0, i)).unwrap();
        alice.storage().discard_pending();
        triples.push(wire_triple(bob, &secret, &ciphertext));
    }
    assert_eq!(triples, [(1, 0, 0), (1, 0, 0)]);
}

#[test]
fn kill_9_never_reuses_a_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (bob, mut bob_group) = set_up(dir.path());
    check_one_catches_a_reuse(dir.path(), &bob);

    let mut wire: Vec<Vec<u8>> = Vec::new();
    let (mut ready_rounds, mut productive_ready_rounds) = (0, 0);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for r in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (got_ready, ciphertexts) = round(dir.path(), r, seed);
        if !r.is_multiple_of(SPAWN_KILL_EVERY) {
            assert!(got_ready);
            ready_rounds += 1;
            productive_ready_rounds += u64::from(!ciphertexts.is_empty());
        }
        wire.extend(ciphertexts);
    }
    eprintln!(
        "rounds {ROUNDS}, kills {ROUNDS}, ciphertexts {}, rounds killed after ready that sent something: \
         {productive_ready_rounds}/{ready_rounds}",
        wire.len()
    );
    assert!(
        productive_ready_rounds * 4 >= ready_rounds * 3,
        "most children sent something before the kill ({productive_ready_rounds}/{ready_rounds})"
    );
    assert!(wire.len() as u64 >= ROUNDS, "too few ciphertexts to mean anything: {}", wire.len());

    // 1. What went on the wire, read without openmls' ratchets: (epoch, sender, generation)
    // strictly increasing, so never twice. A gap is a generation persisted but killed before it
    // was printed: burned, never reused.
    let secret = sender_data_secret(&bob);
    let triples: Vec<_> = wire.iter().map(|m| wire_triple(&bob, &secret, m)).collect();
    for (i, pair) in triples.windows(2).enumerate() {
        assert!(
            pair[0] < pair[1],
            "ciphertexts {i} and {} reuse or go back: (epoch, leaf, generation) {:?} then {:?}",
            i + 1,
            pair[0],
            pair[1]
        );
    }
    let (first, last) = (triples[0], triples[triples.len() - 1]);
    assert_eq!((first.0, first.1), (1, 0), "Alice (leaf 0) sends in epoch 1");
    assert_eq!((last.0, last.1), (1, 0));
    let burned = u64::from(last.2 - first.2) + 1 - triples.len() as u64;
    eprintln!("generations {}..={}, {burned} burned (persisted, killed before sent)", first.2, last.2);

    // 2. Bob decrypts all of them, in order; every plaintext is new, and each child's messages
    // are numbered 0, 1, 2, … as it printed them.
    let mut plaintexts = std::collections::BTreeSet::new();
    let mut next_of_pid = std::collections::BTreeMap::<u32, u64>::new();
    for (i, ciphertext) in wire.iter().enumerate() {
        let decrypted = bob_group
            .decrypt(&bob, ciphertext)
            .unwrap_or_else(|e| panic!("ciphertext {i} of {} ({:?}): {e}", wire.len(), triples[i]));
        assert_eq!(decrypted.sender_identity, ALICE.as_bytes());
        assert_eq!(decrypted.epoch, 1);
        let content = MimiContent::decode(&decrypted.mimi_cbor).unwrap();
        let Part::Single { content: text, .. } = &content.body.part else { panic!("ciphertext {i}: not single part") };
        let text = String::from_utf8(text.clone()).unwrap();
        let (pid, n) = text.strip_prefix("pid ").and_then(|t| t.split_once(" msg ")).unwrap();
        let (pid, n): (u32, u64) = (pid.parse().unwrap(), n.parse().unwrap());
        let expected = next_of_pid.entry(pid).or_insert(0);
        assert_eq!(n, *expected, "ciphertext {i}: {text} out of sequence");
        *expected += 1;
        assert!(plaintexts.insert(decrypted.mimi_cbor), "ciphertext {i}: plaintext {text} seen twice");
    }
    bob.storage().persist().unwrap();
}
