//! The JSON form of MIMI content, for `mimi-bridge mimi decode|encode` and humans
//! (`schemas/mimi-content.schema.json`).
//!
//! Field names are the draft's; byte strings are lowercase hex; every field is always present,
//! so `decode | encode` reproduces the CBOR bytes exactly. A single part's UTF-8 content is also
//! shown as `"text"` for reading; on encode `"text"` is accepted instead of `"content"` and
//! must agree with it when both are given. Generic CBOR (extension values) maps as: integers
//! within ±(2^53−1) → numbers, text → strings, arrays → arrays, booleans and null → themselves,
//! and otherwise one-key objects: `{"bytes": hex}`, `{"map": [[k, v], …]}`, `{"tag": n,
//! "value": v}`, `{"uint": "decimal"}`, `{"nint": "decimal"}` (the value −1−n), `{"simple": n}`,
//! `{"float": hex of the encoded float}`.

use serde_json::{Map, Value as Json, json};

use super::cbor::{Float, Value};
use super::content::{
    Disposition, Expiration, ExtensionKey, ExternalPart, MessageId, MimiContent, NestedPart, Part, PartSemantics,
};
use super::derived::{DerivedValues, Timestamp};

/// Where the JSON does not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: expected {expected}")]
pub struct JsonError {
    /// The field path, e.g. `body.parts[0].content`.
    pub field: String,
    /// What it must be.
    pub expected: String,
}

fn err(field: &str, expected: impl Into<String>) -> JsonError {
    JsonError { field: field.to_owned(), expected: expected.into() }
}

const MAX_SAFE: u64 = (1 << 53) - 1;

/// Generic CBOR → JSON.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Unsigned(n) if *n <= MAX_SAFE => json!(n),
        Value::Unsigned(n) => json!({"uint": n.to_string()}),
        Value::Negative(n) if *n < MAX_SAFE => json!(-1 - i64::try_from(*n).unwrap_or(0)),
        Value::Negative(n) => json!({"nint": n.to_string()}),
        Value::Bytes(b) => json!({"bytes": hex::encode(b)}),
        Value::Text(t) => json!(t),
        Value::Array(items) => Json::Array(items.iter().map(value_to_json).collect()),
        Value::Map(entries) => {
            json!({"map": entries.iter().map(|(k, v)| json!([value_to_json(k), value_to_json(v)])).collect::<Vec<_>>()})
        }
        Value::Tag(tag, inner) => json!({"tag": tag, "value": value_to_json(inner)}),
        Value::Simple(20) => json!(false),
        Value::Simple(21) => json!(true),
        Value::Simple(22) => Json::Null,
        Value::Simple(s) => json!({"simple": s}),
        Value::Float(f) => json!({"float": hex::encode(super::cbor::to_vec(&Value::Float(*f)))}),
    }
}

/// JSON → generic CBOR.
pub fn json_to_value(json: &Json, field: &str) -> Result<Value, JsonError> {
    Ok(match json {
        Json::Null => Value::Simple(22),
        Json::Bool(b) => Value::Simple(if *b { 21 } else { 20 }),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) if u <= MAX_SAFE => Value::Unsigned(u),
            (_, Some(i)) if i < 0 && i >= -i64::try_from(MAX_SAFE).unwrap_or(0) => {
                Value::Negative(i.unsigned_abs() - 1)
            }
            _ => return Err(err(field, "an integer within ±(2^53-1) (larger ones as {\"uint\": \"…\"})")),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| json_to_value(v, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(o) => tagged_value(o, field)?,
    })
}

