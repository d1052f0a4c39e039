//! The TLS presentation language as MLS uses it (RFC 9420 §2.1): big-endian integers, vectors
//! behind a variable-length size (1, 2 or 4 bytes, the shortest that fits), `optional<T>` as a
//! presence byte. The reader names the field that failed and refuses what a strict peer would:
//! the 8-byte length form, longer-than-needed lengths, presence bytes other than 0 and 1,
//! vectors that run past their end, and anything left over.

use std::fmt;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {field}: {reason}")]
pub struct WireError {
    /// Offset of the field that failed, from the start of the body.
    pub offset: usize,
    /// The field path, e.g. `clients[1].clientUri`.
    pub field: String,
    /// What was expected.
    pub reason: String,
}

/// Largest vector the variable-length size can express (2^30 - 1).
pub const MAX_VECTOR: usize = (1 << 30) - 1;

/// Reads a body front to back.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Absolute offset of `bytes[0]` (readers of nested vectors report body offsets).
    base: usize,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reader at {} of {}", self.base + self.at, self.base + self.bytes.len())
    }
}

impl<'a> Reader<'a> {
    /// A reader over a whole body.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0, base: 0 }
    }

    /// The offset of the next byte, from the start of the body.
    pub fn position(&self) -> usize {
        self.base + self.at
    }

    /// An error at the current position.
    pub fn error(&self, field: &str, reason: impl Into<String>) -> WireError {
        WireError { offset: self.position(), field: field.to_owned(), reason: reason.into() }
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    /// Refuses anything left over.
    pub fn finish(&self, what: &str) -> Result<(), WireError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error(what, format!("{} bytes left over", self.bytes.len() - self.at)))
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], WireError> {
        if self.bytes.len() - self.at < n {
            return Err(self.error(field, format!("needs {n} bytes, {} left", self.bytes.len() - self.at)));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    /// Skips `n` bytes already parsed by someone else (an MLS object).
    pub fn advance(&mut self, n: usize) {
        self.at = (self.at + n).min(self.bytes.len());
    }

    /// `uint8`.
    pub fn u8(&mut self, field: &str) -> Result<u8, WireError> {
        Ok(self.take(1, field)?[0])
    }

    /// `uint16`.
    pub fn u16(&mut self, field: &str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// `uint32`.
    pub fn u32(&mut self, field: &str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `uint64`.
    pub fn u64(&mut self, field: &str) -> Result<u64, WireError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A variable-length size (RFC 9420 §2.1.2), in its shortest form.
    fn size(&mut self, field: &str) -> Result<usize, WireError> {
        let at = self.position();
        let first = self.u8(field)?;
        let (len, min) = match first >> 6 {
            0 => (usize::from(first & 0x3f), 0),
            1 => ((usize::from(first & 0x3f) << 8) | usize::from(self.u8(field)?), 64),
            2 => {
                let b = self.take(3, field)?;
                let v = (usize::from(first & 0x3f) << 24)
                    | (usize::from(b[0]) << 16)
                    | (usize::from(b[1]) << 8)
                    | usize::from(b[2]);
                (v, 1 << 14)
            }
            _ => return Err(WireError { offset: at, field: field.to_owned(), reason: "8-byte vector length".into() }),
        };
        if len < min {
            return Err(WireError {
                offset: at,
                field: field.to_owned(),
                reason: "vector length not in its shortest form".into(),
            });
        }
        Ok(len)
    }

    /// `opaque field<V>`.
    pub fn opaque(&mut self, field: &str) -> Result<&'a [u8], WireError> {
        let at = self.position();
        let len = self.size(field)?;
        self.take(len, field).map_err(|e| WireError { offset: at, ..e })
    }

    /// `opaque field<V>` holding UTF-8 (URIs, text).
    pub fn text(&mut self, field: &str) -> Result<String, WireError> {
        let at = self.position();
        let bytes = self.opaque(field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError {
            offset: at,
            field: field.to_owned(),
            reason: "not UTF-8".into(),
        })
    }

    /// `T field<V>`: a reader over the vector's bytes, to be read to its end.
    pub fn vector(&mut self, field: &str) -> Result<Reader<'a>, WireError> {
        let at = self.position();
        let len = self.size(field)?;
        let base = self.position();
        let bytes = self.take(len, field).map_err(|e| WireError { offset: at, ..e })?;
        Ok(Reader { bytes, at: 0, base })
    }

    /// Reads `T field<V>` element by element with `each` (given the element's field name).
    pub fn list<T>(
        &mut self,
        field: &str,
        mut each: impl FnMut(&mut Reader<'a>, &str) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let mut inner = self.vector(field)?;
        let mut out = Vec::new();
        while !inner.rest().is_empty() {
            let name = format!("{field}[{}]", out.len());
            out.push(each(&mut inner, &name)?);
        }
        Ok(out)
    }

    /// The presence byte of `optional<T> field`.
    pub fn present(&mut self, field: &str) -> Result<bool, WireError> {
        let at = self.position();
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError {
                offset: at,
                field: field.to_owned(),
                reason: format!("presence byte {other}, expected 0 or 1"),
            }),
        }
    }
}

