//! `ApplicationFraming` (draft-ietf-mls-extensions, `content_media_types` component): every
//! application message of a MIMI room is
//!
//! ```text
//! struct { opaque type<V>; Parameter parameters<V>; } MediaType;
//! struct { opaque parameter_name<V>; opaque parameter_value<V>; } Parameter;
//! struct { MediaType media_type; opaque inner_application_content<V>; } ApplicationFraming;
//! ```
//!
//! where `<V>` is MLS's variable-length integer length prefix (RFC 9420 §2.1.2): the top two
//! bits of the first byte give the length (`00` one byte, `01` two, `10` four; `11` is invalid)
//! and the rest is the value, big-endian. Decoding is strict: lengths must use the shortest
//! form, sizes are bounded, nothing may follow the structure, and malformed input is an error,
//! never a panic.

/// The media type of MIMI content.
pub const MIMI_CONTENT_TYPE: &str = "application/mimi-content";

/// Longest accepted media type (`type<V>`), in bytes.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

/// Longest accepted `parameters<V>` vector, in bytes.
pub const MAX_PARAMETERS_LEN: usize = 4096;

/// Longest accepted `inner_application_content<V>`, in bytes.
pub const MAX_INNER_LEN: usize = 1 << 22;

/// Why bytes are not a well-formed `ApplicationFraming`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The input ended inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length prefix starts with the reserved `11` bits.
    #[error("invalid variable-length integer prefix in {0}")]
    InvalidVarint(&'static str),
    /// A length prefix is longer than its value needs (RFC 9420 §2.1.2 requires minimal form).
    #[error("non-minimal variable-length integer in {0}")]
    NonMinimalVarint(&'static str),
    /// A field is longer than this implementation accepts.
    #[error("{field} is {len} bytes, more than the {max} accepted")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Bytes follow the structure.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// The media type is not UTF-8.
    #[error("media type is not UTF-8")]
    MediaTypeNotUtf8,
}

/// Appends `value` as an MLS variable-length integer (shortest form). Values above 2^30 - 1
/// cannot be encoded; they come out as a prefix [`unframe`] refuses.
fn write_varint(out: &mut Vec<u8>, value: usize) {
    if value < 1 << 6 {
        out.push(u8::try_from(value).unwrap_or(0));
    } else if value < 1 << 14 {
        let v = u16::try_from(value).unwrap_or(0) | 0x4000;
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        let v = u32::try_from(value).unwrap_or(0) | 0x8000_0000;
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends `bytes` as `opaque<V>`.
fn write_opaque(out: &mut Vec<u8>, bytes: &[u8]) {
    write_varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Frames MIMI content (CBOR) as `ApplicationFraming` with media type
/// [`MIMI_CONTENT_TYPE`] and no parameters.
///
/// Content longer than [`MAX_INNER_LEN`] is framed all the same, but [`unframe`] refuses it:
/// check the size first ([`check_inner_len`]).
pub fn frame_mimi(content_cbor: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content_cbor.len() + MIMI_CONTENT_TYPE.len() + 6);
    write_opaque(&mut out, MIMI_CONTENT_TYPE.as_bytes());
    write_varint(&mut out, 0); // no parameters
    write_opaque(&mut out, content_cbor);
    out
}

/// Whether `len` bytes of inner content fit the bound [`unframe`] enforces.
pub fn check_inner_len(len: usize) -> Result<(), FramingError> {
    if len > MAX_INNER_LEN {
        return Err(FramingError::TooLong { field: "inner application content", len, max: MAX_INNER_LEN });
    }
    Ok(())
}

/// A cursor over the input.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FramingError> {
        if self.bytes.len() < n {
            return Err(FramingError::Truncated(field));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn varint(&mut self, field: &'static str) -> Result<usize, FramingError> {
        let first = *self.take(1, field)?.first().ok_or(FramingError::Truncated(field))?;
        let (len, min) = match first >> 6 {
            0 => return Ok(usize::from(first)),
            1 => (2, 1 << 6),
            2 => (4, 1 << 14),
            _ => return Err(FramingError::InvalidVarint(field)),
        };
        let rest = self.take(len - 1, field)?;
        let mut value = usize::from(first & 0x3f);
        for byte in rest {
            value = (value << 8) | usize::from(*byte);
        }
        if value < min {
            return Err(FramingError::NonMinimalVarint(field));
        }
        Ok(value)
    }

    fn opaque(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], FramingError> {
        let len = self.varint(field)?;
        if len > max {
            return Err(FramingError::TooLong { field, len, max });
        }
        self.take(len, field)
    }
}

/// Decodes an `ApplicationFraming`: its media type (parameters are checked for well-formedness
/// and dropped) and its inner content.
pub fn unframe(bytes: &[u8]) -> Result<(String, Vec<u8>), FramingError> {
    let mut reader = Reader { bytes };
    let media_type = reader.opaque("media type", MAX_MEDIA_TYPE_LEN)?;
    let media_type = std::str::from_utf8(media_type).map_err(|_| FramingError::MediaTypeNotUtf8)?.to_owned();
    let parameters = reader.opaque("parameters", MAX_PARAMETERS_LEN)?;
    let mut params = Reader { bytes: parameters };
    while !params.bytes.is_empty() {
        params.opaque("parameter name", MAX_PARAMETERS_LEN)?;
        params.opaque("parameter value", MAX_PARAMETERS_LEN)?;
    }
    let inner = reader.opaque("inner application content", MAX_INNER_LEN)?.to_vec();
    if !reader.bytes.is_empty() {
        return Err(FramingError::TrailingBytes(reader.bytes.len()));
    }
    Ok((media_type, inner))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn hand_computed_vector() {
        // type<V>: 24 = 0x18, then "application/mimi-content"; parameters<V>: 0x00;
        // inner<V>: 3, then the CBOR array [1, 2] (0x82 0x01 0x02).
        let mut expected = vec![0x18];
        expected.extend_from_slice(b"application/mimi-content");
        expected.extend_from_slice(&[0x00, 0x03, 0x82, 0x01, 0x02]);
        assert_eq!(frame_mimi(&[0x82, 0x01, 0x02]), expected);
        assert_eq!(unframe(&expected).unwrap(), (MIMI_CONTENT_TYPE.to_owned(), vec![0x82, 0x01, 0x02]));
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for len in [0, 1, 63, 64, 16383, 16384, 70_000] {
            let inner = vec![0xa5; len];
            let framed = frame_mimi(&inner);
            let prefix = framed.len() - len;
            let expected_prefix = 1
                + 24
                + 1
                + if len < 64 {
                    1
                } else if len < 16384 {
                    2
                } else {
                    4
                };
            assert_eq!(prefix, expected_prefix, "length {len}");
            assert_eq!(unframe(&framed).unwrap().1, inner);
        }
        let framed = frame_mimi(&[0; 64]);
        assert_eq!(&framed[26..28], &[0x40, 0x40]);
    }

    #[test]
    fn parameters_are_accepted_and_dropped() {
        let mut bytes = vec![0x0a];
        bytes.extend_from_slice(b"text/plain");
        // parameters<V> of 10 bytes: name "charset" (1 + 7), value "x" (1 + 1).
        bytes.extend_from_slice(&[0x0a, 0x07]);
        bytes.extend_from_slice(b"charset");
        bytes.extend_from_slice(&[0x01, b'x']);
        bytes.extend_from_slice(&[0x02, b'h', b'i']);
        assert_eq!(unframe(&bytes).unwrap(), ("text/plain".to_owned(), b"hi".to_vec()));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = frame_mimi(b"abc");
        // Every strict prefix is truncated.
        for end in 0..good.len() {
            assert!(matches!(unframe(&good[..end]), Err(FramingError::Truncated(_))), "prefix {end}");
        }
        // Trailing bytes.
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(unframe(&trailing), Err(FramingError::TrailingBytes(1)));
        // Non-minimal length: 3 written in two bytes.
        let mut non_minimal = good[..26].to_vec();
        non_minimal.extend_from_slice(&[0x40, 0x03, b'a', b'b', b'c']);
        assert!(matches!(unframe(&non_minimal), Err(FramingError::NonMinimalVarint(_))));
        // Non-minimal in four bytes.
        let mut non_minimal4 = good[..26].to_vec();
        non_minimal4.extend_from_slice(&[0x80, 0x00, 0x00, 0x03, b'a', b'b', b'c']);
        assert!(matches!(unframe(&non_minimal4), Err(FramingError::NonMinimalVarint(_))));
        // Reserved prefix.
        assert!(matches!(unframe(&[0xc0, 0, 0, 0, 0, 0, 0, 0]), Err(FramingError::InvalidVarint(_))));
        // Oversized media type and inner content.
        assert!(matches!(unframe(&[0x41, 0x00]), Err(FramingError::TooLong { .. })));
        let mut huge = good[..26].to_vec();
        huge.extend_from_slice(&[0xbf, 0xff, 0xff, 0xff]);
        assert!(matches!(unframe(&huge), Err(FramingError::TooLong { .. })));
        // Media type not UTF-8.
        assert_eq!(unframe(&[0x01, 0xff, 0x00, 0x00]), Err(FramingError::MediaTypeNotUtf8));
        // Malformed parameter inside a well-formed parameters vector.
        assert!(matches!(unframe(&[0x00, 0x02, 0x05, b'a', 0x00]), Err(FramingError::Truncated(_))));
        // Empty input.
        assert!(unframe(&[]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x1234_5678_u32;
        for len in 0..400 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state.to_be_bytes()[0]
                })
                .collect();
            let _ = unframe(&bytes);
        }
    }
}