fn tagged_value(o: &Map<String, Json>, field: &str) -> Result<Value, JsonError> {
    let one = |key: &str| o.get(key).filter(|_| o.len() == 1);
    if let Some(h) = one("bytes") {
        return Ok(Value::Bytes(hex_of(h, &format!("{field}.bytes"))?));
    }
    if let Some(entries) = one("map") {
        let entries =
            entries.as_array().ok_or_else(|| err(&format!("{field}.map"), "an array of [key, value] pairs"))?;
        let mut out = Vec::new();
        for (i, pair) in entries.iter().enumerate() {
            let f = format!("{field}.map[{i}]");
            let [k, v] = pair.as_array().map(Vec::as_slice).unwrap_or_default() else {
                return Err(err(&f, "a [key, value] pair"));
            };
            out.push((json_to_value(k, &f)?, json_to_value(v, &f)?));
        }
        return Ok(Value::Map(out));
    }
    if let (Some(tag), Some(value), 2) = (o.get("tag"), o.get("value"), o.len()) {
        let tag = tag.as_u64().ok_or_else(|| err(&format!("{field}.tag"), "an unsigned integer"))?;
        return Ok(Value::Tag(tag, Box::new(json_to_value(value, &format!("{field}.value"))?)));
    }
    if let Some(n) = one("uint").and_then(Json::as_str) {
        return n.parse().map(Value::Unsigned).map_err(|_| err(&format!("{field}.uint"), "a decimal u64 string"));
    }
    if let Some(n) = one("nint").and_then(Json::as_str) {
        return n.parse().map(Value::Negative).map_err(|_| err(&format!("{field}.nint"), "a decimal u64 string"));
    }
    if let Some(s) = one("simple") {
        let s =
            s.as_u64().and_then(|s| u8::try_from(s).ok()).ok_or_else(|| err(&format!("{field}.simple"), "0..255"))?;
        return Ok(Value::Simple(s));
    }
    if let Some(h) = one("float") {
        let bytes = hex_of(h, &format!("{field}.float"))?;
        let float = match bytes.as_slice() {
            [0xf9, a, b] => Float::F16(u16::from_be_bytes([*a, *b])),
            [0xfa, rest @ ..] if rest.len() == 4 => {
                Float::F32(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]))
            }
            [0xfb, rest @ ..] if rest.len() == 8 => {
                Float::F64(u64::from_be_bytes(rest.try_into().map_err(|_| err(field, "an encoded float"))?))
            }
            _ => return Err(err(&format!("{field}.float"), "hex of an encoded float (f9…, fa…, fb…)")),
        };
        return Ok(Value::Float(float));
    }
    Err(err(field, "one of {bytes}, {map}, {tag, value}, {uint}, {nint}, {simple}, {float}"))
}

fn hex_of(json: &Json, field: &str) -> Result<Vec<u8>, JsonError> {
    let s = json.as_str().ok_or_else(|| err(field, "a lowercase hex string"))?;
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(err(field, "lowercase hex"));
    }
    hex::decode(s).map_err(|_| err(field, "a lowercase hex string of whole bytes"))
}

fn id_json(id: Option<&MessageId>) -> Json {
    id.map_or(Json::Null, |id| json!(id.to_hex()))
}

/// A message as JSON.
pub fn content_to_json(content: &MimiContent) -> Json {
    json!({
        "salt": hex::encode(content.salt),
        "replaces": id_json(content.replaces.as_ref()),
        "topicId": hex::encode(&content.topic_id),
        "expires": content.expires.map_or(Json::Null, |e| json!({"relative": e.relative, "time": e.time})),
        "inReplyTo": id_json(content.in_reply_to.as_ref()),
        "extensions": content.extensions.iter().map(|(k, v)| {
            let key = match k { ExtensionKey::Int(i) => json!(i), ExtensionKey::Text(t) => json!(t) };
            json!({"key": key, "value": value_to_json(v)})
        }).collect::<Vec<_>>(),
        "body": part_to_json(&content.body),
    })
}

fn part_to_json(part: &NestedPart) -> Json {
    let mut o = Map::new();
    o.insert("disposition".into(), json!(part.disposition.0));
    o.insert("language".into(), json!(part.language));
    match &part.part {
        Part::Null => {
            o.insert("cardinality".into(), json!("nullpart"));
        }
        Part::Single { content_type, content } => {
            o.insert("cardinality".into(), json!("single"));
            o.insert("contentType".into(), json!(content_type));
            o.insert("content".into(), json!(hex::encode(content)));
            if let Ok(text) = std::str::from_utf8(content) {
                o.insert("text".into(), json!(text));
            }
        }
        Part::External(e) => {
            o.insert("cardinality".into(), json!("external"));
            for (k, v) in [
                ("contentType", json!(e.content_type)),
                ("url", json!(e.url)),
                ("expires", json!(e.expires)),
                ("size", json!(e.size)),
                ("encAlg", json!(e.enc_alg)),
                ("key", json!(hex::encode(&e.key))),
                ("nonce", json!(hex::encode(&e.nonce))),
                ("aad", json!(hex::encode(&e.aad))),
                ("hashAlg", json!(e.hash_alg)),
                ("contentHash", json!(hex::encode(&e.content_hash))),
                ("description", json!(e.description)),
                ("filename", json!(e.filename)),
            ] {
                o.insert(k.into(), v);
            }
        }
        Part::Multi { semantics, parts } => {
            o.insert("cardinality".into(), json!("multi"));
            let s = match semantics {
                PartSemantics::ChooseOne => "chooseOne",
                PartSemantics::SingleUnit => "singleUnit",
                PartSemantics::ProcessAll => "processAll",
            };
            o.insert("partSemantics".into(), json!(s));
            o.insert("parts".into(), Json::Array(parts.iter().map(part_to_json).collect()));
        }
    }
    Json::Object(o)
}

