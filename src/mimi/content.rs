//! The MIMI content message (draft-ietf-mimi-content, editor's copy "-08"): its data model,
//! strict decoding and deterministic encoding.
//!
//! Decoding enforces the draft's limits and discard list — salt exactly 16 bytes, message IDs
//! with a known hash byte, topic IDs up to 4096 bytes, NestedPart depth at most 4, at most 1024
//! parts, known cardinalities and part semantics, known ExternalPart hash algorithms — and names
//! the byte offset and field of the first violation. Unknown dispositions and extension keys are
//! kept, so re-encoding reproduces the received bytes.

use super::cbor::{self, DecodeError, MAX_VALUE_DEPTH, Reader, Value};

/// Longest topic ID the draft tolerates.
pub const MAX_TOPIC_ID: usize = 4096;
/// Deepest NestedPart nesting (the root is depth 1).
pub const MAX_PART_DEPTH: usize = 4;
/// Most parts in one message.
pub const MAX_PARTS: usize = 1024;
/// Deepest nesting of maps, arrays and tags inside one extension value.
pub const MAX_EXTENSION_DEPTH: usize = 4;
/// IANA named-information hash IDs this decoder knows (1 = sha-256, …, 8 = sha-512, 9-11 sha3).
const KNOWN_HASH_ALGS: [u8; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/// A 32-byte message ID: hash algorithm byte then the truncated hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub [u8; 32]);

impl MessageId {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// How a part is to be presented (IANA "MIMI Content Disposition"; 9-255 unknown, kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Disposition(pub u8);

impl Disposition {
    /// 0.
    pub const UNSPECIFIED: Self = Self(0);
    /// 1.
    pub const RENDER: Self = Self(1);
    /// 2.
    pub const REACTION: Self = Self(2);
    /// 3.
    pub const PROFILE: Self = Self(3);
    /// 4.
    pub const INLINE: Self = Self(4);
    /// 5.
    pub const ICON: Self = Self(5);
    /// 6.
    pub const ATTACHMENT: Self = Self(6);
    /// 7.
    pub const SESSION: Self = Self(7);
    /// 8.
    pub const PREVIEW: Self = Self(8);
}

/// When a message stops being shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiration {
    /// `true`: seconds after it was read; `false`: UNIX seconds.
    pub relative: bool,
    /// Seconds.
    pub time: u32,
}

/// How the parts of a MultiPart relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartSemantics {
    /// 0: the receiver renders one of them.
    ChooseOne,
    /// 1: all or nothing, together.
    SingleUnit,
    /// 2: each in turn.
    ProcessAll,
}

/// An ExternalPart: content fetched from a URL, usually encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPart {
    /// Media type of the plaintext.
    pub content_type: String,
    /// Where the (encrypted) bytes are.
    pub url: String,
    /// UNIX seconds after which the URL is gone; 0 = never.
    pub expires: u32,
    /// Plaintext size; 0 = unknown.
    pub size: u64,
    /// IANA AEAD ID; 0 = not encrypted, 1 = AES-128-GCM.
    pub enc_alg: u16,
    /// AEAD key.
    pub key: Vec<u8>,
    /// AEAD nonce.
    pub nonce: Vec<u8>,
    /// AEAD associated data.
    pub aad: Vec<u8>,
    /// IANA named-information hash ID of `content_hash` (1 = SHA-256).
    pub hash_alg: u8,
    /// Hash of the bytes at `url`.
    pub content_hash: Vec<u8>,
    /// Description (alt text, caption).
    pub description: String,
    /// Suggested file name.
    pub filename: String,
}

/// The body of a NestedPart, by cardinality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// 0: no content (deletes, unlikes).
    Null,
    /// 1: inline content.
    Single {
        /// Media type.
        content_type: String,
        /// The bytes (text too is bytes).
        content: Vec<u8>,
    },
    /// 2: external content.
    External(Box<ExternalPart>),
    /// 3: several parts.
    Multi {
        /// How they relate.
        semantics: PartSemantics,
        /// At least two parts.
        parts: Vec<NestedPart>,
    },
}

/// A part with its disposition and language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NestedPart {
    /// How to present it.
    pub disposition: Disposition,
    /// `""` or comma-separated language tags.
    pub language: String,
    /// The content.
    pub part: Part,
}

/// An extension map key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionKey {
    /// An integer key (1 = sender URI, 2 = room URI; negative = private use).
    Int(i64),
    /// A text key of 1 to 255 bytes (private use).
    Text(String),
}

