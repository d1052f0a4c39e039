//! The column-family catalog: every family the store has, its name, and what it maps.
//! `schemas/storage.md` describes the same list for readers.

/// The column families, named `<key>_<value>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// `schema_version` → u32 BE.
    MetanameValue,
    /// Room ID → [`ShortRoomId`].
    RoomidShortroomid,
    /// [`ShortRoomId`] → room ID.
    ShortroomidRoomid,
    /// [`RoomSeq`] → the PDU's canonical JSON bytes.
    RoomseqPdu,
    /// Event ID → [`RoomSeq`].
    EventidRoomseq,
    /// [`ShortRoomId`] → [`Tail`].
    RoomTail,
    /// [`RoomSeq`] of a state event → its (type, state key) as a [`StateDelta`].
    RoomseqStatedelta,
    /// An LPDU's reference ID → the event ID the hub completed it into (idempotent retries).
    LpduidEventid,
    /// `server \0 key ID` → 32-byte ed25519 public key the hub trusts.
    ServerkeyidVerifykey,
    /// `server \0 key ID` → 32-byte public key that came with an imported log: used to verify
    /// that log, never trusted by the hub.
    ImportkeyidVerifykey,
    /// openmls storage key (label ‖ JSON key ‖ u16 BE storage version) → JSON value: the MLS
    /// state of this server's clients (groups, ratchets, key material).
    MlskeyValue,
    /// [`ShortRoomId`] → u64 BE position of the room's latest `m.mls.commit`.
    ShortroomidCommitseq,
    /// Event ID → the MIMI content (CBOR) of an `m.room.encrypted` event, as this server
    /// encrypted or first decrypted it (MLS keeps no keys to decrypt it again).
    EventidPlaintext,
    /// SHA-256 of a ciphertext this server sent to another hub → its MIMI content (of a commit
    /// adding devices: the TLS key packages it adds), until the event carrying it comes back in
    /// that hub's log.
    CiphertexthashPlaintext,
    /// Commit event ID → the Welcome (JSON) for the members that commit added, for delivery to
    /// their servers.
    CommitidWelcome,
    /// `user \0 device \0 key package reference (hex)` → 1 byte last-resort flag ‖ the TLS
    /// `KeyPackage`: key packages published for this server's devices, to be claimed.
    UserdevicerefKeypackage,
    /// `user \0 device` → canonical JSON device object (signed by the user's server).
    UserdeviceDeviceobject,
    /// Homeserver transaction ID → u64 BE milliseconds when it was made durable: transactions
    /// already taken in (a redelivery is answered 200 with nothing new).
    TxnidSeen,
    /// u64 BE intake sequence number → a Matrix event (JSON) taken in and not yet bridged.
    IntakeseqEvent,
    /// Matrix event ID → u64 BE intake sequence number: every Matrix event ever taken in, so the
    /// same event in another transaction is stored once.
    MatrixidIntakeseq,
    /// Matrix event ID → the log event ID it became.
    MatrixidEventid,
    /// Log event ID → the Matrix event ID it is (sent by a user, or by the bridge as a ghost).
    EventidMatrixid,
    /// Matrix room ID → MIMI room ID of a portal.
    MatrixroomMimiroom,
    /// MIMI room ID → portal JSON (`matrix_room`, `cursor`: next log position to bridge to Matrix).
    MimiroomPortal,
    /// Dropped in schema 3 (its entries moved to `queuedestseq_entry`): u64 BE sequence number →
    /// a request for the homeserver. Kept so that the migration can read it.
    HsqueueRequest,
    /// Matrix event ID → what translation needs to know of it (JSON: MIMI message ID, sender,
    /// kind, reply target, topic).
    MatrixidMapped,
    /// MIMI message ID (32 bytes) → the Matrix event ID of that message.
    MimiidMatrixid,
    /// Matrix room ID → JSON record of a management room (a direct chat with the bot).
    MatrixroomManagement,
    /// Dropped in schema 3 (its blobs moved to `mediaidchunk_blob`): media ID → a whole
    /// encrypted attachment. Kept so that the migration can read it.
    MediaidBlob,
    /// [`QueueKey`](super::keys::QueueKey) → u64 BE ms when queued ‖ the entry: every durable
    /// delivery queue (homeserver requests per Matrix room; provider deliveries), in order per
    /// destination.
    QueuedestseqEntry,
    /// [`ShortRoomId`] of a portal's MIMI room → u64 BE next log position to bridge to Matrix.
    ShortroomidPortalcursor,
    /// Media ID (random letters) ‖ `0x00` ‖ u32 BE chunk number → one chunk (at most
    /// [`MEDIA_CHUNK`](super::MEDIA_CHUNK) bytes) of an encrypted attachment (AES-128-GCM
    /// ciphertext and tag) this server hosts for MIMI rooms, served a chunk at a time.
    MediaidchunkBlob,
    /// Matrix room ID → JSON intent of a portal being opened (the MIMI room ID chosen for it),
    /// recorded before the MIMI room is created and deleted with the portal's record.
    MatrixroomPortalintent,
    /// `requester URI \0 target URI \0 room URI (empty: any room)` → JSON consent record
    /// (`state`: requested, granted or revoked; `at`: ms) between users of two providers.
    ConsentscopeRecord,
    /// u16 BE length ‖ KeyPackageRef ‖ provider domain → JSON (`provider`, `user`, `device`,
    /// `at`): which providers a local KeyPackage was handed to, so that the Welcome using it can
    /// be routed.
    KeypackagerefClaim,
    /// u64 BE sequence number → JSON abuse report received (`from`, `room`, `at`, `report` hex).
    AbuseseqReport,
    /// As `userdeviceref_keypackage`: packages published before schema 5, whose leaves name
    /// their device by the LM triple, moved here by the upgrade until the hub forgets their
    /// private keys and publishes new packages (client URI credentials) in their place.
    UserdevicerefRetiredkeypackage,
    /// Event ID of an `m.mimi.fanout` commit in a follower's record → JSON list of this
    /// server's users whose clients that commit removed, for their portals to follow.
    CommitidRemoved,
    /// `kind \0 IDs…` → JSON: one object of the Matrix end-to-end encryption state of the
    /// bridge's device (its account, Olm and Megolm sessions, others' devices and identities),
    /// as matrix-sdk-crypto serializes it (`crate::e2ee`).
    CryptokeyValue,
}