/// Reads a JSON object's fields by name, rejecting unknown ones.
struct Fields<'a> {
    object: &'a Map<String, Json>,
    path: String,
}

impl<'a> Fields<'a> {
    fn new(json: &'a Json, path: &str, allowed: &[&str]) -> Result<Self, JsonError> {
        let object = json.as_object().ok_or_else(|| err(path, "an object"))?;
        if let Some(unknown) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(err(&self_path(path, unknown), format!("no such field; allowed: {}", allowed.join(", "))));
        }
        Ok(Self { object, path: path.to_owned() })
    }

    fn path(&self, name: &str) -> String {
        self_path(&self.path, name)
    }

    fn get(&self, name: &str) -> Result<&'a Json, JsonError> {
        self.object.get(name).ok_or_else(|| err(&self.path(name), "present"))
    }

    fn text(&self, name: &str) -> Result<String, JsonError> {
        self.get(name)?.as_str().map(str::to_owned).ok_or_else(|| err(&self.path(name), "a string"))
    }

    fn hex(&self, name: &str) -> Result<Vec<u8>, JsonError> {
        hex_of(self.get(name)?, &self.path(name))
    }

    fn uint<T: TryFrom<u64>>(&self, name: &str, what: &str) -> Result<T, JsonError> {
        self.get(name)?.as_u64().and_then(|n| T::try_from(n).ok()).ok_or_else(|| err(&self.path(name), what))
    }

    fn id(&self, name: &str) -> Result<Option<MessageId>, JsonError> {
        match self.get(name)? {
            Json::Null => Ok(None),
            other => {
                let bytes = hex_of(other, &self.path(name))?;
                bytes
                    .try_into()
                    .map(|b| Some(MessageId(b)))
                    .map_err(|_| err(&self.path(name), "null or 32 bytes of hex"))
            }
        }
    }
}

fn self_path(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

/// JSON → a message (the inverse of `content_to_json`).
pub fn json_to_content(json: &Json) -> Result<MimiContent, JsonError> {
    let f = Fields::new(json, "", &["salt", "replaces", "topicId", "expires", "inReplyTo", "extensions", "body"])?;
    let salt = f.hex("salt")?.try_into().map_err(|_| err("salt", "16 bytes of hex"))?;
    let expires = match f.get("expires")? {
        Json::Null => None,
        e => {
            let e = Fields::new(e, "expires", &["relative", "time"])?;
            let relative = e.get("relative")?.as_bool().ok_or_else(|| err("expires.relative", "a boolean"))?;
            Some(Expiration { relative, time: e.uint("time", "an unsigned 32-bit integer")? })
        }
    };
    let mut extensions = Vec::new();
    let list = f.get("extensions")?.as_array().ok_or_else(|| err("extensions", "an array of {key, value}"))?;
    for (i, entry) in list.iter().enumerate() {
        let path = format!("extensions[{i}]");
        let e = Fields::new(entry, &path, &["key", "value"])?;
        let key = match e.get("key")? {
            Json::String(t) if (1..=255).contains(&t.len()) => ExtensionKey::Text(t.clone()),
            Json::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() <= MAX_SAFE) => {
                ExtensionKey::Int(n.as_i64().unwrap_or(0))
            }
            _ => return Err(err(&format!("{path}.key"), "an integer within ±(2^53-1) or a 1..255-byte string")),
        };
        extensions.push((key, json_to_value(e.get("value")?, &format!("{path}.value"))?));
    }
    let mut content = MimiContent {
        salt,
        replaces: f.id("replaces")?,
        topic_id: f.hex("topicId")?,
        expires,
        in_reply_to: f.id("inReplyTo")?,
        extensions: Vec::new(),
        body: json_to_part(f.get("body")?, "body")?,
    };
    for (key, value) in extensions {
        content.set_extension(key, value);
    }
    Ok(content)
}