impl ExtensionKey {
    fn to_value(&self) -> Value {
        match self {
            ExtensionKey::Int(i) if *i >= 0 => Value::Unsigned(i.unsigned_abs()),
            ExtensionKey::Int(i) => Value::Negative(i.unsigned_abs() - 1),
            ExtensionKey::Text(t) => Value::Text(t.clone()),
        }
    }
}

/// A MIMI content message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimiContent {
    /// 16 random bytes.
    pub salt: [u8; 16],
    /// The first version of the message this edits, deletes or un-reacts.
    pub replaces: Option<MessageId>,
    /// Opaque topic (thread) ID; empty = none.
    pub topic_id: Vec<u8>,
    /// Expiry.
    pub expires: Option<Expiration>,
    /// The message replied or reacted to.
    pub in_reply_to: Option<MessageId>,
    /// Extensions, in deterministic (encoded-key) order.
    pub extensions: Vec<(ExtensionKey, Value)>,
    /// The body.
    pub body: NestedPart,
}

impl MimiContent {
    /// Extension 1, the sender's user URI.
    pub fn sender_uri(&self) -> Option<&str> {
        self.text_extension(1)
    }

    /// Extension 2, the room URI.
    pub fn room_uri(&self) -> Option<&str> {
        self.text_extension(2)
    }

    fn text_extension(&self, key: i64) -> Option<&str> {
        self.extensions.iter().find_map(|(k, v)| match (k, v) {
            (ExtensionKey::Int(i), Value::Text(t)) if *i == key => Some(t.as_str()),
            _ => None,
        })
    }

    /// Sets (or replaces) an extension, keeping the deterministic order.
    pub fn set_extension(&mut self, key: ExtensionKey, value: Value) {
        self.extensions.retain(|(k, _)| *k != key);
        self.extensions.push((key, value));
        self.extensions.sort_by_key(|(k, _)| cbor::to_vec(&k.to_value()));
    }

    /// Decodes one message, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let start = r.position();
        let len = r.array("")?;
        if len != 7 {
            return Err(Reader::error(start, "", format!("expected the 7-item mimiContent array, found {len} items")));
        }
        let at = r.position();
        let salt = r.bytes("salt")?;
        let salt: [u8; 16] = salt
            .try_into()
            .map_err(|s: Vec<u8>| Reader::error(at, "salt", format!("must be 16 bytes, found {}", s.len())))?;
        let replaces = message_id(&mut r, "replaces")?;
        let at = r.position();
        let topic_id = r.bytes("topicId")?;
        if topic_id.len() > MAX_TOPIC_ID {
            return Err(Reader::error(at, "topicId", format!("{} bytes; at most {MAX_TOPIC_ID}", topic_id.len())));
        }
        let expires = if r.null() { None } else { Some(expiration(&mut r)?) };
        let in_reply_to = message_id(&mut r, "inReplyTo")?;
        let extensions = extensions(&mut r)?;
        let mut parts = 0;
        let body = nested_part(&mut r, "body", 1, &mut parts)?;
        r.finish()?;
        Ok(Self { salt, replaces, topic_id, expires, in_reply_to, extensions, body })
    }

    /// The deterministic encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        cbor::write_head(&mut out, 4, 7);
        cbor::write_bytes(&mut out, &self.salt);
        write_message_id(&mut out, self.replaces.as_ref());
        cbor::write_bytes(&mut out, &self.topic_id);
        match self.expires {
            None => out.push(0xf6),
            Some(e) => {
                cbor::write_head(&mut out, 4, 2);
                out.push(if e.relative { 0xf5 } else { 0xf4 });
                cbor::write_head(&mut out, 0, u64::from(e.time));
            }
        }
        write_message_id(&mut out, self.in_reply_to.as_ref());
        let keys: Vec<Value> = self.extensions.iter().map(|(k, _)| k.to_value()).collect();
        cbor::write_map(&mut out, keys.iter().zip(self.extensions.iter().map(|(_, v)| v)));
        write_nested_part(&mut out, &self.body);
        out
    }
}

fn message_id(r: &mut Reader<'_>, field: &str) -> Result<Option<MessageId>, DecodeError> {
    if r.null() {
        return Ok(None);
    }
    let at = r.position();
    let bytes = r.bytes(field)?;
    let id: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| Reader::error(at, field, format!("a message ID is 32 bytes, found {}", b.len())))?;
    if !KNOWN_HASH_ALGS.contains(&id[0]) {
        return Err(Reader::error(at, field, format!("unknown hash algorithm {} in the message ID", id[0])));
    }
    Ok(Some(MessageId(id)))
}