impl Cf {
    /// Every column family, in catalog order.
    pub const ALL: [Cf; 39] = [
        Cf::MetanameValue,
        Cf::RoomidShortroomid,
        Cf::ShortroomidRoomid,
        Cf::RoomseqPdu,
        Cf::EventidRoomseq,
        Cf::RoomTail,
        Cf::RoomseqStatedelta,
        Cf::LpduidEventid,
        Cf::ServerkeyidVerifykey,
        Cf::ImportkeyidVerifykey,
        Cf::MlskeyValue,
        Cf::ShortroomidCommitseq,
        Cf::EventidPlaintext,
        Cf::CiphertexthashPlaintext,
        Cf::CommitidWelcome,
        Cf::UserdevicerefKeypackage,
        Cf::UserdeviceDeviceobject,
        Cf::TxnidSeen,
        Cf::IntakeseqEvent,
        Cf::MatrixidIntakeseq,
        Cf::MatrixidEventid,
        Cf::EventidMatrixid,
        Cf::MatrixroomMimiroom,
        Cf::MimiroomPortal,
        Cf::HsqueueRequest,
        Cf::MatrixidMapped,
        Cf::MimiidMatrixid,
        Cf::MatrixroomManagement,
        Cf::MediaidBlob,
        Cf::QueuedestseqEntry,
        Cf::ShortroomidPortalcursor,
        Cf::MatrixroomPortalintent,
        Cf::MediaidchunkBlob,
        Cf::ConsentscopeRecord,
        Cf::KeypackagerefClaim,
        Cf::AbuseseqReport,
        Cf::UserdevicerefRetiredkeypackage,
        Cf::CommitidRemoved,
        Cf::CryptokeyValue,
    ];

    /// The RocksDB name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::MetanameValue => "metaname_value",
            Cf::RoomidShortroomid => "roomid_shortroomid",
            Cf::ShortroomidRoomid => "shortroomid_roomid",
            Cf::RoomseqPdu => "roomseq_pdu",
            Cf::EventidRoomseq => "eventid_roomseq",
            Cf::RoomTail => "room_tail",
            Cf::RoomseqStatedelta => "roomseq_statedelta",
            Cf::LpduidEventid => "lpduid_eventid",
            Cf::ServerkeyidVerifykey => "serverkeyid_verifykey",
            Cf::ImportkeyidVerifykey => "importkeyid_verifykey",
            Cf::MlskeyValue => "mlskey_value",
            Cf::ShortroomidCommitseq => "shortroomid_commitseq",
            Cf::EventidPlaintext => "eventid_plaintext",
            Cf::CiphertexthashPlaintext => "ciphertexthash_plaintext",
            Cf::CommitidWelcome => "commitid_welcome",
            Cf::UserdevicerefKeypackage => "userdeviceref_keypackage",
            Cf::UserdeviceDeviceobject => "userdevice_deviceobject",
            Cf::TxnidSeen => "txnid_seen",
            Cf::IntakeseqEvent => "intakeseq_event",
            Cf::MatrixidIntakeseq => "matrixid_intakeseq",
            Cf::MatrixidEventid => "matrixid_eventid",
            Cf::EventidMatrixid => "eventid_matrixid",
            Cf::MatrixroomMimiroom => "matrixroom_mimiroom",
            Cf::MimiroomPortal => "mimiroom_portal",
            Cf::HsqueueRequest => "hsqueue_request",
            Cf::MatrixidMapped => "matrixid_mapped",
            Cf::MimiidMatrixid => "mimiid_matrixid",
            Cf::MatrixroomManagement => "matrixroom_management",
            Cf::MediaidBlob => "mediaid_blob",
            Cf::QueuedestseqEntry => "queuedestseq_entry",
            Cf::ShortroomidPortalcursor => "shortroomid_portalcursor",
            Cf::MatrixroomPortalintent => "matrixroom_portalintent",
            Cf::MediaidchunkBlob => "mediaidchunk_blob",
            Cf::ConsentscopeRecord => "consentscope_record",
            Cf::KeypackagerefClaim => "keypackageref_claim",
            Cf::AbuseseqReport => "abuseseq_report",
            Cf::UserdevicerefRetiredkeypackage => "userdeviceref_retiredkeypackage",
            Cf::CommitidRemoved => "commitid_removed",
            Cf::CryptokeyValue => "cryptokey_value",
        }
    }
}