fn json_to_part(json: &Json, path: &str) -> Result<NestedPart, JsonError> {
    let cardinality = json.get("cardinality").and_then(Json::as_str).unwrap_or_default();
    let common = ["disposition", "language", "cardinality"];
    let extra: &[&str] = match cardinality {
        "nullpart" => &[],
        "single" => &["contentType", "content", "text"],
        "external" => &[
            "contentType",
            "url",
            "expires",
            "size",
            "encAlg",
            "key",
            "nonce",
            "aad",
            "hashAlg",
            "contentHash",
            "description",
            "filename",
        ],
        "multi" => &["partSemantics", "parts"],
        _ => return Err(err(&self_path(path, "cardinality"), "\"nullpart\", \"single\", \"external\" or \"multi\"")),
    };
    let allowed: Vec<&str> = common.iter().chain(extra).copied().collect();
    let f = Fields::new(json, path, &allowed)?;
    let disposition = Disposition(f.uint("disposition", "0..255")?);
    let language = f.text("language")?;
    let part = match cardinality {
        "nullpart" => Part::Null,
        "single" => {
            let text = f
                .object
                .get("text")
                .map(|t| t.as_str().map(str::as_bytes).ok_or_else(|| err(&f.path("text"), "a string")));
            let content = match (f.object.get("content"), text) {
                (Some(_), None) => f.hex("content")?,
                (None, Some(text)) => text?.to_vec(),
                (Some(_), Some(text)) => {
                    let content = f.hex("content")?;
                    if content != text? {
                        return Err(err(&f.path("text"), "the same bytes as `content` (or leave one out)"));
                    }
                    content
                }
                (None, None) => return Err(err(&f.path("content"), "present (hex), or `text`")),
            };
            Part::Single { content_type: f.text("contentType")?, content }
        }
        "external" => Part::External(Box::new(ExternalPart {
            content_type: f.text("contentType")?,
            url: f.text("url")?,
            expires: f.uint("expires", "an unsigned 32-bit integer")?,
            size: f.uint("size", "an unsigned 64-bit integer")?,
            enc_alg: f.uint("encAlg", "an unsigned 16-bit integer")?,
            key: f.hex("key")?,
            nonce: f.hex("nonce")?,
            aad: f.hex("aad")?,
            hash_alg: f.uint("hashAlg", "0..255")?,
            content_hash: f.hex("contentHash")?,
            description: f.text("description")?,
            filename: f.text("filename")?,
        })),
        _ => {
            let semantics = match f.text("partSemantics")?.as_str() {
                "chooseOne" => PartSemantics::ChooseOne,
                "singleUnit" => PartSemantics::SingleUnit,
                "processAll" => PartSemantics::ProcessAll,
                _ => return Err(err(&f.path("partSemantics"), "\"chooseOne\", \"singleUnit\" or \"processAll\"")),
            };
            let list = f.get("parts")?.as_array().ok_or_else(|| err(&f.path("parts"), "an array of parts"))?;
            let parts = list
                .iter()
                .enumerate()
                .map(|(i, p)| json_to_part(p, &format!("{}[{i}]", f.path("parts"))))
                .collect::<Result<_, _>>()?;
            Part::Multi { semantics, parts }
        }
    };
    Ok(NestedPart { disposition, language, part })
}

/// Derived values as JSON.
pub fn derived_to_json(d: &DerivedValues) -> Json {
    let ts = match &d.hub_accepted_timestamp {
        Timestamp::Millis(ms) => json!(ms),
        Timestamp::Extended(v) => json!({"extended": value_to_json(v)}),
    };
    json!({
        "messageId": d.message_id.to_hex(),
        "hubAcceptedTimestamp": ts,
        "mlsGroupId": hex::encode(&d.mls_group_id),
        "senderLeafIndex": d.sender_leaf_index,
        "senderClientUrl": d.sender_client_url,
        "senderUserUrl": d.sender_user_url,
        "roomUrl": d.room_url,
    })
}
