//! Deterministic CBOR (RFC 8949 §4.2.1), the encoding MIMI content is hashed in.
//!
//! A message ID is a hash over the exact bytes a sender produced, and the bridge must re-emit
//! messages it decoded without changing a byte. So the reader accepts only deterministic
//! encodings — shortest-form heads, definite lengths, map keys in the bytewise order of their
//! encodings without duplicates, floats in their shortest exact width — and the writer produces
//! exactly those. Then decode → encode is the identity on every accepted input.

use std::fmt;

/// Deepest nesting of arrays, maps and tags a generic value may have.
pub const MAX_VALUE_DEPTH: usize = 16;

/// A generic CBOR value (extension values, which MIMI leaves open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    /// Major type 2.
    Bytes(Vec<u8>),
    /// Major type 3 (valid UTF-8).
    Text(String),
    /// Major type 4.
    Array(Vec<Value>),
    /// Major type 5, entries in deterministic order.
    Map(Vec<(Value, Value)>),
    /// Major type 6.
    Tag(u64, Box<Value>),
    /// `false`, `true`, `null`, `undefined` and other simple values.
    Simple(u8),
    /// A float, kept as the exact bits of its (shortest) width.
    Float(Float),
}

/// A float's exact encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// Half precision bits.
    F16(u16),
    /// Single precision bits.
    F32(u32),
    /// Double precision bits.
    F64(u64),
}

/// Where and why decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}{}: {reason}", if field.is_empty() { String::new() } else { format!(" ({field})") })]
pub struct DecodeError {
    /// Offset of the item that failed.
    pub offset: usize,
    /// The field path, e.g. `body.parts[1].contentType`.
    pub field: String,
    /// What was expected.
    pub reason: String,
}

/// The major types, for messages.
fn major_name(major: u8) -> &'static str {
    match major {
        0 => "an unsigned integer",
        1 => "a negative integer",
        2 => "a byte string",
        3 => "a text string",
        4 => "an array",
        5 => "a map",
        6 => "a tag",
        _ => "a simple value or float",
    }
}

/// A strict reader over one buffer.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").field("pos", &self.pos).finish_non_exhaustive()
    }
}