/// Appends a body.
#[derive(Debug, Default)]
pub struct Writer {
    /// What was written.
    pub out: Vec<u8>,
}

impl Writer {
    /// `uint8`.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// `uint16`.
    pub fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// `uint32`.
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// `uint64`.
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    /// Bytes as they are (an MLS object, already encoded).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn size(&mut self, len: usize) {
        // Sizes past 2^30 - 1 cannot be expressed; nothing the bridge builds comes near that.
        let len = len.min(MAX_VECTOR);
        #[expect(clippy::cast_possible_truncation, reason = "each branch's value fits its width")]
        match len {
            0..=0x3f => self.out.push(len as u8),
            0x40..=0x3fff => self.out.extend_from_slice(&((len as u16) | 0x4000).to_be_bytes()),
            _ => self.out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes()),
        }
    }

    /// `opaque <V>`.
    pub fn opaque(&mut self, bytes: &[u8]) {
        self.size(bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// `T <V>`, the elements written by `each`.
    pub fn vector(&mut self, each: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        each(&mut inner);
        self.opaque(&inner.out);
    }

    /// `optional<T>`.
    pub fn optional<T>(&mut self, value: Option<&T>, each: impl FnOnce(&mut Writer, &T)) {
        match value {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                each(self, v);
            }
        }
    }
}

/// A protocol body: read whole (nothing may be left over) and written back exactly.
pub trait Wire: Sized {
    /// Reads the struct at the reader's position.
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError>;

    /// Appends the struct.
    fn write(&self, w: &mut Writer);

    /// Decodes a whole body.
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let value = Self::read(&mut r)?;
        r.finish("body")?;
        Ok(value)
    }

    /// Encodes the body.
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shortest_form_both_ways() {
        for (len, head) in [
            (0usize, vec![0x00]),
            (63, vec![0x3f]),
            (64, vec![0x40, 0x40]),
            (16383, vec![0x7f, 0xff]),
            (16384, vec![0x80, 0x00, 0x40, 0x00]),
        ] {
            let mut w = Writer::default();
            w.opaque(&vec![7; len]);
            assert_eq!(w.out[..head.len()], head[..], "{len}");
            let mut r = Reader::new(&w.out);
            assert_eq!(r.opaque("v").unwrap().len(), len);
            r.finish("body").unwrap();
        }
        for (bytes, reason) in [
            (&[0x40, 0x01, 0][..], "shortest"),
            (&[0x80, 0, 0, 1, 0][..], "shortest"),
            (&[0xc0, 0, 0, 0, 0, 0, 0, 0][..], "8-byte"),
            (&[0x05, 1, 2][..], "needs 5 bytes"),
        ] {
            let err = Reader::new(bytes).opaque("v").unwrap_err();
            assert!(err.reason.contains(reason), "{bytes:02x?}: {err}");
        }
    }

    #[test]
    fn presence_bytes_and_leftovers_are_refused_with_their_offsets() {
        let err = Reader::new(&[2]).present("frank").unwrap_err();
        assert_eq!((err.offset, err.field.as_str()), (0, "frank"));
        let mut r = Reader::new(&[0, 9]);
        assert!(!r.present("x").unwrap());
        assert_eq!(r.finish("body").unwrap_err().to_string(), "byte 1: body: 1 bytes left over");
        let mut r = Reader::new(&[2, 1, 2, 0xff]);
        let mut inner = r.vector("list").unwrap();
        inner.u8("a").unwrap();
        assert_eq!(inner.u16("b").unwrap_err().offset, 2, "offsets count from the body's start");
    }
}