fn write_message_id(out: &mut Vec<u8>, id: Option<&MessageId>) {
    match id {
        None => out.push(0xf6),
        Some(id) => cbor::write_bytes(out, &id.0),
    }
}

fn expiration(r: &mut Reader<'_>) -> Result<Expiration, DecodeError> {
    let at = r.position();
    let len = r.array("expires")?;
    if len != 2 {
        return Err(Reader::error(at, "expires", format!("expected [relative, time], found {len} items")));
    }
    let relative = r.bool("expires.relative")?;
    let at = r.position();
    let time = r.uint("expires.time")?;
    let time = u32::try_from(time).map_err(|_| Reader::error(at, "expires.time", "must fit in 32 bits"))?;
    Ok(Expiration { relative, time })
}

fn extensions(r: &mut Reader<'_>) -> Result<Vec<(ExtensionKey, Value)>, DecodeError> {
    let at = r.position();
    let Value::Map(entries) = r.value("mimiExtensions", MAX_EXTENSION_DEPTH + 1)? else {
        return Err(Reader::error(at, "mimiExtensions", "expected a map"));
    };
    entries
        .into_iter()
        .map(|(key, value)| {
            let key = match key {
                Value::Unsigned(n) if n < (1 << 53) => ExtensionKey::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                Value::Negative(n) if n < (1 << 53) - 1 => ExtensionKey::Int(-1 - i64::try_from(n).unwrap_or(0)),
                Value::Text(t) if (1..=255).contains(&t.len()) => ExtensionKey::Text(t),
                other => {
                    return Err(Reader::error(
                        at,
                        "mimiExtensions",
                        format!("key {other:?} is not an integer within ±(2^53-1) or a 1..255-byte text"),
                    ));
                }
            };
            if matches!(key, ExtensionKey::Int(1 | 2)) && !matches!(value, Value::Text(_)) {
                return Err(Reader::error(at, "mimiExtensions", "senderUri (1) and roomUri (2) must be text"));
            }
            Ok((key, value))
        })
        .collect()
}

fn nested_part(r: &mut Reader<'_>, field: &str, depth: usize, parts: &mut usize) -> Result<NestedPart, DecodeError> {
    let at = r.position();
    if depth > MAX_PART_DEPTH {
        return Err(Reader::error(at, field, format!("NestedPart nested deeper than {MAX_PART_DEPTH} levels")));
    }
    *parts += 1;
    if *parts > MAX_PARTS {
        return Err(Reader::error(at, field, format!("more than {MAX_PARTS} parts")));
    }
    let len = r.array(field)?;
    let d_at = r.position();
    let disposition = r.uint(&format!("{field}.disposition"))?;
    let disposition = Disposition(
        u8::try_from(disposition)
            .map_err(|_| Reader::error(d_at, &format!("{field}.disposition"), "must be 0..255"))?,
    );
    let language = r.text(&format!("{field}.language"))?;
    let c_at = r.position();
    let cardinality = r.uint(&format!("{field}.cardinality"))?;
    let expected = match cardinality {
        0 => 3,
        1 | 3 => 5,
        2 => 15,
        other => {
            return Err(Reader::error(c_at, &format!("{field}.cardinality"), format!("unknown cardinality {other}")));
        }
    };
    if len != expected {
        return Err(Reader::error(at, field, format!("cardinality {cardinality} needs {expected} items, found {len}")));
    }
    let part = match cardinality {
        0 => Part::Null,
        1 => Part::Single {
            content_type: r.text(&format!("{field}.contentType"))?,
            content: r.bytes(&format!("{field}.content"))?,
        },
        2 => Part::External(Box::new(external(r, field)?)),
        _ => {
            let s_at = r.position();
            let semantics = match r.uint(&format!("{field}.partSemantics"))? {
                0 => PartSemantics::ChooseOne,
                1 => PartSemantics::SingleUnit,
                2 => PartSemantics::ProcessAll,
                other => {
                    return Err(Reader::error(
                        s_at,
                        &format!("{field}.partSemantics"),
                        format!("unknown part semantics {other}"),
                    ));
                }
            };
            let p_at = r.position();
            let count = r.array(&format!("{field}.parts"))?;
            if count < 2 {
                return Err(Reader::error(
                    p_at,
                    &format!("{field}.parts"),
                    format!("a MultiPart needs at least 2 parts, found {count}"),
                ));
            }
            let mut nested = Vec::with_capacity(count.min(MAX_PARTS));
            for i in 0..count {
                nested.push(nested_part(r, &format!("{field}.parts[{i}]"), depth + 1, parts)?);
            }
            Part::Multi { semantics, parts: nested }
        }
    };
    Ok(NestedPart { disposition, language, part })
}