/// A decoded item head: major type, argument, and where it started.
#[derive(Debug, Clone, Copy)]
struct Head {
    major: u8,
    info: u8,
    arg: u64,
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// An error at `offset` for `field`.
    pub fn error(offset: usize, field: &str, reason: impl Into<String>) -> DecodeError {
        DecodeError { offset, field: field.to_owned(), reason: reason.into() }
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(Self::error(self.pos, "", format!("{} trailing bytes after the item", self.bytes.len() - self.pos)))
        }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(Self::error(self.pos, field, format!("needs {n} more bytes, input ends")));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn head(&mut self, field: &str) -> Result<Head, DecodeError> {
        let offset = self.pos;
        let first = self.take(1, field)?[0];
        let (major, info) = (first >> 5, first & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n = 1usize << (info - 24);
                let mut arg = 0u64;
                for b in self.take(n, field)? {
                    arg = (arg << 8) | u64::from(*b);
                }
                // Floats (major 7, info 25..27) carry bits, not a minimal-length argument.
                let minimum = [24u64, 0x100, 0x1_0000, 0x1_0000_0000][usize::from(info - 24)];
                if major != 7 && arg < minimum {
                    return Err(Self::error(
                        offset,
                        field,
                        "integer or length not in shortest form (not deterministic CBOR)",
                    ));
                }
                if major == 7 && info == 24 && arg < 32 {
                    return Err(Self::error(offset, field, "simple value not in shortest form"));
                }
                arg
            }
            31 => return Err(Self::error(offset, field, "indefinite-length item (not deterministic CBOR)")),
            _ => return Err(Self::error(offset, field, format!("reserved additional information {info}"))),
        };
        Ok(Head { major, info, arg, offset })
    }

    fn expect(&mut self, major: u8, field: &str, what: &str) -> Result<Head, DecodeError> {
        let head = self.head(field)?;
        if head.major != major {
            return Err(Self::error(head.offset, field, format!("expected {what}, found {}", major_name(head.major))));
        }
        Ok(head)
    }

    fn length(&self, head: Head, field: &str) -> Result<usize, DecodeError> {
        let len = usize::try_from(head.arg).unwrap_or(usize::MAX);
        if len > self.bytes.len() - self.pos.min(self.bytes.len()) {
            return Err(Self::error(head.offset, field, format!("length {} exceeds the input", head.arg)));
        }
        Ok(len)
    }

    /// An unsigned integer.
    pub fn uint(&mut self, field: &str) -> Result<u64, DecodeError> {
        Ok(self.expect(0, field, "an unsigned integer")?.arg)
    }

    /// A byte string.
    pub fn bytes(&mut self, field: &str) -> Result<Vec<u8>, DecodeError> {
        let head = self.expect(2, field, "a byte string")?;
        let len = self.length(head, field)?;
        Ok(self.take(len, field)?.to_vec())
    }

    /// A text string (valid UTF-8).
    pub fn text(&mut self, field: &str) -> Result<String, DecodeError> {
        let head = self.expect(3, field, "a text string")?;
        let len = self.length(head, field)?;
        let raw = self.take(len, field)?;
        String::from_utf8(raw.to_vec()).map_err(|_| Self::error(head.offset, field, "text string is not valid UTF-8"))
    }

    /// An array header; returns its length.
    pub fn array(&mut self, field: &str) -> Result<usize, DecodeError> {
        let head = self.expect(4, field, "an array")?;
        self.length(head, field)
    }

    /// `true` or `false`.
    pub fn bool(&mut self, field: &str) -> Result<bool, DecodeError> {
        let head = self.head(field)?;
        match (head.major, head.info) {
            (7, 20) => Ok(false),
            (7, 21) => Ok(true),
            _ => Err(Self::error(head.offset, field, format!("expected a boolean, found {}", major_name(head.major)))),
        }
    }

    /// Consumes a `null` if one is next.
    pub fn null(&mut self) -> bool {
        if self.bytes.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A generic value (map keys checked for deterministic order), at most `depth` levels deep.
    pub fn value(&mut self, field: &str, depth: usize) -> Result<Value, DecodeError> {
        let head = self.head(field)?;
        let nested = |me: &Self| {
            if depth == 0 { Err(Self::error(head.offset, field, "nested too deeply")) } else { me.length(head, field) }
        };
        Ok(match head.major {
            0 => Value::Unsigned(head.arg),
            1 => Value::Negative(head.arg),
            2 => {
                let len = self.length(head, field)?;
                Value::Bytes(self.take(len, field)?.to_vec())
            }
            3 => {
                let len = self.length(head, field)?;
                let raw = self.take(len, field)?;
                Value::Text(
                    String::from_utf8(raw.to_vec())
                        .map_err(|_| Self::error(head.offset, field, "text string is not valid UTF-8"))?,
                )
            }
            4 => {
                let len = nested(self)?;
                let mut items = Vec::with_capacity(len.min(1024));
                for i in 0..len {
                    items.push(self.value(&format!("{field}[{i}]"), depth - 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let len = nested(self)?;
                let mut entries: Vec<(Value, Value)> = Vec::with_capacity(len.min(1024));
                let mut previous: Option<Vec<u8>> = None;
                for i in 0..len {
                    let key_offset = self.pos;
                    let key = self.value(&format!("{field}.key[{i}]"), depth - 1)?;
                    let encoded = self.bytes[key_offset..self.pos].to_vec();
                    if previous.as_ref().is_some_and(|p| *p >= encoded) {
                        return Err(Self::error(
                            key_offset,
                            field,
                            "map keys not in deterministic order or duplicated",
                        ));
                    }
                    previous = Some(encoded);
                    let value = self.value(&format!("{field}[{i}]"), depth - 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            6 => {
                if depth == 0 {
                    return Err(Self::error(head.offset, field, "nested too deeply"));
                }
                Value::Tag(head.arg, Box::new(self.value(field, depth - 1)?))
            }
            _ => match head.info {
                0..=24 => Value::Simple(u8::try_from(head.arg).unwrap_or(u8::MAX)),
                25 => {
                    Value::Float(checked_float(Float::F16(u16::try_from(head.arg).unwrap_or(0)), head.offset, field)?)
                }
                26 => {
                    Value::Float(checked_float(Float::F32(u32::try_from(head.arg).unwrap_or(0)), head.offset, field)?)
                }
                _ => Value::Float(checked_float(Float::F64(head.arg), head.offset, field)?),
            },
        })
    }
}

/// Deterministic floats: NaN only as `f97e00`, and no value that a narrower width holds exactly.
fn checked_float(float: Float, offset: usize, field: &str) -> Result<Float, DecodeError> {
    let not_shortest =
        || Reader::error(offset, field, "float not in its shortest exact width (not deterministic CBOR)");
    match float {
        Float::F16(bits) => {
            if is_f16_nan(bits) && bits != 0x7e00 {
                return Err(Reader::error(offset, field, "NaN must be encoded as f97e00"));
            }
        }
        Float::F32(bits) => {
            let v = f32::from_bits(bits);
            if v.is_nan() || f16_exact(f64::from(v)) {
                return Err(not_shortest());
            }
        }
        Float::F64(bits) => {
            let v = f64::from_bits(bits);
            #[expect(clippy::cast_possible_truncation, reason = "checking whether the narrowing is exact")]
            let narrowed = f64::from(v as f32);
            if v.is_nan() || narrowed.to_bits() == v.to_bits() || f16_exact(v) {
                return Err(not_shortest());
            }
        }
    }
    Ok(float)
}

fn is_f16_nan(bits: u16) -> bool {
    bits & 0x7c00 == 0x7c00 && bits & 0x03ff != 0
}

/// Whether a finite or infinite value is exactly representable in half precision.
fn f16_exact(v: f64) -> bool {
    if v.is_infinite() || v == 0.0 {
        return true;
    }
    if v.is_nan() {
        return false;
    }
    let a = v.abs();
    // Half precision: normal range 2^-14 .. 65504 with 11 significant bits; subnormals are
    // multiples of 2^-24 below 2^-14.
    if a > 65504.0 || a < 2f64.powi(-24) {
        return false;
    }
    let exponent = a.log2().floor();
    let step = if exponent < -14.0 { 2f64.powi(-24) } else { 2f64.powf(exponent - 10.0) };
    (a / step).fract() == 0.0
}

/// Writes a head in shortest form.
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | u8::try_from(arg).unwrap_or(0)),
        24..=0xff => out.extend_from_slice(&[m | 0x18, u8::try_from(arg).unwrap_or(0)]),
        0x100..=0xffff => {
            out.push(m | 0x19);
            out.extend_from_slice(&u16::try_from(arg).unwrap_or(0).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 0x1a);
            out.extend_from_slice(&u32::try_from(arg).unwrap_or(0).to_be_bytes());
        }
        _ => {
            out.push(m | 0x1b);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Writes a byte string.
pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Writes a text string.
pub fn write_text(out: &mut Vec<u8>, text: &str) {
    write_head(out, 3, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Writes a generic value; map entries are written sorted by their encoded keys.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Unsigned(n) => write_head(out, 0, *n),
        Value::Negative(n) => write_head(out, 1, *n),
        Value::Bytes(b) => write_bytes(out, b),
        Value::Text(t) => write_text(out, t),
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                write_value(out, item);
            }
        }
        Value::Map(entries) => write_map(out, entries.iter().map(|(k, v)| (k, v))),
        Value::Tag(tag, inner) => {
            write_head(out, 6, *tag);
            write_value(out, inner);
        }
        Value::Simple(s) => write_head(out, 7, u64::from(*s)),
        Value::Float(Float::F16(bits)) => {
            out.push(0xf9);
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Float(Float::F32(bits)) => {
            out.push(0xfa);
            out.extend_from_slice(&bits.to_be_bytes());
        }
        Value::Float(Float::F64(bits)) => {
            out.push(0xfb);
            out.extend_from_slice(&bits.to_be_bytes());
        }
    }
}

/// Writes a map with its entries in the bytewise order of their encoded keys.
pub fn write_map<'a>(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = (&'a Value, &'a Value)>) {
    let mut encoded: Vec<(Vec<u8>, &Value)> = entries
        .map(|(k, v)| {
            let mut key = Vec::new();
            write_value(&mut key, k);
            (key, v)
        })
        .collect();
    encoded.sort_by(|a, b| a.0.cmp(&b.0));
    write_head(out, 5, encoded.len() as u64);
    for (key, value) in encoded {
        out.extend_from_slice(&key);
        write_value(out, value);
    }
}

/// The encoding of one value.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(hex_in: &str) -> Result<Value, DecodeError> {
        let bytes = hex::decode(hex_in).unwrap();
        let mut r = Reader::new(&bytes);
        let v = r.value("", MAX_VALUE_DEPTH)?;
        r.finish()?;
        assert_eq!(hex::encode(to_vec(&v)), hex_in, "re-encoding must reproduce the input");
        Ok(v)
    }

    #[test]
    fn deterministic_items_round_trip() {
        for hex_in in [
            "00",
            "17",
            "1818",
            "190100",
            "1a00010000",
            "1b0000000100000000",
            "20",
            "3818",
            "40",
            "4401020304",
            "60",
            "6161",
            "80",
            "820102",
            "a0",
            "a201020303",
            "a20102206161",
            "c11a514b67b0",
            "f4",
            "f5",
            "f6",
            "f7",
            "f97e00",
            "f93c00",
            "fa47c35000",
            "fb3ff199999999999a",
            "f820",
        ] {
            roundtrip(hex_in).unwrap();
        }
    }

    #[test]
    fn non_deterministic_encodings_are_refused_with_an_offset() {
        for (hex_in, needle) in [
            ("1817", "shortest"),
            ("190017", "shortest"),
            ("5f40ff", "indefinite"),
            ("9f01ff", "indefinite"),
            ("a202010103", "order"),
            ("a201010102", "order"),
            ("fa3f800000", "shortest"),
            ("fb3ff0000000000000", "shortest"),
            ("f97e01", "NaN"),
            ("1c", "reserved"),
            ("62c328", "UTF-8"),
            ("5a00010000", "exceeds"),
            ("f813", "shortest"),
        ] {
            let err = roundtrip(hex_in).unwrap_err();
            assert!(err.reason.contains(needle), "{hex_in}: {err}");
        }
        let err = roundtrip("820102ff").unwrap_err();
        assert!(err.to_string().starts_with("byte 3"), "{err}");
    }

    #[test]
    fn depth_is_bounded() {
        let mut bytes = vec![0x81; 40];
        bytes.push(0x00);
        let err = Reader::new(&bytes).value("ext", 4).unwrap_err();
        assert!(err.reason.contains("deeply"), "{err}");
    }

    #[test]
    fn maps_are_written_in_encoded_key_order() {
        let map = Value::Map(vec![
            (Value::Text("aaa".into()), Value::Unsigned(1)),
            (Value::Negative(24), Value::Unsigned(2)),
            (Value::Text("zz".into()), Value::Unsigned(3)),
            (Value::Unsigned(2), Value::Unsigned(4)),
            (Value::Negative(0), Value::Unsigned(5)),
        ]);
        // 2, -1, -25, "zz", "aaa": integers, then negatives by magnitude, then shorter text first.
        assert_eq!(hex::encode(to_vec(&map)), "a502042005381802627a7a036361616101");
    }
}
