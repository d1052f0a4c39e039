//! `cargo bench --bench mls`: MLS application messages per second and the time of an add commit,
//! over the bridge's RocksDB-backed `MlsProvider` beside openmls' own in-memory storage
//! (`OpenMlsRustCrypto`, i.e. `MemoryStorage`) measured in the same run, through the same openmls
//! code path (`MlsGroup` directly, generic over the provider).
//!
//! Messages: Alice encrypts a 200-byte MIMI content (the draft's `reply` vector), framed as
//! `application/mimi-content`, and Bob decrypts and unframes it; one message is one encrypt plus
//! one decrypt on one thread. Ours is measured with two policies: durable per message (each
//! member persists — a synced RocksDB write — after each operation, before the ciphertext counts
//! as sent or the plaintext as delivered) and persist once per 100 messages (group-commit-like).
//!
//! Adds: Alice (alone in a fresh group) commits adding 1, 10 or 100 members: `add_members`,
//! serializing the commit and Welcome, `merge_pending_commit`; for ours a persist after the add
//! (before the commit leaves) and after the merge, as `RoomGroup` requires. Key package
//! generation is excluded. Median of several repeats.
//!
//! For context the table also gives a raw RocksDB synced 1 KiB put, the floor of one persist on
//! this disk. Message configurations run in alternating rounds and add repeats alternate between
//! ours and the baseline, so load from elsewhere on the machine hits both sides alike.
//!
//! Bounded: fixed windows and repeat counts; `--quick` shortens both. Stores live in temporary
//! directories and are synced (`SyncPolicy::Sync`).

#![allow(clippy::cast_precision_loss, reason = "rates are printed, not computed on")]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimi_bridge::mls::framing::{MIMI_CONTENT_TYPE, frame_mimi, unframe};
use mimi_bridge::mls::{self, MlsProvider};
use mimi_bridge::store::Store;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, CredentialWithKey, GroupId, KeyPackage, MlsGroup, MlsMessageBodyIn, MlsMessageIn,
    ProcessedMessageContent, ProtocolMessage, StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use support::rate;

/// The allocator the `mimi-bridge` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages per persist in the group-commit-like policy.
const GROUP_COMMIT: u64 = 100;
/// Members added in one commit.
const ADDS: [usize; 3] = [1, 10, 100];

/// A provider the bench can make durable: a synced store write for ours, nothing for memory.
trait Durable: OpenMlsProvider {
    fn persist(&self);
}

impl Durable for MlsProvider {
    fn persist(&self) {
        self.storage().persist().expect("persist");
    }
}

impl Durable for OpenMlsRustCrypto {
    fn persist(&self) {}
}

/// One client: its provider, its signing key (stored in the provider) and its credential.
struct Member<P> {
    provider: P,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

impl<P: Durable> Member<P> {
    fn new(provider: P, identity: &str) -> Self {
        let signer = SignatureKeyPair::new(mls::SIGNATURE_SCHEME).expect("signer");
        signer.store(provider.storage()).expect("store signer");
        provider.persist();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        Self { provider, signer, credential }
    }

    fn key_package(&self) -> KeyPackage {
        let bundle = KeyPackage::builder()
            .build(mls::CIPHERSUITE, &self.provider, &self.signer, self.credential.clone())
            .expect("key package");
        self.provider.persist();
        bundle.key_package().clone()
    }

    /// A fresh group with us as its only member.
    fn create(&self, group_id: &str) -> MlsGroup {
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &mls::group_create_config(),
            GroupId::from_slice(group_id.as_bytes()),
            self.credential.clone(),
        )
        .expect("group");
        self.provider.persist();
        group
    }

    fn join(&self, welcome: &[u8]) -> MlsGroup {
        let MlsMessageBodyIn::Welcome(welcome) =
            MlsMessageIn::tls_deserialize_exact(welcome).expect("welcome").extract()
        else {
            panic!("expected a Welcome");
        };
        let group = StagedWelcome::new_from_welcome(&self.provider, &mls::group_join_config(), welcome, None)
            .expect("staged welcome")
            .into_group(&self.provider)
            .expect("join");
        self.provider.persist();
        group
    }
}

/// Alice creates the room and adds Bob, who joins from the Welcome.
fn pair<P: Durable>(alice: &Member<P>, bob: &Member<P>) -> (MlsGroup, MlsGroup) {
    let mut alice_group = alice.create("!bench:hub.example");
    let (_commit, welcome, _) =
        alice_group.add_members(&alice.provider, &alice.signer, &[bob.key_package()]).expect("add");
    alice.provider.persist();
    alice_group.merge_pending_commit(&alice.provider).expect("merge");
    alice.provider.persist();
    let bob_group = bob.join(&welcome.to_bytes().expect("welcome"));
    (alice_group, bob_group)
}