fn external(r: &mut Reader<'_>, field: &str) -> Result<ExternalPart, DecodeError> {
    let f = |name: &str| format!("{field}.{name}");
    let content_type = r.text(&f("contentType"))?;
    let url = r.text(&f("url"))?;
    let at = r.position();
    let expires =
        u32::try_from(r.uint(&f("expires"))?).map_err(|_| Reader::error(at, &f("expires"), "must fit in 32 bits"))?;
    let size = r.uint(&f("size"))?;
    let at = r.position();
    let enc_alg =
        u16::try_from(r.uint(&f("encAlg"))?).map_err(|_| Reader::error(at, &f("encAlg"), "must fit in 16 bits"))?;
    let key = r.bytes(&f("key"))?;
    let nonce = r.bytes(&f("nonce"))?;
    let aad = r.bytes(&f("aad"))?;
    let at = r.position();
    let hash_alg =
        u8::try_from(r.uint(&f("hashAlg"))?).map_err(|_| Reader::error(at, &f("hashAlg"), "must fit in 8 bits"))?;
    if hash_alg != 0 && !KNOWN_HASH_ALGS.contains(&hash_alg) {
        return Err(Reader::error(at, &f("hashAlg"), format!("unknown hash algorithm {hash_alg}")));
    }
    let at = r.position();
    let content_hash = r.bytes(&f("contentHash"))?;
    // Algorithm 0 is a link with nothing to hash (a conference, in the draft's examples).
    match (hash_alg, content_hash.is_empty()) {
        (0, false) => return Err(Reader::error(at, &f("contentHash"), "must be empty with hashAlg 0")),
        (1.., true) => return Err(Reader::error(at, &f("contentHash"), format!("empty, but hashAlg is {hash_alg}"))),
        _ => {}
    }
    let description = r.text(&f("description"))?;
    let filename = r.text(&f("filename"))?;
    Ok(ExternalPart {
        content_type,
        url,
        expires,
        size,
        enc_alg,
        key,
        nonce,
        aad,
        hash_alg,
        content_hash,
        description,
        filename,
    })
}

fn write_nested_part(out: &mut Vec<u8>, part: &NestedPart) {
    let len = match &part.part {
        Part::Null => 3,
        Part::Single { .. } | Part::Multi { .. } => 5,
        Part::External(_) => 15,
    };
    cbor::write_head(out, 4, len);
    cbor::write_head(out, 0, u64::from(part.disposition.0));
    cbor::write_text(out, &part.language);
    match &part.part {
        Part::Null => cbor::write_head(out, 0, 0),
        Part::Single { content_type, content } => {
            cbor::write_head(out, 0, 1);
            cbor::write_text(out, content_type);
            cbor::write_bytes(out, content);
        }
        Part::External(e) => {
            cbor::write_head(out, 0, 2);
            cbor::write_text(out, &e.content_type);
            cbor::write_text(out, &e.url);
            cbor::write_head(out, 0, u64::from(e.expires));
            cbor::write_head(out, 0, e.size);
            cbor::write_head(out, 0, u64::from(e.enc_alg));
            cbor::write_bytes(out, &e.key);
            cbor::write_bytes(out, &e.nonce);
            cbor::write_bytes(out, &e.aad);
            cbor::write_head(out, 0, u64::from(e.hash_alg));
            cbor::write_bytes(out, &e.content_hash);
            cbor::write_text(out, &e.description);
            cbor::write_text(out, &e.filename);
        }
        Part::Multi { semantics, parts } => {
            cbor::write_head(out, 0, 3);
            let s = match semantics {
                PartSemantics::ChooseOne => 0,
                PartSemantics::SingleUnit => 1,
                PartSemantics::ProcessAll => 2,
            };
            cbor::write_head(out, 0, s);
            cbor::write_head(out, 4, parts.len() as u64);
            for p in parts {
                write_nested_part(out, p);
            }
        }
    }
}

/// Depth-first, zero-based implicit part indexes (the root is 0), for `cid:` references.
pub fn parts_in_order(root: &NestedPart) -> Vec<&NestedPart> {
    let mut out = vec![root];
    if let Part::Multi { parts, .. } = &root.part {
        for p in parts {
            out.extend(parts_in_order(p));
        }
    }
    out
}

/// Bound on extension value depth as the reader counts it (the map itself is one level).
const _: () = assert!(MAX_EXTENSION_DEPTH < MAX_VALUE_DEPTH);