/// One message configuration: a pair of members (own providers) in one group, its persist
/// policy, and what its rounds measured so far.
struct Exchange<P> {
    members: (Member<P>, Member<P>),
    groups: (MlsGroup, MlsGroup),
    /// Each member persists after every `persist_every`th message of theirs.
    persist_every: u64,
    messages: u64,
    seconds: f64,
    encrypt: Duration,
    decrypt: Duration,
    persist: Duration,
}

impl<P: Durable> Exchange<P> {
    fn new(alice: P, bob: P, persist_every: u64) -> Self {
        let members = (Member::new(alice, "alice"), Member::new(bob, "bob"));
        let groups = pair(&members.0, &members.1);
        Self {
            members,
            groups,
            persist_every,
            messages: 0,
            seconds: 0.0,
            encrypt: Duration::ZERO,
            decrypt: Duration::ZERO,
            persist: Duration::ZERO,
        }
    }

    /// Alice → Bob messages for about `window`.
    fn run(&mut self, payload: &[u8], window: Duration) {
        let ((alice, bob), (alice_group, bob_group)) = (&self.members, &mut self.groups);
        let (mut n, mut encrypt, mut decrypt, mut persist) = (0u64, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let start_count = self.messages;
        let per_second = rate(window, || {
            n += 1;
            let due = (start_count + n).is_multiple_of(self.persist_every);
            let start = Instant::now();
            let framed = frame_mimi(payload);
            let ciphertext = alice_group
                .create_message(&alice.provider, &alice.signer, &framed)
                .expect("encrypt")
                .to_bytes()
                .expect("serialize");
            let persist_start = Instant::now();
            if due {
                alice.provider.persist();
            }
            let sent = Instant::now();
            persist += sent - persist_start;
            let message = match MlsMessageIn::tls_deserialize_exact(&ciphertext).expect("parse").extract() {
                MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
                _ => panic!("expected a PrivateMessage"),
            };
            let processed = bob_group.process_message(&bob.provider, message).expect("decrypt");
            let ProcessedMessageContent::ApplicationMessage(application) = processed.into_content() else {
                panic!("expected an application message");
            };
            let (media_type, content) = unframe(&application.into_bytes()).expect("unframe");
            assert!(media_type == MIMI_CONTENT_TYPE && content.len() == payload.len(), "round trip");
            let persist_start = Instant::now();
            if due {
                bob.provider.persist();
            }
            let delivered = Instant::now();
            persist += delivered - persist_start;
            encrypt += sent - start;
            decrypt += delivered - sent;
        });
        self.messages += n;
        self.seconds += n as f64 / per_second;
        self.encrypt += encrypt;
        self.decrypt += decrypt;
        self.persist += persist;
    }

    fn per_second(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    /// Mean µs per message of encrypt, decrypt and (within those) persist.
    fn micros(&self) -> [f64; 3] {
        [self.encrypt, self.decrypt, self.persist].map(|d| d.as_secs_f64() * 1e6 / self.messages as f64)
    }
}

/// Synced RocksDB writes of one 1 KiB record per second, on a raw DB beside the stores: what
/// one persist costs at least on this disk.
fn raw_synced_writes(db: &rocksdb::DB, window: Duration) -> f64 {
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(true);
    let (value, mut key) = (vec![b'x'; 1024], 0u64);
    rate(window, || {
        key += 1;
        db.put_opt(key.to_be_bytes(), &value, &options).expect("write");
    })
}

/// One add commit of `count` fresh members, timed: the whole (with persists) and the openmls
/// part alone (`add_members`, serializing, `merge_pending_commit`).
fn add_commit<P: Durable>(alice: &Member<P>, count: usize, group_id: &str) -> (Duration, Duration) {
    // Not timed: the new members' key packages (from their own providers), and the group.
    let joiners: Vec<KeyPackage> = (0..count)
        .map(|i| Member::new(OpenMlsRustCrypto::default(), &format!("@joiner{i}:part.example")).key_package())
        .collect();
    let mut group = alice.create(group_id);
    let start = Instant::now();
    let (commit, welcome, _) = group.add_members(&alice.provider, &alice.signer, &joiners).expect("add");
    std::hint::black_box((commit.to_bytes().expect("commit"), welcome.to_bytes().expect("welcome")));
    let added = Instant::now();
    alice.provider.persist();
    let merge_start = Instant::now();
    group.merge_pending_commit(&alice.provider).expect("merge");
    let merged = Instant::now();
    alice.provider.persist();
    let total = start.elapsed();
    assert_eq!(group.members().count(), count + 1);
    (total, (added - start) + (merged - merge_start))
}

/// The median, in ms.
fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn ours(dir: &std::path::Path, name: &str) -> MlsProvider {
    let path = dir.join(name);
    MlsProvider::new(Arc::new(Store::open(&path).expect("store")))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var_os("MIMI_BENCH_QUICK").is_some();
    let (window, rounds, repeats) =
        if quick { (Duration::from_millis(400), 1, 3) } else { (Duration::from_secs(3), 3, 7) };
    let payload = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/mimi-content/reply.cbor"))
        .expect("reply.cbor");
    let dir = tempfile::tempdir().expect("dir");
    println!(
        "MLS (openmls 0.9, {:?}) — {}-byte MIMI payload, one thread; ours = MlsProvider over synced RocksDB, \
         baseline = OpenMlsRustCrypto (MemoryStorage)",
        mls::CIPHERSUITE,
        payload.len()
    );

    // Messages: a fresh pair of members (own stores) per configuration. The configurations run
    // in alternating rounds, so load from elsewhere on the machine hits all of them alike.
    let mut durable = Exchange::new(ours(dir.path(), "durable-alice"), ours(dir.path(), "durable-bob"), 1);
    let mut grouped = Exchange::new(ours(dir.path(), "grouped-alice"), ours(dir.path(), "grouped-bob"), GROUP_COMMIT);
    let mut baseline = Exchange::new(OpenMlsRustCrypto::default(), OpenMlsRustCrypto::default(), 1);
    let raw_db = rocksdb::DB::open_default(dir.path().join("raw")).expect("rocksdb");
    let (mut raw_writes, slice) = (0.0, window / rounds);
    for _ in 0..rounds {
        durable.run(&payload, slice);
        grouped.run(&payload, slice);
        baseline.run(&payload, slice);
        raw_writes += raw_synced_writes(&raw_db, slice / 4) / f64::from(rounds);
    }
    println!();
    println!(
        "{:<28} {:>10} {:>12} {:>12} {:>20} {:>16}",
        "messages (encrypt+decrypt)", "msgs/s", "encrypt µs", "decrypt µs", "of which persist µs", "ours/baseline"
    );
    let base_rate = baseline.per_second();
    let rows = [
        ("ours, durable per message", durable.per_second(), durable.micros(), durable.messages),
        ("ours, persist per 100 msgs", grouped.per_second(), grouped.micros(), grouped.messages),
        ("baseline, in-memory", base_rate, baseline.micros(), baseline.messages),
    ];
    for (label, per_second, [encrypt, decrypt, persist], _) in rows {
        println!(
            "{label:<28} {per_second:>10.0} {encrypt:>12.1} {decrypt:>12.1} {persist:>20.1} {:>16.3}",
            per_second / base_rate
        );
    }
    println!(
        "({} / {} / {} messages; context: raw RocksDB synced 1 KiB put {:.0} µs each, {raw_writes:.0}/s; \
         durable per message does two synced writes, one per member)",
        rows[0].3,
        rows[1].3,
        rows[2].3,
        1e6 / raw_writes
    );

    println!();
    println!(
        "{:<28} {:>14} {:>20} {:>14} {:>16}",
        format!("add commit (median of {repeats})"),
        "ours ms",
        "ours w/o persist ms",
        "baseline ms",
        "ours/baseline"
    );
    let ours_alice = Member::new(ours(dir.path(), "adds"), "alice");
    let base_alice = Member::new(OpenMlsRustCrypto::default(), "alice");
    for count in ADDS {
        // Ours and the baseline alternate, so load from elsewhere on the machine hits both alike.
        let (mut ours_total, mut ours_ops, mut base_total) = (Vec::new(), Vec::new(), Vec::new());
        for repeat in 0..repeats {
            let (total, ops) = add_commit(&ours_alice, count, &format!("!ours-{count}-{repeat}:hub.example"));
            ours_total.push(total);
            ours_ops.push(ops);
            base_total.push(add_commit(&base_alice, count, &format!("!base-{count}-{repeat}:hub.example")).0);
        }
        let (ours_ms, ours_ops_ms, base_ms) = (median_ms(ours_total), median_ms(ours_ops), median_ms(base_total));
        println!(
            "{:<28} {ours_ms:>14.2} {ours_ops_ms:>20.2} {base_ms:>14.2} {:>16.2}",
            format!("{count} member(s)"),
            ours_ms / base_ms
        );
    }
}
